"""What the data show at a false alert: the labelled events are not every outburst of their sources.

A false-alert episode (evaluation/metrics.py: outside every labelled event's window) is judged by its
first alert, from the mirror's files alone, in this order:

- "neighbour": a catalogue source within FIELD_DEG (MAXI/GSC's PSF and its wings) that has a file
  brightened from up to NEIGHBOUR_LEAD_D days before the alert on, by more than this source did: its
  light in this source's field;
- "brightening": the source itself brightened: at least SUSTAIN_POINTS of its points within
  SUSTAIN_D days from the alert's day stand SUSTAIN_SIGMA σ above the median of the BASE_D days
  before it (at least BASE_POINTS of them), σ combining the point's error and those days' scatter
  (an outburst or a flare of days that the event list does not name, and more than the source's
  usual wandering);
- "colour": neither, but its colour (MAXI: ln(4-10 keV / 2-4 keV), both mCrab) moved so, to either
  side: a state change that the event list does not name;
- "unexplained": none of these (a lone day, a change of a day or two, noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from flashes import catalogue
from flashes.parsers import ParsedLightcurve
from flashes.settings import Settings
from flashes.units import MAIN_BAND, MCRAB_PER_UNIT

FIELD_DEG = 3.0
BASE_D, BASE_POINTS = 30.0, 10  # the month before, and the fewest of its points that make a level
SUSTAIN_D, SUSTAIN_POINTS, SUSTAIN_SIGMA = 7.0, 3, 5.0
NEIGHBOUR_LEAD_D = 3.0
COLOUR_MAX_ERROR = 0.1  # colours measured to better than 10 %, as the relevance model's hardness term takes them


@dataclass(frozen=True)
class Measured:
    """One quantity of a file in time order: its main band in mCrab, or a colour."""

    mjd: np.ndarray
    value: np.ndarray
    error: np.ndarray

    @classmethod
    def of(cls, mjd: np.ndarray, value: np.ndarray, error: np.ndarray) -> Measured:
        """The points whose value and error are finite, the error above 0."""
        good = np.isfinite(value) & np.isfinite(error) & (error > 0)
        return cls(mjd[good], value[good], error[good])

    def shift(self, mjd: float, reach_d: float = SUSTAIN_D, upward: bool = True) -> float | None:
        """The median change of the points in the `reach_d` days from mjd's day on that stand SUSTAIN_SIGMA σ above
        (or, unless `upward`, away from) the median of the BASE_D days before, if SUSTAIN_POINTS of them do;
        σ² = the point's error² + (1.4826 MAD of those days)², so that a source's usual wandering is no change."""
        start = mjd - 0.5
        before = (self.mjd < start) & (self.mjd >= start - BASE_D)
        if np.count_nonzero(before) < BASE_POINTS:
            return None
        level = np.median(self.value[before])
        scatter = 1.4826 * np.median(np.abs(self.value[before] - level))
        after = (self.mjd >= start) & (self.mjd <= mjd + reach_d)
        change = self.value[after] - level
        size = change if upward else np.abs(change)
        beyond = size > SUSTAIN_SIGMA * np.sqrt(self.error[after] ** 2 + scatter**2)
        return float(np.median(change[beyond])) if np.count_nonzero(beyond) >= SUSTAIN_POINTS else None


@dataclass(frozen=True)
class FileData:
    """What a file shows: its main band in mCrab and, for MAXI, ln(4-10 keV / 2-4 keV) (both mCrab)."""

    flux: Measured
    colour: Measured | None

    @classmethod
    def of(cls, parsed: ParsedLightcurve, instrument: str) -> FileData:
        def band(name: str) -> tuple[np.ndarray, np.ndarray]:
            factor = MCRAB_PER_UNIT[(instrument, name)]
            flux, error = parsed.bands[name]
            return flux * factor, error * factor

        flux = Measured.of(parsed.mjd, *band(MAIN_BAND[instrument]))
        if not {"2-4", "4-10"} <= parsed.bands.keys():
            return cls(flux, None)
        (soft, soft_error), (hard, hard_error) = band("2-4"), band("4-10")
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.sqrt((soft_error / soft) ** 2 + (hard_error / hard) ** 2)
            colour = np.log(hard / soft)
        good = (soft > 0) & (hard > 0) & (error <= COLOUR_MAX_ERROR)
        return cls(flux, Measured.of(parsed.mjd[good], colour[good], error[good]))


def field_neighbours(settings: Settings, ids: list[str]) -> dict[str, list[tuple[str, float]]]:
    """Per source id, the others of `ids` within FIELD_DEG by their catalogue positions, with the separation."""
    records = {r.id: r for r in catalogue.load(settings) if r.id in ids}
    known = sorted(records)
    found: dict[str, list[tuple[str, float]]] = {i: [] for i in ids}
    if not known:
        return found
    sky = SkyCoord([records[i].coord_ra for i in known] * u.deg, [records[i].coord_dec for i in known] * u.deg)
    first, second, separation, _ = sky.search_around_sky(sky, FIELD_DEG * u.deg)
    for a, b, sep in zip(first.tolist(), second.tolist(), separation.deg.tolist()):
        if a != b:
            found[known[a]].append((known[b], sep))
    return found


@dataclass(frozen=True)
class Explainer:
    """The cause (one of evaluation.metrics.CAUSES) of a false alert of a source at an MJD, from its files and
    those of its field."""

    files: Mapping[str, list[FileData]]
    neighbours: Mapping[str, list[tuple[str, float]]]

    def _rise(self, source_id: str, mjd: float, reach_d: float = SUSTAIN_D) -> float | None:
        rises = [x for f in self.files.get(source_id, []) if (x := f.flux.shift(mjd, reach_d)) is not None]
        return max(rises, default=None)

    def __call__(self, source_id: str, mjd: float) -> str:
        own = self._rise(source_id, mjd)
        for other, _ in self.neighbours.get(source_id, []):
            theirs = self._rise(other, mjd - NEIGHBOUR_LEAD_D, SUSTAIN_D + NEIGHBOUR_LEAD_D)
            if theirs is not None and (own is None or theirs > own):
                return "neighbour"
        if own is not None:
            return "brightening"
        files = self.files.get(source_id, [])
        if any(f.colour is not None and f.colour.shift(mjd, upward=False) is not None for f in files):
            return "colour"
        return "unexplained"
