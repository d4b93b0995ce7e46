"""The image's HEALTHCHECK: does the service this container runs answer on its port?

The container's first process is `flashes run NAME` (docker-compose.yml); service NAME serves GET /metrics on
services.registry.metrics_port (the API on its own port, where /metrics is one of its routes), so an answer there
means the process is up and its event loop turns. A container that runs anything else (`flashes kafka-acls`, a
one-off command) has no port to ask and counts as healthy.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from flashes.settings import Settings
from services.registry import SERVICES, metrics_port


def service_of(argv: Sequence[str]) -> str | None:
    """NAME of a `... flashes run NAME` command line, else None."""
    for i, arg in enumerate(argv[:-2]):
        if Path(arg).name == "flashes" and argv[i + 1] == "run" and argv[i + 2] in SERVICES:
            return argv[i + 2]
    return None


def url(settings: Settings, name: str) -> str:
    return f"http://127.0.0.1:{metrics_port(settings, name)}/metrics"


def main(cmdline: Path = Path("/proc/1/cmdline"), settings: Settings | None = None, timeout_s: float = 4.0) -> int:
    """0 when the service of `cmdline` answers (or there is none), 1 when it does not."""
    name = service_of(cmdline.read_bytes().decode().split("\0"))
    if name is None:
        return 0
    try:
        with urllib.request.urlopen(url(settings or Settings.from_env(os.environ), name), timeout=timeout_s) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:  # URLError, a refused connection, a timeout
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
