"""The relevance model `river-1`: per-series online River models of the usual flux and colour.

Each series keeps two `Novelty` detectors (River anomaly detectors built on River's rolling
median, exponentially weighted mean and P² quantile):

- flux: usual level = median of the last `level_window` points; usual spread = the source's
  own variability beyond its error bars, learned as a fraction of the level (variability of
  accreting sources scales with their flux), plus `systematic` × level for the instrument's
  calibration. Deviations are then divided by how large this source's deviations usually are
  (its 95 % quantile of |u| over 2σ, when larger): a source that flares every orbit learns that.
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

Calibration: a logistic maps E to 0..1, reaching 0.7 (the default alert threshold) at
`alert_sigma` σ with a width of `width_sigma` σ. The relevance is the noisy-OR of the two,
1 − (1 − model)(1 − hardness): the chance that at least one of them is unusual. The original
FLASHES flux (signal-to-noise) and trend (5-point slope) terms are reported beside them; they
saturate on every bright source, so they do not enter the relevance.
"""
from __future__ import annotations

import base64
import logging
import math
import pickle
import zlib
from dataclasses import dataclass, field

from river import stats
from river.base import AnomalyDetector

from services.relevance import formula
from services.relevance.series import SeriesPoint

MODEL_VERSION = "river-1"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    """The tuning of `river-1`, described in the module docstring; changing it makes a new model version."""

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
    prior_colour_spread: float = 0.03
    record_quantile: float = 0.99
    record_margin: float = 0.2
    alert_sigma: float = 6.3
    width_sigma: float = 1.0


PARAMS = Params()


class Novelty(AnomalyDetector):
    """How far a value lies from this series' usual level, in units of its usual spread.

    The spread beyond the error bars is learned as a fraction of (level² + typical error²)
    when `relative` (flux: a source back in quiescence after an outburst is quiet again), or in
    the value's own units (colour). x is {"value": v, "error": σ}.
    """

    def __init__(self, params: Params, window: int, relative: bool, prior_spread: float) -> None:
        self.params = params
        self.relative = relative
        self.prior_spread = prior_spread
        self.level = stats.RollingQuantile(q=0.5, window_size=window)
        self.excess = stats.EWMean(fading_factor=params.fading)
        self.error = stats.EWMean(fading_factor=params.fading)
        self.tail = stats.Quantile(q=params.tail_quantile)
        self.high = stats.Quantile(q=params.record_quantile) if relative else None  # flux only
        self.n = 0
        self.last_u, self.last_mjd = 0.0, -math.inf

    def _scale2(self, level: float) -> float:
        return level ** 2 + self.error.get() ** 2 if self.relative else 1.0

    def _spread2(self, level: float) -> float:
        p = self.params
        learned = max(self.excess.get(), 0.0)
        usual = (self.n * learned + p.prior_points * self.prior_spread ** 2) / (self.n + p.prior_points)
        calibration = (p.systematic * level) ** 2 if self.relative else 0.0
        return usual * self._scale2(level) + calibration

    def _residual(self, x: dict) -> tuple[float, float, float]:
        """(level, value − level, error² + usual spread²) under what has been learned so far."""
        level = self.level.get()
        return level, x["value"] - level, x["error"] ** 2 + self._spread2(level)

    def deviation(self, x: dict) -> float:
        """Signed deviation u of x["value"] (error x["error"]); 0 until `min_points` are known."""
        if self.n < self.params.min_points:
            return 0.0
        _, residual, variance = self._residual(x)
        raw = residual / math.sqrt(variance) if variance > 0 else 0.0
        learned = self.n >= self.params.min_points + self.params.tail_min_points
        u = raw / max(1.0, self.tail.get() / self.params.tail_gaussian) if learned else raw
        if not (self.relative and learned):
            return u
        high = self.high.get()
        variance = x["error"] ** 2 + (self.params.record_margin * high) ** 2
        return max(u, (x["value"] - high) / math.sqrt(variance)) if variance > 0 else u

    def evidence(self, x: dict, mjd: float, upward_only: bool) -> float:
        """Evidence (σ) that x, observed at mjd, is unusual; learns x afterwards.

        The deviation before it counts too when it is at most `persistence_gap_d` days older and
        of the same sign: a real change persists, noise does not.
        """
        u = self.deviation(x)
        previous_u, previous_mjd = self.last_u, self.last_mjd
        self.learn_one(x)
        self.last_u, self.last_mjd = u, mjd
        if upward_only and u <= 0:
            return 0.0
        if mjd - previous_mjd <= self.params.persistence_gap_d and previous_u * u > 0:
            return max(abs(u), abs(u + previous_u) / math.sqrt(2.0))
        return abs(u)

    def learn_one(self, x: dict) -> None:
        if self.n:
            level, residual, variance = self._residual(x)
            if variance > 0:
                limit = self.params.winsor_sigma * math.sqrt(variance)
                clipped = min(max(residual, -limit), limit)
                self.excess.update((clipped ** 2 - x["error"] ** 2) / self._scale2(level))
                if self.n >= self.params.min_points:
                    self.tail.update(abs(residual) / math.sqrt(variance))
        self.level.update(x["value"])
        if self.relative:
            self.high.update(x["value"])
        self.error.update(x["error"])
        self.n += 1

    def score_one(self, x: dict) -> float:
        return abs(self.deviation(x))


def calibrate(evidence: float, params: Params = PARAMS) -> float:
    """Logistic map of evidence (σ) to 0..1: 0.5 at alert_sigma − width·ln(7/3), 0.7 at alert_sigma."""
    centre = params.alert_sigma - params.width_sigma * math.log(0.7 / 0.3)
    z = (evidence - centre) / params.width_sigma
    return 1.0 / (1.0 + math.exp(-z)) if z > -50 else 0.0


def _usable(value: float, error: float) -> bool:
    """A finite value with a finite error ≥ 0: GBM pulsar amplitudes often come with an error of 0,
    and the learned spread of their source then carries the whole uncertainty."""
    return math.isfinite(value) and math.isfinite(error) and error >= 0


@dataclass
class SeriesModel:
    """Everything one series needs to score its next point; pickled as its checkpoint."""

    params: Params = PARAMS
    flux: Novelty | None = None
    colour: Novelty | None = None
    recent: formula.SeriesState = field(default_factory=formula.SeriesState)

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

    def to_text(self) -> str:
        """The checkpoint: "{model version}:{this object pickled, zlib-compressed, base64}"."""
        return f"{MODEL_VERSION}:" + base64.b64encode(zlib.compress(pickle.dumps(self, protocol=5))).decode()

    @staticmethod
    def from_text(text: str | None) -> "SeriesModel":
        """Restore a checkpoint; a missing one, or one of another model version, starts from the prior."""
        version, _, body = (text or "").partition(":")
        if version != MODEL_VERSION:
            return SeriesModel()
        try:
            return pickle.loads(zlib.decompress(base64.b64decode(body)))
        except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as exc:
            log.warning("unreadable %s checkpoint (%s): starting this series from the prior", MODEL_VERSION, exc)
            return SeriesModel()

    def _flux_evidence(self, point: SeriesPoint) -> float:
        if point.kind == "hardness" or not _usable(point.value, point.error):
            return 0.0
        return self.flux.evidence({"value": point.value, "error": point.error}, point.mjd, upward_only=True)

    def _colour_evidence(self, colour: tuple[float, float] | None, mjd: float) -> float:
        if colour is None or not _usable(*colour) or colour[0] <= 0 or colour[1] == 0:
            return 0.0
        x = {"value": math.log(colour[0]), "error": colour[1] / colour[0]}
        if x["error"] > self.params.colour_max_error:
            return 0.0
        if mjd - self.colour.last_mjd > self.params.colour_stale_d:  # a new episode: old colours say nothing
            self.colour = self._new_colour()
        return self.colour.evidence(x, mjd, upward_only=False)

    def score(self, point: SeriesPoint) -> tuple[float, dict[str, float]]:
        """Relevance of a new point and its terms; learns the point afterwards (no look-ahead)."""
        self.recent.push(point.mjd, point.value, point.error, None)  # the flux and trend terms need no colour
        flux = formula.flux_term(point.value, point.error)
        trend = formula.trend_term(self.recent.mjd, self.recent.value, self.recent.error)
        model = calibrate(self._flux_evidence(point), self.params)
        hardness = calibrate(self._colour_evidence(point.colour, point.mjd), self.params)
        terms = {"flux": flux, "trend": trend, "hardness": hardness, "model": model}
        return 1.0 - (1.0 - model) * (1.0 - hardness), terms
