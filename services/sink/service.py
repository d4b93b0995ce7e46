"""The sink service: consume every data topic in batches, write them over ILP, then commit offsets.

Offsets are committed only after QuestDB accepted the batch, so a crash or a QuestDB outage
replays the batch later (at-least-once); DEDUP UPSERT KEYS turn the replay into no new rows.
A message that cannot be turned into rows goes to the dead-letter topic with the reason.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from questdb import QuestDBError as IngressError, Sender, TimestampMicros

from flashes import questdb
from flashes.kafka import dead_letter, encode, ensure_topics, make_producer
from flashes.settings import Settings
from flashes import topics
from services.sink.rows import ROWS

log = logging.getLogger(__name__)
GROUP = "flashes-sink"


def write_batch(sender: Sender, values: list[tuple[str, dict]]) -> list[tuple[str, str, str]]:
    """Write the rows of a batch in one ILP request; returns (topic, value, reason) of unusable values."""
    bad = []
    for topic_name, value in values:
        try:
            rows = list(ROWS[topic_name](value))
        except (KeyError, TypeError, ValueError) as exc:
            bad.append((topic_name, json.dumps(value), f"cannot store: {type(exc).__name__}: {exc}"))
            continue
        for table, symbols, columns, ts in rows:
            sender.row(table, symbols=symbols, columns={k: v for k, v in columns.items() if v is not None},
                       at=TimestampMicros(ts))
    sender.flush()
    return bad


async def collect(consumer: AIOKafkaConsumer, settings: Settings) -> list[tuple[TopicPartition, ConsumerRecord]]:
    """Messages for one write: up to sink_batch_rows, gathered for at most sink_batch_s.

    Few large ILP transactions keep QuestDB's WAL apply (with out-of-order merges and dedup)
    cheap; many small ones made QuestDB the bottleneck of the whole pipeline.
    """
    out: list[tuple[TopicPartition, ConsumerRecord]] = []
    deadline = time.monotonic() + settings.sink_batch_s
    while len(out) < settings.sink_batch_rows:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        batches = await consumer.getmany(timeout_ms=int(left * 1000), max_records=settings.sink_batch_rows - len(out))
        out += [(tp, m) for tp, messages in batches.items() for m in messages]
    return out


async def run_forever(settings: Settings) -> None:
    await ensure_topics(settings)
    questdb.ensure_tables(settings)
    consumer = AIOKafkaConsumer(*ROWS, bootstrap_servers=settings.kafka_bootstrap, group_id=GROUP,
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=20_000)
    producer = make_producer(settings)
    sender = questdb.sender(settings)
    sender.establish()
    await consumer.start()
    await producer.start()
    try:
        while True:
            values, unreadable = [], []
            for tp, m in await collect(consumer, settings):
                try:
                    values.append((tp.topic, json.loads(m.value)))
                except (TypeError, ValueError) as exc:
                    unreadable.append((tp.topic, repr(m.value), f"not JSON: {exc}"))
            if not values and not unreadable:
                continue
            while True:
                try:
                    bad = await asyncio.to_thread(write_batch, sender, values)
                    break
                except IngressError as exc:
                    log.error("QuestDB write failed, retrying in 2 s (nothing is lost): %s", exc)
                    sender.close(flush=False)
                    await asyncio.sleep(2)
                    sender = questdb.sender(settings)
                    sender.establish()
            for topic_name, payload, reason in bad + unreadable:
                if topic_name != topics.DEADLETTER.name:
                    await producer.send(topics.DEADLETTER.name, encode(dead_letter(f"sink:{topic_name}", reason, payload)),
                                        key=b"sink")
            await consumer.commit()
    finally:
        sender.close(flush=False)
        await consumer.stop()
        await producer.stop()
