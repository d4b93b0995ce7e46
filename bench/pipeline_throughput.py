"""End-to-end throughput: fetch-parse -> Kafka -> derive -> relevance -> QuestDB, against direct ILP.

Makes a provider mirror of N catalogue sources that have both MAXI and BAT (each gets one of the
real sample MAXI files and its synthetic BAT partner), starts a private Kafka and QuestDB on free
loopback ports and the sink, derive and K relevance services, waits until every consumer group
has its members, then fetches everything in-process (`fetch_once`) and polls (every --poll-s)
the consumer groups' committed offsets and QuestDB until the pipeline is done. Then it parses
the same files and writes the same lightcurve rows straight into QuestDB, for the ratio.

    .venv/bin/python bench/pipeline_throughput.py [--sources N] [--relevance-workers K]

Figures (all rates in lightcurve points, the points the fetch published, so they compare):

- points_per_s: points / (clock start -> the first poll at which every lightcurve point has its
  relevance row visible in QuestDB, every consumer group (derive, relevance, sink) has committed
  everything on its input topics, and QuestDB has applied every WAL transaction). The clock
  starts just before fetch_once; the poll interval bounds the error (+0 .. +poll_s).
- direct_points_per_s: points / (parse the files, make_chunks, lightcurve_frame, Sender.dataframe
  into a copy of the lightcurve table, one flush per file, until QuestDB has applied the WAL).
  direct_accepted_points_per_s stops the clock when the last flush is accepted instead.
- ratio: points_per_s / direct_points_per_s.
- fetch_points_per_s: points / duration of fetch_once (download, parse, diff, publish acked).
- derive / relevance / sink_points_per_s: points / (clock start -> the first poll at which that
  group had committed everything on its input topics, after its upstream had: fetch for derive,
  derive for relevance, relevance for sink). The stages overlap, so these are completion rates,
  non-increasing down the pipeline: a stage's figure is bounded by everything upstream, and the
  first big drop from one stage to the next points at the slowest stage.
- points_per_cpu_s: per stage, points / CPU seconds its process(es) used over the run
  (/proc utime+stime; fetch: the bench's main thread). That is what the stage could sustain
  with a core to itself; on a machine with fewer cores than busy processes (Kafka, QuestDB and
  the services share them) the completion rates are lower. cpu_s also lists Kafka and QuestDB;
  runqueue_wait_s is the time each process was runnable but waiting for a core (/proc schedstat,
  summed over its threads, so a JVM's can exceed the wall time): what CPU contention cost it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from devtools import observe
from devtools.infra import SERVERS
from devtools.stack import Stack, maxi_and_bat_sources, private_stack, sample_pairs
from flashes import catalogue, kafka, questdb
from flashes.kafka import ensure_topics
from flashes.parsers import parse
from flashes.settings import Settings
from services.fetcher.publish import make_chunks
from services.fetcher.service import fetch_once
from services.sink.rows import SYMBOLS, lightcurve_frame

STAGES = (("derive", "flashes-derive"), ("relevance", "flashes-relevance"), ("sink", "flashes-sink"))


def make_mirror(settings: Settings, folder: Path, n: int) -> list[tuple[str, str, str, Path]]:
    """(source id, instrument, data URL, file) for N sources, sample files copied under their provider paths."""
    pairs = sample_pairs(settings)
    files = []
    for i, rec in enumerate(maxi_and_bat_sources(settings)[:n]):
        pair = pairs[i % len(pairs)]
        for inst, src in (("maxi", pair.maxi), ("swift", pair.bat)):
            url = rec.entry(inst).data_url
            dest = folder / inst / catalogue.path_below_base(settings, inst, url)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            files.append((rec.id, inst, url, dest))
    return files


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; NaN if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_seconds(pid: int) -> float:
    """Time the threads of a process spent runnable but waiting for a CPU (/proc schedstat), in seconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that ended meanwhile
            total += int(task.read_text().split()[1])
    return total / 1e9


async def group_members(settings: Settings, groups: list[str]) -> dict[str, int]:
    """Members of each consumer group that are in a Stable state (0 while it rebalances)."""
    from aiokafka.errors import KafkaError

    admin = kafka.admin(settings)
    await admin.start()
    try:
        out = {}
        for group in groups:
            try:
                descriptions = await admin.describe_consumer_groups([group])
            except KafkaError:  # e.g. no coordinator yet while __consumer_offsets is being created
                descriptions = []
            for desc in descriptions:
                for g in desc.groups:
                    # (error_code, group_id, state, protocol_type, protocol, members[, authorized ops])
                    out[g[1]] = len(g[5]) if g[2] == "Stable" else 0
        return out
    finally:
        await admin.close()


def wait_members(settings: Settings, expected: dict[str, int], processes: dict[str, subprocess.Popen]) -> None:
    def ready() -> bool:
        for name, proc in processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"service {name} exited with {proc.returncode} before the benchmark started")
        members = asyncio.run(group_members(settings, list(expected)))
        return all(members.get(g, 0) == n for g, n in expected.items())

    observe.wait_until(ready, f"the consumer groups to have their members {expected}", 120, 0.5)


class Poller(threading.Thread):
    """Samples (time, lag per group, relevance rows of lightcurve series, WAL applied, CPU per process)."""

    def __init__(self, settings: Settings, pids: dict[str, list[int]], every_s: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.pids, self.every_s = settings, pids, every_s
        self.samples: list[dict] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def cpu(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}

    def waits(self) -> dict[str, float]:
        return {name: sum(runqueue_wait_seconds(p) for p in pids) for name, pids in self.pids.items()}

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    async def _main(self) -> None:
        async with observe.InputLag(self.settings) as lag:
            while not self.stop.is_set():
                began = time.perf_counter()
                lags = await lag({g: observe.GROUP_INPUTS[g] for _, g in STAGES})
                scored = questdb.query(
                    self.settings, "SELECT count() n FROM relevance WHERE kind IN ('maxi', 'swift')"
                )[0]["n"]
                applied = questdb.wal_applied(self.settings)
                self.samples.append(
                    {
                        "t": time.perf_counter(),
                        "took": time.perf_counter() - began,
                        "lags": lags,
                        "scored": scored,
                        "applied": applied,
                        "cpu": self.cpu(),
                        "wait": self.waits(),
                    }
                )
                await asyncio.sleep(self.every_s)


def milestones(samples: list[dict], fetch_end: float, points: int) -> dict[str, float] | None:
    """Perf-counter times at which each group caught up after its upstream, and the end; None if not yet."""
    out: dict[str, float] = {}
    after = fetch_end
    for stage, group in STAGES:
        hit = next((s for s in samples if s["t"] >= after and s["lags"][group] == 0), None)
        if hit is None:
            return None
        out[stage] = after = hit["t"]
    end = next(
        (
            s
            for s in samples
            if s["t"] >= after and s["scored"] == points and s["applied"] and all(v == 0 for v in s["lags"].values())
        ),
        None,
    )
    if end is None:
        return None
    out["end"] = end["t"]
    return out


def table_applied(settings: Settings, table: str) -> bool:
    rows = questdb.query(settings, f"SELECT writerTxn, sequencerTxn FROM wal_tables() WHERE name = '{table}'")
    return bool(rows) and all(r["writerTxn"] == r["sequencerTxn"] for r in rows)


def direct_ilp(settings: Settings, files: list[tuple[str, str, str, Path]]) -> tuple[int, float, float]:
    """Parse the files and write the same lightcurve rows straight into a copy of the table.

    (points, seconds until the last flush was accepted, seconds until QuestDB applied the WAL).
    """
    questdb.query(settings, "CREATE TABLE IF NOT EXISTS bench_direct (LIKE lightcurve)")
    now = datetime.now(UTC)
    n = 0
    start = time.perf_counter()
    with questdb.sender(settings) as sender:
        for source_id, inst, url, path in files:
            parsed = parse(inst, url, path.read_bytes())
            chunks = make_chunks(parsed, np.ones(len(parsed), dtype=bool), source_id, inst, url, now)
            frame = pd.concat([lightcurve_frame(c) for c in chunks], ignore_index=True)
            sender.dataframe(frame, table_name="bench_direct", symbols=SYMBOLS["lightcurve"], at="ts")
            sender.flush()
            n += sum(c.count for c in chunks)
    accepted = time.perf_counter() - start
    observe.wait_until(lambda: table_applied(settings, "bench_direct"), "bench_direct's WAL applied", 600, 0.05)
    return n, accepted, time.perf_counter() - start


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=12, help="catalogue sources (MAXI + BAT each)")
    parser.add_argument("--relevance-workers", type=int, default=1, help="relevance processes (group members)")
    parser.add_argument("--poll-s", type=float, default=0.5, help="interval of the progress polls")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--stall-s", type=float, default=120.0, help="give up after this long without progress")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    parser.add_argument("--timeline", action="store_true", help="print every progress sample")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="flashes-bench-mirror-") as folder,
        private_stack(mirror=Path(folder), keep=args.keep) as stack,
    ):
        measure(args, stack, Path(folder))


def measure(args: argparse.Namespace, stack: Stack, folder: Path) -> None:
    """The run on a private stack serving the mirror `folder`; prints the figures."""
    settings, logs, processes = stack.settings, stack.logs, stack.processes
    poller: Poller | None = None
    try:
        asyncio.run(ensure_topics(settings))
        files = make_mirror(settings, folder, args.sources)
        sources = sorted({s for s, _, _, _ in files})
        stack.start("sink", "derive", "relevance", *(f"relevance#{i}" for i in range(2, args.relevance_workers + 1)))
        wait_members(
            settings, {"flashes-sink": 1, "flashes-derive": 1, "flashes-relevance": args.relevance_workers}, processes
        )

        server_pids = {name: int((settings.var_dir / f"{name}.pid").read_text()) for name in SERVERS}
        pids = {
            "derive": [processes["derive"].pid],
            "sink": [processes["sink"].pid],
            "relevance": [p.pid for n, p in processes.items() if n.startswith("relevance")],
            **{name: [pid] for name, pid in server_pids.items()},
        }
        poller = Poller(settings, pids, args.poll_s)
        cpu0, wait0 = poller.cpu(), poller.waits()
        poller.start()

        start = time.perf_counter()
        fetch_cpu0 = time.thread_time()
        report = asyncio.run(fetch_once(settings, sources, ["maxi", "swift"]))
        fetch_end = time.perf_counter()
        fetch_cpu = time.thread_time() - fetch_cpu0
        if report.errors:
            raise RuntimeError(f"fetch errors: {report.errors}")
        points = report.points

        deadline = start + args.timeout_s
        marks = None
        progress, moved = None, time.perf_counter()
        while marks is None:
            if poller.error:
                raise poller.error
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"pipeline not done after {args.timeout_s:.0f} s; last sample "
                    f"{poller.samples[-1] if poller.samples else None}"
                )
            if poller.samples:
                last = poller.samples[-1]
                if (last["lags"], last["scored"]) != progress:
                    progress, moved = (last["lags"], last["scored"]), time.perf_counter()
                elif time.perf_counter() - moved > args.stall_s:
                    raise RuntimeError(
                        f"no progress for {args.stall_s:.0f} s (lags {last['lags']}, {last['scored']} of {points} "
                        "points scored in QuestDB); the services' last log lines:\n"
                        + "\n".join(f"--- {name}\n{log_tail(logs / f'{name}.log', 5)}" for name in processes)
                    )
            for name, proc in processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(logs / f'{name}.log')}")
            time.sleep(args.poll_s)
            marks = milestones(list(poller.samples), fetch_end, points)
        poller.stop.set()
        poller.join()
        end_sample = next(s for s in poller.samples if s["t"] == marks["end"])
        cpu = {name: round(end_sample["cpu"][name] - cpu0[name], 2) for name in cpu0}
        cpu["fetch"] = round(fetch_cpu, 2)
        runq = {name: round(end_sample["wait"][name] - wait0[name], 2) for name in wait0}
        elapsed = marks["end"] - start

        derived = questdb.query(settings, "SELECT count() n FROM derived")[0]["n"]
        direct_points, direct_accepted_s, direct_s = direct_ilp(settings, files)
        e2e, direct = points / elapsed, direct_points / direct_s
        stage_s = {"fetch": fetch_end - start, **{stage: marks[stage] - start for stage, _ in STAGES}}
        figures = {
            "sources": len(sources),
            "relevance_workers": args.relevance_workers,
            "points": points,
            "derived_points": derived,
            "elapsed_s": round(elapsed, 2),
            "points_per_s": round(e2e),
            "direct_points_per_s": round(direct),
            "direct_accepted_points_per_s": round(direct_points / direct_accepted_s),
            "ratio": round(e2e / direct, 4),
            **{f"{stage}_points_per_s": round(points / s) for stage, s in stage_s.items()},
            "stage_done_s": {stage: round(s, 2) for stage, s in stage_s.items()},
            "cpu_s": cpu,
            "runqueue_wait_s": runq,
            "points_per_cpu_s": {
                stage: round(points / cpu[stage]) if cpu[stage] > 0 else None
                for stage in ("fetch", "derive", "relevance", "sink")
            },
            "poll_s": args.poll_s,
            "sink_batch_messages": settings.sink_batch_messages,
        }
        if args.timeline:
            for smp in poller.samples:
                print(
                    f"t={smp['t'] - start:7.2f}s (poll {smp['took']:.2f}s) lag "
                    + " ".join(f"{g.removeprefix('flashes-')}={v}" for g, v in smp["lags"].items())
                    + f" scored={smp['scored']} applied={smp['applied']} cpu "
                    + " ".join(f"{k}={v - cpu0[k]:.1f}" for k, v in smp["cpu"].items())
                    + " runq "
                    + " ".join(f"{k}={v - wait0[k]:.1f}" for k, v in smp["wait"].items())
                )
        print(
            f"sources: {len(sources)}  lightcurve points: {points}  derived points: {derived}  "
            f"relevance workers: {args.relevance_workers}"
        )
        print(
            f"end to end (fetch-parse -> Kafka -> derive -> relevance -> QuestDB): {elapsed:.1f} s, {e2e:,.0f} points/s"
        )
        for stage, s in stage_s.items():
            print(f"  {stage:<10} done at {s:6.1f} s  {points / s:>9,.0f} points/s   cpu {cpu[stage]:6.1f} s")
        print(
            f"  kafka cpu {cpu['kafka']:.1f} s, questdb cpu {cpu['questdb']:.1f} s; waiting for a CPU "
            "(runnable, s): " + ", ".join(f"{k} {v:.1f}" for k, v in runq.items())
        )
        print(
            f"parse + ILP straight into QuestDB: {direct_s:.2f} s, {direct:,.0f} points/s "
            f"(accepted after {direct_accepted_s:.2f} s)"
        )
        print(f"ratio end-to-end / direct: {e2e / direct:.3f}")
        print(json.dumps(figures), flush=True)
    finally:
        if poller is not None:
            poller.stop.set()
            poller.join(10)


if __name__ == "__main__":
    main()
