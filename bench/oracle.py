"""A matched filter told the outburst, run on the real data: a reference for what their own noise allows.

It is told the outburst's rise time and spectrum, and so is no detector anyone can run: it knows what it
is looking for. It fits the spectrum's band template to the three MAXI bands of each day (weighted least
squares on their own errors: the 2-20 keV mCrab of that spectrum) and, at every day, tries every onset
(every ONSET_STEP_D days, up to the rise plus REACH_D days back) with the outburst's exact day-bin
profile s: z = Σ s·r/σ² / √(Σ s²/σ²), the best of them. r is the amplitude less the median of the
LEVEL_POINTS points before the onset tried, σ the day's error times the scatter beyond their error bars
of the SCATTER_POINTS normalised residuals before that onset (1.4826 MAD, at least 1): what was known
before the outburst, which raises neither. Under Gaussian errors z is the likelihood-ratio test of that
outburst against none; on real data its level is set where the untouched quiet stretches give what the
model is asked to give (`injection.py`). It is a reference, not a bound: a better model of the noise
could do better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.methods import MEDIAN_HISTORY
from flashes.parsers import ParsedLightcurve

LEVEL_POINTS = MEDIAN_HISTORY  # the points whose median the residuals are taken from, as the median baseline's
SCATTER_POINTS = 60  # normalised residuals whose scatter rescales the errors
ONSET_STEP_D = 0.25
REACH_D = 8.0  # onsets tried this far beyond the rise: an outburst found within 7 days is in reach

Profile = Callable[[np.ndarray, float, float], np.ndarray]  # (day-bin centres, onset, rise) -> mean of the profile


@dataclass(frozen=True)
class Oracle:
    """The matched filter of one outburst: its band template (mCrab per band per 2-20 keV mCrab) and its
    profile's mean in the day bin `lag` days before the newest one, for each onset tried (`shapes[lag, onset]`)."""

    template: dict[str, float]
    shapes: np.ndarray

    @classmethod
    def of(cls, template: dict[str, float], rise_d: float, profile: Profile) -> Oracle:
        """The newest bin is centred on 0, and onset k lies k·ONSET_STEP_D days before its end."""
        offsets = np.arange(0.0, rise_d + REACH_D, ONSET_STEP_D)
        lags = np.arange(int(np.ceil(rise_d + REACH_D)) + 1)
        shapes = np.stack([profile(-lags.astype(float), 0.5 - offset, rise_d) for offset in offsets], axis=1)
        return cls(template, shapes)


def amplitude(lc: ParsedLightcurve, template: dict[str, float], factor: dict[str, float]) -> tuple[np.ndarray, ...]:
    """(mjd, amplitude, error) of the days with every band: the template's weighted least-squares amplitude
    in 2-20 keV mCrab, the band fluxes in mCrab by their `factor`s."""
    num = np.zeros(len(lc.mjd))
    den = np.zeros(len(lc.mjd))
    for band, share in template.items():
        flux, error = (column * factor[band] for column in lc.bands[band])
        with np.errstate(divide="ignore", invalid="ignore"):
            num += share * flux / error**2
            den += share**2 / error**2
    good = np.isfinite(num) & np.isfinite(den) & (den > 0)
    return lc.mjd[good], num[good] / den[good], 1.0 / np.sqrt(den[good])


def _before(days: np.ndarray, per_point: np.ndarray, length: int) -> np.ndarray:
    """Per calendar day 0..length−1, the value of `per_point` at the last point of an earlier day (NaN before)."""
    last = np.searchsorted(days, np.arange(length)) - 1
    return np.where(last >= 0, per_point[np.maximum(last, 0)], np.nan)


def scores(lc: ParsedLightcurve, oracle: Oracle, factor: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(mjd, z) of every day with every band; z is −inf while the tried onsets have no LEVEL_POINTS days before.

    Each tried onset is judged against what was known before its day bin: the median of the LEVEL_POINTS
    points before it, and the scatter of the SCATTER_POINTS normalised residuals before it, so that the
    outburst under test raises neither.
    """
    mjd, flux, error = amplitude(lc, oracle.template, factor)
    if not len(mjd):
        return mjd, flux
    if not (np.allclose(mjd % 1.0, 0.5) and np.all(np.diff(mjd) > 0)):
        raise ValueError("the matched filter takes 1-day bins centred on MJD x.5, one per day")
    level = pd.Series(flux).rolling(LEVEL_POINTS).median()  # up to and including each point
    normalised = (pd.Series(flux) - level.shift(1)) / error
    scatter = (1.4826 * normalised.abs().rolling(SCATTER_POINTS, min_periods=LEVEL_POINTS).median()).fillna(1.0)
    days = (mjd - mjd[0]).round().astype(np.int64)
    length = days[-1] + 1
    base = _before(days, level.to_numpy(), length)
    scale = _before(days, np.maximum(scatter.to_numpy(), 1.0), length)
    y, w = np.zeros(length), np.zeros(length)
    y[days], w[days] = flux / error**2, 1.0 / error**2
    best = np.full(length, -np.inf)
    for k, shape in enumerate(oracle.shapes.T):
        first = max(int(np.ceil(k * ONSET_STEP_D)) - 1, 0)  # lag of the bin that holds this onset
        num, total, den = (np.convolve(x, shape * p)[:length] for x, p in ((y, 1.0), (w, 1.0), (w, shape)))
        at = np.arange(length) - first
        known = at >= 0
        onset_base, onset_scale = np.full(length, np.nan), np.full(length, np.nan)
        onset_base[known], onset_scale[known] = base[at[known]], scale[at[known]]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (num - onset_base * total) / (onset_scale * np.sqrt(den))
        best = np.fmax(best, np.where((den > 0) & np.isfinite(z), z, -np.inf))
    return mjd, best[days]
