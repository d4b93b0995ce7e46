"""`flashes rescore`: rebuild the relevance models of selected sources from their stored history, now.

A relevance worker keeps the model of each of its series in memory and writes it to the state
topic after every chunk, so a state changed under a running worker would be overwritten by its
next write: rescore refuses to run while the consumer group of the relevance processor has
members (stop the relevance service, rescore, start it again). For each selected series with a
stored state it replays the stored points up to the last one that state had scored through a fresh
model, with the workers' own rebuild code (services/relevance/app.py), publishes the replay's
scores to the relevance topic (history), then writes the rebuilt state with the input offset the
old one covered: the workers go on from there. A series whose stored history does not reach what
its state had scored (the sink still behind) is left as it is and reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiokafka import TopicPartition

import schemas
from flashes import clock, kafka, topics
from flashes.errors import DecodeError
from flashes.kafka import ensure_topics, make_producer, read_to_end
from flashes.settings import Settings
from flashes.timeconv import datetime_to_mjd
from flashes.topics import series_kind
from services.relevance.app import NAME, rebuild
from services.relevance.history import History
from services.relevance.model import SeriesModel

GROUP = f"flashes-{NAME}"  # flashes.processor.Processor's consumer group


def source_of(series: str) -> str:
    """The source id of a catalogue series name ('{kind}_{source_id}')."""
    return series.split("_", 1)[1]


@dataclass
class Report:
    rebuilt: dict[str, int] = field(default_factory=dict)  # series -> stored points replayed
    unknown: list[str] = field(default_factory=list)  # selected sources without any stored state
    behind: list[str] = field(default_factory=list)  # series whose stored history ends before their state
    unreadable: list[str] = field(default_factory=list)  # series whose state record does not decode
    seconds: float = 0.0


class WorkersRunning(RuntimeError):
    """The relevance processor's consumer group has members: rescoring now would be overwritten."""


async def group_members(settings: Settings) -> int:
    admin = kafka.admin(settings)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([GROUP])
        return len(response.groups[0][5])  # (error, group, state, protocol type, protocol, members, ...)
    finally:
        await admin.close()


async def stored_states(settings: Settings) -> dict[str, bytes | None]:
    """The newest record of every key of the relevance state topic."""
    spec = topics.RELEVANCE_STATE
    records = await read_to_end(settings, [TopicPartition(spec.name, p) for p in range(spec.partitions)])
    return {r.key.decode(): r.value for r in records}


async def rescore(settings: Settings, sources: list[str] | None = None) -> Report:
    """Rebuild every series of `sources` (default: all) that has a stored state; see the module docstring."""
    await ensure_topics(settings)
    members = await group_members(settings)
    if members:
        raise WorkersRunning(
            f"{members} relevance worker(s) running: stop the relevance service, run rescore, "
            "then start it again (a running worker would overwrite the rebuilt states)"
        )
    started = time.perf_counter()
    report = Report()
    latest = await stored_states(settings)
    wanted = None if sources is None else set(sources)
    selected = {
        key: raw
        for key, raw in sorted(latest.items())
        if raw is not None and (wanted is None or source_of(key) in wanted)
    }
    report.unknown = sorted((wanted or set()) - {source_of(key) for key in selected})
    history, now = History(settings, timeout_s=60.0), datetime_to_mjd(clock.now(settings))
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, raw in selected.items():
            try:
                state = topics.RELEVANCE_STATE.decode(raw)
            except DecodeError:
                report.unreadable.append(key)
                continue
            until = SeriesModel.restore(state.model).scored_until
            if until is None:  # nothing scored yet: nothing to rebuild
                continue
            source_id = source_of(key)
            done = rebuild(history, series_kind(key), source_id, now, until=until)
            if not done.reaches(until, now):
                report.behind.append(key)
                continue
            sent = [
                await producer.send(topics.RELEVANCE.name, topics.RELEVANCE.encode(c), key=source_id.encode())
                for c in done.chunks
            ]
            await asyncio.gather(*sent)  # the scores before the state that says they were produced
            rebuilt = schemas.RelevanceState(
                key=key, topic=state.topic, partition=state.partition, offset=state.offset, model=done.model.to_state()
            )
            await producer.send_and_wait(
                topics.RELEVANCE_STATE.name,
                topics.RELEVANCE_STATE.encode(rebuilt),
                key=key.encode(),
                partition=state.partition,
            )
            report.rebuilt[key] = done.points
    finally:
        await producer.stop()
    report.seconds = time.perf_counter() - started
    return report
