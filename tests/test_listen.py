"""`flashes listen`, AlertListener and heartbeats on the real Kafka of the session.

The alerts topic is shared with other tests, so every alert here has a source id of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime

import pytest

import schemas
from devtools.infra import child_env
from devtools.observe import read_topic
from devtools.stack import Stack
from flashes import kafka, topics
from flashes.client import AlertListener
from flashes.heartbeat import beat
from flashes.kafka import ensure_topics, make_producer
from flashes.settings import PROJECT_ROOT, Settings

FLASHES = PROJECT_ROOT / ".venv" / "bin" / "flashes"
EXAMPLE = schemas.EXAMPLE_ALERT
STEP_MS = 1000


def alert(source_id: str, peak: float, record_number: int = 1) -> schemas.Alert:
    base = topics.ALERTS.decode(EXAMPLE.read_bytes())
    return base.model_copy(
        update={
            "source_id": source_id,
            "alert_id": f"{source_id}@57998.50000",
            "record_number": record_number,
            "alert_type": "onset" if record_number == 1 else "update",
            "peak_relevance": peak,
            "relevance": peak,
        }
    )


@pytest.fixture(scope="module")
async def published(settings: Settings) -> tuple[list[schemas.Alert], list[int], list[str]]:
    """Three alerts of three new sources, then an update of the first, published STEP_MS apart in the
    recent past (Kafka record times); the alerts, their times (ms) and the source ids."""
    tag = uuid.uuid4().hex[:8]
    sources = [f"listen-{i}-{tag}" for i in range(3)]
    alerts = [alert(sources[0], 0.3), alert(sources[1], 0.8), alert(sources[2], 0.6), alert(sources[0], 0.9, 2)]
    start = int(time.time() * 1000) - 10 * STEP_MS
    stamps = [start + i * STEP_MS for i in range(len(alerts))]
    await send(settings, alerts, stamps)
    return alerts, stamps, sources


async def send(settings: Settings, alerts: list[schemas.Alert], stamps: list[int]) -> None:
    """Publish the alerts with these Kafka record times (ms), in order."""
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        for a, ms in zip(alerts, stamps):
            await producer.send_and_wait(
                topics.ALERTS.name, topics.ALERTS.encode(a), key=a.source_id.encode(), timestamp_ms=ms
            )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def varied(settings: Settings) -> tuple[list[schemas.Alert], list[str]]:
    """Three alerts of three new sources that differ in what the other filters read: instrument, reasons,
    alert type, position on the sky, news or history; the alerts and the source ids."""
    tag = uuid.uuid4().hex[:8]
    sources = [f"listen-varied-{i}-{tag}" for i in range(3)]
    differences = [  # the example's position is (233.83, -57.23)
        {"series": [f"maxi_{sources[0]}"], "reasons": ["brightening"], "alert_type": "onset", "live": True},
        {
            "series": [f"swift_{sources[1]}"],
            "reasons": ["state_change"],
            "alert_type": "update",
            "live": True,
            "ra": 10.0,
            "dec": 10.0,
        },
        {
            "series": [f"hardness_{sources[2]}"],
            "reasons": ["brightening", "unusual"],
            "alert_type": "end",
            "live": False,
            "ra": 234.5,
            "dec": -57.5,
        },
    ]
    alerts = [alert(source, 0.9).model_copy(update=update) for source, update in zip(sources, differences)]
    start = int(time.time() * 1000) - 10 * STEP_MS
    await send(settings, alerts, [start + i * STEP_MS for i in range(len(alerts))])
    return alerts, sources


def listen(*args: str, stack: Stack | None = None) -> subprocess.CompletedProcess:
    """`flashes listen ARGS` given the session stack's variables (none: the refusals need no Kafka)."""
    return subprocess.run(
        [str(FLASHES), "listen", *args],
        env=child_env(stack.env if stack else {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def collect(listener: AlertListener) -> list[schemas.Alert]:
    return [a async for a in listener]


async def test_listen_since_replays_the_chosen_sources_in_order(published, stack: Stack) -> None:
    alerts, stamps, sources = published
    since = datetime.fromtimestamp((stamps[0] + stamps[1]) / 2000, UTC).isoformat()
    done = listen(
        "--since", since, "--exit-at-end", "--json", "--source", sources[0], "--source", sources[1], stack=stack
    )
    assert done.returncode == 0, done.stderr
    printed = [topics.ALERTS.decode(line.encode()) for line in done.stdout.splitlines()]
    assert printed == [alerts[1], alerts[3]]  # not the first (before since), not the third (another source)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], [0, 1, 2]),  # history too, unless asked otherwise
        (["--news-only"], [0, 1]),
        (["--instrument", "swift"], [1]),
        (["--instrument", "maxi", "--instrument", "fermi"], [0]),  # a hardness series is no instrument's own
        (["--reason", "unusual"], [2]),
        (["--reason", "state_change", "--reason", "unusual"], [1, 2]),
        (["--alert-type", "onset", "--alert-type", "end"], [0, 2]),
        (["--cone", "233.8", "-57.2", "1"], [0, 2]),
        (["--cone", "233.8", "-57.2", "1", "--reason", "unusual", "--news-only"], []),
    ],
)
async def test_listen_takes_every_subscription_filter(
    varied, stack: Stack, options: list[str], expected: list[int]
) -> None:
    alerts, sources = varied
    done = listen(
        "--from-beginning",
        "--exit-at-end",
        "--json",
        *(a for s in sources for a in ("--source", s)),
        *options,
        stack=stack,
    )
    assert done.returncode == 0, done.stderr
    assert [topics.ALERTS.decode(line.encode()) for line in done.stdout.splitlines()] == [alerts[i] for i in expected]


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["--cone", "233.8", "-91", "1"], "--cone dec: Input should be greater than or equal to -90"),
        (["--min-relevance", "1.5"], "--min-relevance: Input should be less than or equal to 1"),
        (["--cone", "233.8", "-57.2", "0"], "--cone radius: Input should be greater than 0"),
    ],
)
def test_listen_refuses_a_filter_out_of_bounds(options: list[str], reason: str) -> None:
    done = listen("--exit-at-end", *options)
    assert (done.returncode, done.stderr.strip()) == (1, f"flashes listen: {reason}")


async def test_listen_readable_lines(published, stack: Stack) -> None:
    alerts, _, sources = published
    done = listen("--from-beginning", "--exit-at-end", "--source", sources[2], stack=stack)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"2017-09-03 12:00:00 UTC  onset #1  MAXI J1535-571  peak 0.60  brightening  {alerts[2].explanation}"
    ]


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01", "nan"])
def test_listen_refuses_a_bad_since(since: str) -> None:
    done = listen("--since", since, "--exit-at-end")
    assert done.returncode == 1
    assert done.stderr.startswith(f"flashes listen: --since {since!r}") and "Traceback" not in done.stderr


async def test_listener_from_beginning_with_min_relevance(settings: Settings, published) -> None:
    alerts, _, sources = published
    wanted = schemas.SubscriptionFilters(sources=sources, min_relevance=0.5)
    listener = AlertListener.from_settings(settings, wanted, from_beginning=True, exit_at_end=True)
    assert await collect(listener) == [alerts[1], alerts[2], alerts[3]]


async def test_listener_tag_filter_and_start_positions(settings: Settings, published) -> None:
    alerts, stamps, sources = published
    ours = schemas.SubscriptionFilters(sources=sources)
    tagged, untagged = (
        ours.model_copy(update={"tags": tags}) for tags in (["BLACK HOLE", "no such tag"], ["no such tag"])
    )
    before_last = datetime.fromtimestamp((stamps[2] + stamps[3]) / 2000, UTC)
    assert await collect(AlertListener.from_settings(settings, tagged, since=before_last, exit_at_end=True)) == [
        alerts[3]
    ]
    assert await collect(AlertListener.from_settings(settings, untagged, from_beginning=True, exit_at_end=True)) == []
    assert (
        await collect(AlertListener.from_settings(settings, ours, exit_at_end=True)) == []
    )  # from the end: new alerts only
    later = datetime.now(UTC).replace(tzinfo=None)  # naive: UTC, after every alert
    assert await collect(AlertListener.from_settings(settings, ours, since=later, exit_at_end=True)) == []


async def test_listener_follows_new_alerts(settings: Settings) -> None:
    source = f"listen-follow-{uuid.uuid4().hex[:8]}"
    fresh = alert(source, 0.7)
    listener = AlertListener.from_settings(settings, schemas.SubscriptionFilters(sources=[source]))
    stream = aiter(listener)
    following = asyncio.ensure_future(anext(stream))
    try:
        positioned = asyncio.ensure_future(listener.positioned.wait())  # it has taken its end offsets (or failed)
        await asyncio.wait({following, positioned}, return_when=asyncio.FIRST_COMPLETED)
        positioned.cancel()
        assert not following.done()
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(topics.ALERTS.name, topics.ALERTS.encode(fresh), key=source.encode())
        finally:
            await producer.stop()
        assert await asyncio.wait_for(following, 20) == fresh
    finally:
        following.cancel()
        await stream.aclose()


async def test_heartbeat(settings: Settings) -> None:
    service = f"test-beat-{uuid.uuid4().hex[:8]}"
    fast = settings.model_copy(update={"heartbeat_s": 0.2})
    newest = datetime(2024, 5, 1, 12, tzinfo=UTC)
    freshness = {"maxi": schemas.Freshness(time=newest, received_at=newest)}
    task = asyncio.ensure_future(
        beat(fast, service, freshness=lambda: freshness, status=lambda: ("degraded", "testing"))
    )

    async def stored() -> list[dict]:
        """This service's beats; none before the first beat has created the topic."""
        admin = kafka.admin(settings)
        await admin.start()
        try:
            if topics.HEARTBEAT.name not in await admin.list_topics():
                return []
        finally:
            await admin.close()
        return [v for k, v in await read_topic(settings, topics.HEARTBEAT.name, timeout_s=2) if k == service.encode()]

    while len(await stored()) < 2 and not task.done():  # the first beat creates the topics, then one every 0.2 s
        pass
    assert not task.done(), "beat returned or raised"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    beats = await stored()
    assert len(beats) >= 2
    records = [schemas.Heartbeat.model_validate(b) for b in beats]
    assert all(r.service == service and r.instance == f"{socket.gethostname()}:{os.getpid()}" for r in records)
    assert all(r.status == "degraded" and r.detail == "testing" and r.freshness == freshness for r in records)
    assert len({r.started_at for r in records}) == 1
    assert all(a.at < b.at for a, b in zip(records, records[1:]))
