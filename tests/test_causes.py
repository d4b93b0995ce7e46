"""What the data show at a false alert (evaluation/causes.py), on hand-made lightcurves."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.causes import Explainer, FileData, Measured
from evaluation.metrics import CAUSES, Event, score_method
from flashes.parsers import ParsedLightcurve
from flashes.units import MCRAB_PER_UNIT

DAYS = 40
ALERT = 55030.5  # the first day after 30 days of level


def measured(after: list[float], base: tuple[float, float] = (9.0, 11.0), error: float = 1.0) -> Measured:
    """30 days alternating between the two `base` values, then `after`, one point a day."""
    values = [base[i % 2] for i in range(30)] + after
    return Measured(55000.5 + np.arange(len(values)), np.array(values), np.full(len(values), error))


def test_a_brightening_needs_three_points_beyond_the_error_and_the_months_scatter() -> None:
    # level 10, MAD 1 -> scatter 1.4826; σ = √(1 + 1.4826²) = 1.79, 5σ = 8.94 mCrab
    assert measured([30.0, 30.0, 30.0, 10.0]).shift(ALERT) == pytest.approx(20.0)
    assert measured([30.0, 30.0, 10.0, 10.0]).shift(ALERT) is None  # two days are no sustained brightening
    assert measured([18.0, 18.0, 18.0]).shift(ALERT) is None  # 8 mCrab: within 5σ
    assert measured([40.0, 40.0, 40.0], base=(0.0, 20.0)).shift(ALERT) is None  # the source's usual wandering
    assert measured([-20.0, -20.0, -20.0]).shift(ALERT) is None  # a fall is no brightening ...
    assert measured([-20.0, -20.0, -20.0]).shift(ALERT, upward=False) == pytest.approx(-30.0)  # ... but a change
    assert measured([10.0] * 8 + [30.0] * 3).shift(ALERT) is None  # nothing beyond SUSTAIN_D days counts
    assert measured([10.0] * 8 + [30.0] * 3).shift(ALERT + 8) == pytest.approx(20.0)
    assert Measured(np.arange(9.0), np.zeros(9), np.ones(9)).shift(9.5) is None  # 9 points are no month's level


def test_points_without_a_finite_value_or_error_are_left_out() -> None:
    data = Measured.of(np.arange(4.0), np.array([1.0, np.nan, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, np.inf]))
    assert list(data.mjd) == [0.0]


def maxi(soft: np.ndarray, hard: np.ndarray, error: float = 1.0) -> ParsedLightcurve:
    """A MAXI file from its 2-4 and 4-10 keV mCrab (10-20 keV 0, 2-20 keV their sum)."""
    mcrab = {"2-4": soft, "4-10": hard, "10-20": np.zeros(len(soft)), "2-20": soft + hard}
    return ParsedLightcurve(
        55000.5 + np.arange(len(soft)),
        {
            band: (flux / MCRAB_PER_UNIT[("maxi", band)], np.full(len(soft), error) / MCRAB_PER_UNIT[("maxi", band)])
            for band, flux in mcrab.items()
        },
    )


def test_a_maxi_file_gives_its_flux_and_its_colour_measured_to_better_than_ten_percent() -> None:
    soft = np.array([100.0, 100.0, 5.0])
    data = FileData.of(maxi(soft, np.array([50.0, 200.0, 5.0])), "maxi")
    assert data.flux.value == pytest.approx([150.0, 300.0, 10.0])
    assert data.colour is not None
    assert data.colour.value == pytest.approx(np.log([0.5, 2.0]))  # the third day's colour is known to 28 %
    assert data.colour.error == pytest.approx([np.sqrt(0.01**2 + 0.02**2), np.sqrt(0.01**2 + 0.005**2)])


def test_causes_in_order_neighbour_brightening_colour_unexplained() -> None:
    later = np.arange(DAYS) >= 30
    flat = np.full(DAYS, 100.0)
    outburst = np.where(later, 400.0, 100.0)
    small = np.where(later, 200.0, 100.0)
    files = {
        "quiet": [FileData.of(maxi(flat, flat), "maxi")],
        "bright": [FileData.of(maxi(outburst, outburst), "maxi")],
        "small": [FileData.of(maxi(small, small), "maxi")],
        "softer": [FileData.of(maxi(np.where(later, 175.0, 100.0), np.where(later, 25.0, 100.0)), "maxi")],
    }
    explain = Explainer(files, {"small": [("bright", 0.3)], "bright": [("small", 0.3)]})
    assert explain("small", ALERT) == "neighbour"  # a brighter neighbour rose too
    assert explain("bright", ALERT) == "brightening"  # the fainter one is not what it saw
    assert explain("softer", ALERT) == "colour"  # 2-20 keV flat, the colour fell by a factor 7
    assert explain("quiet", ALERT) == "unexplained"
    assert explain("unknown", ALERT) == "unexplained"


def test_false_episodes_are_counted_by_cause() -> None:
    alerts = {"a": [100.0, 300.0, 500.0], "b": [50.0]}
    causes = {100.0: "brightening", 300.0: "neighbour", 500.0: "unexplained", 50.0: "unexplained"}
    _, details = score_method(
        alerts, {"a": 365.25, "b": 365.25}, [Event("a", "outburst onset", 299.0)], lambda sid, t: causes[t]
    )
    assert details["false_alert_episodes_by_cause"] == dict.fromkeys(CAUSES, 0) | {"brightening": 1, "unexplained": 2}
    assert details["unexplained_false_alerts_per_source_year"] == 1.0
    _, plain = score_method(alerts, {"a": 365.25, "b": 365.25}, [])
    assert "false_alert_episodes_by_cause" not in plain
