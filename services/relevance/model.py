"""The relevance model `river-3`: per-series online River models of the usual flux and colour.

Each series keeps two `Novelty` detectors (River anomaly detectors built on River's rolling
median, exponentially weighted mean and P² quantile):

- flux: usual level = median of the last `level_window` points; usual spread = the source's
  own variability beyond its error bars, learned as a fraction of the level (variability of
  accreting sources scales with their flux), plus `systematic` × level for the instrument's
  calibration. While the level is quiescent (below `quiescent_snr` typical errors) the spread is
  a second one, learned from quiescent points only (below `quiescent_snr` typical errors; the
  first one learns only while the level is not quiescent) (river-3): what a bright outburst taught is
  not the usual scatter once the source is back in quiescence, so a faint re-flare months later
  is news again. Deviations are then divided by how large this source's deviations usually are
  (its 95 % quantile of |u| over 2σ, when larger, each |u| counted up to `tail_cap_sigma`, so that
  a few points of a new flare cannot make it usual): a source that flares every orbit learns that.
  A point far above the source's usual high level (its 99 % flux quantile) is unusual however
  often the source varies: evidence (flux − q99)/(`record_margin` × q99), so a regular
  outburster whose outburst is more than about 2.3 times brighter than usual is flagged.
- colour: the same for ln(hard/soft) (MAXI 4-10 over 2-4 keV in mCrab, or the BAT/MAXI
  hardness ratio), with a short level window; only colours measured to better than
  `colour_max_error` count, and a colour history older than `colour_stale_d` days is forgotten.

A new series starts from a prior (`prior_points` pseudo-points of `prior_fraction` fractional
variability, `prior_colour_spread` in colour) and is silent for its first `min_points`, so a
source is never unusual merely for being new.

Evidence in σ combines the new deviation u with the one before it when that is at most
`persistence_gap_d` days older and of the same sign (a real change persists, noise does not):
E = max(|u_t|, |u_t + u_{t−1}|/√2). Flux counts only upwards (brightening); colour both ways.

A rise out of quiescence also accumulates (since river-2): while the flux level is quiescent (below
`quiescent_snr` typical errors), the CUSUM S = max(0, S + u − k) of the deviations from it
(k = `cusum_drift`) is the log-likelihood ratio of a rise by 2k σ against none, evidence √(4kS) σ.
The rolling median follows a slow rise, so the point evidence never sees a rise of 2 mCrab a day over
5 mCrab errors; the CUSUM flags it within about 11 days (`tests/test_model.py`). It stays off for
bright persistent sources, whose level wanders for days (on the shared files it cost recall there).

Recurrence (river-3): the flux detector remembers the source's last `recurrence_memory`
excursions (from a point `excursion_sigma` above the usual level, for as long as the flux stays
above that usual level + `excursion_sigma` σ of its start, with gaps of at most `excursion_gap_d`
days) with their start and peak. Only excursions over more than one point count for the frequent
rule: a lone high point is no flare. What the source does routinely is not
news, and the flux evidence is then at most that of a record above the routine peak,
(flux − peak)/(`record_margin` × peak):
- a regular outburster (at least `recurrence_min` excursions, `recurrence_share` of the intervals
  between their starts a whole number of periods P within `recurrence_tolerance` of a cycle) is
  routine up to its median peak during an excursion that started on schedule; one that starts
  early or late is news, whatever its peak;
- a source without such a timing pattern that reached a flux in at least `frequent_count`
  excursions of the last `frequent_window_d` days (Cir X-1's flares) is routine up to it.
A source that has never done it before is news.

Calibration: a logistic maps E to 0..1, reaching 0.7 (the default alert threshold) at
`alert_sigma` σ with a width of `width_sigma` σ. The relevance is the noisy-OR of the two,
1 − (1 − model)(1 − hardness): the chance that at least one of them is unusual. The original
FLASHES flux (signal-to-noise) and trend (5-point slope) terms are reported beside them; they
saturate on every bright source, so they do not enter the relevance.

State: `SeriesModel.to_state()` is plain JSON-able data (numbers, lists, dicts, None), tagged
with the model and state versions; `SeriesModel.from_state()` rebuilds the River statistics from
those numbers and answers anything it cannot read with the prior, so a checkpoint cannot run
code and a restored model scores the following points exactly like the uninterrupted one.
`SeriesModel.restore()` also says when that prior must not score yet: a state of another version
(an upgrade) or one that does not read is rebuilt from the series' stored history first
(services/relevance/app.py).

Time: a point dated more than `FUTURE_DAYS` after the wall clock (`now`, passed in) is
neither scored nor learned and never becomes the series' last time.
"""
from __future__ import annotations

import logging
import math
import statistics
import struct
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from river import stats
from river.base import AnomalyDetector

from flashes.clock import FUTURE_DAYS
from flashes.timeconv import datetime_to_mjd
from flashes.topics import SERIES_KINDS
from services.relevance import formula

MODEL_VERSION = "river-3"
STATE_VERSION = 3
KINDS = SERIES_KINDS
log = logging.getLogger(__name__)

# River's P² quantile (Rust) __getstate__ is bincode of a fixed struct: q, the desired marker
# increments, marker positions, positions and heights (5 each), then n_heights: u8 and
# heights_sorted: bool. The state stores those numbers and rebuilds the bytes from them.
_P2 = struct.Struct("<21dBB")
_P2_FLOATS, _P2_CONSTANTS = 21, 6  # q and the 5 desired marker increments depend on q only
if len(stats.Quantile(0.5)._quantile.__getstate__()) != _P2.size:  # a River upgrade changed the layout
    raise RuntimeError("this River version stores stats.Quantile differently: see _P2 in services/relevance/model.py")


@dataclass(frozen=True)
class Params:
    """The tuning of `river-3`, described in the module docstring; changing it makes a new model version."""

    level_window: int = 30
    fading: float = 0.02
    winsor_sigma: float = 4.0
    systematic: float = 0.03
    prior_points: float = 3.0
    prior_fraction: float = 0.3
    min_points: int = 5
    persistence_gap_d: float = 3.0
    colour_max_error: float = 0.1
    colour_stale_d: float = 10.0
    colour_window: int = 5
    tail_quantile: float = 0.95
    tail_gaussian: float = 2.0
    tail_min_points: int = 30
    tail_cap_sigma: float = 8.0
    prior_colour_spread: float = 0.03
    record_quantile: float = 0.99
    record_margin: float = 0.2
    cusum_drift: float = 1.0
    quiescent_snr: float = 3.0
    cusum_cap_sigma: float = 9.0
    cusum_gap_d: float = 10.0
    excursion_sigma: float = 4.0
    excursion_gap_d: float = 5.0
    recurrence_min: int = 4
    recurrence_memory: int = 12
    recurrence_tolerance: float = 0.15
    recurrence_share: float = 0.8
    frequent_window_d: float = 365.0
    frequent_count: int = 3
    alert_sigma: float = 7.25
    width_sigma: float = 1.0


PARAMS = Params()


def _finite(x: float) -> float:
    """x for the state; a non-finite number (only absurd inputs lead there) cannot be stored."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x} in the model")
    return x


def _number(x: object) -> float:
    """A finite number read from a state (ints accepted, bools not)."""
    if type(x) is not float and type(x) is not int:
        raise ValueError(f"expected a number, got {type(x).__name__}")
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {x!r}")
    return value


def _numbers(x: object, length: int | None = None, max_length: int | None = None) -> list[float]:
    if type(x) is not list:
        raise ValueError("expected a list of numbers")
    if (length is not None and len(x) != length) or (max_length is not None and len(x) > max_length):
        raise ValueError(f"a list of {len(x)} numbers where {length or max_length} were expected")
    return [_number(v) for v in x]


def _optional_numbers(x: object, length: int) -> list[float]:
    """Values or errors of the recent points: None (unusable) is NaN, as far as the trend term goes."""
    if type(x) is not list or len(x) != length:
        raise ValueError("expected a list of the recent points' length")
    return [math.nan if v is None else _number(v) for v in x]


def _count(x: object, high: int) -> int:
    if type(x) is not int or not 0 <= x <= high:
        raise ValueError(f"expected an integer in 0..{high}, got {x!r}")
    return x


def _ewmean_state(ewm: stats.EWMean) -> float | None:
    """The mean, or None for a mean never updated (River's EWMean takes its first value as the mean)."""
    if ewm._ewmean.__getstate__() == stats.EWMean(ewm.fading_factor)._ewmean.__getstate__():
        return None
    return _finite(ewm.get())


def _ewmean(fading: float, mean: object) -> stats.EWMean:
    ewm = stats.EWMean(fading_factor=fading)
    if mean is not None:
        ewm.update(_number(mean))  # the first update sets mean = x exactly
    return ewm


def _quantile_state(quantile: stats.Quantile) -> dict:
    *numbers, count, ordered = _P2.unpack(quantile._quantile.__getstate__())
    return {"p2": [_finite(x) for x in numbers], "count": count, "sorted": bool(ordered)}


def _quantile(q: float, d: object) -> stats.Quantile:
    quantile = stats.Quantile(q=q)
    if type(d) is not dict:
        raise ValueError("expected a quantile state")
    numbers = _numbers(d["p2"], length=_P2_FLOATS)
    count, ordered = _count(d["count"], 5), d["sorted"]
    if numbers[:_P2_CONSTANTS] != list(_P2.unpack(quantile._quantile.__getstate__())[:_P2_CONSTANTS]):
        raise ValueError(f"a quantile state of another quantile than {q}")
    if type(ordered) is not bool or (ordered and count != 5):
        raise ValueError("inconsistent quantile state")
    quantile._quantile.__setstate__(_P2.pack(*numbers, count, ordered))  # valid bincode by construction
    quantile._is_updated = count > 0  # River's flag: set by the first update, as count is
    return quantile


def _off_cycle(days: float, period: float) -> float:
    """How far `days` is from a whole number (at least 1) of periods, in cycles."""
    return abs(days / period - max(1, round(days / period)))


def _period(starts: tuple[float, ...], params: Params) -> float | None:
    """The period of excursions that began at `starts`, or None if they were not regular: at least
    `recurrence_share` of the intervals within `recurrence_tolerance` cycles of a whole number of
    periods, the period being the median interval (a cycle may be skipped).

    >>> _period((0.0, 100.0, 201.0, 299.0, 500.0), PARAMS), _period((0.0, 30.0, 201.0, 250.0), PARAMS)
    (100.5, None)
    """
    intervals = [b - a for a, b in zip(starts, starts[1:])]
    period = statistics.median(intervals)
    if period <= 0:
        return None
    regular = sum(_off_cycle(days, period) <= params.recurrence_tolerance for days in intervals)
    return period if regular >= params.recurrence_share * len(intervals) else None


class Novelty(AnomalyDetector):
    """How far a value lies from this series' usual level, in units of its usual spread.

    The spread beyond the error bars is learned as a fraction of (level² + typical error²)
    when `relative` (flux: a source back in quiescence after an outburst is quiet again), or in
    the value's own units (colour). x is {"value": v, "error": σ}. `score_one` is |u| before
    learning x (0 until `params.min_points` are known); `evidence` adds the persistence rule and
    learns the value. The state (`to_state`/`load_state`) is explicit numbers: the level window
    in arrival order, the three means, the P² quantiles' markers, the excursions (flux).

    >>> detector = Novelty(PARAMS, window=30, relative=True, prior_spread=0.3)
    >>> for flux in [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02]:
    ...     detector.learn_one({"value": flux, "error": 0.05})
    >>> round(detector.score_one({"value": 1.0, "error": 0.05}), 2)
    0.0
    >>> detector.score_one({"value": 4.0, "error": 0.05}) > 6
    True
    >>> detector.clone().n, detector.n
    (0, 8)
    """

    def __init__(self, params: Params, window: int, relative: bool, prior_spread: float) -> None:
        self.params = params
        self.window = window
        self.relative = relative
        self.prior_spread = prior_spread
        self.level = stats.RollingQuantile(q=0.5, window_size=window)
        self.values: deque[float] = deque(maxlen=window)  # what `level` holds, in arrival order: its state
        self.excess = stats.EWMean(fading_factor=params.fading)
        self.quiet_excess = stats.EWMean(fading_factor=params.fading)  # flux: the same, learned only in quiescence
        self.error = stats.EWMean(fading_factor=params.fading)
        self.tail = stats.Quantile(q=params.tail_quantile)
        self.high = stats.Quantile(q=params.record_quantile) if relative else None  # flux only
        self.n = 0
        self.last_u, self.last_mjd = 0.0, -math.inf
        self.rise = 0.0  # the CUSUM of u above the drift, while rising out of quiescence
        # flux: the source's last excursions, [start MJD, MJD of the last point above, peak, threshold]
        self.excursions: deque[list[float]] = deque(maxlen=params.recurrence_memory)
        self._pattern: tuple[tuple[int, float, float], float | None] = ((0, 0.0, 0.0), None)  # a cache of the period

    def _moments(self, value: float, error: float) -> tuple[float, float, float, bool]:
        """(value − level, error² + usual spread², scale², whether the level is quiescent) under what has
        been learned (n ≥ 1)."""
        p = self.params
        level = self.level.get()
        quiet = self._quiet(level)
        scale2 = level ** 2 + self.error.get() ** 2 if self.relative else 1.0
        learned = max((self.quiet_excess if quiet else self.excess).get(), 0.0)
        usual = (self.n * learned + p.prior_points * self.prior_spread ** 2) / (self.n + p.prior_points)
        calibration = (p.systematic * level) ** 2 if self.relative else 0.0
        return value - level, error ** 2 + (usual * scale2 + calibration), scale2, quiet

    def _quiet(self, level: float) -> bool:
        """Whether a flux level is quiescent: below `quiescent_snr` typical errors (never for colour)."""
        return self.relative and level < self.params.quiescent_snr * self.error.get()

    def _deviation(self, value: float, error: float, residual: float, variance: float) -> tuple[float, float]:
        """Signed deviations (needs n ≥ min_points): u from the usual level, and u or the evidence of a
        record (above the usual high level), whichever is larger."""
        p = self.params
        raw = residual / math.sqrt(variance) if variance > 0 else 0.0
        learned = self.n >= p.min_points + p.tail_min_points
        if not learned:
            return raw, raw
        tail = self.tail.get()  # None if no deviation could be measured yet (every variance 0)
        u = raw / max(1.0, tail / p.tail_gaussian) if tail is not None else raw
        if not self.relative:
            return u, u
        high = self.high.get()
        variance = error ** 2 + (p.record_margin * high) ** 2
        return u, (max(u, (value - high) / math.sqrt(variance)) if variance > 0 else u)

    def _learn(self, value: float, error: float, residual: float, variance: float, scale2: float,
               quiet: bool) -> None:
        p = self.params
        if self.n and variance > 0:
            root = math.sqrt(variance)
            limit = p.winsor_sigma * root
            clipped = min(max(residual, -limit), limit)
            if scale2 > 0:  # 0 only for a flux whose level and typical error are both 0 so far
                excess = (clipped ** 2 - error ** 2) / scale2
                if not quiet:
                    self.excess.update(excess)
                elif self._quiet(value):  # quiescent scatter is learned from quiescent points only
                    self.quiet_excess.update(excess)
            if self.n >= p.min_points:
                self.tail.update(min(abs(residual) / root, p.tail_cap_sigma))
        self.level.update(value)
        self.values.append(value)
        if self.relative:
            self.high.update(value)
        self.error.update(error)
        self.n += 1

    def evidence(self, value: float, error: float, mjd: float, upward_only: bool) -> float:
        """Evidence (σ) that value ± error, observed at mjd, is unusual; learns it afterwards.

        The deviation before it counts too when it is at most `persistence_gap_d` days older and
        of the same sign: a real change persists, noise does not.
        """
        residual = variance = scale2 = 0.0
        level_u = u = 0.0
        quiet = False
        if self.n:
            residual, variance, scale2, quiet = self._moments(value, error)
            if self.n >= self.params.min_points:
                level_u, u = self._deviation(value, error, residual, variance)
        previous_u, previous_mjd = self.last_u, self.last_mjd
        self._learn(value, error, residual, variance, scale2, quiet)
        self.last_u, self.last_mjd = u, mjd
        cusum = self._accumulate(level_u, mjd - previous_mjd, quiet) if self.relative else 0.0
        if upward_only and u <= 0:
            found = cusum
        elif mjd - previous_mjd <= self.params.persistence_gap_d and previous_u * u > 0:
            found = max(abs(u), abs(u + previous_u) / math.sqrt(2.0), cusum)
        else:
            found = max(abs(u), cusum)
        if self.relative:
            found = self._unless_routine(found, value, error, mjd)
            root = math.sqrt(variance)
            self._track_excursion(residual / root if root > 0 else 0.0, value, mjd,
                                  value - residual + self.params.excursion_sigma * root)
        return found

    def _unless_routine(self, evidence: float, value: float, error: float, mjd: float) -> float:
        """The evidence, or at most that of a record above the flux below which mjd is routine."""
        if evidence <= 0:
            return evidence
        routine = self._routine_peak(mjd)
        if routine is None:
            return evidence
        variance = error ** 2 + (self.params.record_margin * routine) ** 2
        return min(evidence, max(0.0, (value - routine) / math.sqrt(variance)) if variance > 0 else 0.0)

    def _routine_peak(self, mjd: float) -> float | None:
        """Below which flux a point at mjd is routine for this source (None: nothing is); see the module
        docstring. The ongoing excursion, if any, is judged against the ones before it."""
        p = self.params
        ongoing = bool(self.excursions) and mjd - self.excursions[-1][1] <= p.excursion_gap_d
        past = list(self.excursions)[:-1] if ongoing else list(self.excursions)
        if len(past) < p.recurrence_min:
            return None
        # Excursions are only appended (the oldest falling out), so their count and first and last starts
        # name their starts: the period is computed once for them.
        key = (len(past), past[0][0], past[-1][0])
        if self._pattern[0] != key:
            self._pattern = (key, _period(tuple(start for start, *_ in past), p))
        period = self._pattern[1]
        if period is not None:
            start = self.excursions[-1][0] if ongoing else mjd
            on_schedule = _off_cycle(start - past[-1][0], period) <= p.recurrence_tolerance
            return statistics.median(peak for _, _, peak, _ in past) if on_schedule else None
        peaks = sorted(peak for s, e, peak, _ in past if mjd - s <= p.frequent_window_d and e > s)
        return peaks[-p.frequent_count] if len(peaks) >= p.frequent_count else None

    def _track_excursion(self, u: float, value: float, mjd: float, threshold: float) -> None:
        """Excursions: from a point at least `excursion_sigma` above the usual level, as long as the flux
        stays above the level that was (`threshold`) then, with gaps of at most `excursion_gap_d` days.
        Each is remembered as [start, MJD of its last point above, peak, threshold]."""
        p = self.params
        last = self.excursions[-1] if self.excursions else None
        if last and mjd - last[1] <= p.excursion_gap_d and value >= last[3]:
            last[1], last[2] = mjd, max(last[2], value)
        elif u >= p.excursion_sigma:
            self.excursions.append([mjd, mjd, value, threshold])

    def _accumulate(self, u: float, gap_d: float, quiet: bool) -> float:
        """Evidence (σ) of a rise out of quiescence that builds up over days: the CUSUM S of u beyond k
        (k = `cusum_drift`); the log-likelihood ratio of a rise by 2k against none is 2kS, i.e. √(4kS) σ.
        It counts only while the level it started from is quiescent (`quiet`): a bright persistent
        source wanders for days on end, which is not news. S is capped where the evidence reaches
        `cusum_cap_sigma`, so that it falls back within a few points once the rise has been learned or
        is over; a gap longer than `cusum_gap_d` days starts it again."""
        p = self.params
        if gap_d > p.cusum_gap_d or not quiet:
            self.rise = 0.0
            return 0.0
        self.rise = min(self._rise_cap(), max(0.0, self.rise + u - p.cusum_drift))
        return math.sqrt(4.0 * p.cusum_drift * self.rise)

    def _rise_cap(self) -> float:
        return self.params.cusum_cap_sigma ** 2 / (4.0 * self.params.cusum_drift)

    def learn_one(self, x: dict) -> None:
        value, error = x["value"], x["error"]
        self._learn(value, error, *(self._moments(value, error) if self.n else (0.0, 0.0, 0.0, False)))

    def score_one(self, x: dict) -> float:
        if self.n < self.params.min_points:
            return 0.0
        value, error = x["value"], x["error"]
        residual, variance, *_ = self._moments(value, error)
        return abs(self._deviation(value, error, residual, variance)[1])

    def to_state(self) -> dict:
        return {"n": self.n, "last_u": _finite(self.last_u), "rise": _finite(self.rise),
                "last_mjd": None if self.last_mjd == -math.inf else _finite(self.last_mjd),
                "level": [_finite(v) for v in self.values],
                "excess": _ewmean_state(self.excess), "quiet_excess": _ewmean_state(self.quiet_excess),
                "error": _ewmean_state(self.error), "excursions": [[_finite(x) for x in e] for e in self.excursions],
                "tail": _quantile_state(self.tail), "high": None if self.high is None else _quantile_state(self.high)}

    def load_state(self, d: dict) -> None:
        """Take the state `to_state` wrote (on a fresh detector); ValueError/TypeError/KeyError if malformed."""
        p = self.params
        if type(d) is not dict:
            raise ValueError("expected a detector state")
        n = _count(d["n"], 2 ** 53)
        values = _numbers(d["level"], length=min(n, self.window))
        last_mjd = -math.inf if d["last_mjd"] is None else _number(d["last_mjd"])
        last_u = _number(d["last_u"])
        rise = _number(d["rise"])
        if not 0 <= rise <= self._rise_cap():
            raise ValueError(f"a CUSUM of {rise} outside 0..{self._rise_cap()}")
        excess, error = _ewmean(p.fading, d["excess"]), _ewmean(p.fading, d["error"])
        quiet_excess = _ewmean(p.fading, d["quiet_excess"])
        if type(d["excursions"]) is not list or len(d["excursions"]) > (p.recurrence_memory if self.relative else 0):
            raise ValueError("expected at most recurrence_memory excursions (none for a colour)")
        if not self.relative and d["quiet_excess"] is not None:
            raise ValueError("a colour detector has no quiescent spread")
        excursions = [_numbers(e, length=4) for e in d["excursions"]]
        if any(abs(x) > LARGEST for e in excursions for x in e):
            raise ValueError("an excursion beyond any measurement")
        times = [t for start, end, *_ in excursions for t in (start, end)]
        if any(a > b for a, b in zip(times, times[1:])) or (times and times[-1] > last_mjd) or \
                any(a[0] >= b[0] for a, b in zip(excursions, excursions[1:])):
            raise ValueError("excursions out of time order, or after the last point")
        tail = _quantile(p.tail_quantile, d["tail"])
        high = _quantile(p.record_quantile, d["high"]) if self.relative else None
        if not self.relative and d["high"] is not None:
            raise ValueError("a colour detector has no high quantile")
        for v in values:
            self.level.update(v)
            self.values.append(v)
        self.excess, self.quiet_excess, self.error, self.tail, self.high = excess, quiet_excess, error, tail, high
        self.n, self.last_u, self.last_mjd, self.rise = n, last_u, last_mjd, rise
        self.excursions.extend(excursions)


def calibrate(evidence: float, params: Params = PARAMS) -> float:
    """Logistic map of evidence (σ) to 0..1: 0.5 at alert_sigma − width·ln(7/3), 0.7 at alert_sigma."""
    centre = params.alert_sigma - params.width_sigma * math.log(0.7 / 0.3)
    z = (evidence - centre) / params.width_sigma
    return 1.0 / (1.0 + math.exp(-z)) if z > -50 else 0.0


# No measurement (flux in any unit, MJD) comes near this; the squares of larger numbers overflow,
# so a point beyond it is not learned (flux) or not scored (MJD) rather than stopping the scorer.
LARGEST = 1e100
# A point dated more than this after the wall clock is no measurement (the fetcher refuses such rows
# too): scored, it would become its series' last time, and every real point after it would be
# skipped as not newer, silencing the source for good.


def _usable(value: float, error: float) -> bool:
    """A finite value with a finite error ≥ 0: GBM pulsar amplitudes often come with an error of 0,
    and the learned spread of their source then carries the whole uncertainty."""
    return math.isfinite(value) and math.isfinite(error) and error >= 0


@dataclass(frozen=True)
class ChunkScores:
    """The scores of a chunk: which points were scored, and per scored point its relevance and terms."""

    keep: np.ndarray  # bool, per input point: scored (mjd newer than the last scored point of this series)
    future: np.ndarray  # bool, per input point: refused, dated more than FUTURE_DAYS after now
    relevance: np.ndarray  # float64, one per kept point
    terms: dict[str, np.ndarray]  # "model", "hardness", "flux", "trend": one float64 per kept point
    evidence: dict[str, np.ndarray]  # "model", "hardness": the evidence (σ) the two terms calibrate


def calibrated(flux: list[float], colour: list[float], params: Params = PARAMS) -> tuple[list[float], list[float], list[float]]:
    """The model and hardness terms of flux and colour evidence (σ, 0 for none), and their relevance
    1 − (1 − model)(1 − hardness). The evidence does not depend on `alert_sigma`, so `flashes evaluate`
    scores a series once and calibrates it at every level."""
    quiet = calibrate(0.0, params)
    models = [calibrate(e, params) if e else quiet for e in flux]
    hardnesses = [calibrate(e, params) if e else quiet for e in colour]
    return models, hardnesses, [1.0 - (1.0 - m) * (1.0 - h) for m, h in zip(models, hardnesses)]


def _scored_until(d: object) -> float | None:
    """The newest MJD a state of any version says it scored (its recent points), or None."""
    try:
        return _number(d["recent"]["mjd"][-1])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return None


@dataclass
class SeriesModel:
    """Everything one series needs to score its next points; `to_state()` is its checkpoint."""

    params: Params = PARAMS
    flux: Novelty | None = None
    colour: Novelty | None = None
    recent: formula.Recent = field(default_factory=formula.Recent)

    def __post_init__(self) -> None:
        p = self.params
        self.flux = self.flux or Novelty(p, p.level_window, relative=True, prior_spread=p.prior_fraction)
        self.colour = self.colour or self._new_colour()

    def _new_colour(self) -> Novelty:
        p = self.params
        return Novelty(p, p.colour_window, relative=False, prior_spread=p.prior_colour_spread)

    @property
    def last_scored_mjd(self) -> float:
        return self.recent.mjd[-1] if self.recent.mjd else -math.inf

    def to_state(self) -> dict:
        """The checkpoint: JSON-able numbers, lists, dicts and None, tagged with model and state version.

        A model whose numbers overflowed (only absurd inputs, beyond 1e150, lead there) cannot be
        stored: its state is the prior's, with a warning.
        """
        r = self.recent
        try:
            return {"model_version": MODEL_VERSION, "state_version": STATE_VERSION,
                    "recent": {"mjd": [_finite(t) for t in r.mjd],  # unusable values and errors of scored points: None
                               "value": [v if math.isfinite(v) else None for v in r.value],
                               "error": [e if math.isfinite(e) else None for e in r.error]},
                    "flux": self.flux.to_state(), "colour": self.colour.to_state()}
        except ValueError as exc:
            log.warning("%s state not storable (%s): this series restarts from the prior", MODEL_VERSION, exc)
            return SeriesModel(self.params).to_state()

    @staticmethod
    def from_state(d: dict | None) -> "SeriesModel":
        """Restore a checkpoint. None starts from the prior; so does, with a warning, a state of another
        model or state version or anything malformed. Never raises on bad data."""
        return SeriesModel.restore(d).model

    @staticmethod
    def restore(d: dict | None) -> "Restored":
        """Restore a checkpoint and say whether the series must be rebuilt from its stored history: a state
        of another model or state version (an upgrade) or one that does not read gives the prior, flagged,
        with the newest MJD it says it scored. Never raises on bad data."""
        if d is None:
            return Restored(SeriesModel(), rebuild=False, scored_until=None)
        try:
            if type(d) is not dict:
                raise ValueError(f"a state is a dict, not {type(d).__name__}")
            if d.get("model_version") != MODEL_VERSION or d.get("state_version") != STATE_VERSION:
                raise ValueError(f"state of {d.get('model_version')!r} version {d.get('state_version')!r}")
            recent = d["recent"]
            if type(recent) is not dict:
                raise ValueError("expected the recent points")
            mjd = _numbers(recent["mjd"], max_length=formula.HISTORY)
            value, error = (_optional_numbers(recent[k], len(mjd)) for k in ("value", "error"))
            model = SeriesModel()
            model.flux.load_state(d["flux"])
            model.colour.load_state(d["colour"])
            model.recent = formula.Recent(mjd, value, error)
            return Restored(model, rebuild=False, scored_until=_scored_until(d))
        except Exception as exc:  # noqa: BLE001 - whatever the data, the series carries on from the prior
            log.warning("unreadable %s state (%s: %.200s): this series is rebuilt from its stored history",
                        MODEL_VERSION, type(exc).__name__, exc)
            return Restored(SeriesModel(), rebuild=True, scored_until=_scored_until(d))

    def _colour_evidence(self, colour: float, colour_error: float, mjd: float) -> float:
        if not (_usable(colour, colour_error) and colour > 0 and colour_error != 0):
            return 0.0
        value, error = math.log(colour), colour_error / colour
        if error > self.params.colour_max_error:
            return 0.0
        if mjd - self.colour.last_mjd > self.params.colour_stale_d:  # a new episode: old colours say nothing
            self.colour = self._new_colour()
        return self.colour.evidence(value, error, mjd, upward_only=False)

    def score_chunk(self, kind: str, mjd: np.ndarray, value: np.ndarray, error: np.ndarray,
                    colour: np.ndarray, colour_error: np.ndarray, now: float | None = None) -> ChunkScores:
        """Score the points of one series in order, learning each after scoring it (no look-ahead).

        `colour`/`colour_error` are the (ratio, error) for the hardness term, NaN where a point has
        none; a "hardness" series gives no flux evidence, nor does a value or error that is not
        `_usable` or beyond ±`LARGEST`. A point whose mjd is not newer than the last scored one
        (earlier in this chunk too), or not finite, or beyond ±`LARGEST`, is skipped and not learned:
        a replay after a crash changes nothing. A point dated more than `FUTURE_DAYS` after
        `now` (MJD, UTC; None: the system clock) is neither scored nor learned and is marked in `future`.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown series kind {kind!r}")
        columns = [np.asarray(a, dtype=np.float64) for a in (mjd, value, error, colour, colour_error)]
        size = len(columns[0])
        if any(c.shape != (size,) for c in columns):
            raise ValueError("score_chunk needs five 1-d arrays of one length")
        flux_evidence = self.flux.evidence if kind != "hardness" else None
        colour_evidence, largest = self._colour_evidence, LARGEST
        last = max(self.last_scored_mjd, -largest)
        horizon = (datetime_to_mjd(datetime.now(timezone.utc)) if now is None else now) + FUTURE_DAYS
        kept: list[int] = []
        future: list[int] = []
        fluxes: list[float] = []
        colours: list[float] = []
        for i, (t, v, e, c, ce) in enumerate(zip(*(col.tolist() for col in columns))):
            if t > horizon:
                future.append(i)
                continue
            if not last < t < largest:
                continue
            last = t
            kept.append(i)
            usable = -largest < v < largest and 0.0 <= e < largest  # _usable, and no overflow
            fluxes.append(flux_evidence(v, e, t, True) if flux_evidence and usable else 0.0)
            colours.append(colour_evidence(c, ce, t))
        models, hardnesses, relevance = calibrated(fluxes, colours, self.params)
        keep, refused = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
        keep[kept], refused[future] = True, True
        # The original formula's flux and trend terms, for the whole chunk at once (context only).
        mjd, value, error = (column[keep] for column in columns[:3])
        r = self.recent
        history = len(r.mjd)
        recent = [np.concatenate([np.asarray(old, dtype=np.float64), new])
                  for old, new in ((r.mjd, mjd), (r.value, value), (r.error, error))]
        trends = formula.trend_terms(*recent, start=history)
        self.recent = formula.Recent(*(column[-formula.HISTORY:].tolist() for column in recent))
        terms = {"model": models, "hardness": hardnesses, "flux": formula.flux_terms(value, error), "trend": trends}
        return ChunkScores(keep, refused, np.array(relevance, dtype=np.float64),
                           {name: np.array(column, dtype=np.float64) for name, column in terms.items()},
                           {"model": np.array(fluxes, dtype=np.float64), "hardness": np.array(colours, dtype=np.float64)})


@dataclass(frozen=True)
class Restored:
    """A checkpoint read back (`SeriesModel.restore`)."""

    model: SeriesModel
    rebuild: bool  # the state was of another model or state version, or unreadable: rebuild from history
    scored_until: float | None  # the newest MJD the state says it scored (any version), if it says
