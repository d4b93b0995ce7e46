"""Scoring speed of the relevance model on one core: points per second through `SeriesModel.score_chunk`.

Scores every real MAXI file (the standard 1-day products bundled in data/mirror, or --mirror DIR
laid out like ../shared/data/lightcurves) in time order, each series with its own model and the
whole file as one chunk with its bands (as the service scores a MAXI series), in this one process:
parsing is done first and not timed. Then, untimed, scores each series again in chunks of
--checkpoint-every points with a checkpoint after each (orjson dumps of `to_state()`'s JSON, loaded
back and restored with `from_state`), checks that this gives the same scores, and reports the
checkpoint sizes (bytes of that JSON) and their cost.
The original formula's speed on the same points is shown for comparison.

    .venv/bin/python bench/relevance_scoring.py [--mirror ../shared/data/lightcurves] [--repeat 3]

The last line of output is one JSON object (points_per_s, state_bytes_max, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import orjson

from evaluation.methods import file_series, formula_scores
from evaluation.run import find_series
from flashes.parsers import parse
from flashes.settings import PROJECT_ROOT, Settings
from services.relevance.model import MODEL_VERSION, SeriesModel
from services.relevance.series import SeriesColumns


def score(series: SeriesColumns, model: SeriesModel, start: int = 0, stop: int | None = None) -> np.ndarray:
    part = slice(start, stop)
    bands = None if series.bands is None else (series.bands[0][part], series.bands[1][part])
    return model.score_chunk(
        series.kind,
        series.mjd[part],
        series.value[part],
        series.error[part],
        series.colour[part],
        series.colour_error[part],
        bands=bands,
    ).relevance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", default=str(PROJECT_ROOT / "data" / "mirror"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    args = parser.parse_args()
    series = [
        file_series(parse(inst, path.name, path.read_bytes()), inst, sid)
        for sid, inst, path in find_series(Settings.from_env(os.environ), Path(args.mirror))
        if inst == "maxi"
    ]
    n = sum(len(s.mjd) for s in series)
    if not n:
        raise SystemExit(f"no MAXI files under {args.mirror}/maxi")
    model_rates, formula_rates = [], []
    for _ in range(args.repeat):
        start = time.process_time()
        whole = [score(s, SeriesModel()) for s in series]
        model_rates.append(n / (time.process_time() - start))
        start = time.process_time()
        for s in series:
            formula_scores(s)
        formula_rates.append(n / (time.process_time() - start))

    sizes, save_s, restore_s, checkpoints = [], 0.0, 0.0, 0
    for s, expected in zip(series, whole):
        model, parts = SeriesModel(), []
        for first in range(0, len(s.mjd), args.checkpoint_every):
            parts.append(score(s, model, first, first + args.checkpoint_every))
            t0 = time.process_time()
            data = orjson.dumps(model.to_state().model_dump(mode="json"))
            t1 = time.process_time()
            model = SeriesModel.from_state(orjson.loads(data))
            save_s, restore_s = save_s + t1 - t0, restore_s + time.process_time() - t1
            sizes.append(len(data))
            checkpoints += 1
        assert np.array_equal(np.concatenate(parts), expected), "a restored model scored differently"

    result = {
        "series": len(series),
        "points": n,
        "points_per_s": round(max(model_rates)),
        "points_per_s_median": round(statistics.median(model_rates)),
        "formula_points_per_s": round(max(formula_rates)),
        "state_bytes_max": max(sizes),
        "state_bytes_median": round(statistics.median(sizes)),
        "checkpoints": checkpoints,
        "state_save_us": round(1e6 * save_s / checkpoints, 1),
        "state_restore_us": round(1e6 * restore_s / checkpoints, 1),
    }
    print(f"{len(series)} MAXI series, {n} points, best of {args.repeat} (CPU time of this one process)")
    print(
        f"model {MODEL_VERSION} (score_chunk): {result['points_per_s']:,} points/s per core "
        f"(median {result['points_per_s_median']:,})"
    )
    print(f"original formula:            {result['formula_points_per_s']:,} points/s per core")
    print(
        f"state (orjson of to_state()'s JSON) at {checkpoints} checkpoints every {args.checkpoint_every} points: "
        f"median {result['state_bytes_median']:,} bytes, max {result['state_bytes_max']:,} bytes; "
        f"save {result['state_save_us']} µs, restore {result['state_restore_us']} µs; restored scores identical"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
