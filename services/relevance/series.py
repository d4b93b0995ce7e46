"""What the relevance scorer reads from a lightcurve or derived message: one series point."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import schemas
from flashes.topics import catalogue_series
from flashes.units import MAIN_BAND, MCRAB_PER_UNIT


@dataclass(frozen=True)
class SeriesPoint:
    series: str
    source_id: str
    kind: str
    time: datetime
    mjd: float
    value: float
    error: float
    colour: tuple[float, float] | None  # (ratio, error), for the hardness-change term


def ratio(num: tuple[float, float], den: tuple[float, float]) -> tuple[float, float] | None:
    """num/den with propagated error; None where either flux is not positive."""
    (fn, en), (fd, ed) = num, den
    if not (fn > 0 and fd > 0):
        return None
    r = fn / fd
    return r, r * math.hypot(en / fn, ed / fd)


def maxi_colour(bands: dict[str, schemas.Measurement]) -> tuple[float, float] | None:
    """MAXI 4-10 keV over 2-4 keV, both in mCrab: rises in hard states, falls in soft ones."""
    if "4-10" not in bands or "2-4" not in bands:
        return None
    hard, soft = bands["4-10"], bands["2-4"]
    a, b = MCRAB_PER_UNIT[("maxi", "4-10")], MCRAB_PER_UNIT[("maxi", "2-4")]
    return ratio((hard.flux * a, hard.error * a), (soft.flux * b, soft.error * b))


def from_lightcurve(p: schemas.LightcurvePoint) -> SeriesPoint | None:
    main = p.bands.get(MAIN_BAND[p.instrument])
    if main is None:
        return None
    colour = maxi_colour(p.bands) if p.instrument == "maxi" else None
    return SeriesPoint(catalogue_series(p.instrument, p.source_id), p.source_id, p.instrument, p.time, p.mjd,
                       main.flux, main.error, colour)


def from_derived(d: schemas.DerivedPoint) -> SeriesPoint:
    colour = (d.value, d.error) if d.kind == "hardness" else None
    return SeriesPoint(catalogue_series(d.kind, d.source_id), d.source_id, d.kind, d.time, d.mjd,
                       d.value, d.error, colour)
