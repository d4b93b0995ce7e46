"""The three methods `flashes evaluate` compares, each on one series in time order (no look-ahead).

- `model`: the relevance service's scorer (`SeriesModel.score_chunk`, services/relevance/model.py),
  over the whole file as one chunk; its alerts are the crossings the alerts service sees in one
  series (flashes/trigger.py); the service's episodes and fusion across a source's instruments
  (services/alerts/episodes.py) are not applied: each provider file is scored on its own;
- `formula`: the original FLASHES formula, an alert when it crosses the threshold from below;
- `median_5sigma`: an alert when the flux crosses 5σ above the median of the previous 30 points,
  σ combining the point's error and the scatter (MAD) of those points.

Every setting chosen from data is a level per method, stricter as it grows: the model's
`Params.alert_sigma` (MODEL_LEVELS), the formula threshold and the median σ level (BASELINE_LEVELS).
Nothing a series' model learns depends on alert_sigma, only the calibration of its evidence
(`model.calibrated`), so a series is scored once and its evidence calibrated per level.
"""

from __future__ import annotations

import numpy as np

from flashes import trigger
from flashes.parsers import ParsedLightcurve
from flashes.settings import Settings
from flashes.timeconv import mjd_to_unix_us
from flashes.units import mcrab_factor
from services.relevance import formula
from services.relevance.model import PARAMS, ChunkScores, Params, SeriesModel, calibrated
from services.relevance.series import SeriesColumns, of_instrument

METHODS = ("model", "formula", "median_5sigma")
MEDIAN_HISTORY, MEDIAN_SIGMA = 30, 5.0
# How strict each baseline can be made: formula threshold, median sigma.
BASELINE_LEVELS = {
    "formula": np.round(np.arange(0.70, 1.0001, 0.01), 2),
    "median_5sigma": np.round(5.0 * 1.1 ** np.arange(60), 1),
}
# How strict the model can be made: the evidence (σ) at which relevance reaches the alert threshold.
MODEL_LEVELS = np.round(np.arange(4.0, 14.0001, 0.25), 2)


def file_series(parsed: ParsedLightcurve, instrument: str, source_id: str) -> SeriesColumns:
    """The points of one provider file as the relevance service reads them, in time order."""
    flux, error = ({band: column[i] for band, column in parsed.bands.items()} for i in (0, 1))
    columns = of_instrument(instrument, source_id, mjd_to_unix_us(parsed.mjd), parsed.mjd, flux, error)
    if columns is None:
        raise ValueError(f"{instrument} file of {source_id} without its main band")
    return columns


def model_scores(series: SeriesColumns, params: Params = PARAMS) -> ChunkScores:
    return SeriesModel(params=params).score_chunk(
        series.kind, series.mjd, series.value, series.error, series.colour, series.colour_error, bands=series.bands
    )


def model_alerts(
    series: SeriesColumns, threshold: float, params: Params = PARAMS, scores: ChunkScores | None = None
) -> list[float]:
    """Alert times of the model on a series, its scores calibrated at `params.alert_sigma`: from `scores` if given
    (the same series scored with any alert_sigma: the evidence does not depend on it), else scored here."""
    scores = scores or model_scores(series, params)
    models, hardnesses, relevances = calibrated(
        scores.evidence["model"].tolist(), scores.evidence["hardness"].tolist(), params
    )
    terms = {
        **{name: column.tolist() for name, column in scores.terms.items()},
        "model": models,
        "hardness": hardnesses,
    }
    alerts, previous = [], None
    for i, (mjd, relevance) in enumerate(zip(series.mjd[scores.keep].tolist(), relevances)):
        current = trigger.snapshot(relevance, {name: column[i] for name, column in terms.items()})
        if trigger.reasons(previous, current, threshold):
            alerts.append(mjd)
        previous = current
    return alerts


def flag_latency(
    params: Params,
    flux_mcrab: np.ndarray,
    start: int,
    error_mcrab: float = 5.0,
    threshold: float = Settings.model_fields["relevance_threshold"].default,
) -> int | None:
    """Days from day `start` to the first relevance at or above `threshold` of a synthetic daily MAXI series
    given in mCrab (None: never): how soon the model flags a lightcurve (tests and bench/slow_rise.py)."""
    n = len(flux_mcrab)
    factor = mcrab_factor("maxi")
    scores = SeriesModel(params).score_chunk(
        "maxi",
        55000.5 + np.arange(n),
        flux_mcrab / factor,
        np.full(n, error_mcrab / factor),
        np.full(n, np.nan),
        np.full(n, np.nan),
    )
    above = np.flatnonzero((np.arange(n) >= start) & (scores.relevance >= threshold))
    return int(above[0]) - start if len(above) else None


def formula_scores(series: SeriesColumns) -> np.ndarray:
    return formula.scores(series.mjd, series.value, series.error, series.colour, series.colour_error)


def median_sigma_scores(series: SeriesColumns) -> np.ndarray:
    """(flux − median of the previous MEDIAN_HISTORY points) / σ, σ² = error² + (1.4826·MAD of those points)².

    The scatter term makes it a fair baseline for bright variable sources, whose error bars are
    far smaller than their day-to-day changes. −inf before MEDIAN_HISTORY points or without σ.
    """
    flux, error = series.value, series.error
    out = np.full(len(flux), -np.inf)
    if len(flux) > MEDIAN_HISTORY:
        windows = np.lib.stride_tricks.sliding_window_view(flux[:-1], MEDIAN_HISTORY)
        median = np.median(windows, axis=1)
        mad = 1.4826 * np.median(np.abs(windows - median[:, None]), axis=1)
        sigma = np.sqrt(error[MEDIAN_HISTORY:] ** 2 + mad**2)
        good = np.isfinite(sigma) & (sigma > 0)
        out[MEDIAN_HISTORY:][good] = (flux[MEDIAN_HISTORY:][good] - median[good]) / sigma[good]
    return out


def crossings(mjd: np.ndarray, score: np.ndarray, level: float) -> list[float]:
    """Times where score reaches level after being below it (the first point counts if it does)."""
    above = score >= level
    rising = above & ~np.concatenate(([False], above[:-1]))
    return mjd[rising].tolist()


def default_levels(threshold: float) -> dict[str, float]:
    """The levels in service, which give the in-sample figures."""
    return {"model": float(PARAMS.alert_sigma), "formula": float(threshold), "median_5sigma": MEDIAN_SIGMA}


def level_grids(threshold: float) -> dict[str, list[float]]:
    """Each method's levels, least strict first, the one in service included."""
    grids = {"model": MODEL_LEVELS, **BASELINE_LEVELS}
    defaults = default_levels(threshold)
    return {name: sorted({round(float(x), 6) for x in grids[name]} | {defaults[name]}) for name in METHODS}
