"""Fixtures on the real thing: Kafka and QuestDB started by the project's own infra code.

The servers run on free loopback ports with data under a temporary folder; every FLASHES_*
setting is put into the environment so that the services started as subprocesses see them too.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flashes import infra, questdb
from flashes.settings import PROJECT_ROOT, Settings, get_settings

TEST_DATA = Path(__file__).resolve().parent / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    var = tmp_path_factory.mktemp("var")
    env = {
        "FLASHES_VAR_DIR": str(var),
        "FLASHES_CACHE_DIR": str(PROJECT_ROOT / ".cache"),
        "FLASHES_KAFKA_PORT": str(free_port()),
        "FLASHES_KAFKA_CONTROLLER_PORT": str(free_port()),
        "FLASHES_QUESTDB_HTTP_PORT": str(free_port()),
        "FLASHES_QUESTDB_PG_PORT": str(free_port()),
        "FLASHES_QUESTDB_ILP_TCP_PORT": str(free_port()),
        "FLASHES_QUESTDB_MIN_HTTP_PORT": str(free_port()),
        "FLASHES_API_PORT": str(free_port()),
        "FLASHES_HTTP_BACKOFF_S": "0.05",
        "FLASHES_HTTP_TIMEOUT_S": "2",
    }
    os.environ.update(env)
    get_settings.cache_clear()
    s = Settings()
    infra.start(s)
    questdb.ensure_tables(s)
    yield s
    infra.stop(s)


class Recorder(BaseHTTPRequestHandler):
    """A webhook receiver: remembers every POST (path, headers, body)."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []
    handler = type("SessionRecorder", (Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def copy_mirror(sources: dict[str, str | None], dest: Path) -> Path:
    """A provider-layout mirror with the sample files of the given {MAXI id: BAT relative path}."""
    sample = PROJECT_ROOT / "data" / "mirror"
    for maxi_id, bat in sources.items():
        rel = Path("maxi/star_data") / maxi_id / f"{maxi_id}_g_lc_1day_all.dat"
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample / rel, dest / rel)
        if bat:
            (dest / bat).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample / bat, dest / bat)
    return dest


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1, default=str)[:2000]
