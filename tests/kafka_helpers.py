"""Reading a topic from the real broker, for assertions on what the services published."""
from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition

from flashes import topics

from flashes.settings import Settings


async def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Every (key, value) on a topic, from the beginning."""
    return [(key, value) for key, value, _ in await read_records(settings, topic, timeout_s)]


async def read_records(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict, int]]:
    """Every (key, value, partition) on a topic, from the beginning to the end it had when called
    (a topic written all the time, like the heartbeats, still ends); TimeoutError after timeout_s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes, dict, int]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(topics.BY_NAME[topic].partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        async with asyncio.timeout(timeout_s + 30):
            while pending:
                for tp, msgs in (await consumer.getmany(*pending, timeout_ms=500, max_records=50_000)).items():
                    out += [(m.key, None if m.value is None else json.loads(m.value), m.partition)
                            for m in msgs if m.offset < ends[tp]]
                    if msgs and msgs[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
        return out
    finally:
        await consumer.stop()


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
