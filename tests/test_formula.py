"""The original FLASHES relevance formula: each term reacts to what it should, and never raises."""
import math

import numpy as np

from services.relevance import formula


def run(values, errors, colours=None):
    state = formula.SeriesState()
    colours = colours or [None] * len(values)
    return [formula.score(state, 58000.5 + i, v, e, c) for i, (v, e, c) in enumerate(zip(values, errors, colours))]


def test_quiet_noise_scores_low_and_an_outburst_rise_scores_high() -> None:
    rng = np.random.default_rng(3)
    quiet = list(rng.normal(0.0, 0.02, 60))
    scores = run(quiet + [0.3, 0.8, 1.6, 2.5], [0.02] * 64)
    assert max(r for r, _ in scores[:60]) < 0.5
    relevance, terms = scores[-1]
    assert relevance >= 0.7 and terms["flux"] == 1.0 and terms["trend"] == 1.0


def test_a_colour_switch_raises_the_hardness_term() -> None:
    colours = [(1.0, 0.05)] * 10 + [(0.4, 0.05)]
    scores = run([1.0] * 11, [0.1] * 11, colours)
    assert scores[5][1]["hardness"] == 0.0
    assert scores[-1][1]["hardness"] == 1.0


def test_scores_stay_in_0_1_for_degenerate_input() -> None:
    cases = [([math.nan], [0.1]), ([1.0], [0.0]), ([-5.0, -6.0, -7.0], [0.1] * 3), ([1.0], [math.inf]),
             ([math.inf, 1.0, 2.0], [0.1, math.nan, 0.1])]
    for values, errors in cases:
        for relevance, terms in run(values, errors, [(math.nan, 0.1)] * len(values)):
            assert 0.0 <= relevance <= 1.0
            assert all(0.0 <= t <= 1.0 for t in terms.values())


def test_errors_too_small_to_weigh_score_in_0_1_without_raising() -> None:
    for relevance, terms in run([1.0, 2.0, 3.0, 4.0], [1e-300, 1e-170, 0.1, 1e-300], [(1.0, 1e-300), (1.0, 0.1)] * 2):
        assert 0.0 <= relevance <= 1.0 and all(0.0 <= t <= 1.0 for t in terms.values())


def test_state_keeps_only_the_last_five_points() -> None:
    state = formula.SeriesState()
    for i in range(12):
        formula.score(state, 58000.0 + i, float(i), 1.0, (1.0, 0.1))
    assert state.mjd == [58007.0, 58008.0, 58009.0, 58010.0, 58011.0]
    assert state.value == [7.0, 8.0, 9.0, 10.0, 11.0] and len(state.error) == len(state.colour) == 5
    # the model's state stores these lists: tests/test_model.py checks its round trip
