"""Heartbeats: each service says every settings.heartbeat_s that it is alive (topic flashes.heartbeat.v1).

A heartbeat must never take its service down: a record that cannot be sent (Kafka away, a status
callback failing) is logged and the next beat tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

import schemas
from flashes import topics
from flashes.kafka import ensure_topics, make_producer
from flashes.settings import Settings

log = logging.getLogger(__name__)
Status = Callable[[], tuple[str, str]]
FreshnessOf = Callable[[], dict[str, schemas.Freshness]]
SEND_TIMEOUT_S = 10.0


async def _connected(settings: Settings) -> AIOKafkaProducer:
    """A started producer, with the heartbeat topic created (with its retention) before the first send."""
    await ensure_topics(settings)
    producer = make_producer(settings)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


def _heartbeat(
    service: str, instance: str, started_at: datetime, freshness: FreshnessOf | None, status: Status | None
) -> schemas.Heartbeat:
    state, detail = status() if status else ("ok", "")
    return schemas.Heartbeat(
        service=service,
        instance=instance,
        started_at=started_at,
        at=datetime.now(UTC),
        status=state,
        detail=detail,
        freshness=freshness() if freshness else {},
    )


async def beat(
    settings: Settings, service: str, freshness: FreshnessOf | None = None, status: Status | None = None
) -> None:
    """Produce a Heartbeat keyed by `service` every settings.heartbeat_s until cancelled.

    `status` gives ("ok" | "degraded", detail), `freshness` the sink's newest point per instrument.
    """
    instance = f"{socket.gethostname()}:{os.getpid()}"
    started_at = datetime.now(UTC)
    producer: AIOKafkaProducer | None = None

    async def send() -> None:
        nonlocal producer
        producer = producer or await _connected(settings)
        record = _heartbeat(service, instance, started_at, freshness, status)
        await (await producer.send(topics.HEARTBEAT.name, topics.HEARTBEAT.encode(record), key=service.encode()))

    try:
        while True:
            try:  # bounded, so that an unanswering broker delays the beats but never stops them
                await asyncio.wait_for(send(), timeout=max(settings.heartbeat_s, SEND_TIMEOUT_S))
            except Exception as exc:  # noqa: BLE001 - whatever failed, the service goes on; so does the beat
                log.warning("%s: heartbeat not sent (%r); trying again at the next beat", service, exc)
            await asyncio.sleep(settings.heartbeat_s)
    finally:
        if producer is not None:
            await producer.stop()
