"""The matched filter of bench/injection.py (bench/oracle.py), against hand-computed values and a plain loop.

It is the reference the model's injection figures are read against, so its statistic is pinned here: a
noiseless outburst of the shape it is told gives z = A·√(Σ s²)/σ, each tried onset is judged against what
was known before it, and the vectorised scan equals a direct computation on a gappy, noisy lightcurve.
"""

import importlib.util
import math
import sys

import numpy as np
import pytest

from flashes.parsers import ParsedLightcurve
from flashes.settings import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location("bench_oracle", PROJECT_ROOT / "bench" / "oracle.py")
assert _spec and _spec.loader
oracle = sys.modules["bench_oracle"] = importlib.util.module_from_spec(_spec)  # its dataclass looks itself up
_spec.loader.exec_module(oracle)

BANDS = ("2-4", "4-10", "10-20")
UNIT = dict.fromkeys(BANDS, 1.0)  # the test's fluxes are in mCrab already
CRAB = dict(zip(BANDS, (1.0, 1.0, 1.0)))
ERROR = 3.0  # mCrab in each band: the Crab-like amplitude's error is 3/√3


def step(mjd: np.ndarray, onset: float, rise_d: float) -> np.ndarray:
    """Each day bin's mean of 0 before the onset and 1 after it (the rise is not used)."""
    return np.clip(mjd + 0.5 - onset, 0.0, 1.0)


def ramp(mjd: np.ndarray, onset: float, rise_d: float) -> np.ndarray:
    """Each day bin's mean of a linear rise over rise_d days, then flat (64 instants per bin)."""
    t = mjd[:, None] - onset + (np.arange(64) + 0.5) / 64 - 0.5
    return np.clip(t / rise_d, 0.0, 1.0).mean(axis=1)


def lightcurve(
    flux: np.ndarray, template: tuple[float, ...] = (1.0, 1.0, 1.0), mjd: np.ndarray | None = None
) -> ParsedLightcurve:
    mjd = 55000.5 + np.arange(len(flux)) if mjd is None else mjd
    return ParsedLightcurve(
        mjd, {band: (share * flux, np.full(len(flux), ERROR)) for band, share in zip(BANDS, template)}
    )


def z_at(lc: ParsedLightcurve, filt: object, mjd: float) -> float:
    days, z = oracle.scores(lc, filt, UNIT)
    return float(z[days == mjd][0])


def test_a_noiseless_outburst_of_the_shape_told_gives_the_matched_filter_value() -> None:
    flux = np.zeros(120)
    flux[100:] = 30.0  # on from MJD 55100.0, the start of the bin centred on 55100.5
    filt = oracle.Oracle.of(CRAB, 1.0, step)
    mjd, z = oracle.scores(lightcurve(flux), filt, UNIT)
    sigma = ERROR / math.sqrt(3.0)
    assert z[mjd == 55101.5][0] == pytest.approx(30.0 * math.sqrt(2.0) / sigma)  # two whole bins
    assert z[mjd == 55100.5][0] == pytest.approx(30.0 / sigma)
    assert z[mjd == 55099.5][0] == pytest.approx(0.0)  # nothing yet
    assert np.all(z[:30] == -np.inf)  # no level before 30 days


def test_each_onset_is_judged_against_the_level_and_scatter_before_it() -> None:
    # 70 days alternating 45 / 55 mCrab, then 20 days at 150: level 50, normalised residuals ±5/√3 (the amplitude's
    # error is √3), so the errors are scaled by 1.4826·5/√3. The outburst raises neither: they are the ones
    # from before the onset, however long it has been on.
    flux = np.concatenate([np.tile([45.0, 55.0], 35), np.full(20, 150.0)])
    filt = oracle.Oracle.of(CRAB, 1.0, step)
    sigma = math.sqrt(3.0) * 1.4826 * 5.0 / math.sqrt(3.0)
    assert z_at(lightcurve(flux), filt, 55071.5) == pytest.approx(100.0 * math.sqrt(2.0) / sigma)
    assert z_at(lightcurve(flux), filt, 55077.5) == pytest.approx(100.0 * math.sqrt(8.0) / sigma)  # 8 bins on
    # A point changes nothing before it.
    later = flux.copy()
    later[75] = 1000.0
    assert z_at(lightcurve(later), filt, 55074.5) == z_at(lightcurve(flux), filt, 55074.5)


def direct(lc: ParsedLightcurve, rise_d: float) -> tuple[np.ndarray, np.ndarray]:
    """The matched filter written as a plain loop over days and tried onsets."""
    mjd, flux, error = oracle.amplitude(lc, CRAB, UNIT)
    n = len(mjd)
    previous = [np.median(flux[i - 30 : i]) if i >= 30 else np.nan for i in range(n)]
    normalised = (flux - np.array(previous)) / error
    z = np.full(n, -np.inf)
    for t in range(n):
        for offset in np.arange(0.0, rise_d + oracle.REACH_D, oracle.ONSET_STEP_D):
            onset = mjd[t] + 0.5 - offset
            before = np.flatnonzero(mjd < math.floor(onset) + 0.5 - 1e-6)  # the bins before the onset's
            if len(before) < 30:
                continue
            level = np.median(flux[before[-30:]])
            known = normalised[before[-60:]]
            known = known[np.isfinite(known)]
            scale = max(1.4826 * np.median(np.abs(known)), 1.0) if len(known) >= 30 else 1.0
            shape = ramp(mjd[: t + 1], onset, rise_d)
            den = np.sum(shape**2 / error[: t + 1] ** 2)
            if den > 0:
                num = np.sum(shape * (flux[: t + 1] - level) / error[: t + 1] ** 2)
                z[t] = max(z[t], num / (scale * math.sqrt(den)))
    return mjd, z


def test_the_scan_equals_a_plain_loop_on_a_gappy_noisy_lightcurve() -> None:
    rng = np.random.default_rng(1)
    mjd = 55000.5 + np.sort(rng.choice(160, 110, replace=False))
    flux = 20.0 + rng.normal(0.0, 4.0, len(mjd)) + 60.0 * ramp(mjd, 55120.3, 5.0)
    lc = lightcurve(flux, mjd=mjd)
    days, z = oracle.scores(lc, oracle.Oracle.of(CRAB, 5.0, ramp), UNIT)
    expected_days, expected = direct(lc, 5.0)
    assert list(days) == list(expected_days)
    assert np.isfinite(expected).sum() > 50
    assert z == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_the_wrong_spectrum_finds_less_and_a_dip_finds_nothing() -> None:
    flux = np.zeros(120)
    flux[100:] = 30.0
    hard = oracle.Oracle.of(dict(zip(BANDS, (0.5, 1.0, 2.0))), 1.0, step)
    lc = lightcurve(flux, (0.5, 1.0, 2.0))
    assert z_at(lc, hard, 55101.5) > z_at(lc, oracle.Oracle.of(CRAB, 1.0, step), 55101.5)
    _, dip = oracle.scores(lightcurve(-flux), oracle.Oracle.of(CRAB, 1.0, step), UNIT)
    assert np.all(dip[30:] <= 1e-9)


def test_only_daily_bins_centred_on_the_half_day() -> None:
    with pytest.raises(ValueError, match="1-day bins"):
        oracle.scores(lightcurve(np.zeros(40), mjd=55000.2 + np.arange(40)), oracle.Oracle.of(CRAB, 1.0, step), UNIT)
