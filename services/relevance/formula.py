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

WEIGHTS = {"flux": 0.4, "trend": 0.4, "hardness": 0.2}
HISTORY = 5


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x)) if math.isfinite(x) else 0.0


def _usable(value: float, error: float) -> bool:
    return math.isfinite(value) and math.isfinite(error) and error > 0


def _weighable(value: float, error: float) -> bool:
    """Usable with a weight 1/error² (an error below 1e-162 squares to 0)."""
    return _usable(value, error) and error * error > 0


def flux_term(value: float, error: float) -> float:
    return _clip01((value / error - 3.0) / 17.0) if _usable(value, error) else 0.0


def trend_term(mjd: list[float], value: list[float], error: list[float]) -> float:
    pts = [(t, y, 1.0 / (e * e)) for t, y, e in zip(mjd, value, error) if _weighable(y, e)]
    if len(pts) < 3:
        return 0.0
    sw = sum(w for _, _, w in pts)
    t_mean = sum(w * t for t, _, w in pts) / sw
    sxx = sum(w * (t - t_mean) ** 2 for t, _, w in pts)
    if sxx <= 0:
        return 0.0
    slope = sum(w * (t - t_mean) * y for t, y, w in pts) / sxx
    return _clip01(slope * math.sqrt(sxx) / 10.0)  # slope / σ_slope, σ_slope = 1/sqrt(Σw (t-t̄)²)


def hardness_term(previous: list[tuple[float, float]], colour: tuple[float, float] | None) -> float:
    prev = [(c, e) for c, e in previous if _weighable(c, e)]
    if colour is None or not prev or not _usable(*colour):
        return 0.0
    sw = sum(1.0 / (e * e) for _, e in prev)
    mean = sum(c / (e * e) for c, e in prev) / sw
    sigma = math.sqrt(colour[1] ** 2 + 1.0 / sw)
    return _clip01(abs(colour[0] - mean) / sigma / 5.0) if sigma > 0 else 0.0


@dataclass
class SeriesState:
    """The last points of one series: all the formula needs (its model's state stores them, model.py)."""

    mjd: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    colour: list[tuple[float, float] | None] = field(default_factory=list)

    def push(self, mjd: float, value: float, error: float, colour: tuple[float, float] | None) -> None:
        for seq, item in ((self.mjd, mjd), (self.value, value), (self.error, error), (self.colour, colour)):
            seq.append(item)
            del seq[:-HISTORY]


def score(state: SeriesState, mjd: float, value: float, error: float,
          colour: tuple[float, float] | None) -> tuple[float, dict[str, float]]:
    """Relevance of a new point given the series state; pushes the point onto the state."""
    previous_colours = [c for c in state.colour if c is not None]
    state.push(mjd, value, error, colour)
    terms = {
        "flux": flux_term(value, error),
        "trend": trend_term(state.mjd, state.value, state.error),
        "hardness": hardness_term(previous_colours, colour),
    }
    return _clip01(sum(WEIGHTS[k] * v for k, v in terms.items())), terms
