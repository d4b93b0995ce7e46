"""A property-based run of the whole OpenAPI (schemathesis) against the running API: no server error.

The API runs as its own process on the pipeline's Kafka and QuestDB, so every endpoint reads real
data. Grafana cannot be installed on these machines: a stand-in (pytest-httpserver) answers its
documented /api/health, so that /health/grafana and /plots have a Grafana to name.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
from pytest_httpserver import HTTPServer

from devtools.infra import free_port
from devtools.observe import Mailbox, up, wait_until
from devtools.stack import Stack
from flashes.settings import Settings
from tests.conftest import pipeline_env


def test_no_generated_request_makes_a_server_error(
    pipeline: Settings, stack: Stack, httpserver: HTTPServer, smtp_server: tuple[int, Mailbox]
) -> None:
    httpserver.expect_request("/api/health").respond_with_json({"database": "ok", "version": "12.2.0"})
    port = free_port()
    # The sample's newest points are years old: /health/freshness would rightly answer 503, a server error to
    # schemathesis, so this API allows them (tests/test_metrics.py tests the 503).
    env = {
        **pipeline_env(smtp_server[0]),
        "FLASHES_API_PORT": str(port),
        "FLASHES_GRAFANA_URL": httpserver.url_for("/").rstrip("/"),
        "FLASHES_FRESHNESS_DAYS": '{"maxi": 1e6, "swift": 1e6, "fermi": 1e6}',
    }
    api = f"http://127.0.0.1:{port}"
    stack.start("api#openapi", env=env)
    try:
        wait_until(
            lambda: up(f"{api}/openapi.json") or stack.processes["api#openapi"].poll() is not None, "the API", 60
        )
        # Found by this run once: a non-ASCII token made the link check raise (500) instead of answering 404.
        assert httpx.post(f"{api}/subscriptions/unsubscribe", params={"id": "é", "token": "é"}).status_code == 404
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{api}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "25",
                "--workers",
                "2",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=pipeline.var_dir,
        )
        assert run.returncode == 0, run.stdout[-6000:]
        selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
        tested = re.search(r"Tested: (\d+)", run.stdout)
        assert selected and tested and int(tested[1]) == int(selected[2]) > 20, run.stdout[-3000:]
    finally:
        stack.stop("api#openapi")
    assert not stack.crashed(["api#openapi"]), f"the API logged a traceback: see {stack.logs / 'api#openapi.log'}"
