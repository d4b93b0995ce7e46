"""Fixtures on the real thing: Kafka and QuestDB of the session's private stack (devtools/stack.py).

The servers run on free loopback ports with data under a temporary folder; the services a test starts
(`stack.start`) are given the stack's FLASHES_* variables, and the tests' settings are built from them.
"""

from __future__ import annotations

import asyncio
import email
import json
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from werkzeug import Request, Response

from devtools import mirror
from devtools.infra import free_port
from devtools.observe import PIPELINE_GROUPS, Mailbox, receiver, serve, up, wait_drained, wait_positioned, wait_until
from devtools.observe import series_counts as counts
from devtools.stack import Stack, private_stack
from flashes.settings import PROJECT_ROOT, Settings
from services.fetcher.service import fetch_once

TEST_DATA = Path(__file__).resolve().parent / "data"


LAYERS = ("unit", "integration", "browser")
# The fixtures that start private servers or services: the session's Kafka and QuestDB (`stack`, `settings`) and
# the stacks of their own that some modules start.
SERVER_FIXTURES = {"stack", "settings", "private", "own", "ops", "black_hole"}
PIPELINE_SERVICES = ("sink", "derive", "relevance", "alerts", "delivery", "api")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test in one layer: as its module or itself says, else integration when it needs a server fixture
    (directly or through another fixture), else unit."""
    for item in items:
        if not any(item.get_closest_marker(layer) for layer in LAYERS):
            item.add_marker("integration" if SERVER_FIXTURES & set(item.fixturenames) else "unit")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's Kafka and QuestDB (fast provider retries); the services tests start run on it."""
    with private_stack(
        env={"FLASHES_HTTP_BACKOFF_S": "0.05", "FLASHES_HTTP_TIMEOUT_S": "2"}, var=tmp_path_factory.mktemp("var")
    ) as session:
        yield session


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return stack.settings


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    server, url, received = receiver(204)
    yield url, received
    server.stop()


@pytest.fixture(scope="session")
def failing_receiver() -> Iterator[tuple[str, list[dict]]]:
    server, url, received = receiver(500)
    yield url, received
    server.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on loopback."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


@dataclass
class Subscribers:
    """The subscriptions the pipeline fixture makes through the API before the data flows: name -> answer."""

    api: str = ""
    made: dict[str, dict] = field(default_factory=dict)


def subscribe(api: str, body: dict) -> dict:
    r = httpx.post(f"{api}/subscriptions", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def confirm_link(message: email.message.EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()
    return next(w for w in text.split() if "/subscriptions/confirm?" in w)


@contextmanager
def providers(settings: Settings, handle: Callable[[Request], Response]) -> Iterator[tuple[Settings, str]]:
    """Every provider served by `handle` on loopback: the settings that fetch from it, and its base URL."""
    server, base = serve(handle)
    try:
        yield settings.model_copy(update=mirror.provider_settings(base)), base
    finally:
        server.stop()


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


SOURCES = {  # MAXI id -> (source id, BAT file in the mirror)
    "J1535-572": ("maxij1535-571", "swift/results/transients/weak/MAXIJ1535-571.lc.txt"),
    "J1820+071": ("maxij1820+070", "swift/results/transients/weak/MAXIJ1820p070.lc.txt"),
    "J1520-571": ("cirx-1", "swift/results/transients/CirX-1.lc.txt"),
}
BAD_LINES = ["this is not a number line", "57000.5 1.0 0.1 1.0", "57001.5 1 0.1 1 0.1 1 0.1 1 -0.5"]


def maxi_path(mirror_dir: Path, maxi_id: str) -> Path:
    return mirror_dir / "maxi" / "star_data" / maxi_id / f"{maxi_id}_g_lc_1day_all.dat"


def data_rows(path: Path) -> list[list[float]]:
    """The numeric rows of a provider file, read independently of the fetcher's parser."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append([float(x) for x in line.split()])
        except ValueError:
            continue
    return [r for r in rows if r]


@pytest.fixture(scope="session")
def mirror_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = copy_mirror({m: bat for m, (_, bat) in SOURCES.items()}, tmp_path_factory.mktemp("mirror"))
    path = maxi_path(folder, "J1520-571")
    lines = path.read_text().splitlines()
    path.write_text("\r\n".join(lines[:500] + BAD_LINES + lines[500:]) + "\r\n")
    return folder


@pytest.fixture(scope="session")
def expected(mirror_dir: Path) -> dict[str, int]:
    """Valid input rows per series, from the unaltered sample files."""
    out = {}
    for maxi_id, (sid, bat) in SOURCES.items():
        out[f"maxi_{sid}"] = len(data_rows(maxi_path(PROJECT_ROOT / "data" / "mirror", maxi_id)))
        out[f"swift_{sid}"] = len(data_rows(mirror_dir / bat))
        maxi_days = {math.floor(r[0]) for r in data_rows(maxi_path(mirror_dir, maxi_id)) if len(r) == 9 and r[2] >= 0}
        bat_days = {math.floor(r[0]) for r in data_rows(mirror_dir / bat)}
        out[f"combined_{sid}"] = len(maxi_days & bat_days)
    return out


@pytest.fixture(scope="session")
def subscribers() -> Subscribers:
    return Subscribers()


def own(found: dict[str, int], wanted: dict[str, int]) -> dict[str, int]:
    """The counts of the series in `wanted` only (0 for one not stored yet)."""
    return {series: found.get(series, 0) for series in wanted}


def pipeline_env(smtp_port: int) -> dict[str, str]:
    """What the pipeline's services are given beside the stack's variables and the mirror (a test that starts
    one more API or delivery beside them gives it the same)."""
    return {
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
        "FLASHES_DELIVERY_BACKOFF_S": "1.0",
        "FLASHES_DELIVERY_MAX_ATTEMPTS": "3",
        "FLASHES_SMTP_PORT": str(smtp_port),
        "FLASHES_SMTP_SECURITY": "none",  # aiosmtpd on loopback, without STARTTLS
        "FLASHES_EMAIL_DAILY_CAP": "2",
        # Every test subscribes from 127.0.0.1 through this one API; the limit itself is tested on its own app.
        "FLASHES_SUBSCRIPTIONS_PER_HOUR": "1000",
    }


@pytest.fixture(scope="session")
def pipeline(
    stack: Stack,
    mirror_dir: Path,
    webhook_receiver: tuple[str, list[dict]],
    failing_receiver: tuple[str, list[dict]],
    smtp_server: tuple[int, Mailbox],
    subscribers: Subscribers,
    expected: dict[str, int],
) -> Iterator[Settings]:
    """The services on the sample (three sources), with subscriptions made through the API first:
    'all' (webhook, every source), 'failing' (webhook answering 500, MAXI J1535-571 onsets), 'mail'
    (e-mail, confirmed, MAXI J1535-571, daily cap 2) and 'unconfirmed' (e-mail never confirmed); all ask
    for history too, as the sample's alerts are about data years old."""
    server, base = mirror.serve(mirror_dir)
    env = {**mirror.provider_env(base), **pipeline_env(smtp_server[0])}
    s = stack.settings_with(env)
    stack.start(*PIPELINE_SERVICES, env=env)
    processes = stack.processes
    try:
        subscribers.api = s.api_url
        wait_until(lambda: up(f"{s.api_url}/health/kafka") or processes["api"].poll() is not None, "the API", 120)
        assert processes["api"].poll() is None, f"the API exited: see {stack.logs / 'api.log'}"
        made = subscribers.made
        made["all"] = subscribe(
            s.api_url, {"channel": "webhook", "webhook_url": f"{webhook_receiver[0]}/all", "filters": {"history": True}}
        )
        made["failing"] = subscribe(
            s.api_url,
            {
                "channel": "webhook",
                "webhook_url": f"{failing_receiver[0]}/x",
                "filters": {"sources": ["maxij1535-571"], "alert_types": ["onset"], "history": True},
            },
        )
        for name, address in (("mail", "astro@example.org"), ("unconfirmed", "lazy@example.org")):
            made[name] = subscribe(
                s.api_url,
                {"channel": "email", "email": address, "filters": {"sources": ["maxij1535-571"], "history": True}},
            )
        link = confirm_link(smtp_server[1].to("astro@example.org")[0])
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200 and "<form method=post>" in page.text
        sub_id, token = (part.split("=", 1)[1] for part in link.split("?", 1)[1].split("&"))
        assert httpx.post(link.split("?")[0], data={"id": sub_id, "token": token}, timeout=10).status_code == 200
        wait_positioned(s)
        report = asyncio.run(fetch_once(s, [sid for sid, _ in SOURCES.values()]))
        assert report.series == 6 and report.rejected == len(BAD_LINES), dump(report)
        lightcurve = {k: v for k, v in expected.items() if k.startswith(("maxi", "swift"))}
        # Only this fixture's series are counted: other tests may have stored series of their own first.
        wait_until(
            lambda: own(counts(s, "lightcurve", "WHERE band IN ('2-20', '15-50')"), lightcurve) == lightcurve,
            "every valid lightcurve row in QuestDB",
        )
        wait_until(
            lambda: own(counts(s, "relevance", "WHERE kind IN ('maxi', 'swift')"), lightcurve) == lightcurve,
            "a relevance score for every lightcurve point",
        )
        wait_drained(s, PIPELINE_GROUPS + ("flashes-delivery",))
        yield s
    finally:
        subscribers.api = ""
        stack.stop(*PIPELINE_SERVICES)
        server.shutdown()
        dead = stack.crashed(PIPELINE_SERVICES)
        assert not dead, f"{dead} crashed: see {stack.logs}"
