"""What the relevance scorer reads of a series: the columns of a lightcurve or derived chunk, or of a provider file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

import schemas
from flashes.topics import catalogue_series
from flashes.units import MAIN_BAND, MCRAB_PER_UNIT
from services.relevance.model import BAND_ORDER


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
    bands: tuple[np.ndarray, np.ndarray] | None = None  # MAXI: each point's bands in mCrab (maxi_bands)


def ratio(num: np.ndarray, num_err: np.ndarray, den: np.ndarray, den_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """num/den with propagated error; NaN where either is not positive."""
    defined = (num > 0) & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(defined, num / den, np.nan)
        return r, np.where(defined, r * np.hypot(num_err / num, den_err / den), np.nan)


def maxi_bands(flux: Mapping[str, np.ndarray], error: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The flux and error of each point's MAXI bands (BAND_ORDER) in mCrab, shape (points, bands); NaN for a
    band a point lacks (the model then combines the others)."""
    n = len(next(iter(flux.values())))
    nothing = np.full(n, np.nan)
    factors = [MCRAB_PER_UNIT[("maxi", band)] for band in BAND_ORDER]
    return (
        np.column_stack([flux.get(b, nothing) * k for b, k in zip(BAND_ORDER, factors)]),
        np.column_stack([error.get(b, nothing) * k for b, k in zip(BAND_ORDER, factors)]),
    )


def band_colour(bands: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """MAXI 4-10 keV over 2-4 keV, both in mCrab (`maxi_bands`' columns): rises in hard states, falls in soft ones."""
    (flux, error), hard, soft = bands, BAND_ORDER.index("4-10"), BAND_ORDER.index("2-4")
    return ratio(flux[:, hard], error[:, hard], flux[:, soft], error[:, soft])


def of_instrument(
    instrument: str,
    source_id: str,
    time: np.ndarray,
    mjd: np.ndarray,
    flux: Mapping[str, np.ndarray],
    error: Mapping[str, np.ndarray],
) -> SeriesColumns | None:
    """An instrument's points (flux and error per band, provider units) as the scorer reads them: the main band,
    and for MAXI its bands in mCrab and their colour; None without the main band. A chunk on the topic, a provider
    file (`flashes evaluate`) and the stored history are read by this one function."""
    band = MAIN_BAND[instrument]
    if band not in flux:
        return None
    bands = None
    if instrument == "maxi":
        bands = maxi_bands(flux, error)
        colour, colour_error = band_colour(bands)
    else:
        colour = colour_error = np.full(len(mjd), np.nan)
    return SeriesColumns(
        catalogue_series(instrument, source_id),
        source_id,
        instrument,
        time,
        mjd,
        flux[band],
        error[band],
        colour,
        colour_error,
        bands,
    )


def from_lightcurve(chunk: schemas.LightcurveChunk) -> SeriesColumns | None:
    return of_instrument(
        chunk.instrument,
        chunk.source_id,
        np.array(chunk.time),
        np.array(chunk.mjd),
        {b: np.array(v) for b, v in chunk.flux.items()},
        {b: np.array(v) for b, v in chunk.error.items()},
    )


def of_derived(
    kind: str, source_id: str, time: np.ndarray, mjd: np.ndarray, value: np.ndarray, error: np.ndarray
) -> SeriesColumns:
    """A derived series' points as the scorer reads them: the hardness ratio is its own colour too. A chunk on the
    topic and the stored history (services/relevance/history.py) are read by this one function."""
    nan = np.full(len(mjd), np.nan)
    colour, colour_error = (value, error) if kind == "hardness" else (nan, nan)
    return SeriesColumns(
        catalogue_series(kind, source_id), source_id, kind, time, mjd, value, error, colour, colour_error
    )


def from_derived(chunk: schemas.DerivedChunk) -> SeriesColumns:
    return of_derived(
        chunk.kind,
        chunk.source_id,
        np.array(chunk.time),
        np.array(chunk.mjd),
        np.array(chunk.value),
        np.array(chunk.error),
    )
