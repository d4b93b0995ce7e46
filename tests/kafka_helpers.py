"""Reading what the services did, from the real broker and database."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from flashes import questdb
from flashes.settings import Settings

GROUPS = ("flashes-sink", "flashes-derive", "flashes-relevance", "flashes-alerts")


async def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Every (key, value) on a topic, from the beginning."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes, dict]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=50_000)
            if not batch:
                return out
            out += [(m.key, json.loads(m.value)) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()


async def group_lag(settings: Settings, groups: tuple[str, ...] = GROUPS) -> int:
    """Messages not yet committed by the consumer groups, summed over their partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        lag = 0
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            if offsets:
                ends = await consumer.end_offsets(list(offsets))
                lag += sum(ends[tp] - meta.offset for tp, meta in offsets.items())
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 600.0, every_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_drained(settings: Settings) -> None:
    """Every consumer group has committed everything and QuestDB has applied every WAL transaction."""
    def drained() -> bool:
        return asyncio.run(group_lag(settings)) == 0 and questdb.wal_applied(settings)
    wait_until(drained, "the consumer groups to catch up")
    time.sleep(4)  # a Faust commit interval, for output that the last commit triggered
    wait_until(drained, "the consumer groups to catch up again")


def counts(settings: Settings, table: str, where: str = "") -> dict[str, int]:
    rows = questdb.query(settings, f"SELECT series, count() n FROM {table} {where}")
    return {r["series"]: r["n"] for r in rows}
