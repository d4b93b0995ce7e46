"""What the benchmarks share (importable from a script in bench/, whose folder Python puts on sys.path)."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from flashes import stack


def tidy(var: Path, logs: Path, services: Iterable[str], keep: bool, ok: bool) -> None:
    """Warn about every service that logged a traceback; remove the private stack's folder unless
    asked to keep it or something went wrong (then say where it is)."""
    for name in stack.crashed(logs, services):
        print(f"warning: {name} logged a traceback (see {logs / (name + '.log')})", file=sys.stderr)
        ok = False
    if ok and not keep:
        shutil.rmtree(var, ignore_errors=True)
    else:
        print(f"kept {var}", file=sys.stderr)
