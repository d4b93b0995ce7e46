"""The ideal detector of one outburst shape, run on the real data: what the data's own noise allows.

A matched filter that is told the outburst's rise time and spectrum, and so is no detector anyone can
run: it knows what it is looking for. It fits the spectrum's band template to the three MAXI bands of
each day (weighted least squares on their own errors: the 2-20 keV mCrab of that spectrum), takes the
residual from the median of the previous LEVEL_POINTS days, divides it by the day's error times the
scatter of the last SCATTER_POINTS normalised residuals beyond their error bars (1.4826 MAD, at least
1), and at every day scans every onset (every ONSET_STEP_D days, up to the rise plus REACH_D days
back) with the outburst's exact day-bin profile: z = Σ s·r/σ² / √(Σ s²/σ²), the best of them. Under
Gaussian errors that is the likelihood-ratio test of that outburst against none; on real data its level
is set where the untouched quiet stretches give what the model is asked to give (`injection.py`). The
peak at which it finds half the outbursts within 2 days is then the data's limit at that quietness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flashes.parsers import ParsedLightcurve

LEVEL_POINTS = 30  # the running median the residuals are taken from (as the model's and the baseline's)
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


def scores(lc: ParsedLightcurve, oracle: Oracle, factor: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(mjd, z) of every day with every band; z is −inf until LEVEL_POINTS days are known."""
    mjd, flux, error = amplitude(lc, oracle.template, factor)
    if not len(mjd):
        return mjd, flux
    residual = flux - pd.Series(flux).rolling(LEVEL_POINTS).median().shift(1).to_numpy()
    normalised = pd.Series(residual / error)
    scatter = 1.4826 * normalised.abs().rolling(SCATTER_POINTS, min_periods=LEVEL_POINTS).median().shift(1)
    sigma = error * np.maximum(scatter.fillna(1.0).to_numpy(), 1.0)
    known = np.isfinite(residual)
    days = np.floor(mjd).astype(np.int64) - int(np.floor(mjd[0]))
    y, w = np.zeros(days[-1] + 1), np.zeros(days[-1] + 1)
    y[days[known]] = residual[known] / sigma[known] ** 2
    w[days[known]] = 1.0 / sigma[known] ** 2
    best = np.full(len(y), -np.inf)
    for shape in oracle.shapes.T:
        num = np.convolve(y, shape)[: len(y)]
        den = np.convolve(w, shape**2)[: len(y)]
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.fmax(best, np.where(den > 0, num / np.sqrt(den), -np.inf))
    z = best[days]
    z[~known] = -np.inf
    return mjd, z
