"""The sink service: consume every data topic in batches, write them over ILP as columns, then commit.

Offsets are committed only after QuestDB accepted the batch, so a crash or a QuestDB outage
replays the batch later (at-least-once); DEDUP UPSERT KEYS turn the replay into no new rows.
A message that does not decode, or whose rows QuestDB refuses while it answers, goes to the
dead-letter topic with the reason; the rest of the batch is written. Metrics: points in per topic,
points written per table, dead letters, the group's lag and the newest stored point per instrument.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import NamedTuple

import pandas as pd
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from questdb import QuestDBError as IngressError
from questdb import Sender

import schemas
from flashes import clock, kafka, metrics, questdb, topics
from flashes.errors import DecodeError, QuestDBError
from flashes.heartbeat import beat
from flashes.kafka import ensure_topics, make_producer, rejected, send_dead_letter
from flashes.settings import Settings
from services.sink.rows import FRAMES, SYMBOLS

log = logging.getLogger(__name__)
GROUP = "flashes-sink"
QUIET_S = 0.3
FLUSH_BYTES = 32 * 1024 * 1024  # QuestDB refuses ILP requests over 100 MB
FRAMES_PER_CALL = 16


class Item(NamedTuple):
    """The rows of one message for one table, the message, and the points it carried."""

    table: str
    rows: pd.DataFrame
    record: ConsumerRecord
    points: int


def write_frames(sender: Sender, frames: dict[str, list[pd.DataFrame]]) -> None:
    """Write every table's rows; one ILP/HTTP request (one transaction per table) per FLUSH_BYTES."""
    for table, parts in frames.items():
        for start in range(0, len(parts), FRAMES_PER_CALL):
            sender.dataframe(
                pd.concat(parts[start : start + FRAMES_PER_CALL], ignore_index=True),
                table_name=table,
                symbols=SYMBOLS[table],
                at="ts",
            )
            if len(sender) > FLUSH_BYTES:
                sender.flush()
    sender.flush()


async def collect(consumer: AIOKafkaConsumer, settings: Settings) -> list[tuple[TopicPartition, ConsumerRecord]]:
    """Messages for one write: up to sink_batch_messages messages (chunks), gathered for at most sink_batch_s.

    Few large ILP transactions keep QuestDB's WAL apply (with out-of-order merges and dedup)
    cheap; many small ones made QuestDB the bottleneck of the whole pipeline. A lone message
    (a daily point) is written once nothing more arrives for QUIET_S.
    """
    out: list[tuple[TopicPartition, ConsumerRecord]] = []
    deadline = time.monotonic() + settings.sink_batch_s
    while len(out) < settings.sink_batch_messages:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        wait = left if not out else min(left, QUIET_S)
        batches = await consumer.getmany(
            timeout_ms=int(wait * 1000), max_records=settings.sink_batch_messages - len(out)
        )
        if not batches and out:
            break
        out += [(tp, m) for tp, messages in batches.items() for m in messages]
    return out


def grouped(items: list[Item]) -> dict[str, list[pd.DataFrame]]:
    frames: dict[str, list[pd.DataFrame]] = defaultdict(list)
    for item in items:
        frames[item.table].append(item.rows)
    return frames


def store(settings: Settings, items: list[Item]) -> list[tuple[ConsumerRecord, str]]:
    """Write the items' rows; wait while QuestDB is unreachable (nothing is lost). When QuestDB answers
    but refuses the batch, write it message by message; returns the refused messages with the reason."""
    while True:
        try:
            with questdb.sender(settings) as sender:
                write_frames(sender, grouped(items))
            return []
        except IngressError as exc:
            if not questdb.healthy(settings):
                log.error("QuestDB write failed, retrying in 2 s (nothing is lost): %s", exc)
                time.sleep(2)
                continue
            log.error("QuestDB refused a batch (%s); writing it message by message", exc)
        refused = []
        try:
            for item in items:
                try:
                    with questdb.sender(settings) as sender:
                        write_frames(sender, grouped([item]))
                except IngressError as exc:
                    if not questdb.healthy(settings):
                        raise
                    refused.append((item.record, f"QuestDB refused it: {exc}"))
            return refused
        except IngressError:
            continue


def decoded(letters: list[schemas.DeadLetter], tp: TopicPartition, m: ConsumerRecord) -> Item | None:
    """The rows of one message, or None (and a dead letter) if it does not decode."""
    table, frame = FRAMES[tp.topic]
    try:
        value = topics.BY_NAME[tp.topic].decode(m.value)
        return Item(table, frame(value), m, metrics.points(value))
    except DecodeError as exc:
        if tp.topic != topics.DEADLETTER.name:
            letters.append(rejected(f"sink:{tp.topic}", str(exc), m))
            metrics.DEAD_LETTERS.labels("sink", "undecodable").inc()
        else:
            log.error("unreadable dead letter at %s offset %d: %s", tp, m.offset, exc)
        return None


def stored_freshness(settings: Settings) -> dict[str, schemas.Freshness]:
    """Per instrument, the newest point in QuestDB and (as when it was stored) when it was fetched;
    empty if QuestDB cannot say. LATEST ON reads one row per instrument, not the table."""
    try:
        rows = questdb.query(
            settings,
            questdb.NEWEST_PER_INSTRUMENT.format(
                columns="instrument, ts AS time, fetched_at AS received_at",
                bound=f"'{questdb.sql_time(clock.latest_credible(settings))}'",
            ),
        )
    except QuestDBError as exc:
        log.warning("freshness not read from QuestDB, it starts empty: %s", exc)
        return {}
    return {
        r["instrument"]: schemas.Freshness(time=r["time"], received_at=r["received_at"])
        for r in rows
        if r["instrument"] in topics.INSTRUMENTS and r["time"] and r["received_at"]
    }


def account(items: list[Item], refused: list[ConsumerRecord], freshness: dict[str, schemas.Freshness]) -> None:
    """One written batch: each instrument's newest written lightcurve point advanced, and the metrics (points
    in per topic, points written per table, the newest point per instrument), each label set once."""
    now, kept_out = datetime.now(UTC), {id(r) for r in refused}
    read, written = Counter[str](), Counter[str]()
    for item in items:
        read[item.record.topic] += item.points
        if id(item.record) in kept_out:
            continue
        written[item.table] += item.points
        if item.table == "lightcurve":
            instrument, newest = item.rows["instrument"].iat[0], item.rows["ts"].max().to_pydatetime()
            if instrument not in freshness or newest > freshness[instrument].time:
                freshness[instrument] = schemas.Freshness(time=newest, received_at=now)
    for topic, n in read.items():
        metrics.POINTS_IN.labels("sink", topic).inc(n)
    for table, n in written.items():
        metrics.POINTS_OUT.labels("sink", f"questdb:{table}").inc(n)
    for instrument, newest in freshness.items():
        metrics.NEWEST_POINT.labels(instrument).set(newest.time.timestamp())


async def run_forever(settings: Settings) -> None:
    await ensure_topics(settings)
    while True:
        try:
            questdb.ensure_tables(settings)
            break
        except QuestDBError as exc:
            log.error("QuestDB not ready, retrying in 2 s: %s", exc)
            await asyncio.sleep(2)
    freshness = await asyncio.to_thread(stored_freshness, settings)
    heartbeat = asyncio.ensure_future(beat(settings, "sink", freshness=lambda: dict(freshness)))
    consumer = kafka.consumer(
        settings,
        *FRAMES,
        group_id=GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5_000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    account([], [], freshness)
    try:
        while True:
            records = await collect(consumer, settings)
            await metrics.observe_lag(consumer, GROUP, FRAMES)
            if not records:
                continue
            letters: list[schemas.DeadLetter] = []
            items = [item for tp, m in records if (item := decoded(letters, tp, m)) is not None]
            refused = await asyncio.to_thread(store, settings, items) if items else []
            kept_out = [record for record, _ in refused]
            account(items, kept_out, freshness)
            for record, reason in refused:
                letters.append(rejected(f"sink:{record.topic}", reason, record))
                metrics.DEAD_LETTERS.labels("sink", "refused_by_questdb").inc()
            for letter in letters:
                await send_dead_letter(producer, letter)
            await producer.flush()
            try:
                await consumer.commit({tp: m.offset + 1 for tp, m in records})
            except CommitFailedError as exc:  # written already; the next owner rewrites the same rows
                log.warning("commit after a rebalance refused (%s); the batch will be written again", exc)
    finally:
        heartbeat.cancel()
        await consumer.stop()
        await producer.stop()
