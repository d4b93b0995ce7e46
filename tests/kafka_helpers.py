"""Reading a topic from the real broker, for assertions on what the services published."""
from __future__ import annotations

import json

from aiokafka import AIOKafkaConsumer

from flashes.settings import Settings


async def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Every (key, value) on a topic, from the beginning."""
    return [(key, value) for key, value, _ in await read_records(settings, topic, timeout_s)]


async def read_records(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict, int]]:
    """Every (key, value, partition) on a topic, from the beginning."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes, dict, int]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=50_000)
            if not batch:
                return out
            out += [(m.key, None if m.value is None else json.loads(m.value), m.partition)
                    for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()


def lightcurve_points(settings: Settings, timeout_s: float = 5.0) -> list[dict]:
    """Every point on flashes.lightcurve.v2, flattened from its chunk, in topic order per partition."""
    import asyncio

    from flashes import topics

    out = []
    for _, value in asyncio.run(read_topic(settings, topics.LIGHTCURVE.name, timeout_s)):
        chunk = topics.LIGHTCURVE.decode(json.dumps(value).encode())
        for i, mjd in enumerate(chunk.mjd):
            out.append({"source_id": chunk.source_id, "instrument": chunk.instrument, "mjd": mjd,
                        "bands": {b: {"flux": chunk.flux[b][i], "error": chunk.error[b][i]} for b in chunk.bands},
                        "provenance": {"url": chunk.provenance.url}})
    return out
