"""The River relevance model on synthetic series whose right answer is known, and its checkpoints."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from services.alerts import trigger
from services.relevance.model import MODEL_VERSION, PARAMS, SeriesModel, calibrate
from services.relevance.series import SeriesPoint

THRESHOLD = 0.7
T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def point(mjd: float, value: float, error: float, colour: tuple[float, float] | None = None,
          kind: str = "maxi") -> SeriesPoint:
    return SeriesPoint(f"{kind}_test", "test", kind, T0, mjd, value, error, colour)


def quiet(n: int = 400, seed: int = 1) -> list[SeriesPoint]:
    """A faint source seen by MAXI: 2 mCrab-ish with 10 mCrab-ish daily errors, pure noise."""
    rng = np.random.default_rng(seed)
    error = rng.uniform(0.008, 0.015, n)
    return [point(58000.5 + i, float(0.005 + rng.normal(0, e)), float(e)) for i, e in enumerate(error)]


def scores(points: list[SeriesPoint], model: SeriesModel | None = None) -> list[tuple[float, dict[str, float]]]:
    model = model or SeriesModel()
    return [model.score(p) for p in points]


def test_a_quiet_source_going_into_outburst_is_flagged_within_two_points() -> None:
    points = quiet()
    onset = 300
    rise = [0.05, 0.15, 0.4, 0.8, 1.2]  # ph/cm²/s: 4σ, then far above the noise, as MAXI J1535-571 did
    for k, flux in enumerate(rise):
        p = points[onset + k]
        points[onset + k] = point(p.mjd, flux, 0.012 + 0.01 * flux)
    relevance = [r for r, _ in scores(points)]
    assert max(relevance[:onset]) < THRESHOLD
    assert max(relevance[onset:onset + 2]) >= THRESHOLD


def test_the_same_quiet_series_without_outburst_stays_below_the_threshold() -> None:
    for seed in range(5):
        relevance = [r for r, _ in scores(quiet(seed=seed))]
        assert max(relevance) < THRESHOLD and np.median(relevance) < 0.05


def test_a_switch_from_hard_to_soft_raises_the_hardness_term() -> None:
    rng = np.random.default_rng(2)
    points = []
    for i in range(120):
        colour = 1.2 if i < 100 else 0.6  # 4-10 over 2-4 keV halves: the source turns soft
        measured = colour * (1 + rng.normal(0, 0.02))
        points.append(point(58000.5 + i, float(2.0 + rng.normal(0, 0.03)), 0.03, (measured, 0.02 * measured)))
    result = scores(points)
    hardness = [t["hardness"] for _, t in result]
    assert max(hardness[:100]) < THRESHOLD
    assert max(hardness[100:102]) >= THRESHOLD
    assert trigger.reasons(trigger.snapshot(*result[99]), trigger.snapshot(*result[100]), THRESHOLD) == ["hardness"]


def test_a_regular_outburster_stays_quiet_until_an_outburst_breaks_its_pattern_in_peak() -> None:
    rng = np.random.default_rng(6)
    flux = np.full(1600, 0.005)
    peaks = {100 * i + 50: (3.0 if i == 12 else 1.0) for i in range(15)}  # every 100 d; the 13th is 3× brighter
    for start, peak in peaks.items():
        k = np.arange(25)
        flux[start:start + 25] += peak * np.where(k < 5, np.exp(-((k - 5) / 4) ** 2), np.exp(-(k - 5) / 6))
    points = [point(55000.5 + i, float(f + rng.normal(0, 0.012)), 0.012) for i, f in enumerate(flux)]
    relevance = np.array([r for r, _ in scores(points)])
    for start in peaks:
        usual = relevance[start:start + 25].max()
        if start == 1250:
            assert usual >= THRESHOLD
        elif start >= 350:  # the pattern is learned after a few outbursts
            assert usual < THRESHOLD, start


def test_a_pulsar_with_zero_errors_is_scored_from_its_learned_spread() -> None:
    rng = np.random.default_rng(5)  # Fermi/GBM amplitudes often come with an error of 0
    amplitude = [float(0.02 * (1 + rng.normal(0, 0.1))) for _ in range(300)] + [0.1, 0.3, 0.6]
    relevance = [r for r, _ in scores([point(58000.5 + i, a, 0.0, kind="fermi") for i, a in enumerate(amplitude)])]
    assert max(relevance[:300]) < THRESHOLD and max(relevance[300:]) >= THRESHOLD


def test_a_bright_steady_source_is_not_unusual_for_being_new() -> None:
    rng = np.random.default_rng(3)
    points = [point(58000.5 + i, float(47.0 * (1 + rng.normal(0, 0.15))), 0.3) for i in range(200)]  # Sco X-1-like
    assert max(r for r, _ in scores(points)) < THRESHOLD


def test_regular_orbital_flares_are_learned_and_stay_quiet() -> None:
    rng = np.random.default_rng(4)
    points = []
    for i in range(1500):
        phase = (i % 16.6) / 16.6  # Cir X-1: a flare every 16.6 days
        flux = 0.05 + (0.8 * math.exp(-phase / 0.06)) * rng.uniform(0.5, 1.5)
        points.append(point(55000.5 + i, float(flux + rng.normal(0, 0.02)), 0.02))
    relevance = np.array([r for r, _ in scores(points)])
    after_first_year = relevance[365:]
    alerts = np.sum((after_first_year[1:] >= THRESHOLD) & (after_first_year[:-1] < THRESHOLD))
    assert alerts <= 1, f"{alerts} alerts on a regular flaring source"


@pytest.mark.parametrize("value,error", [(math.nan, 0.01), (0.1, math.nan), (0.1, 0.0), (-0.3, 0.01),
                                         (math.inf, 0.01), (0.1, -1.0)])
def test_degenerate_points_score_in_0_1_without_raising(value: float, error: float) -> None:
    model = SeriesModel()
    for p in quiet(20):
        model.score(p)
    relevance, terms = model.score(point(58100.5, value, error, (math.nan, 0.0)))
    assert 0.0 <= relevance <= 1.0 and all(0.0 <= t <= 1.0 for t in terms.values())


def test_a_single_point_series_and_a_hardness_series_score_in_0_1() -> None:
    relevance, terms = SeriesModel().score(point(58000.5, 5.0, 0.1))
    assert relevance < 0.05 and set(terms) == {"model", "hardness", "flux", "trend"}
    for r, t in scores([point(58000.5 + i, 0.5, 0.02, (0.5, 0.02), kind="hardness") for i in range(20)]):
        assert 0.0 <= r <= 1.0 and t["model"] < 0.05  # a hardness series has no flux term of its own


def test_the_calibration_is_monotonic_and_reaches_the_threshold_at_the_alert_evidence() -> None:
    values = [calibrate(e) for e in np.linspace(0, 20, 81)]
    assert values == sorted(values) and values[0] < 0.01 and values[-1] > 0.99
    assert calibrate(PARAMS.alert_sigma) == pytest.approx(0.7)


def test_a_restored_checkpoint_continues_exactly_like_an_uninterrupted_model() -> None:
    points = quiet(300)
    uninterrupted = scores(points)
    first = SeriesModel()
    scores(points[:150], first)
    checkpoint = first.to_text()
    assert checkpoint.startswith(f"{MODEL_VERSION}:") and len(checkpoint) < 4096  # small state per series
    assert scores(points[150:], SeriesModel.from_text(checkpoint)) == uninterrupted[150:]


@pytest.mark.parametrize("checkpoint", ["river-0:whatever", f"{MODEL_VERSION}:not base64!", f"{MODEL_VERSION}:AAAA"])
def test_a_checkpoint_of_another_model_version_or_unreadable_starts_from_the_prior(checkpoint: str) -> None:
    restored = SeriesModel.from_text(checkpoint)
    assert restored.last_scored_mjd == -math.inf and restored.flux.n == 0


def test_alerts_fire_on_crossings_only() -> None:
    low = {"model": 0.1, "hardness": 0.1, "relevance": 0.2}
    high = {"model": 0.9, "hardness": 0.1, "relevance": 0.91}
    both = {"model": 0.9, "hardness": 0.8, "relevance": 0.98}
    assert trigger.reasons(None, high, THRESHOLD) == ["model"]
    assert trigger.reasons(low, high, THRESHOLD) == ["model"]
    assert trigger.reasons(high, high, THRESHOLD) == []
    assert trigger.reasons(high, both, THRESHOLD) == ["hardness"]
    assert trigger.reasons(low, {"model": 0.6, "hardness": 0.5, "relevance": 0.8}, THRESHOLD) == ["relevance"]
