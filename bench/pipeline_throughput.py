"""End-to-end throughput: fetch-parse -> Kafka -> derive -> relevance -> QuestDB, against direct ILP.

Makes a provider mirror of K catalogue sources that have both MAXI and BAT (each gets one of the
real sample MAXI files and its synthetic BAT partner), starts Kafka, QuestDB and the sink, derive
and relevance services on free loopback ports, fetches everything, and times until every point
is scored and stored and every consumer group has caught up. Then parses the same files and
writes the same lightcurve rows straight into QuestDB over ILP/HTTP, for the ratio.

    .venv/bin/python bench/pipeline_throughput.py [--sources K]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from questdb import TimestampMicros

from flashes import catalogue, infra, mirror, observe, questdb, stack
from flashes.settings import PROJECT_ROOT, Settings
from services.fetcher.parsers import parse
from services.fetcher.publish import encode_points
from services.fetcher.service import fetch_once
from services.sink.rows import lightcurve_rows

SAMPLE = PROJECT_ROOT / "data" / "mirror"


def sample_pairs(settings: Settings) -> list[tuple[Path, Path]]:
    """(MAXI file, BAT file) of every sample source that has both."""
    pairs = []
    for rec in catalogue.load(settings):
        if rec["maxi"] and rec["swift"]:
            maxi_id = rec["maxi"]["provider_id"]
            maxi = SAMPLE / "maxi" / "star_data" / maxi_id / f"{maxi_id}_g_lc_1day_all.dat"
            bat = list(SAMPLE.glob(f"swift/results/transients/**/{rec['swift']['provider_id']}.lc.txt"))
            if maxi.exists() and bat:
                pairs.append((maxi, bat[0]))
    return pairs


def make_mirror(settings: Settings, served: Path, k: int) -> list[tuple[str, str, Path]]:
    """(source id, instrument, file) for K sources, sample files copied under their provider paths."""
    pairs = sample_pairs(settings)
    targets = [r for r in catalogue.load(settings) if r["maxi"] and r["swift"]][:k]
    files = []
    for i, rec in enumerate(targets):
        for inst, src in zip(("maxi", "swift"), pairs[i % len(pairs)]):
            dest = served / "mirror" / inst / catalogue.path_below_base(settings, inst, rec[inst]["data_url"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            files.append((rec["_id"], inst, dest))
    return files


def direct_ilp(settings: Settings, files: list[tuple[str, str, Path]]) -> tuple[int, float]:
    """Parse the files and write the lightcurve rows straight into a copy of the table; (points, seconds)."""
    questdb.query(settings, "CREATE TABLE IF NOT EXISTS bench_direct (LIKE lightcurve)")
    start = time.perf_counter()
    n = 0
    now = datetime.now(timezone.utc)
    with questdb.sender(settings) as sender:
        for source_id, inst, path in files:
            parsed = parse(inst, path.name, path.read_bytes())
            for value in encode_points(parsed, np.ones(len(parsed), dtype=bool), source_id, inst, str(path), now):
                n += 1
                for _, symbols, columns, ts in lightcurve_rows(json.loads(value)):
                    sender.row("bench_direct", symbols=symbols, columns=columns, at=TimestampMicros(ts))
            sender.flush()
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=12)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="flashes-bench-"))
    os.environ.update(infra.isolated_env(var))
    server, base = mirror.serve(var)
    os.environ.update(mirror.provider_env(f"{base}/mirror"))
    settings = Settings()
    infra.start(settings)
    processes = {}
    try:
        questdb.ensure_tables(settings)
        files = make_mirror(settings, var, args.sources)
        sources = sorted({s for s, _, _ in files})
        processes = stack.spawn(("sink", "derive", "relevance"), {}, var / "logs")
        time.sleep(8)  # let the workers join their groups before the clock starts
        start = time.perf_counter()
        report = asyncio.run(fetch_once(settings, sources, ["maxi", "swift"]))
        observe.wait_until(lambda: sum(observe.series_counts(settings, "relevance", "WHERE kind IN ('maxi', 'swift')")
                                       .values()) == report.points, "every point scored and stored", 1800)
        observe.wait_drained(settings, ("flashes-sink", "flashes-derive", "flashes-relevance"))
        elapsed = time.perf_counter() - start - 8  # wait_drained's two settling pauses are not work
        derived = sum(observe.series_counts(settings, "derived").values())
        direct_points, direct_s = direct_ilp(settings, files)
        e2e, direct = report.points / elapsed, direct_points / direct_s
        print(f"sources: {len(sources)}  lightcurve points: {report.points}  derived points: {derived}")
        print(f"end to end (fetch-parse -> Kafka -> derive -> relevance -> QuestDB): {elapsed:.1f} s, "
              f"{e2e:,.0f} points/s")
        print(f"parse + ILP straight into QuestDB: {direct_s:.1f} s, {direct:,.0f} points/s")
        print(f"ratio end-to-end / direct: {e2e / direct:.3f}")
    finally:
        stack.terminate(processes)
        server.shutdown()
        infra.stop(settings)
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
