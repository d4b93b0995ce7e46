"""The runtime of the stateful stream processors (derive, relevance, alerts), on aiokafka.

Why not Faust: faust-streaming's consumer can skip records or commit past them around recovery
and rebalance (faust-streaming #596 and #606; recovery resumes the stream partitions before it
seeks them, the order #241 introduced). Measured on the v1 relevance worker: 5 of 28 SIGKILL
restarts with a backlog waiting lost 2 k to 21 k points. Here the order is explicit:

1. a batch of input chunks is decoded by its topic's codec (a bad one becomes a dead letter);
2. the processor's `Logic` turns each into output messages and updates its state per key;
3. the outputs are produced and acknowledged (acks=all, idempotent producer);
4. then the state of every key the batch touched is written, with the input offset it covers,
   to the processor's compacted state topic, on the input's partition number;
5. then the input offsets are committed.

A crash before 4 re-processes the batch: same state in, same outputs out (deterministic), and
the sink keys every row, so nothing is doubled in QuestDB. A crash between 4 and 5 leaves the
committed offset behind the state: the restarted worker skips, per key, the messages its state
already covers. When partitions move, the leaving worker finishes its batch before it gives them
up (the revoke callback waits on the same lock) and the new owner reads the state topic's
partitions to their end before it processes anything. The records are applied in a thread, so
that the consumer's heartbeats go on meanwhile. Points in and out, dead letters and, after
every poll, the lag of the partitions it owns are exported as Prometheus metrics (flashes/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import BaseModel

import schemas
from flashes import kafka, metrics, topics
from flashes.errors import DecodeError, StateRestoreError
from flashes.heartbeat import beat
from flashes.kafka import ensure_topics, make_producer, read_to_end, rejected, run_restarting
from flashes.settings import Settings
from flashes.topics import TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """One message to produce: to `spec`'s topic, keyed, on Kafka's partition for the key unless given."""

    spec: TopicSpec
    key: str
    value: BaseModel
    partition: int | None = None


class Logic(Protocol):
    """What a processor does; the runtime owns Kafka, offsets and state persistence."""

    @property
    def inputs(self) -> tuple[TopicSpec, ...]:
        """The topics it consumes; read-only, so that a logic's own, narrower tuple (of `TopicSpec[LightcurveChunk]`,
        say) is one."""

    @property
    def state(self) -> TopicSpec:
        """The compacted topic its per-key state is stored in."""

    def key(self, value: Any) -> str:
        """The state key an input value updates (derive: its source; relevance, alerts: its series)."""

    def restore(self, state: Any) -> None:
        """Take back the state of one key, read from the state topic."""

    def apply(self, value: Any) -> list[Output]:
        """Apply one decoded input value to its key's state; the messages it yields."""

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.ProcessorState:
        """The state record of a key, covering input up to (not including) `offset`."""

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the state of keys whose partitions went to another worker."""


class Processor(ConsumerRebalanceListener):
    """Runs a `Logic` as consumer group `flashes-{name}` until SIGTERM/SIGINT."""

    def __init__(self, name: str, logic: Logic, settings: Settings, max_records: int = 64) -> None:
        self.name, self.logic, self.settings, self.max_records = name, logic, settings, max_records
        self.group = f"flashes-{name}"
        self.lock = asyncio.Lock()
        self.covered: dict[
            TopicPartition, dict[str, int]
        ] = {}  # per input partition: the offset each key's state covers
        self.consumer: AIOKafkaConsumer | None = None
        self.failure: StateRestoreError | None = None

    # -- rebalance -------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:  # the batch in progress finishes (and writes its state) first
            for tp in revoked:
                self.logic.forget(self.covered.pop(tp, {}))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restore the state of the new partitions; they are processed only once that succeeded.

        aiokafka only logs an error raised here, so a failed restore is kept and raised by the
        batch loop: the processor then starts over (run_restarting) instead of going on without state.
        """
        async with self.lock:
            try:
                self.covered.update(await self._restore(assigned))
            except Exception as exc:  # noqa: BLE001 - re-raised by the batch loop
                self.failure = StateRestoreError(
                    f"{self.name}: restoring the state of {sorted(assigned)} failed: {exc!r}"
                )

    async def _restore(self, assigned: set[TopicPartition]) -> dict[TopicPartition, dict[str, int]]:
        """Read the state topic's partitions of `assigned` to their end (the newest record per key wins)."""
        covered: dict[TopicPartition, dict[str, int]] = {tp: {} for tp in assigned}
        partitions = {tp.partition for tp in assigned}
        if not partitions:
            return covered
        spec = self.logic.state
        latest: dict[str, bytes | None] = {}
        for r in await read_to_end(self.settings, [TopicPartition(spec.name, p) for p in sorted(partitions)]):
            latest[r.key.decode()] = r.value
        restored = 0
        for key, raw in latest.items():
            if raw is None:
                continue
            try:
                state = spec.decode(raw)
            except DecodeError as exc:
                log.error("%s: state of %s unreadable, that key starts afresh: %s", self.name, key, exc)
                continue
            tp = TopicPartition(state.topic, state.partition)
            if tp in covered:
                covered[tp][state.key] = state.offset
                self.logic.restore(state)
                restored += 1
        log.info("%s: restored the state of %d keys from partitions %s", self.name, restored, sorted(partitions))
        return covered

    # -- processing ------------------------------------------------------------------------
    def _apply(self, tp: TopicPartition, records: list) -> tuple[list[Output], dict[str, int]]:
        """Outputs of one partition's records and the next offset of every key they touched."""
        spec = topics.BY_NAME[tp.topic]
        covered = self.covered[tp]
        outputs: list[Output] = []
        touched: dict[str, int] = {}
        points = 0
        for r in records:
            try:
                value = spec.decode(r.value)
                key = self.logic.key(value)
                if r.offset < covered.get(key, 0):
                    continue  # this key's stored state already includes it
                outputs += self.logic.apply(value)
            except StateRestoreError:
                # a state that cannot be read back now (a model's history, QuestDB down): start over, no dead letter
                raise
            except Exception as exc:  # noqa: BLE001 - a message that cannot be processed must not stop the others
                undecodable = isinstance(exc, DecodeError)
                reason = str(exc) if undecodable else f"cannot process: {type(exc).__name__}: {exc}"
                letter = rejected(f"{self.name}:{tp.topic}", reason, r)
                outputs.append(Output(topics.DEADLETTER, letter.origin, letter))
                metrics.DEAD_LETTERS.labels(self.name, "undecodable" if undecodable else "cannot_process").inc()
                continue
            points += metrics.points(value)
            touched[key] = covered[key] = r.offset + 1
        metrics.POINTS_IN.labels(self.name, tp.topic).inc(points)
        return outputs, touched

    async def _produce(self, producer: Any, outputs: list[Output]) -> None:
        futures = [
            await producer.send(o.spec.name, o.spec.encode(o.value), key=o.key.encode(), partition=o.partition)
            for o in outputs
        ]
        await asyncio.gather(*futures)

    async def _batch(self, producer: Any, batches: dict[TopicPartition, list]) -> None:
        outputs: list[Output] = []
        states: list[Output] = []
        commits: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            if tp not in self.covered or not records:  # no longer ours
                continue
            # In a thread: a logic that reads a database (relevance's rebuilds from QuestDB) must not stop the
            # event loop, which sends the consumer's heartbeats (a 10 s session). The lock keeps it alone.
            out, touched = await asyncio.to_thread(self._apply, tp, records)
            outputs += out
            states += [
                Output(self.logic.state, key, self.logic.snapshot(key, tp.topic, tp.partition, offset), tp.partition)
                for key, offset in touched.items()
            ]
            commits[tp] = records[-1].offset + 1
        await self._produce(producer, outputs)
        produced: Counter[str] = Counter()
        for o in outputs:
            if o.spec is not topics.DEADLETTER:
                produced[o.spec.name] += metrics.points(o.value)
        for name, n in produced.items():
            metrics.POINTS_OUT.labels(self.name, name).inc(n)
        await self._produce(producer, states)
        if commits:
            assert self.consumer is not None  # run() made it before fetching the batch
            try:
                await self.consumer.commit(commits)
            except (CommitFailedError, IllegalStateError) as exc:  # the state topic already covers them
                log.warning("%s: commit after a rebalance refused (%s); the stored state covers it", self.name, exc)

    def serve(self) -> None:
        """Run until SIGTERM/SIGINT, starting over from the stored state after a Kafka failure."""
        run_restarting(self.name, self.run, self._reset)

    def _reset(self) -> None:
        for covered in self.covered.values():
            self.logic.forget(covered)
        self.covered.clear()
        self.failure = None
        self.lock = asyncio.Lock()

    async def run(self) -> None:
        await ensure_topics(self.settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        heartbeat = asyncio.ensure_future(beat(self.settings, self.name))
        self.consumer = kafka.consumer(
            self.settings,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        # Range assignment gives one worker the same partition number of every input topic, so a
        # source's lightcurve and derived chunks are processed (and their state stored) together.
        self.consumer.subscribe([spec.name for spec in self.logic.inputs], listener=self)
        producer = make_producer(self.settings)
        await producer.start()
        await self.consumer.start()
        log.info("%s: consuming %s", self.name, ", ".join(s.name for s in self.logic.inputs))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                fetch = asyncio.ensure_future(self.consumer.getmany(timeout_ms=500, max_records=self.max_records))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():  # a fetched batch is left uncommitted: the next owner takes it
                    fetch.cancel()
                    break
                if self.failure:
                    raise self.failure
                batches = fetch.result()
                if batches:
                    async with self.lock:
                        await self._batch(producer, batches)
                await metrics.observe_lag(self.consumer, self.group, [spec.name for spec in self.logic.inputs])
        finally:
            stopping.cancel()
            heartbeat.cancel()
            await self.consumer.stop()
            await producer.stop()
            log.info("%s: stopped", self.name)
