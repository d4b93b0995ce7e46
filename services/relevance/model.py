"""The relevance model `river-4`: per-series online River anomaly detectors of the usual flux and colour.

Flux in. A MAXI/GSC point is the weighted mean of its three bands in mCrab (2-4, 4-10, 10-20 keV), each
band weighted by the inverse of its own typical variance (learned per series, so the weights do not jump
with one day's errors): on quiet MAXI days this halves the 2-20 keV error (4.2 → 2.5 mCrab), and a hard
spectrum keeps 86 % of its Crab-like signal-to-noise. Other series are scored as given.

Usual level and spread (`Novelty`, one for the flux, one for the colour): the level is the median of the last
`level_window` points; the spread beyond the error bars is learned as a fraction of (level² + typical error²)
when `relative` (flux: variability of accreting sources scales with their flux), or in the value's own units
(colour), plus `systematic` × level for the instrument's calibration. While the level is quiescent (below
`quiescent_snr` typical errors) a second spread is used, learned from quiescent points only: what an outburst
taught is not the usual scatter once the source is back in quiescence. Deviations u are then divided by how
large this source's deviations usually are (the 95 % quantile of |u| over 2σ, when larger, each |u| counted up
to `tail_cap_sigma`). Consecutive deviations are correlated (slow background drifts; a running median lags):
their lag-1 correlation ρ is learned per detector (measured 0.3–0.4 on quiet MAXI stretches), and sums of
deviations are divided by the spread it implies.

Evidence (σ), flux upwards only, colour both ways: the larger of |u| and, for a previous deviation of the
same sign at most `persistence_gap_d` days older, |u + u₋₁| / √(2(1 + ρ)) (a real change persists, noise
does not). While the level is quiescent, the rise out of it also accumulates in CUSUMs over several drifts μ
(`drifts`, σ): S_μ = max(0, S_μ + μ v − μ²/2), v = min(u, `tail_cap_sigma`) √((1 − ρ)/(1 + ρ)), evidence
√(2 S_μ), the log-likelihood ratio of a rise by μ against none. Their maximum does not need the rise's size in
advance: a fast rise shows in the large drifts within two points, a slow one in the small drifts within days
(FOCuS reduced to a grid). S is capped at evidence `cusum_cap_sigma`, so that it falls back once the rise has
been learned; a gap longer than `cusum_gap_d` days starts it again. A bright persistent source wanders for
days on end, which is not news: the CUSUMs count only while the level is quiescent.

A point far above the source's usual high level (its 99 % flux quantile) is unusual however often the source
varies: evidence (flux − q99)/(`record_margin` × q99), so a regular outburster whose outburst is more than
about 2.3 times brighter than usual is flagged.

Recurrence: the flux detector remembers the source's last `recurrence_memory` excursions (from a point
`excursion_sigma` above the usual level, for as long as the flux stays above that usual level +
`excursion_sigma` σ of its start, with gaps of at most `excursion_gap_d` days) with their start and peak.
What the source does routinely is not news, and the flux evidence is then at most that of a record above the
routine peak, (flux − peak)/(`record_margin` × peak):
- a regular outburster (at least `recurrence_min` excursions, `recurrence_share` of the intervals between
  their starts a whole number of periods P within `recurrence_tolerance` of a cycle) is routine up to its
  median peak during an excursion that started on schedule; one that starts early or late is news;
- a source without such a timing pattern that reached a flux in at least `frequent_count` excursions of more
  than one point in the last `frequent_window_d` days (Cir X-1's flares) is routine up to it.

Colour: ln(hard/soft) (MAXI 4-10 over 2-4 keV in mCrab, or the BAT/MAXI hardness ratio), with a short level
window; only colours measured to better than `colour_max_error` count, and a colour history older than
`colour_stale_d` days is forgotten.

A new series starts from a prior (`prior_points` pseudo-points of `prior_fraction` fractional variability,
`prior_colour_spread` in colour) and is silent for its first `min_points`, so a source is never unusual
merely for being new.

Calibration: a logistic maps evidence to 0..1, reaching 0.7 (the default alert threshold) at `alert_sigma`
σ with a width of `width_sigma` σ. The relevance is the noisy-OR of the two, 1 − (1 − model)(1 − hardness).
The original FLASHES flux (signal-to-noise) and trend (5-point slope) terms are reported beside them.

State: `SeriesModel.to_state()` is a typed contract (`schemas.RelevanceModel`) of the statistics' own fields
(services/relevance/stats.py), no River internals; `SeriesModel.restore()` rebuilds the model from it or says
that the series must be rebuilt from its stored history (a state of another version, or one that does not
hold together). A point dated more than `FUTURE_DAYS` after the wall clock (`now`) is neither scored nor
learned and never becomes the series' last time.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError
from river.base import AnomalyDetector

import schemas
from flashes.clock import FUTURE_DAYS
from flashes.timeconv import datetime_to_mjd
from flashes.topics import SERIES_KINDS
from services.relevance import formula
from services.relevance.stats import EWMean, FrugalQuantile

MODEL_VERSION = schemas.RELEVANCE_MODEL_VERSION
STATE_VERSION = schemas.RELEVANCE_STATE_VERSION
KINDS = SERIES_KINDS
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    """The tuning of `river-4`, described in the module docstring; changing it makes a new model version."""

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
    tail_step: float = 0.05
    tail_min_points: int = 30
    tail_cap_sigma: float = 8.0
    correlation_max: float = 0.8
    correlation_fading: float = 0.005
    prior_colour_spread: float = 0.03
    record_quantile: float = 0.99
    record_step: float = 0.05
    record_margin: float = 0.2
    quiescent_snr: float = 3.0
    template_index: float = 1.3
    drifts: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
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
    alert_sigma: float = 6.75
    width_sigma: float = 1.0


PARAMS = Params()

BAND_ORDER = ("2-4", "4-10", "10-20")  # the MAXI bands a series' `bands` columns hold, in this order
BAND_EDGES_KEV = ((2.0, 4.0), (4.0, 10.0), (10.0, 20.0))
CRAB_INDEX = 2.1  # the Crab's photon index: a Crab-like spectrum has the same mCrab in every band

# No measurement (flux in any unit, MJD) comes near this; the squares of larger numbers overflow,
# so a point beyond it is not learned (flux) or not scored (MJD) rather than stopping the scorer.
LARGEST = 1e100


def _finite(x: float) -> float:
    """x for the state; a non-finite number (only absurd inputs lead there) cannot be stored."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x} in the model")
    return x


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

    x is {"value": v, "error": σ}. `score_one` is |u| before learning x (0 until `params.min_points` are
    known); `evidence` is the module docstring's evidence, and learns the value. `to_state`/`load_state`
    give and take the statistics' own numbers (`schemas.DetectorState`).

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
        self.values: deque[float] = deque(maxlen=window)  # the level's window, oldest first
        self.excess = EWMean(params.fading)
        self.quiet_excess = EWMean(params.fading)  # flux: the same, learned only in quiescence
        self.error = EWMean(params.fading)
        self.correlation = EWMean(params.correlation_fading)  # of consecutive deviations
        self.tail = FrugalQuantile(params.tail_quantile, params.tail_step)
        self.high = FrugalQuantile(params.record_quantile, params.record_step)  # flux only
        self.n = 0
        self.last_u, self.last_mjd = 0.0, -math.inf
        self.rise = [0.0] * len(params.drifts)  # the CUSUMs, one per drift, while rising out of quiescence
        # flux: the source's last excursions, [start MJD, MJD of the last point above, peak, threshold]
        self.excursions: deque[list[float]] = deque(maxlen=params.recurrence_memory)
        self._pattern: tuple[tuple[int, float, float], float | None] = ((0, 0.0, 0.0), None)  # a cache of the period

    def _moments(self, value: float, error: float) -> tuple[float, float, float, bool]:
        """(value − level, error² + usual spread², scale², whether the level is quiescent) under what has
        been learned (n ≥ 1)."""
        p = self.params
        level = statistics.median(self.values)
        quiet = self._quiet(level)
        scale2 = level**2 + self.error.get() ** 2 if self.relative else 1.0
        learned = max((self.quiet_excess if quiet else self.excess).get(), 0.0)
        usual = (self.n * learned + p.prior_points * self.prior_spread**2) / (self.n + p.prior_points)
        calibration = (p.systematic * level) ** 2 if self.relative else 0.0
        return value - level, error**2 + (usual * scale2 + calibration), scale2, quiet

    def _quiet(self, level: float) -> bool:
        """Whether a flux level is quiescent: below `quiescent_snr` typical errors (never for colour)."""
        return self.relative and level < self.params.quiescent_snr * self.error.get()

    def _rho(self) -> float:
        """The learned lag-1 correlation less two of its standard errors (white noise learns ±√(fading/2)
        by chance, which would blunt the CUSUMs for nothing), within 0..`correlation_max`."""
        p = self.params
        return min(max(self.correlation.get() - 2.0 * math.sqrt(p.correlation_fading / 2.0), 0.0), p.correlation_max)

    def _deviation(self, value: float, error: float, residual: float, variance: float) -> tuple[float, float]:
        """Signed deviations (needs n ≥ min_points): u from the usual level, and u or the evidence of a
        record (above the usual high level), whichever is larger."""
        p = self.params
        raw = residual / math.sqrt(variance) if variance > 0 else 0.0
        if self.n < p.min_points + p.tail_min_points:
            return raw, raw
        tail = self.tail.get()  # None if no deviation could be measured yet (every variance 0)
        u = raw / max(1.0, tail / p.tail_gaussian) if tail is not None else raw
        if not self.relative:
            return u, u
        high = self.high.get()
        assert high is not None  # a relative detector learns it from each point (_learn), and n > 0 here
        variance = error**2 + (p.record_margin * high) ** 2
        return u, (max(u, (value - high) / math.sqrt(variance)) if variance > 0 else u)

    def _learn(
        self,
        value: float,
        error: float,
        residual: float,
        variance: float,
        scale2: float,
        quiet: bool,
        u: float,
        previous_u: float | None,
    ) -> None:
        p = self.params
        if self.n and variance > 0:
            root = math.sqrt(variance)
            limit = p.winsor_sigma * root
            clipped = min(max(residual, -limit), limit)
            if scale2 > 0:  # 0 only for a flux whose level and typical error are both 0 so far
                excess = (clipped**2 - error**2) / scale2
                if not quiet:
                    self.excess.update(excess)
                elif self._quiet(value):  # quiescent scatter is learned from quiescent points only
                    self.quiet_excess.update(excess)
            if self.n >= p.min_points:
                self.tail.update(min(abs(residual) / root, p.tail_cap_sigma))
                if previous_u is not None and abs(u) <= p.winsor_sigma and abs(previous_u) <= p.winsor_sigma:
                    self.correlation.update(u * previous_u)  # the usual noise's, not a rise's
        self.values.append(value)
        if self.relative:
            self.high.update(value, max(abs(self.high.get() or 0.0), self.error.get(error)))
        self.error.update(error)
        self.n += 1

    def evidence(self, value: float, error: float, mjd: float, upward_only: bool) -> float:
        """Evidence (σ) that value ± error, observed at mjd, is unusual; learns it afterwards."""
        p = self.params
        residual = variance = scale2 = 0.0
        level_u = u = 0.0
        quiet = False
        if self.n:
            residual, variance, scale2, quiet = self._moments(value, error)
            if self.n >= p.min_points:
                level_u, u = self._deviation(value, error, residual, variance)
        previous_u, gap = self.last_u, mjd - self.last_mjd
        consecutive = gap <= p.persistence_gap_d
        rho = self._rho()
        self._learn(value, error, residual, variance, scale2, quiet, level_u, previous_u if consecutive else None)
        self.last_u, self.last_mjd = u, mjd
        change = self._accumulate(level_u, gap, quiet, rho) if self.relative else 0.0
        if upward_only and u <= 0:
            found = change
        else:
            found = max(abs(u), change)
            if consecutive and previous_u * u > 0:
                found = max(found, abs(u + previous_u) / math.sqrt(2.0 * (1.0 + rho)))
        if self.relative:
            found = self._unless_routine(found, value, error, mjd)
            root = math.sqrt(variance)
            self._track_excursion(
                residual / root if root > 0 else 0.0, value, mjd, value - residual + p.excursion_sigma * root
            )
        return found

    def _accumulate(self, u: float, gap_d: float, quiet: bool, rho: float) -> float:
        """The CUSUMs over `drifts` of the deviations from a quiescent level (module docstring): evidence
        max √(2 S_μ) σ; reset when the level is not quiescent or after a gap of more than `cusum_gap_d`."""
        p = self.params
        if gap_d > p.cusum_gap_d or not quiet:
            self.rise = [0.0] * len(p.drifts)
            return 0.0
        v = min(u, p.tail_cap_sigma) * math.sqrt((1.0 - rho) / (1.0 + rho))
        cap = self._rise_cap()
        self.rise = [min(cap, max(0.0, s + mu * v - 0.5 * mu * mu)) for s, mu in zip(self.rise, p.drifts)]
        return math.sqrt(2.0 * max(self.rise))

    def _rise_cap(self) -> float:
        return 0.5 * self.params.cusum_cap_sigma**2

    def _unless_routine(self, evidence: float, value: float, error: float, mjd: float) -> float:
        """The evidence, or at most that of a record above the flux below which mjd is routine."""
        if evidence <= 0:
            return evidence
        routine = self._routine_peak(mjd)
        if routine is None:
            return evidence
        variance = error**2 + (self.params.record_margin * routine) ** 2
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

    def learn_one(self, x: dict) -> None:
        value, error = x["value"], x["error"]
        moments = self._moments(value, error) if self.n else (0.0, 0.0, 0.0, False)
        self._learn(value, error, *moments, 0.0, None)

    def score_one(self, x: dict) -> float:
        if self.n < self.params.min_points:
            return 0.0
        value, error = x["value"], x["error"]
        residual, variance, *_ = self._moments(value, error)
        return abs(self._deviation(value, error, residual, variance)[1])

    def to_state(self) -> schemas.DetectorState:
        def optional(x: float | None) -> float | None:
            return None if x is None else _finite(x)

        return schemas.DetectorState(
            n=self.n,
            level=[_finite(v) for v in self.values],
            error=optional(self.error.mean),
            excess=optional(self.excess.mean),
            quiet_excess=optional(self.quiet_excess.mean),
            correlation=optional(self.correlation.mean),
            tail=optional(self.tail.value),
            high=optional(self.high.value) if self.relative else None,
            last_u=_finite(self.last_u),
            last_mjd=None if self.last_mjd == -math.inf else _finite(self.last_mjd),
            rise=[_finite(s) for s in self.rise] if self.relative else [],
            excursions=[tuple(_finite(x) for x in e) for e in self.excursions],
        )

    def load_state(self, d: schemas.DetectorState) -> None:
        """Take the state `to_state` gave (on a fresh detector); ValueError if it does not hold together."""
        p = self.params
        if len(d.level) != min(d.n, self.window):
            raise ValueError(f"a level window of {len(d.level)} values after {d.n} points")
        if len(d.rise) != (len(p.drifts) if self.relative else 0) or not all(
            0 <= s <= self._rise_cap() for s in d.rise
        ):
            raise ValueError("CUSUMs of another drift grid, or beyond their cap")
        if not self.relative and (d.quiet_excess is not None or d.high is not None or d.excursions):
            raise ValueError("a colour detector has no quiescent spread, high level or excursions")
        if self.relative and d.n > 0 and d.high is None:
            raise ValueError("a flux detector that has seen points has a high level")
        if len(d.excursions) > p.recurrence_memory:
            raise ValueError("more excursions than recurrence_memory")
        numbers = [*d.level, *(x for e in d.excursions for x in e), d.last_u, d.last_mjd or 0.0]
        if any(abs(x) > LARGEST for x in numbers):
            raise ValueError("a number beyond any measurement")
        times = [t for start, end, *_ in d.excursions for t in (start, end)]
        last_mjd = -math.inf if d.last_mjd is None else d.last_mjd
        if (
            any(a > b for a, b in zip(times, times[1:]))
            or (times and times[-1] > last_mjd)
            or any(a[0] >= b[0] for a, b in zip(d.excursions, d.excursions[1:]))
        ):
            raise ValueError("excursions out of time order, or after the last point")
        self.values.extend(d.level)
        self.error.mean, self.excess.mean, self.quiet_excess.mean = d.error, d.excess, d.quiet_excess
        self.correlation.mean, self.tail.value, self.high.value = d.correlation, d.tail, d.high
        self.n, self.last_u, self.last_mjd = d.n, d.last_u, last_mjd
        self.rise = list(d.rise) if self.relative else self.rise
        self.excursions.extend(list(e) for e in d.excursions)


State = schemas.RelevanceModel | schemas.SupersededModel
STATE: TypeAdapter[State] = TypeAdapter(State)


def _scored_until(d: State | dict) -> float | None:
    """The newest MJD a state of any version says it scored (its recent points), or None."""
    if isinstance(d, State):
        return d.recent.mjd[-1] if d.recent and d.recent.mjd else None
    try:
        last = d["recent"]["mjd"][-1]
    except (TypeError, KeyError, IndexError):
        return None
    return float(last) if type(last) in (int, float) and math.isfinite(last) else None


def calibrate(evidence: float, params: Params = PARAMS) -> float:
    """Logistic map of evidence (σ) to 0..1: 0.5 at alert_sigma − width·ln(7/3), 0.7 at alert_sigma."""
    centre = params.alert_sigma - params.width_sigma * math.log(0.7 / 0.3)
    z = (evidence - centre) / params.width_sigma
    return 1.0 / (1.0 + math.exp(-z)) if z > -50 else 0.0


@dataclass(frozen=True)
class ChunkScores:
    """The scores of a chunk: which points were scored, and per scored point its relevance and terms."""

    keep: np.ndarray  # bool, per input point: scored (mjd newer than the last scored point of this series)
    future: np.ndarray  # bool, per input point: refused, dated more than FUTURE_DAYS after now
    relevance: np.ndarray  # float64, one per kept point
    terms: dict[str, np.ndarray]  # "model", "hardness", "flux", "trend": one float64 per kept point
    evidence: dict[str, np.ndarray]  # "model", "hardness": the evidence (σ) the two terms calibrate


def calibrated(
    flux: list[float], colour: list[float], params: Params = PARAMS
) -> tuple[list[float], list[float], list[float]]:
    """The model and hardness terms of flux and colour evidence (σ, 0 for none), and their relevance
    1 − (1 − model)(1 − hardness). The evidence does not depend on `alert_sigma`, so `flashes evaluate`
    scores a series once and calibrates it at every level."""
    quiet = calibrate(0.0, params)
    models = [calibrate(e, params) if e else quiet for e in flux]
    hardnesses = [calibrate(e, params) if e else quiet for e in colour]
    return models, hardnesses, [1.0 - (1.0 - m) * (1.0 - h) for m, h in zip(models, hardnesses)]


def band_template(index: float, crab_index: float = CRAB_INDEX) -> tuple[float, ...]:
    """mCrab in each MAXI band (BAND_ORDER) of a power law of photon index `index`, relative to its 4-10 keV
    mCrab: the band integrals of E^−index over those of the Crab's E^−2.1.

    >>> [round(x, 2) for x in band_template(1.6)], band_template(2.1)
    ([0.68, 1.0, 1.51], (1.0, 1.0, 1.0))
    """

    def photons(lo: float, hi: float, g: float) -> float:
        return (lo ** (1 - g) - hi ** (1 - g)) / (g - 1)

    ratio = [photons(lo, hi, index) / photons(lo, hi, crab_index) for lo, hi in BAND_EDGES_KEV]
    return tuple(r / ratio[1] for r in ratio)


class Bands:
    """A point's bands (mCrab) as one flux: the amplitude of `template` (mCrab per band, relative) fitted to
    them, each band weighted by the inverse of its typical variance (learned here, so that the weights do not
    jump with one day's errors): A = Σ t y / v ÷ Σ t² / v, error √(Σ t² e² / v²) ÷ Σ t² / v."""

    def __init__(self, fading: float, template: tuple[float, ...]) -> None:
        self.template = template
        self.variance = [EWMean(fading) for _ in template]

    def combine(self, flux: Sequence[float], error: Sequence[float]) -> tuple[float, float] | None:
        """(flux, error) of the point, or None if none of its bands has a finite flux and error > 0; learns
        the typical variances afterwards."""
        norm = weighted = variance = 0.0
        usable = []
        for typical, t, f, e in zip(self.variance, self.template, flux, error):
            if -LARGEST < f < LARGEST and 0.0 < e < LARGEST and e * e > 0.0:  # an error below 1e-162 squares to 0
                w = t / typical.get(e * e)
                norm, weighted, variance = norm + w * t, weighted + w * f, variance + w * w * e * e
                usable.append((typical, e * e))
        for typical, e2 in usable:
            typical.update(e2)
        return (weighted / norm, math.sqrt(variance) / norm) if usable else None


@dataclass
class SeriesModel:
    """Everything one series needs to score its next points; `to_state()` is its checkpoint."""

    params: Params = PARAMS
    flux: Novelty = field(init=False)  # both made from the params
    colour: Novelty = field(init=False)
    bands: Bands | None = None  # created by the first chunk that gives bands (MAXI)
    recent: formula.Recent = field(default_factory=formula.Recent)

    def __post_init__(self) -> None:
        p = self.params
        self.flux = Novelty(p, p.level_window, relative=True, prior_spread=p.prior_fraction)
        self.colour = self._new_colour()

    def _new_colour(self) -> Novelty:
        p = self.params
        return Novelty(p, p.colour_window, relative=False, prior_spread=p.prior_colour_spread)

    @property
    def last_scored_mjd(self) -> float:
        return self.recent.mjd[-1] if self.recent.mjd else -math.inf

    def to_state(self) -> schemas.RelevanceModel:
        """The checkpoint. A model whose numbers overflowed (only absurd inputs, beyond 1e150, lead there)
        cannot be stored: its state is the prior's, with a warning."""
        r = self.recent
        try:
            return schemas.RelevanceModel(
                model_version=MODEL_VERSION,
                state_version=STATE_VERSION,
                recent=schemas.RecentPoints(
                    mjd=[_finite(t) for t in r.mjd],  # unusable values and errors: None
                    value=[v if math.isfinite(v) else None for v in r.value],
                    error=[e if math.isfinite(e) else None for e in r.error],
                ),
                bands=None
                if self.bands is None
                else [_finite(v.mean) if v.mean is not None else None for v in self.bands.variance],
                flux=self.flux.to_state(),
                colour=self.colour.to_state(),
            )
        except ValueError as exc:
            log.warning("%s state not storable (%s): this series restarts from the prior", MODEL_VERSION, exc)
            return SeriesModel(self.params).to_state()

    @staticmethod
    def from_state(d: State | dict | None) -> SeriesModel:
        """Restore a checkpoint; anything else than a usable state of this version gives the prior."""
        return SeriesModel.restore(d).model

    @staticmethod
    def restore(d: State | dict | None) -> Restored:
        """Restore a checkpoint (typed, or its JSON) and say whether the series must be rebuilt from its stored
        history: a state of another model or state version (an upgrade), or one that does not read or hold
        together, gives the prior, flagged, with the newest MJD it says it scored. Never raises on bad data."""
        if d is None:
            return Restored(SeriesModel(), rebuild=False, scored_until=None)
        scored_until = _scored_until(d)
        try:
            # JSON is read strictly: a number in a string or a bool for a count is not this version's state
            state = d if isinstance(d, State.__args__) else STATE.validate_json(orjson.dumps(d), strict=True)
            if not isinstance(state, schemas.RelevanceModel):
                raise ValueError(f"state of {state.model_version!r} version {state.state_version!r}")
            model = SeriesModel()
            model.flux.load_state(state.flux)
            model.colour.load_state(state.colour)
            if state.bands is not None:
                if len(state.bands) != len(BAND_ORDER):
                    raise ValueError(f"{len(state.bands)} band variances, not {len(BAND_ORDER)}")
                model.bands = Bands(model.params.fading, band_template(model.params.template_index))
                for typical, mean in zip(model.bands.variance, state.bands):
                    typical.mean = mean
            r = state.recent
            model.recent = formula.Recent(
                list(r.mjd), *([math.nan if x is None else x for x in column] for column in (r.value, r.error))
            )
            return Restored(model, rebuild=False, scored_until=scored_until)
        except (ValueError, TypeError, ValidationError) as exc:  # orjson: TypeError for what is not JSON
            log.warning(
                "unusable relevance state (%s: %.200s): this series is rebuilt from its stored history",
                type(exc).__name__,
                exc,
            )
            return Restored(SeriesModel(), rebuild=True, scored_until=scored_until)

    def _colour_evidence(self, colour: float, colour_error: float, mjd: float) -> float:
        if not (math.isfinite(colour) and math.isfinite(colour_error) and colour > 0 and colour_error > 0):
            return 0.0
        value, error = math.log(colour), colour_error / colour
        if error > self.params.colour_max_error:
            return 0.0
        if mjd - self.colour.last_mjd > self.params.colour_stale_d:  # a new episode: old colours say nothing
            self.colour = self._new_colour()
        return self.colour.evidence(value, error, mjd, upward_only=False)

    def score_chunk(
        self,
        kind: str,
        mjd: np.ndarray,
        value: np.ndarray,
        error: np.ndarray,
        colour: np.ndarray,
        colour_error: np.ndarray,
        now: float | None = None,
        bands: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ChunkScores:
        """Score the points of one series in order, learning each after scoring it (no look-ahead).

        `colour`/`colour_error` are the (ratio, error) for the hardness term, NaN where a point has none;
        `bands` the (flux, error) of each point's bands in mCrab, shape (points, bands), for a MAXI series
        (`series.maxi_bands`): its flux evidence is then read from them, not from value and error. A
        "hardness" series gives no flux evidence, nor does a point without a usable value. A point whose mjd
        is not newer than the last scored one (earlier in this chunk too), or not finite, or beyond
        ±`LARGEST`, is skipped and not learned: a replay after a crash changes nothing. A point dated more
        than `FUTURE_DAYS` after `now` (MJD, UTC; None: the system clock) is neither scored nor learned and
        is marked in `future`.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown series kind {kind!r}")
        columns = [np.asarray(a, dtype=np.float64) for a in (mjd, value, error, colour, colour_error)]
        size = len(columns[0])
        if any(c.shape != (size,) for c in columns):
            raise ValueError("score_chunk needs five 1-d arrays of one length")
        if bands is not None:
            bands = (np.asarray(bands[0], dtype=np.float64), np.asarray(bands[1], dtype=np.float64))
            if bands[0].shape != (size, len(BAND_ORDER)) or bands[1].shape != bands[0].shape:
                raise ValueError(f"bands are two arrays of shape (points, {len(BAND_ORDER)})")
            if self.bands is None:
                self.bands = Bands(self.params.fading, band_template(self.params.template_index))
        flux_evidence = self.flux.evidence if kind != "hardness" else None
        colour_evidence, largest = self._colour_evidence, LARGEST
        last = max(self.last_scored_mjd, -largest)
        horizon = (datetime_to_mjd(datetime.now(UTC)) if now is None else now) + FUTURE_DAYS
        kept: list[int] = []
        future: list[int] = []
        fluxes: list[float] = []
        colours: list[float] = []
        band_rows = zip(bands[0].tolist(), bands[1].tolist()) if bands is not None else None
        combine = self.bands.combine if self.bands is not None and bands is not None else None
        for i, (t, v, e, c, ce) in enumerate(zip(*(col.tolist() for col in columns))):
            band_flux, band_error = next(band_rows) if band_rows is not None else ((), ())
            if t > horizon:
                future.append(i)
                continue
            if not last < t < largest:
                continue
            last = t
            kept.append(i)
            point: tuple[float, float] | None = (
                combine(band_flux, band_error)
                if combine
                else ((v, e) if -largest < v < largest and 0.0 <= e < largest else None)
            )
            fluxes.append(flux_evidence(*point, t, True) if flux_evidence and point else 0.0)
            colours.append(colour_evidence(c, ce, t))
        models, hardnesses, relevance = calibrated(fluxes, colours, self.params)
        keep, refused = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
        keep[kept], refused[future] = True, True
        # The original formula's flux and trend terms, for the whole chunk at once (context only).
        mjd, value, error = (column[keep] for column in columns[:3])
        r = self.recent
        history = len(r.mjd)
        recent = [
            np.concatenate([np.asarray(old, dtype=np.float64), new])
            for old, new in ((r.mjd, mjd), (r.value, value), (r.error, error))
        ]
        trends = formula.trend_terms(recent[0], recent[1], recent[2], start=history)
        self.recent = formula.Recent(*(column[-formula.HISTORY :].tolist() for column in recent))
        terms = {"model": models, "hardness": hardnesses, "flux": formula.flux_terms(value, error), "trend": trends}
        return ChunkScores(
            keep,
            refused,
            np.array(relevance, dtype=np.float64),
            {name: np.array(column, dtype=np.float64) for name, column in terms.items()},
            {"model": np.array(fluxes, dtype=np.float64), "hardness": np.array(colours, dtype=np.float64)},
        )


@dataclass(frozen=True)
class Restored:
    """A checkpoint read back (`SeriesModel.restore`)."""

    model: SeriesModel
    rebuild: bool  # the state was of another model or state version, or did not hold together: rebuild
    scored_until: float | None  # the newest MJD the state says it scored (any version), if it says
