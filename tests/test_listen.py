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
from datetime import datetime, timezone

import pytest

import schemas
from flashes import topics
from flashes.client import AlertListener
from flashes.heartbeat import beat
from flashes.kafka import ensure_topics, make_producer
from flashes.settings import PROJECT_ROOT, Settings
from tests.kafka_helpers import read_topic

FLASHES = PROJECT_ROOT / ".venv" / "bin" / "flashes"
EXAMPLE = schemas.EXAMPLE_ALERT
STEP_MS = 1000


def alert(source_id: str, peak: float, record_number: int = 1) -> schemas.Alert:
    base = topics.ALERTS.decode(EXAMPLE.read_bytes())
    return base.model_copy(update={"source_id": source_id, "alert_id": f"{source_id}@57998.50000",
                                   "record_number": record_number, "alert_type": "onset" if record_number == 1
                                   else "update", "peak_relevance": peak, "relevance": peak})


@pytest.fixture(scope="module")
async def published(settings: Settings) -> tuple[list[schemas.Alert], list[int], list[str]]:
    """Three alerts of three new sources, then an update of the first, published STEP_MS apart in the
    recent past (Kafka record times); the alerts, their times (ms) and the source ids."""
    tag = uuid.uuid4().hex[:8]
    sources = [f"listen-{i}-{tag}" for i in range(3)]
    alerts = [alert(sources[0], 0.3), alert(sources[1], 0.8), alert(sources[2], 0.6), alert(sources[0], 0.9, 2)]
    start = int(time.time() * 1000) - 10 * STEP_MS
    stamps = [start + i * STEP_MS for i in range(len(alerts))]
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        for a, ms in zip(alerts, stamps):
            await producer.send_and_wait(topics.ALERTS.name, topics.ALERTS.encode(a), key=a.source_id.encode(),
                                         timestamp_ms=ms)
    finally:
        await producer.stop()
    return alerts, stamps, sources


def listen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(FLASHES), "listen", *args], env=os.environ.copy(), capture_output=True, text=True,
                          timeout=60)


async def collect(listener: AlertListener) -> list[schemas.Alert]:
    return [a async for a in listener]


async def test_listen_since_replays_the_chosen_sources_in_order(published) -> None:
    alerts, stamps, sources = published
    since = datetime.fromtimestamp((stamps[0] + stamps[1]) / 2000, timezone.utc).isoformat()
    done = listen("--since", since, "--exit-at-end", "--json", "--source", sources[0], "--source", sources[1])
    assert done.returncode == 0, done.stderr
    printed = [topics.ALERTS.decode(line.encode()) for line in done.stdout.splitlines()]
    assert printed == [alerts[1], alerts[3]]  # not the first (before since), not the third (another source)


async def test_listen_readable_lines(published) -> None:
    alerts, _, sources = published
    done = listen("--from-beginning", "--exit-at-end", "--source", sources[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"2017-09-03 12:00:00 UTC  onset #1  MAXI J1535-571  peak 0.60  brightening  {alerts[2].explanation}"]


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01", "nan"])
def test_listen_refuses_a_bad_since(since: str) -> None:
    done = listen("--since", since, "--exit-at-end")
    assert done.returncode == 1
    assert done.stderr.startswith(f"flashes listen: --since {since!r}") and "Traceback" not in done.stderr


async def test_listener_from_beginning_with_min_relevance(settings: Settings, published) -> None:
    alerts, _, sources = published
    listener = AlertListener.from_settings(settings, source=sources, min_relevance=0.5, from_beginning=True,
                                           exit_at_end=True)
    assert await collect(listener) == [alerts[1], alerts[2], alerts[3]]


async def test_listener_tag_filter_and_start_positions(settings: Settings, published) -> None:
    alerts, stamps, sources = published
    replay = {"source": sources, "exit_at_end": True}
    before_last = datetime.fromtimestamp((stamps[2] + stamps[3]) / 2000, timezone.utc)
    tagged = AlertListener.from_settings(settings, tag=["BLACK HOLE", "no such tag"], since=before_last, **replay)
    assert await collect(tagged) == [alerts[3]]
    assert await collect(AlertListener.from_settings(settings, tag=["no such tag"], from_beginning=True, **replay)) == []
    assert await collect(AlertListener.from_settings(settings, **replay)) == []  # from the end: new alerts only
    later = datetime.now(timezone.utc).replace(tzinfo=None)  # naive: UTC, after every alert
    assert await collect(AlertListener.from_settings(settings, since=later, **replay)) == []


async def test_listener_follows_new_alerts(settings: Settings) -> None:
    source = f"listen-follow-{uuid.uuid4().hex[:8]}"
    fresh = alert(source, 0.7)
    stream = aiter(AlertListener.from_settings(settings, source=[source]))
    following = asyncio.ensure_future(anext(stream))
    try:
        await asyncio.sleep(3)  # the listener has taken its end offsets
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
    newest = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    freshness = {"maxi": schemas.Freshness(time=newest, received_at=newest)}
    task = asyncio.ensure_future(beat(fast, service, freshness=lambda: freshness,
                                      status=lambda: ("degraded", "testing")))
    await asyncio.sleep(3)  # the first beat creates the topics and connects, then one every 0.2 s
    assert not task.done(), "beat returned or raised"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    beats = [v for k, v in await read_topic(settings, topics.HEARTBEAT.name, timeout_s=2) if k == service.encode()]
    assert len(beats) >= 2
    records = [schemas.Heartbeat.model_validate(b) for b in beats]
    assert all(r.service == service and r.instance == f"{socket.gethostname()}:{os.getpid()}" for r in records)
    assert all(r.status == "degraded" and r.detail == "testing" and r.freshness == freshness for r in records)
    assert len({r.started_at for r in records}) == 1
    assert all(a.at < b.at for a, b in zip(records, records[1:]))
