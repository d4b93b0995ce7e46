"""Kafka plumbing shared by the services: topic creation, producers, encoding, the dead-letter path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

import schemas
from flashes import topics
from flashes.errors import StateRestoreError
from flashes.settings import Settings

log = logging.getLogger(__name__)
# Compacted topics (state, subscriptions) are rewritten often: small segments, so compaction
# keeps them near one record per key and a restarting processor reads little.
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": str(16 * 1024 * 1024),
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
}


SCRAM = "SCRAM-SHA-512"


def security(settings: Settings) -> dict[str, str]:
    """The keyword arguments that make an aiokafka client (consumer, producer, admin) log in as this service's
    Kafka user; none for PLAINTEXT. Every client is built with them, so a service can do only what its user's
    ACLs (flashes/kafka_acl.py) allow."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    return {
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": SCRAM,
        "sasl_plain_username": settings.kafka_user,
        "sasl_plain_password": settings.kafka_password.get_secret_value(),
    }


# Every Kafka client of the project is made here, so none can forget the login (a client built without it
# is refused by the broker only in a SASL deployment, where the tests on PLAINTEXT would not see it).


def consumer(settings: Settings, *names: str, **kw: Any) -> AIOKafkaConsumer:
    """A consumer of the topics `names` (none: partitions are assigned) logged in as this service."""
    return AIOKafkaConsumer(*names, bootstrap_servers=settings.kafka_bootstrap, **security(settings), **kw)


def producer(settings: Settings, **kw: Any) -> AIOKafkaProducer:
    """A producer logged in as this service (make_producer: the tuned one most services use)."""
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **security(settings), **kw)


def admin(settings: Settings, **kw: Any) -> AIOKafkaAdminClient:
    """An admin client logged in as this service: what it may do is what its user's ACLs allow."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **security(settings), **kw)


def client(settings: Settings, **kw: Any) -> AIOKafkaClient:
    """A bare protocol client logged in as this service, for requests aiokafka has no method for."""
    return AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap, **security(settings), **kw)


def run_restarting(
    name: str, main: Callable[[], Coroutine[Any, Any, None]], reset: Callable[[], None] = lambda: None
) -> None:
    """Run `main()` until it returns; after a Kafka failure (e.g. the broker restarting) `reset()` and start
    over in 2 s, from the committed offsets and stored state, as a restarted process would."""
    while True:
        try:
            asyncio.run(main())
            return
        except (KafkaError, StateRestoreError):
            log.exception("%s: Kafka failed; starting over in 2 s", name)
            reset()
            time.sleep(2)


async def create_topics(
    settings: Settings, wanted: dict[str, tuple[int, bool]], retention: dict[str, int] | None = None
) -> None:
    """Create the topics {name: (partitions, compacted)} that do not exist yet, with `retention` {name: ms}."""
    retention = retention or {}
    kafka_admin = admin(settings)
    await kafka_admin.start()
    try:
        existing = set(await kafka_admin.list_topics())
        new = [
            NewTopic(
                name,
                partitions,
                1,
                topic_configs={
                    **(COMPACTED if compacted else {}),
                    **({"retention.ms": str(retention[name])} if name in retention else {}),
                },
            )
            for name, (partitions, compacted) in wanted.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await kafka_admin.create_topics(new)
    finally:
        await kafka_admin.close()


async def ensure_topics(settings: Settings) -> None:
    """Create every declared topic with its partition count (existing topics are left alone)."""
    await create_topics(
        settings,
        {t.name: (t.partitions, t.compacted) for t in topics.ALL},
        {t.name: t.retention_ms for t in topics.ALL if t.retention_ms is not None},
    )


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """Idempotent producer batching for throughput (linger, large batches, zstd: lz4 in aiokafka compresses at
    level 9 and cost a fifth of the processors' CPU)."""
    return producer(
        settings,
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        compression_type="zstd",
        request_timeout_ms=60_000,
    )


def dead_letter(
    origin: str, reason: str, payload: str, url: str | None = None, at_ms: int | None = None
) -> schemas.DeadLetter:
    """A rejected input with the reason; `at_ms`, the rejected Kafka record's timestamp, makes the letter
    of a replayed record the same letter (the deadletter table keys on time, origin and payload)."""
    log.warning("dead letter from %s: %s", origin, reason)
    received = datetime.fromtimestamp(at_ms / 1000, UTC) if at_ms is not None else datetime.now(UTC)
    return schemas.DeadLetter(origin=origin, reason=reason, payload=payload[:100_000], url=url, received_at=received)


def rejected(origin: str, reason: str, record: ConsumerRecord) -> schemas.DeadLetter:
    """The dead letter of a Kafka record that could not be used: its value as text, its timestamp."""
    payload = (record.value or b"").decode("utf-8", errors="replace")
    return dead_letter(origin, reason, payload, at_ms=record.timestamp)


async def send_dead_letter(producer: AIOKafkaProducer, letter: schemas.DeadLetter) -> None:
    await producer.send(topics.DEADLETTER.name, topics.DEADLETTER.encode(letter), key=letter.origin.encode())


async def read_to_end(settings: Settings, tps: list[TopicPartition]) -> list[ConsumerRecord]:
    """Every record of the partitions, from the beginning to the end they had when called (no group):
    a topic written all the time still ends."""
    reader = consumer(settings, group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    out: list[ConsumerRecord] = []
    try:
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            for tp, records in (await reader.getmany(*pending, timeout_ms=1000)).items():
                out += [r for r in records if r.offset < ends[tp]]
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await reader.stop()
    return out
