"""Watching the running pipeline from outside: consumer-group lag and QuestDB progress."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from flashes import questdb
from flashes.settings import Settings

GROUPS = ("flashes-sink", "flashes-derive", "flashes-relevance", "flashes-alerts", "flashes-webhooks")


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


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 600.0, every_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_drained(settings: Settings, groups: tuple[str, ...] = GROUPS, timeout_s: float = 600.0) -> None:
    """Every consumer group has committed everything and QuestDB has applied every WAL transaction.

    Checked twice, a Faust commit interval apart, so that output produced by the last committed
    batch has been consumed too.
    """
    def drained() -> bool:
        return asyncio.run(group_lag(settings, groups)) == 0 and questdb.wal_applied(settings)

    for _ in range(2):
        wait_until(drained, "the consumer groups to catch up", timeout_s)
        time.sleep(4)
    wait_until(drained, "the consumer groups to catch up", timeout_s)


def series_counts(settings: Settings, table: str, where: str = "") -> dict[str, int]:
    rows = questdb.query(settings, f"SELECT series, count() n FROM {table} {where}")
    return {r["series"]: r["n"] for r in rows}


class InputLag:
    """Per consumer group, the messages of its input topics it has not committed yet.

    Unlike `group_lag`, a partition the group has committed nothing on counts from its start
    (Kafka's offset fetch leaves such partitions out unless they are asked for), so a group that
    has not joined or not finished its first batch is not taken for caught up. One admin client
    and one consumer, kept open for repeated polls (`async with InputLag(s) as lag: await lag(...)`).
    """

    def __init__(self, settings: Settings) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)

    async def __aenter__(self) -> "InputLag":
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def __call__(self, inputs: dict[str, tuple[str, ...]]) -> dict[str, int]:
        """{group: lag} for {group: its input topic names} (partition counts from flashes.topics)."""
        from aiokafka import TopicPartition

        from flashes.topics import BY_NAME

        out = {}
        for group, names in inputs.items():
            tps = [TopicPartition(n, p) for n in names for p in range(BY_NAME[n].partitions)]
            committed = await self.admin.list_consumer_group_offsets(group, partitions=tps)
            starts, ends = await self.consumer.beginning_offsets(tps), await self.consumer.end_offsets(tps)
            out[group] = sum(ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                         else starts[tp]) for tp in tps)
        return out
