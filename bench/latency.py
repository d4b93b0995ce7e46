"""Alert latency of news: a provider publishes a new point -> fetcher service poll -> ... -> webhook.

A private stack (Kafka, QuestDB on free loopback ports; the fetcher, sink, derive, relevance, alerts
and delivery services as their own processes; one webhook subscription to a loopback receiver) and
a provider mirror served over HTTP. The fetcher service polls MAXI every --poll-s seconds plus a
uniform jitter up to --jitter-s (FLASHES_FETCH_EVERY_S, FLASHES_FETCH_JITTER_S), with conditional
requests, as it polls the providers in operation (hourly by default).

Every run is a new, unusual point dated now for a source that has never had one: river-3 learns
recurrences, so a spike injected into one source run after run becomes routine and raises nothing.
The mirror therefore holds one MAXI file for each of --runs catalogue sources that have MAXI data
and no other instrument, each a copy of one real sample MAXI file that is quiet at its end
(--sample, from data/mirror/maxi/star_data/): the data is NOT that source's own. Its MJDs are
shifted by a whole number of days so that its last row is yesterday's day centre (xxxxx.5).

Warm-up: the fetcher service's first poll publishes every file's whole history and the pipeline
drains it. Its alerts are history (the end of the sample is quiet, so every alert comes from a
point far older than FLASHES_LIVE_DAYS); none may reach the webhook (checked).

Each run then waits a random time, uniform over one poll cycle (a provider publishes whenever it
does, not in step with our polls), and appends one bright point to its own source's file:
--factor x the recent level (median of the last 30 rows per band) with the usual error bars
(median of the last 30), dated now (the MJD of the current time, rounded down to the file's six
decimals, so never in the future). The file is replaced atomically with a newer modification
time. t0 = the moment the new file is in place (the provider's publication); the run ends when
the receiver has the onset alert of that point, marked news (`live`).

Figures (p99 interpolated, numpy's default):
- p50_s / p99_s / max_s: t0 -> webhook, with the poll interval and jitter stated beside them;
- poll_wait: t0 -> the fetcher sent the point's lightcurve chunk (Kafka CreateTime, ms);
- pipeline: that -> webhook, what is left whatever the poll interval: with hourly polls in
  operation, add a poll wait of up to an interval plus the jitter (half of it on average);
- stages: relevance (lightcurve chunk -> relevance chunk sent), alerts (-> alert record sent),
  webhook (-> the receiver has the POST).

    .venv/bin/python bench/latency.py [--runs 30] [--poll-s 5] [--jitter-s 1]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import orjson
from aiokafka import TopicPartition
from benchkit import latency_summary, webhook_subscriptions, write_subscriptions
from pipeline_throughput import log_tail, wait_members  # the sibling benchmark's helpers (bench/ is on the path)

from devtools import observe
from devtools.stack import SAMPLE_MIRROR, private_stack
from flashes import catalogue, kafka, topics
from flashes.kafka import ensure_topics
from flashes.settings import Settings
from flashes.timeconv import datetime_to_mjd
from flashes.topics import catalogue_series, series_key
from services.fetcher import state

INPUTS = observe.GROUP_INPUTS
PIPELINE = ("sink", "derive", "relevance", "alerts", "delivery")


class Receiver(BaseHTTPRequestHandler):
    """Webhook receiver: (wall time, decoded alert) of every POST, and a condition to wait on."""

    received: list[tuple[float, dict]] = []
    arrived = threading.Condition()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        at = time.time()
        self.send_response(204)
        self.end_headers()
        with self.arrived:
            self.received.append((at, orjson.loads(body)))
            self.arrived.notify_all()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def wait_webhook(match: Callable[[dict], bool], what: str, timeout_s: float) -> tuple[float, dict]:
    """(wall time, alert) of the first POST whose alert `match`es; TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    with Receiver.arrived:
        while True:
            hit = next(((at, alert) for at, alert in Receiver.received if match(alert)), None)
            if hit is not None:
                return hit
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no webhook for {what} within {timeout_s:.0f} s")
            Receiver.arrived.wait(left)


def wait_drained(
    settings: Settings, processes: dict[str, subprocess.Popen], logs: Path, timeout_s: float = 600.0
) -> None:
    """Every consumer group, delivery's included, has committed its input topics to their end."""

    async def lags() -> dict[str, int]:
        async with observe.InputLag(settings) as lag:
            return await lag(INPUTS)

    def drained() -> bool:
        for name, proc in processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(logs / f'{name}.log')}")
        return not any(asyncio.run(lags()).values())

    observe.wait_until(drained, "the consumer groups to catch up", timeout_s, 0.2)


def now_mjd() -> float:
    return datetime_to_mjd(datetime.now(UTC))


class MirroredFile:
    """One source's MAXI file in the mirror: the sample's rows moved to end yesterday, then a point dated now."""

    def __init__(self, sample: Path, path: Path) -> None:
        rows = [line.split(None, 1) for line in sample.read_text().splitlines() if line.strip()]
        shift = (math.floor(now_mjd()) - 1) - math.floor(float(rows[-1][0]))  # whole days: centres stay xxxxx.5
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{float(mjd) + shift:.6f} {rest}\n" for mjd, rest in rows))
        self.path, self.rows = path, len(rows)
        self.last_mjd = float(f"{float(rows[-1][0]) + shift:.6f}")
        table = np.loadtxt(path, ndmin=2)[-30:, 1:]  # (flux, error) per band after the MJD
        self.level, self.error = np.median(table[:, 0::2], axis=0), np.median(table[:, 1::2], axis=0)
        self.mtime = int(path.stat().st_mtime)

    def publish(self, factor: float) -> tuple[float, float]:
        """Append one point at factor x the level, dated now; (its MJD as the file says it, wall time it appeared)."""
        text = f"{math.floor(now_mjd() * 1e6) / 1e6:.6f}"  # rounded down: never after now
        values = " ".join(f"{factor * lv:.6f} {err:.6f}" for lv, err in zip(self.level, self.error))
        staged = self.path.with_name(self.path.name + ".new")
        staged.write_bytes(self.path.read_bytes() + f"{text} {values}\n".encode())
        # Whole seconds, strictly increasing: HTTP's Last-Modified / If-Modified-Since resolution.
        self.mtime = max(int(time.time()), self.mtime + 1)
        os.utime(staged, (self.mtime, self.mtime))
        os.replace(staged, self.path)  # atomic: a poll sees the old file or the whole new one
        return float(text), time.time()


async def end_offsets(settings: Settings, names: list[str]) -> dict[TopicPartition, int]:
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        return await consumer.end_offsets(
            [TopicPartition(n, p) for n in names for p in range(topics.BY_NAME[n].partitions)]
        )
    finally:
        await consumer.stop()


async def record_times(
    settings: Settings, since: dict[TopicPartition, int], match: dict[str, Callable[[dict], bool]]
) -> dict[str, float]:
    """Per topic, the timestamp (s) of the first record from `since` whose decoded value `match`es."""
    consumer = kafka.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        tps = list(since)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, since[tp])
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > since[tp]}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                for r in records:
                    if tp.topic not in found and match[tp.topic](orjson.loads(r.value)):
                        found[tp.topic] = r.timestamp / 1000
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


def holds(mjds: list[float], mjd: float) -> bool:
    return any(abs(m - mjd) < 1e-7 for m in mjds)


def fetched_everything(settings: Settings, files: dict[str, MirroredFile]) -> bool:
    """The fetcher's state has every file's history, up to its last row."""
    states = asyncio.run(state.load_all(settings))
    return all(
        key in states and states[key].last_mjd is not None and abs(states[key].last_mjd - f.last_mjd) < 1e-7
        for key, f in files.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs, each on its own catalogue source (at least 20)")
    parser.add_argument("--poll-s", type=float, default=5.0, help="the fetcher service's MAXI poll interval")
    parser.add_argument("--jitter-s", type=float, default=1.0, help="uniform jitter added to each poll, up to this")
    parser.add_argument("--sample", default="J1535-572", help="quiet-at-its-end sample (data/mirror/maxi/star_data/ID)")
    parser.add_argument("--factor", type=float, default=20.0, help="the new point: factor x the recent level")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="per run, for the webhook")
    parser.add_argument("--seed", type=int, default=0, help="of the publication moments within the poll cycle")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sample = SAMPLE_MIRROR / "maxi" / "star_data" / args.sample / f"{args.sample}_g_lc_1day_all.dat"

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    env = {
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
        "FLASHES_FETCH_JITTER_S": str(args.jitter_s),
        "FLASHES_FETCH_EVERY_S": json.dumps({"maxi": args.poll_s, "swift": 3600.0, "fermi": 3600.0}),
    }
    with (
        tempfile.TemporaryDirectory(prefix="flashes-latency-mirror-") as served,
        private_stack(env=env, mirror=Path(served), keep=args.keep) as stacked,
    ):
        settings, folder, logs, processes = stacked.settings, Path(served), stacked.logs, stacked.processes
        asyncio.run(ensure_topics(settings))
        # MAXI alone: no BAT or GBM file to miss, no other instrument to hold a lone crossing for.
        records = [r for r in catalogue.load(settings) if r.maxi and not r.swift and not r.fermi]
        if len(records) < args.runs:
            raise SystemExit(f"{args.runs} runs need as many MAXI-only catalogue sources; there are {len(records)}")
        sources = [r.id for r in records[: args.runs]]
        files = {
            series_key("maxi", r.id): MirroredFile(
                sample, folder / "maxi" / catalogue.path_below_base(settings, "maxi", r.maxi.data_url)
            )
            for r in records[: args.runs]
        }
        if files[series_key("maxi", sources[0])].level[0] <= 0:
            raise SystemExit(f"{args.sample} has no positive recent level to multiply")

        asyncio.run(write_subscriptions(settings, webhook_subscriptions(settings, [hook])))
        stacked.start(*PIPELINE)
        wait_members(settings, {g: 1 for g in INPUTS}, processes)
        warm = time.perf_counter()
        stacked.start("fetcher", env={"FLASHES_FETCH_SOURCES": json.dumps(sources)})
        observe.wait_until(lambda: fetched_everything(settings, files), "the fetcher's first poll", 300, 0.5)
        wait_drained(settings, processes, logs)
        history = sum(asyncio.run(end_offsets(settings, [topics.ALERTS.name])).values())
        if Receiver.received:
            raise RuntimeError(f"{len(Receiver.received)} history alerts were pushed to the webhook in the warm-up")
        warmup = {
            "series": len(files),
            "points": sum(f.rows for f in files.values()),
            "history_alerts": history,
            "pushed": 0,
            "s": round(time.perf_counter() - warm, 1),
        }
        print(
            f"warm-up: {warmup['points']} history points of {len(files)} series through the pipeline in "
            f"{warmup['s']} s; {history} history alerts raised, none pushed",
            flush=True,
        )

        runs = []
        watched = [topics.LIGHTCURVE.name, topics.RELEVANCE.name, topics.ALERTS.name]
        for i, source in enumerate(sources):
            series = catalogue_series("maxi", source)
            since = asyncio.run(end_offsets(settings, watched))
            time.sleep(rng.uniform(0.0, args.poll_s + args.jitter_s))  # a random phase of the poll cycle
            mjd, t0 = files[series_key("maxi", source)].publish(args.factor)
            received, alert = wait_webhook(
                lambda a: a["source_id"] == source and a["alert_type"] == "onset" and abs(a["mjd"] - mjd) < 1e-7,
                f"the onset of {source} at MJD {mjd:.6f}",
                args.timeout_s,
            )
            if not alert["live"]:
                raise RuntimeError(f"the onset of {source} at MJD {mjd:.6f} was pushed as history")
            stamps = asyncio.run(
                record_times(
                    settings,
                    since,
                    {
                        topics.LIGHTCURVE.name: lambda v: (
                            v["source_id"] == source and v.get("instrument") == "maxi" and holds(v["mjd"], mjd)
                        ),
                        topics.RELEVANCE.name: lambda v: v["series"] == series and holds(v["mjd"], mjd),
                        topics.ALERTS.name: lambda v: v["alert_id"] == alert["alert_id"],
                    },
                )
            )
            lc, rel, sent = (stamps.get(n, math.nan) for n in watched)
            run = {
                "total_s": received - t0,
                "poll_wait_s": lc - t0,
                "pipeline_s": received - lc,
                "relevance_s": rel - lc,
                "alerts_s": sent - rel,
                "webhook_s": received - sent,
            }
            runs.append(run)
            print(
                f"run {i + 1:>2}: {source:<22} MJD {mjd:.6f}  {run['total_s']:6.3f} s  (poll wait "
                f"{run['poll_wait_s']:.3f}, pipeline {run['pipeline_s']:.3f}: relevance {run['relevance_s']:.3f}, "
                f"alerts {run['alerts_s']:.3f}, webhook {run['webhook_s']:.3f})",
                flush=True,
            )
            wait_drained(settings, processes, logs)

        column = {name: [r[name] for r in runs] for name in runs[0]}
        figures = {
            "runs": len(runs),
            "poll_interval_s": args.poll_s,
            "jitter_s": args.jitter_s,
            **latency_summary(column["total_s"]),
            "mean_s": round(float(np.mean(column["total_s"])), 3),
            "poll_wait": latency_summary(column["poll_wait_s"]),
            "pipeline": latency_summary(column["pipeline_s"]),
            "stages": {name: latency_summary(column[name]) for name in ("relevance_s", "alerts_s", "webhook_s")},
            "sample": args.sample,
            "factor": args.factor,
            "warmup": warmup,
        }
        print(
            f"news latency, provider publication -> webhook, over {len(runs)} runs with polls every "
            f"{args.poll_s:g} s + up to {args.jitter_s:g} s: p50 {figures['p50_s']:.3f} s, p99 "
            f"{figures['p99_s']:.3f} s, max {figures['max_s']:.3f} s; the pipeline part (fetched -> webhook): "
            f"p50 {figures['pipeline']['p50_s']:.3f} s, p99 {figures['pipeline']['p99_s']:.3f} s"
        )
        print(json.dumps(figures), flush=True)
    receiver.shutdown()


if __name__ == "__main__":
    main()
