"""Killing the relevance worker mid-stream and restarting it gives the scores of an uninterrupted run.

A private Kafka broker (its own ports and data folder) keeps this test away from the session
pipeline's relevance worker, which shares the consumer group and topics.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import schemas
from flashes import infra, stack, topics
from flashes.kafka import ensure_topics, make_producer
from flashes.observe import wait_until
from flashes.settings import Settings
from services.fetcher.parsers import parse
from services.fetcher.publish import encode_points
from services.relevance.app import score_point
from services.relevance.model import SeriesModel
from services.relevance.series import from_lightcurve
from tests.kafka_helpers import read_topic

DATA = Path(__file__).resolve().parent / "data" / "maxi"
SOURCE = "maxij1535-571"
CHUNK = 60


@pytest.fixture()
def private_kafka(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    env = infra.isolated_env(tmp_path / "var")
    s = Settings(**{k.removeprefix("FLASHES_").lower(): v for k, v in env.items()})
    infra.start(s, servers=("kafka",))
    asyncio.run(ensure_topics(s))
    try:
        yield s, env
    finally:
        infra.stop(s)


def outburst_points() -> list[bytes]:
    """600 real daily points of MAXI J1535-571 around its 2017 outburst, as the fetcher publishes them."""
    name = "J1535-572_g_lc_1day_all.dat"
    parsed = parse("maxi", name, (DATA / name).read_bytes())
    rows = (parsed.mjd > 57700) & (parsed.mjd < 58400)
    values = encode_points(parsed, rows, SOURCE, "maxi", f"file://{name}", datetime(2026, 1, 1, tzinfo=timezone.utc))
    return values[:600]


async def produce(s: Settings, values: list[bytes]) -> None:
    producer = make_producer(s)
    await producer.start()
    try:
        partition = topics.source_partition(SOURCE, topics.LIGHTCURVE.partitions)
        for value in values:
            await producer.send(topics.LIGHTCURVE.name, value, key=f"maxi:{SOURCE}".encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def scored_mjds(s: Settings) -> list[float]:
    return [v["mjd"] for _, v in asyncio.run(read_topic(s, topics.RELEVANCE.name, timeout_s=1.0))]


def test_a_killed_worker_resumes_with_the_scores_of_an_uninterrupted_run(private_kafka, tmp_path: Path) -> None:
    s, env = private_kafka
    values = outburst_points()
    model, expected = SeriesModel(), {}
    for value in values:
        point = from_lightcurve(schemas.LightcurvePoint.model_validate_json(value))
        expected[point.mjd] = score_point(model, point).model_dump(mode="json")
    logs = tmp_path / "logs"

    worker = stack.spawn(("relevance",), env, logs)["relevance"]
    half = len(values) // 2
    for start in range(0, half, CHUNK):
        asyncio.run(produce(s, values[start:start + CHUNK]))
        wait_until(lambda: len(scored_mjds(s)) >= start + CHUNK, "the first worker scoring each chunk", 120)
    os.kill(worker.pid, signal.SIGKILL)  # no clean shutdown: whatever was in flight is lost
    worker.wait()
    assert len(set(scored_mjds(s))) == half

    worker = stack.spawn(("relevance",), env, logs)["relevance"]
    try:
        # The rest is produced once the new worker is up. With it waiting as a backlog at start-up,
        # Faust's consumer sometimes loses a run of input records under load (see the README).
        wait_until(lambda: (logs / "relevance.log").read_text().count("[^Worker]: Ready") == 2,
                   "the restarted worker", 120)
        for start in range(half, len(values), CHUNK):
            asyncio.run(produce(s, values[start:start + CHUNK]))
        wait_until(lambda: len(set(scored_mjds(s))) == len(values), "the restarted worker scoring the rest", 180)
    except TimeoutError as exc:
        missing = sorted(set(expected) - set(scored_mjds(s)))
        inputs = {v["mjd"] for _, v in asyncio.run(read_topic(s, topics.LIGHTCURVE.name, timeout_s=3.0))}
        raise AssertionError(f"{exc}: {len(missing)} points unscored, from MJD {missing[:1]}; "
                             f"{len(set(missing) - inputs)} of them are not on the input topic") from exc
    finally:
        stack.terminate({"relevance": worker})
    received = asyncio.run(read_topic(s, topics.RELEVANCE.name, timeout_s=1.0))
    for _, score in received:  # a point scored again after the restart carries the same score
        assert score == expected[score["mjd"]], score["mjd"]
    assert {v["mjd"] for _, v in received} == set(expected)
    relevance = np.array([expected[m]["relevance"] for m in sorted(expected)])
    assert relevance.max() >= 0.7 and np.median(relevance) < 0.1  # the outburst is in the stream, and scored
    log = (logs / "relevance.log").read_text()
    assert log.count("Traceback") == 0, log[-3000:]
