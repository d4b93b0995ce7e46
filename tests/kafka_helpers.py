"""Reading a topic from the real broker, for assertions on what the services published."""
from __future__ import annotations

import asyncio
import json

from aiokafka import TopicPartition

from flashes import topics
from flashes.kafka import read_to_end

from flashes.settings import Settings


async def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Every (key, value) on a topic, from the beginning."""
    return [(key, value) for key, value, _ in await read_records(settings, topic, timeout_s)]


async def read_records(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict, int]]:
    """Every (key, value, partition) on a topic, from the beginning to the end it had when called."""
    tps = [TopicPartition(topic, p) for p in range(topics.BY_NAME[topic].partitions)]
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
