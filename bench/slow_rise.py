"""How soon a slow rise out of quiescence is flagged, with and without the rise CUSUM of river-2.

Synthetic daily MAXI points: 5 mCrab quiescence with 5 mCrab errors for 1,000 days, then a linear
rise of `slope` mCrab a day; per slope and noise draw, the days from the start of the rise to the
first relevance ≥ 0.7 (None: not within 200 days). "without" sets quiescent_snr below 0, which
turns the CUSUM off and leaves river-1's point evidence.

    .venv/bin/python bench/slow_rise.py [--draws 10]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from evaluation.methods import flag_latency
from services.relevance.model import PARAMS, Params

SLOPES = (1.0, 2.0, 3.0, 5.0)


def latency(params: Params, slope: float, seed: int, start: int = 1000, after: int = 200) -> int | None:
    rng = np.random.default_rng(seed)
    t = np.arange(start + after)
    flux = 5.0 + np.where(t >= start, (t - start) * slope, 0.0) + rng.normal(0.0, 5.0, len(t))
    return flag_latency(params, flux, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    figures = {}
    for name, params in (("with_cusum", PARAMS), ("without", replace(PARAMS, quiescent_snr=-1.0))):
        figures[name] = {
            f"{slope:g}_mcrab_per_day": [latency(params, slope, seed) for seed in range(args.draws)] for slope in SLOPES
        }
        for slope, days in figures[name].items():
            print(f"{name:<11} {slope:<16} latency in days: {days}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
