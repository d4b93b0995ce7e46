"""Alert latency: a new daily point in a provider file -> fetch round -> relevance -> alert -> webhook.

A private stack (Kafka, QuestDB on free loopback ports; sink, derive, relevance, alerts and
delivery as their own processes, one webhook subscription to a loopback receiver) and a mirror holding one real MAXI
sample file, served over HTTP. The first fetch publishes the file's whole history (warm-up;
the alerts it raises are delivered and ignored) and the stack is drained before timing.

Each run then appends to the file (its modification time moved on so that the conditional GET
fetches it again):

1. --normal-points days at the source's recent level (median of the last 30 days per band,
   half an error bar below it), fetched and drained, untimed: they bring the relevance of the
   series back below the threshold and end the alert episode (episode_end_points);
2. one bright day (--factor x that level, with the usual error bars), timed from just before
   `fetch_once` (that one source, in-process, as the fetcher service runs a round) until the
   receiver has the onset alert for that point.

p50_s / p99_s / max_s are over those runs (p99 interpolated, numpy's default). Where the time
goes, per run, from the Kafka record timestamps (CreateTime, set when each stage sends, ms):
fetch (t0 -> the lightcurve chunk sent), relevance (-> the relevance chunk sent), alerts
(-> the alert sent), webhook (-> the receiver has the POST); fetch_round is fetch_once's whole
duration (it also waits for the acks and stops its producer).

    .venv/bin/python bench/latency.py [--runs 20]

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchkit import private_stack, webhook_subscriptions, write_subscriptions
from flashes import catalogue, observe, stack, topics
from flashes.kafka import ensure_topics
from flashes.settings import Settings
from flashes.topics import catalogue_series
from flashes.parsers import parse
from services.fetcher.service import fetch_once

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_throughput import log_tail, wait_members  # noqa: E402 - the sibling benchmark's helpers


INPUTS = observe.GROUP_INPUTS


class Receiver(BaseHTTPRequestHandler):
    """Webhook receiver: (wall time, alert id, body) of every POST, and a condition to wait on."""

    received: list[tuple[float, str, bytes]] = []
    arrived = threading.Condition()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        at = time.time()
        self.send_response(204)
        self.end_headers()
        with self.arrived:
            self.received.append((at, self.headers.get("webhook-id", "").split("#")[0], body))
            self.arrived.notify_all()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def wait_webhook(alert_id: str, timeout_s: float) -> float:
    """Wall time at which the receiver got the alert; TimeoutError if it did not within timeout_s."""
    deadline = time.monotonic() + timeout_s
    with Receiver.arrived:
        while True:
            hit = next((at for at, aid, _ in Receiver.received if aid == alert_id), None)
            if hit is not None:
                return hit
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no webhook for {alert_id} within {timeout_s:.0f} s")
            Receiver.arrived.wait(left)


def wait_drained(settings: Settings, processes: dict[str, subprocess.Popen], logs: Path,
                 timeout_s: float = 600.0) -> None:
    async def lags() -> dict[str, int]:
        async with observe.InputLag(settings) as lag:
            return await lag(INPUTS)

    def drained() -> bool:
        for name, proc in processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(logs / f'{name}.log')}")
        return not any(asyncio.run(lags()).values())

    observe.wait_until(drained, "the consumer groups to catch up", timeout_s, 0.2)


class MaxiFile:
    """The mirrored MAXI file: appends daily points and moves the modification time on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        parsed = parse("maxi", path.name, path.read_bytes())
        self.bands = list(parsed.bands)
        self.level = {b: float(np.median(f[-30:])) for b, (f, _) in parsed.bands.items()}
        self.error = {b: float(np.median(e[-30:])) for b, (_, e) in parsed.bands.items()}
        self.next_day = int(parsed.mjd.max()) + 1
        self.mtime = int(path.stat().st_mtime)

    def append(self, scale: float, offset_errors: float, days: int) -> list[float]:
        """Append `days` points at scale x the level + offset_errors x the error; their MJDs."""
        mjds, lines = [], []
        for _ in range(days):
            mjd = self.next_day + 0.5
            self.next_day += 1
            values = " ".join(f"{self.level[b] * scale + offset_errors * self.error[b]:.6f} {self.error[b]:.6f}"
                              for b in self.bands)
            lines.append(f"{mjd:.6f} {values}\n")
            mjds.append(mjd)
        with self.path.open("a") as f:
            f.write("".join(lines))
        # Whole seconds, strictly increasing: HTTP's Last-Modified / If-Modified-Since resolution.
        self.mtime = max(int(time.time()), self.mtime + 1)
        os.utime(self.path, (self.mtime, self.mtime))
        return mjds


async def end_offsets(settings: Settings, names: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(n, p) for n in names for p in
                                           range(topics.BY_NAME[n].partitions)])
    finally:
        await consumer.stop()


async def record_times(settings: Settings, since: dict[TopicPartition, int], match: dict[str, callable]) -> dict[str, float]:
    """Per topic, the timestamp (s) of the first record from `since` whose decoded value `match`es."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--maxi-id", default="J1520-571", help="sample MAXI file (data/mirror/maxi/star_data/ID)")
    parser.add_argument("--normal-points", type=int, default=6,
                        help="untimed points at the usual level per run (more than episode_end_points)")
    parser.add_argument("--factor", type=float, default=20.0, help="the timed point: factor x the recent level")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per run, for the webhook")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    with private_stack("flashes-latency-", {"FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true"}, None, args.keep) as stacked:
        settings, folder, logs, processes = stacked.settings, stacked.folder, stacked.logs, stacked.processes
        asyncio.run(ensure_topics(settings))
        rec = next(r for r in catalogue.load(settings) if r["maxi"] and r["maxi"]["provider_id"] == args.maxi_id)
        source, url = rec["_id"], rec["maxi"]["data_url"]
        path = folder / "maxi" / catalogue.path_below_base(settings, "maxi", url)
        path.parent.mkdir(parents=True)
        shutil.copy(stack.SAMPLE_MIRROR / "maxi" / "star_data" / args.maxi_id / path.name, path)
        maxi = MaxiFile(path)
        series = catalogue_series("maxi", source)

        asyncio.run(write_subscriptions(settings, webhook_subscriptions(settings, [hook])))
        stacked.spawn(("sink", "derive", "relevance", "alerts", "delivery"))
        wait_members(settings, {g: 1 for g in INPUTS}, processes)
        warm = time.perf_counter()
        report = asyncio.run(fetch_once(settings, [source], ["maxi"]))
        wait_drained(settings, processes, logs)
        print(f"warm-up: {report.points} history points of {series} through the pipeline in "
              f"{time.perf_counter() - warm:.1f} s; {len(Receiver.received)} alerts delivered", flush=True)

        runs = []
        watched = [topics.LIGHTCURVE.name, topics.RELEVANCE.name, topics.ALERTS.name]
        for i in range(args.runs):
            maxi.append(1.0, -0.5, args.normal_points)
            asyncio.run(fetch_once(settings, [source], ["maxi"]))
            wait_drained(settings, processes, logs)
            (mjd,) = maxi.append(args.factor, 0.0, 1)
            alert_id = f"{source}@{mjd:.5f}"  # the onset of a new episode
            since = asyncio.run(end_offsets(settings, watched))
            t0_wall, t0 = time.time(), time.perf_counter()
            asyncio.run(fetch_once(settings, [source], ["maxi"]))
            fetch_round = time.perf_counter() - t0
            received = wait_webhook(alert_id, args.timeout_s)
            total = received - t0_wall
            stamps = asyncio.run(record_times(settings, since, {
                topics.LIGHTCURVE.name: lambda v: v["source_id"] == source and v.get("instrument") == "maxi"
                                                  and mjd in v["mjd"],
                topics.RELEVANCE.name: lambda v: v["series"] == series and mjd in v["mjd"],
                topics.ALERTS.name: lambda v: v["alert_id"] == alert_id}))
            lc, rel, alert = (stamps.get(n, float("nan")) for n in watched)
            run = {"total_s": total, "fetch_round_s": fetch_round, "fetch_s": lc - t0_wall, "relevance_s": rel - lc,
                   "alerts_s": alert - rel, "webhook_s": received - alert}
            runs.append(run)
            print(f"run {i + 1:>2}: MJD {mjd:.1f}  {total:6.3f} s  (fetch {run['fetch_s']:.3f}, relevance "
                  f"{run['relevance_s']:.3f}, alerts {run['alerts_s']:.3f}, webhook {run['webhook_s']:.3f}; "
                  f"fetch round {fetch_round:.3f})", flush=True)
            wait_drained(settings, processes, logs)

        totals = np.array([r["total_s"] for r in runs])
        stages = {name: {"p50_s": round(float(np.nanmedian([r[name] for r in runs])), 3),
                         "max_s": round(float(np.nanmax([r[name] for r in runs])), 3)}
                  for name in ("fetch_s", "relevance_s", "alerts_s", "webhook_s", "fetch_round_s")}
        figures = {"runs": len(runs), "p50_s": round(float(np.percentile(totals, 50)), 3),
                   "p99_s": round(float(np.percentile(totals, 99)), 3), "max_s": round(float(totals.max()), 3),
                   "mean_s": round(float(totals.mean()), 3), "stages": stages, "source": source,
                   "normal_points": args.normal_points, "factor": args.factor}
        print(f"alert latency over {len(runs)} runs: p50 {figures['p50_s']:.3f} s, p99 {figures['p99_s']:.3f} s, "
              f"max {figures['max_s']:.3f} s")
        print(json.dumps(figures), flush=True)
        stacked.ok = True
    receiver.shutdown()


if __name__ == "__main__":
    main()
