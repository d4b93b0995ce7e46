"""The fault run: a backlog waiting, workers SIGKILLed at random, Kafka and QuestDB restarted.

Used by tests/test_faults.py (one short run) and bench/faults.py (N runs), on a private stack (devtools/stack.py).

1. Real-shaped data: the sample's real MAXI files and their synthetic BAT partners, given to
   `sources` catalogue sources that have both instruments, as the fetcher publishes them.
2. The expected outcome is an uninterrupted in-process run of the same processor code (derive,
   relevance, alerts) over the same chunks in the same order.
3. The backlog is produced before any worker starts. Then derive, relevance, alerts and sink run
   as processes; at random moments one of them is SIGKILLed (sometimes right after a start,
   with the backlog still there) and restarted; for a while a second derive and a second
   relevance worker run, so partitions move; Kafka is restarted once and QuestDB once. A worker
   that exits on its own is restarted too (as a supervisor would) and counted as a crash.
4. Afterwards every QuestDB table must hold exactly the expected keys, none twice; every
   relevance value (in QuestDB and on the topic, duplicates included) must equal the
   uninterrupted run's. Alert episodes join the series of a source in the order their scores
   arrive, and relevance reads lightcurve and derived chunks in whatever order they come, so an
   episode's records may differ from the in-process run's: there, every alert record of the
   topic must be in QuestDB once, each episode numbered 1, 2, ... from its onset, and the sources
   with alerts the same as in the uninterrupted run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import schemas
from devtools import observe
from devtools.observe import read_topic
from devtools.stack import Stack, private_stack, sample_pairs
from flashes import questdb, topics
from flashes.kafka import ensure_topics
from flashes.parsers import parse
from flashes.settings import Settings
from services.alerts.app import Alerts
from services.derive.app import Derive, joinable_sources
from services.fetcher.publish import make_chunks
from services.relevance.app import Relevance

log = logging.getLogger(__name__)
WORKERS = ("derive", "relevance", "alerts", "sink")
EXTRA = ("derive", "relevance")  # run twice for part of the time


@dataclass
class Expected:
    lightcurve: set[tuple[str, str, int]] = field(default_factory=set)  # series, band, time µs
    derived: set[tuple[str, int]] = field(default_factory=set)
    relevance: dict[tuple[str, int], float] = field(default_factory=dict)
    alerts: set[str] = field(default_factory=set)


def backlog(settings: Settings, sources: int) -> list[schemas.LightcurveChunk]:
    """Chunks of real MAXI files and their synthetic BAT partners, given to `sources` catalogue sources."""
    pairs = sample_pairs(settings)
    targets = sorted(joinable_sources(settings))[:sources]
    fetched = datetime(2026, 1, 1, tzinfo=UTC)
    chunks = []
    for i, source_id in enumerate(targets):
        pair = pairs[i % len(pairs)]
        for instrument, path in (("maxi", pair.maxi), ("swift", pair.bat)):
            parsed = parse(instrument, path.name, path.read_bytes())
            chunks += make_chunks(
                parsed, np.ones(len(parsed), dtype=bool), source_id, instrument, f"file://{path.name}", fetched
            )
    return chunks


def uninterrupted(settings: Settings, chunks: list[schemas.LightcurveChunk]) -> Expected:
    """The outcome of one uninterrupted run of the processors' own code, in-process."""
    derive, relevance, alerts = Derive(joinable_sources(settings)), Relevance(), Alerts(settings)
    out = Expected()
    for chunk in chunks:
        for band in chunk.bands:
            out.lightcurve |= {
                (topics.catalogue_series(chunk.instrument, chunk.source_id), band, t) for t in chunk.time
            }
        derived = [o.value for o in derive.apply(chunk)]
        for d in derived:
            out.derived |= {(topics.catalogue_series(d.kind, d.source_id), t) for t in d.time}
        for scored in (relevance.apply(c) for c in [chunk, *derived]):
            for o in scored:
                out.relevance.update(zip(((o.value.series, t) for t in o.value.time), o.value.relevance))
                out.alerts |= {a.value.source_id for a in alerts.apply(o.value)}
    return out


async def produce(settings: Settings, chunks: list[schemas.LightcurveChunk]) -> None:
    await ensure_topics(settings)
    spec = topics.LIGHTCURVE
    await observe.produce(settings, [(spec.name, c.source_id.encode(), spec.encode(c)) for c in chunks])


class Workers:
    """The worker slots of a stack ('derive', 'derive#2', …), counted: kills, and exits nobody asked for."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.kills = 0
        self.crashes = 0

    def kill(self, slot: str) -> None:
        if self.stack.kill(slot):
            self.kills += 1

    def supervise(self) -> None:
        """Restart every worker that exited on its own (as a supervisor would), counting it as a crash."""
        self.crashes += len(self.stack.restart_exited())


def stored(settings: Settings) -> dict[str, Counter]:
    """Row keys of every table, counted (a key twice is a duplicate)."""
    q = lambda sql: questdb.query(settings, sql, timeout_s=120)  # noqa: E731
    lc = Counter((r["series"], r["band"], r["ts"]) for r in q("SELECT series, band, ts FROM lightcurve"))
    dv = Counter((r["series"], r["ts"]) for r in q("SELECT series, ts FROM derived"))
    rl = Counter((r["series"], r["ts"]) for r in q("SELECT series, ts FROM relevance"))
    al = Counter((r["alert_id"], r["record_number"]) for r in q("SELECT alert_id, record_number FROM alerts"))
    return {"lightcurve": lc, "derived": dv, "relevance": rl, "alerts": al}


def alert_faults(settings: Settings, stored_alerts: Counter, sources: set[str]) -> tuple[int, int, int]:
    """lost, duplicated and mismatched alert records: topic vs QuestDB, numbering, alerted sources."""
    records = [v for _, v in asyncio.run(read_topic(settings, topics.ALERTS.name, timeout_s=3.0))]
    on_topic = {(a["alert_id"], a["record_number"]) for a in records}
    episodes: dict[str, list[tuple[int, str]]] = {}
    for a in records:
        episodes.setdefault(a["alert_id"], []).append((a["record_number"], a["alert_type"]))
    numbered = [sorted(set(recs)) for recs in episodes.values()]  # replays repeat records, identical
    misnumbered = sum(
        1 for recs in numbered if [n for n, _ in recs] != list(range(1, len(recs) + 1)) or recs[0][1] != "onset"
    )
    alerted = {a["source_id"] for a in records}
    return (
        len(on_topic - set(stored_alerts)),
        sum(n - 1 for n in stored_alerts.values() if n > 1),
        misnumbered + len(set(stored_alerts) - on_topic) + len(alerted ^ sources),
    )


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check(settings: Settings, expected: Expected) -> dict[str, int]:
    """lost / duplicated / mismatched against the uninterrupted run (QuestDB and the relevance topic)."""
    rows = stored(settings)
    want = {
        "lightcurve": Counter((s, b, _iso(t)) for s, b, t in expected.lightcurve),
        "derived": Counter((s, _iso(t)) for s, t in expected.derived),
        "relevance": Counter((s, _iso(t)) for s, t in expected.relevance),
    }
    lost = sum(len(set(want[t]) - set(rows[t])) for t in want)
    duplicated = sum(sum(n - 1 for n in rows[t].values() if n > 1) for t in want)
    unexpected = sum(len(set(rows[t]) - set(want[t])) for t in want)
    values = {
        (r["series"], r["ts"]): r["relevance"]
        for r in questdb.query(settings, "SELECT series, ts, relevance FROM relevance", timeout_s=120)
    }
    mismatched = unexpected + sum(
        1
        for (s, t), r in expected.relevance.items()
        if (s, _iso(t)) in values and abs(values[(s, _iso(t))] - r) > 1e-12
    )
    for _, chunk in asyncio.run(read_topic(settings, topics.RELEVANCE.name, timeout_s=3.0)):
        mismatched += sum(
            1 for t, r in zip(chunk["time"], chunk["relevance"]) if expected.relevance.get((chunk["series"], t)) != r
        )  # bit-exact, duplicates included
    alerts = alert_faults(settings, rows["alerts"], expected.alerts)
    twice = {k for k, n in rows["alerts"].items() if n > 1}
    dup = (
        [
            r
            for r in questdb.query(
                settings,
                "SELECT ts, alert_id, record_number, alert_type, trigger_series, mjd, "
                "relevance, explanation FROM alerts",
                timeout_s=120,
            )
            if (r["alert_id"], r["record_number"]) in twice
        ]
        if twice
        else []
    )
    return {
        "lost": lost + alerts[0],
        "duplicated": duplicated + alerts[1],
        "mismatched": mismatched + alerts[2],
        "duplicate_alerts": dup,
    }


def complete(settings: Settings, expected: Expected) -> bool:
    try:
        counts = {
            t: questdb.query(settings, f"SELECT count() n FROM {t}")[0]["n"]
            for t in ("lightcurve", "derived", "relevance")
        }
        return (
            counts
            == {
                "lightcurve": len(expected.lightcurve),
                "derived": len(expected.derived),
                "relevance": len(expected.relevance),
            }
            and asyncio.run(observe.group_lag(settings)) == 0
            and questdb.wal_applied(settings)
        )
    except Exception:  # a server is restarting
        return False


def run(
    var: Path, sources: int = 15, kills: int = 8, seed: int | None = None, timeout_s: float = 900.0
) -> dict[str, int]:
    """One fault run in a private stack under `var`; returns lost, duplicated, mismatched and what was done."""
    rng = random.Random(seed)
    var.mkdir(parents=True, exist_ok=True)
    local = Settings(var_dir=var)  # the catalogue and the processors' rules: no server needed yet
    chunks = backlog(local, sources)
    expected = uninterrupted(local, chunks)
    with private_stack(var=var) as stack:
        settings, workers = stack.settings, Workers(stack)
        asyncio.run(produce(settings, chunks))  # the backlog waits before any worker starts
        stack.start(*WORKERS)
        # The plan: kills at random moments (some right after a start), one Kafka and one QuestDB
        # restart, and a second derive and relevance worker for part of the time.
        events = [("kill", None)] * kills + [
            ("kafka", None),
            ("questdb", None),
            ("extra-on", None),
            ("extra-off", None),
        ]
        rng.shuffle(events)
        if events.index(("extra-off", None)) < events.index(("extra-on", None)):
            events.remove(("extra-off", None))
            events.append(("extra-off", None))
        started = time.monotonic()
        for event, _ in events:
            time.sleep(rng.uniform(0.5, 4.0))
            workers.supervise()
            if event == "kill":
                slot = rng.choice(sorted(stack.processes))
                workers.kill(slot)
                time.sleep(rng.uniform(0.0, 2.0))
                stack.start(slot)
                if rng.random() < 0.5:  # and again right after its start, backlog still waiting
                    time.sleep(rng.uniform(0.5, 3.0))
                    workers.kill(slot)
                    stack.start(slot)
            elif event in ("kafka", "questdb"):
                stack.stop(event)
                time.sleep(rng.uniform(0.5, 3.0))
                stack.start(event)
            elif event == "extra-on":
                stack.start(*(f"{service}#2" for service in EXTRA))
            else:
                for service in EXTRA:
                    workers.kill(f"{service}#2")

        def settled() -> bool:
            workers.supervise()
            return complete(settings, expected)

        try:
            observe.wait_until(settled, "every expected row stored", timeout_s, 2.0)
        except TimeoutError:  # rows lost: check() counts them
            log.warning("not every expected row was stored within %.0f s", timeout_s)
        observe.wait_drained(settings, timeout_s=120)
        result = check(settings, expected)
        workers.supervise()
        result.update(
            points=sum(c.count for c in chunks),
            kills=workers.kills,
            crashes=workers.crashes,
            seconds=round(time.monotonic() - started),
        )
        return result
