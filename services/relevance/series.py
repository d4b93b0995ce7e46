"""What the relevance scorer reads from a lightcurve or derived chunk: one series' columns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import schemas
from flashes.topics import catalogue_series
from flashes.units import MAIN_BAND, MCRAB_PER_UNIT


@dataclass(frozen=True)
class SeriesColumns:
    """The points of one series to score, in time order; colour is NaN where a point has none."""

    series: str
    source_id: str
    kind: str
    time: np.ndarray
    mjd: np.ndarray
    value: np.ndarray
    error: np.ndarray
    colour: np.ndarray
    colour_error: np.ndarray


def ratio(num: np.ndarray, num_err: np.ndarray, den: np.ndarray, den_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """num/den with propagated error; NaN where either is not positive."""
    defined = (num > 0) & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(defined, num / den, np.nan)
        return r, np.where(defined, r * np.hypot(num_err / num, den_err / den), np.nan)


def maxi_colour(flux: dict[str, np.ndarray], error: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """MAXI 4-10 keV over 2-4 keV, both in mCrab: rises in hard states, falls in soft ones."""
    n = len(next(iter(flux.values())))
    if "4-10" not in flux or "2-4" not in flux:
        return np.full(n, np.nan), np.full(n, np.nan)
    a, b = MCRAB_PER_UNIT[("maxi", "4-10")], MCRAB_PER_UNIT[("maxi", "2-4")]
    return ratio(flux["4-10"] * a, error["4-10"] * a, flux["2-4"] * b, error["2-4"] * b)


def from_lightcurve(chunk: schemas.LightcurveChunk) -> SeriesColumns | None:
    band = MAIN_BAND[chunk.instrument]
    if band not in chunk.flux:
        return None
    if chunk.instrument == "maxi":
        colour, colour_error = maxi_colour({b: np.array(v) for b, v in chunk.flux.items()},
                                           {b: np.array(v) for b, v in chunk.error.items()})
    else:
        colour = colour_error = np.full(chunk.count, np.nan)
    return SeriesColumns(catalogue_series(chunk.instrument, chunk.source_id), chunk.source_id, chunk.instrument,
                         np.array(chunk.time), np.array(chunk.mjd), np.array(chunk.flux[band]),
                         np.array(chunk.error[band]), colour, colour_error)


def from_derived(chunk: schemas.DerivedChunk) -> SeriesColumns:
    value, error = np.array(chunk.value), np.array(chunk.error)
    nan = np.full(chunk.count, np.nan)
    colour, colour_error = (value, error) if chunk.kind == "hardness" else (nan, nan)
    return SeriesColumns(catalogue_series(chunk.kind, chunk.source_id), chunk.source_id, chunk.kind,
                         np.array(chunk.time), np.array(chunk.mjd), value, error, colour, colour_error)
