"""A provider mirror: a folder laid out like the providers' sites, served over HTTP on loopback.

Layout: {mirror}/maxi/star_data/..., {mirror}/swift/results/transients/..., {mirror}/fermi/...;
the fetcher then reads it through the same HTTP code path as the live providers
(`python -m devtools fetch MIRROR`, the private stacks, `make run`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flashes.settings import PREFIX
from flashes.topics import INSTRUMENTS


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


def serve(folder: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Serve `folder` in a background thread; returns the server and its base URL."""
    if not folder.is_dir():
        raise FileNotFoundError(f"mirror folder {folder} does not exist")
    return serve_handler(functools.partial(_QuietHandler, directory=str(folder)), host, port)


def serve_handler(
    handler: Callable[..., BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0
) -> tuple[ThreadingHTTPServer, str]:
    """An HTTP server with `handler` in a background thread; the server and its base URL."""
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def provider_settings(base_url: str) -> dict[str, str]:
    """The settings (as `Settings.model_copy(update=...)` takes them) that point every provider at a mirror."""
    return {f"{inst}_base_url": f"{base_url}/{inst}/" for inst in INSTRUMENTS}


def provider_env(base_url: str) -> dict[str, str]:
    """The same settings as FLASHES_* variables (`Settings.from_env` takes them, a service's environment too)."""
    return {PREFIX + name.upper(): url for name, url in provider_settings(base_url).items()}
