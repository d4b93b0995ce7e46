"""The original FLASHES relevance formula: each term reacts to what it should, and never raises."""

import math

import numpy as np
import pytest

from services.relevance import formula


def run(values, errors, colours=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Relevance and the flux and trend terms of a series of daily points."""
    mjd = 58000.5 + np.arange(len(values))
    value, error = np.array(values, dtype=float), np.array(errors, dtype=float)
    colours = colours or [(math.nan, math.nan)] * len(values)
    colour, colour_error = (np.array(c, dtype=float) for c in zip(*colours))
    relevance = formula.scores(mjd, value, error, colour, colour_error)
    return relevance, {"flux": formula.flux_terms(value, error), "trend": formula.trend_terms(mjd, value, error)}


def test_quiet_noise_scores_low_and_an_outburst_rise_scores_high() -> None:
    rng = np.random.default_rng(3)
    quiet = list(rng.normal(0.0, 0.02, 60))
    relevance, terms = run(quiet + [0.3, 0.8, 1.6, 2.5], [0.02] * 64)
    assert relevance[:60].max() < 0.5
    assert relevance[-1] >= 0.7 and terms["flux"][-1] == 1.0 and terms["trend"][-1] == 1.0


def test_trend_by_hand_and_the_same_from_any_start() -> None:
    # y = t, errors 1: t̄ = 2, Σw(t − t̄)² = 10, slope 1, z = 1·√10 -> term √10/10.
    mjd, value = np.arange(5.0), np.arange(5.0)
    trend = formula.trend_terms(mjd, value, np.ones(5))
    assert trend[:2].tolist() == [0.0, 0.0]  # fewer than 3 points
    assert trend[-1] == pytest.approx(math.sqrt(10) / 10)
    rng = np.random.default_rng(1)
    mjd, value, error = np.arange(40.0), rng.normal(1, 0.1, 40), rng.uniform(0.05, 0.2, 40)
    whole = formula.trend_terms(mjd, value, error)
    assert formula.trend_terms(mjd, value, error, start=17).tolist() == whole[17:].tolist()


def test_a_colour_switch_raises_the_hardness_term() -> None:
    colours = [(1.0, 0.05)] * 10 + [(0.4, 0.05)]
    relevance, _ = run([1.0] * 11, [0.1] * 11, colours)
    assert formula.hardness_term([(1.0, 0.05)] * 4, (1.0, 0.05)) == 0.0
    assert formula.hardness_term([(1.0, 0.05)] * 4, (0.4, 0.05)) == 1.0
    assert relevance[-1] - relevance[-2] == pytest.approx(formula.WEIGHTS["hardness"])


def test_scores_stay_in_0_1_for_degenerate_input() -> None:
    cases = [
        ([math.nan], [0.1]),
        ([1.0], [0.0]),
        ([-5.0, -6.0, -7.0], [0.1] * 3),
        ([1.0], [math.inf]),
        ([math.inf, 1.0, 2.0], [0.1, math.nan, 0.1]),
    ]
    for values, errors in cases:
        relevance, terms = run(values, errors, [(math.nan, 0.1)] * len(values))
        assert np.all((relevance >= 0.0) & (relevance <= 1.0))
        assert all(np.all((t >= 0.0) & (t <= 1.0)) for t in terms.values())


def test_errors_too_small_to_weigh_score_in_0_1_without_raising() -> None:
    relevance, terms = run([1.0, 2.0, 3.0, 4.0], [1e-300, 1e-170, 0.1, 1e-300], [(1.0, 1e-300), (1.0, 0.1)] * 2)
    assert np.all((relevance >= 0.0) & (relevance <= 1.0))
    assert all(np.all((t >= 0.0) & (t <= 1.0)) for t in terms.values())
