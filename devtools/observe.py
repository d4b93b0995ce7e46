"""Watching a running stack from outside: consumer-group lag, QuestDB progress, what a topic holds."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from flashes import kafka, questdb, topics
from flashes.kafka import read_to_end
from flashes.settings import Settings
from flashes.topics import BY_NAME

# In pipeline order: a group's lag is read after its upstream's, so all zero in one poll means drained.
GROUP_INPUTS = {"flashes-derive": (topics.LIGHTCURVE.name,),
                "flashes-relevance": (topics.LIGHTCURVE.name, topics.DERIVED.name),
                "flashes-alerts": (topics.RELEVANCE.name,),
                "flashes-delivery": (topics.ALERTS.name,),
                "flashes-sink": tuple(t.name for t in topics.STORED)}
# Delivery's retry group is left out: tasks due later (backoff, tomorrow's digest) keep it behind on purpose.
PIPELINE_GROUPS = ("flashes-sink", "flashes-derive", "flashes-relevance", "flashes-alerts")


async def group_lag(settings: Settings, groups: tuple[str, ...] | None = None) -> int:
    """Messages the consumer groups (default: the pipeline's) have not committed yet, summed."""
    inputs = GROUP_INPUTS
    groups = groups or PIPELINE_GROUPS
    async with InputLag(settings) as lag:
        return sum((await lag({g: inputs[g] for g in groups})).values())


async def positioned(settings: Settings, group: str, topic: str) -> bool:
    """Has `group` a committed offset on every partition of `topic`? The delivery service, which starts a new
    group at the end of the alerts, commits that position as it joins: from then on nothing published is missed."""
    tps = [TopicPartition(topic, p) for p in range(BY_NAME[topic].partitions)]
    admin = kafka.admin(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):  # a new broker: no group yet
        return False
    finally:
        await admin.close()
    return all(tp in committed and committed[tp].offset >= 0 for tp in tps)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 600.0, every_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_drained(settings: Settings, groups: tuple[str, ...] | None = None, timeout_s: float = 600.0) -> None:
    """Every consumer group has committed everything and QuestDB has applied every WAL transaction.

    Checked three times, seconds apart: the groups are asked one after another, so output that a
    later group produced after an earlier group was asked shows up in the next check.
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
        self.admin = kafka.admin(settings)
        self.consumer = kafka.consumer(settings)

    async def __aenter__(self) -> "InputLag":
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def __call__(self, inputs: dict[str, tuple[str, ...]]) -> dict[str, int]:
        """{group: lag} for {group: its input topic names} (partition counts from flashes.topics)."""
        out = {}
        for group, names in inputs.items():
            tps = [TopicPartition(n, p) for n in names for p in range(BY_NAME[n].partitions)]
            committed = await self.admin.list_consumer_group_offsets(group, partitions=tps)
            starts, ends = await self.consumer.beginning_offsets(tps), await self.consumer.end_offsets(tps)
            out[group] = sum(ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                         else starts[tp]) for tp in tps)
        return out


async def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Every (key, value) on a topic, from the beginning."""
    return [(key, value) for key, value, _ in await read_records(settings, topic, timeout_s)]


async def read_records(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict, int]]:
    """Every (key, value, partition) on a topic, from the beginning to the end it had when called."""
    tps = [TopicPartition(topic, p) for p in range(BY_NAME[topic].partitions)]
    async with asyncio.timeout(timeout_s + 30):
        records = await read_to_end(settings, tps)
    return [(r.key, None if r.value is None else json.loads(r.value), r.partition) for r in records]


def lightcurve_points(settings: Settings, timeout_s: float = 5.0) -> list[dict]:
    """Every point on flashes.lightcurve.v2, flattened from its chunk, in topic order per partition."""
    out = []
    for _, value in asyncio.run(read_topic(settings, topics.LIGHTCURVE.name, timeout_s)):
        chunk = topics.LIGHTCURVE.decode(json.dumps(value).encode())
        for i, mjd in enumerate(chunk.mjd):
            out.append({"source_id": chunk.source_id, "instrument": chunk.instrument, "mjd": mjd,
                        "bands": {b: {"flux": chunk.flux[b][i], "error": chunk.error[b][i]} for b in chunk.bands},
                        "provenance": {"url": chunk.provenance.url}})
    return out
