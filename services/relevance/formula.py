"""The original FLASHES relevance formula: flux, trend and hardness-change terms, clipped to 0..1.

    relevance = clip(0.4·flux + 0.4·trend + 0.2·hardness, 0, 1)

- flux term: signal-to-noise of the new point, (S/N − 3)/(20 − 3) clipped to 0..1
  (below 3σ contributes nothing, 20σ or more contributes fully);
- trend term: significance z of the rising slope of a weighted straight-line fit over the last
  5 points (the new one included, at least 3 needed), z/10 clipped to 0..1;
- hardness term: change of the colour (hardness ratio, or MAXI 4-10/2-4 keV) of the new point
  from the mean of the previous ones, in σ, z/5 clipped to 0..1.
A term whose inputs are missing, non-finite or have no positive error is 0.

The relevance service reports the flux and trend terms beside its model (services/relevance/model.py);
`flashes evaluate` runs the whole formula as a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WEIGHTS = {"flux": 0.4, "trend": 0.4, "hardness": 0.2}
HISTORY = 5


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x)) if math.isfinite(x) else 0.0


def _clip01_all(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), np.minimum(1.0, np.maximum(0.0, x)), 0.0)


def _usable(value: float, error: float) -> bool:
    return math.isfinite(value) and math.isfinite(error) and error > 0


def _weighable(value: float, error: float) -> bool:
    """Usable with a weight 1/error² (an error below 1e-162 squares to 0)."""
    return _usable(value, error) and error * error > 0


def flux_terms(value: np.ndarray, error: np.ndarray) -> np.ndarray:
    """The flux term of every point."""
    usable = np.isfinite(value) & np.isfinite(error) & (error > 0)
    with np.errstate(all="ignore"):
        return np.where(usable, _clip01_all((value / error - 3.0) / 17.0), 0.0)


def _sum(columns: np.ndarray) -> np.ndarray:
    """Row sums added left to right (as a Python sum over the window would), not numpy's pairwise order."""
    total = np.zeros(len(columns))
    for k in range(columns.shape[1]):
        total = total + columns[:, k]
    return total


def trend_terms(mjd: np.ndarray, value: np.ndarray, error: np.ndarray, start: int = 0) -> np.ndarray:
    """The trend term of every point from index `start` on, each over itself and up to HISTORY − 1 points before it."""
    pad = HISTORY - 1
    t, y = (np.concatenate([np.zeros(pad), np.asarray(a, dtype=np.float64)]) for a in (mjd, value))
    e = np.concatenate([np.full(pad, np.nan), np.asarray(error, dtype=np.float64)])
    with np.errstate(all="ignore"):
        ok = np.isfinite(y) & np.isfinite(e) & (e > 0) & (e * e > 0)
        rows = np.arange(start, len(t) - pad)[:, None] + np.arange(HISTORY)[None, :]
        good = ok[rows]
        w = np.where(good, 1.0 / (e[rows] * e[rows]), 0.0)
        t, y = np.where(good, t[rows], 0.0), np.where(good, y[rows], 0.0)
        t_mean = _sum(w * t) / _sum(w)
        d = t - t_mean[:, None]
        sxx = _sum(w * (d * d))
        slope = _sum(w * d * y) / sxx
        trend = _clip01_all(slope * np.sqrt(sxx) / 10.0)  # slope / σ_slope, σ_slope = 1/sqrt(Σw (t-t̄)²)
    return np.where((good.sum(axis=1) >= 3) & (sxx > 0), trend, 0.0)


def hardness_term(previous: list[tuple[float, float]], colour: tuple[float, float] | None) -> float:
    prev = [(c, e) for c, e in previous if _weighable(c, e)]
    if colour is None or not prev or not _usable(*colour):
        return 0.0
    sw = sum(1.0 / (e * e) for _, e in prev)
    mean = sum(c / (e * e) for c, e in prev) / sw
    sigma = math.sqrt(colour[1] ** 2 + 1.0 / sw)
    return _clip01(abs(colour[0] - mean) / sigma / 5.0) if sigma > 0 else 0.0


@dataclass
class Recent:
    """The last HISTORY points of one series: what its trend term needs (its model's state stores them, model.py)."""

    mjd: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)


def scores(
    mjd: np.ndarray, value: np.ndarray, error: np.ndarray, colour: np.ndarray, colour_error: np.ndarray
) -> np.ndarray:
    """The whole formula over one series in time order (`flashes evaluate`'s baseline); colour NaN where none."""
    hardness: list[float] = []
    window: list[tuple[float, float] | None] = []  # the colours of the last HISTORY points, None where a point has none
    for c, ce in zip(colour.tolist(), colour_error.tolist()):
        now = None if math.isnan(c) else (c, ce)
        hardness.append(hardness_term([x for x in window if x is not None], now))
        window.append(now)
        del window[:-HISTORY]
    terms = {
        "flux": flux_terms(value, error),
        "trend": trend_terms(mjd, value, error),
        "hardness": np.array(hardness, dtype=np.float64),
    }
    return _clip01_all(sum((WEIGHTS[k] * v for k, v in terms.items()), np.zeros(len(value))))
