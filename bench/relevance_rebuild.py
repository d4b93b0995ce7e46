"""Rebuild speed of a relevance model from QuestDB: points per second for whole-history MAXI series.

Stores every real MAXI file (data/mirror, or --mirror DIR laid out like ../shared/data/lightcurves)
in a private QuestDB with the sink's own code, then times, per series, what a relevance worker does
after an upgrade (services/relevance/app.py `rebuild`): read the stored history in pages over
HTTP /exec (services/relevance/history.py), rebuild the model's columns, replay them through a
fresh model and build the relevance chunks. Wall time, since QuestDB is another process; the
read alone is timed too. Each rebuilt model is checked to equal the one that scored the file live.

    .venv/bin/python bench/relevance_rebuild.py [--mirror ../shared/data/lightcurves] [--repeat 3]

The last line of output is one JSON object (points_per_s, read_points_per_s, largest series, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from devtools.stack import private_stack
from evaluation.run import find_series
from flashes import questdb
from flashes.parsers import parse
from flashes.settings import PROJECT_ROOT, Settings
from flashes.timeconv import datetime_to_mjd
from services.fetcher.publish import make_chunks
from services.relevance.app import columns_of, rebuild, score_columns
from services.relevance.history import History
from services.relevance.model import MODEL_VERSION, SeriesModel
from services.sink.rows import lightcurve_frame
from services.sink.service import write_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", default=str(PROJECT_ROOT / "data" / "mirror"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fetched = datetime.now(UTC)
    now = datetime_to_mjd(fetched)
    files = [
        (source_id, parse(inst, path.name, path.read_bytes()))
        for source_id, inst, path in find_series(Settings.from_env(os.environ), Path(args.mirror))
        if inst == "maxi"
    ]
    if not files:
        raise SystemExit(f"no MAXI files under {args.mirror}/maxi")
    with private_stack(servers=("questdb",)) as stack:
        settings = stack.settings
        lives = {}
        for source_id, parsed in files:
            chunks = make_chunks(parsed, np.ones(len(parsed), dtype=bool), source_id, "maxi", "file://bench", fetched)
            with questdb.sender(settings) as sender:
                write_frames(sender, {"lightcurve": [lightcurve_frame(c) for c in chunks]})
            model = SeriesModel()
            for chunk in chunks:
                score_columns(model, columns_of(chunk), now)
            lives[source_id] = (len(parsed), model.to_state())
        while not questdb.wal_applied(settings):
            time.sleep(0.2)
        history = History(settings, timeout_s=60.0)
        list(history.pages("maxi", files[0][0], until_mjd=now))  # the tables checked once, as a worker does
        rows = []
        for source_id, (n, state) in lives.items():
            reads, rebuilds = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                read = sum(len(page.mjd) for page in history.pages("maxi", source_id, until_mjd=now))
                t1 = time.perf_counter()
                done = rebuild(history, "maxi", source_id, now, until=now)
                t2 = time.perf_counter()
                assert read == done.points == n and done.model.to_state() == state, f"{source_id}: rebuilt differently"
                reads.append(t1 - t0)
                rebuilds.append(t2 - t1)
            rows.append(
                {
                    "series": f"maxi_{source_id}",
                    "points": n,
                    "rebuild_s": round(min(rebuilds), 4),
                    "read_s": round(min(reads), 4),
                    "rebuild_s_median": round(statistics.median(rebuilds), 4),
                }
            )
    points = sum(r["points"] for r in rows)
    largest = max(rows, key=lambda r: r["points"])
    result = {
        "model_version": MODEL_VERSION,
        "series": len(rows),
        "points": points,
        "points_per_s": round(points / sum(r["rebuild_s"] for r in rows)),
        "read_points_per_s": round(points / sum(r["read_s"] for r in rows)),
        "largest_series": largest["series"],
        "largest_points": largest["points"],
        "largest_rebuild_s": largest["rebuild_s"],
        "per_series": rows,
    }
    for r in rows:
        print(
            f"{r['series']:>24}: {r['points']:5d} points, rebuilt in {r['rebuild_s'] * 1e3:6.1f} ms "
            f"(read {r['read_s'] * 1e3:5.1f} ms; median rebuild {r['rebuild_s_median'] * 1e3:.1f} ms), model identical"
        )
    print(
        f"{len(rows)} whole-history MAXI series, {points} points, best of {args.repeat} (wall time): "
        f"{result['points_per_s']:,} points/s rebuilt from QuestDB "
        f"(read alone {result['read_points_per_s']:,} points/s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
