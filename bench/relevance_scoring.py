"""Scoring speed of the relevance model on one core: points per second through `SeriesModel.score`.

Scores every point of the real MAXI files (bundled in data/mirror, or --mirror DIR laid out
like ../shared/data/lightcurves) in time order, each series with its own model, in this one
process: parsing is done first and not timed. Also reports the checkpoint size per series,
and the speed of the original formula on the same points for comparison.

    .venv/bin/python bench/relevance_scoring.py [--mirror ../shared/data/lightcurves] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from flashes.settings import PROJECT_ROOT, Settings
from services.fetcher.parsers import parse
from services.relevance import formula
from services.relevance.evaluate import find_series, series_points
from services.relevance.model import SeriesModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", default=str(PROJECT_ROOT / "data" / "mirror"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    series = [series_points(parse(inst, path.name, path.read_bytes()), inst, sid)
              for sid, inst, path in find_series(Settings(), Path(args.mirror))]
    n = sum(len(points) for points in series)
    model_rates, formula_rates, sizes = [], [], []
    for _ in range(args.repeat):
        start = time.process_time()
        models = []
        for points in series:
            model = SeriesModel()
            for p in points:
                model.score(p)
            models.append(model)
        model_rates.append(n / (time.process_time() - start))
        sizes = [len(m.to_text()) for m in models]
        start = time.process_time()
        for points in series:
            state = formula.SeriesState()
            for p in points:
                formula.score(state, p.mjd, p.value, p.error, p.colour)
        formula_rates.append(n / (time.process_time() - start))
    print(f"{len(series)} series, {n} points, best of {args.repeat} (CPU time of this one process)")
    print(f"model river-1:    {max(model_rates):,.0f} points/s per core (median {statistics.median(model_rates):,.0f})")
    print(f"original formula: {max(formula_rates):,.0f} points/s per core")
    print(f"checkpoint per series: median {statistics.median(sizes):,.0f} bytes, max {max(sizes):,} bytes")


if __name__ == "__main__":
    main()
