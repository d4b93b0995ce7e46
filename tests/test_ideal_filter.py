"""The ideal filter of bench/injection.py (bench/oracle.py), against hand-computed values.

It sets the data's limit that the model's injection figures are read against, so its statistic is
pinned here: a noiseless outburst of the shape it is told gives z = A·√(Σ s²)/σ.
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
ERROR = 3.0  # mCrab in each band: the Crab-like amplitude's error is 3/√3


def step(mjd: np.ndarray, onset: float, rise_d: float) -> np.ndarray:
    """Each day bin's mean of 0 before the onset and 1 after it (the rise is not used)."""
    return np.clip(mjd + 0.5 - onset, 0.0, 1.0)


def lightcurve(flux: np.ndarray, template: tuple[float, ...] = (1.0, 1.0, 1.0)) -> ParsedLightcurve:
    mjd = 55000.5 + np.arange(len(flux))
    return ParsedLightcurve(
        mjd, {band: (share * flux, np.full(len(flux), ERROR)) for band, share in zip(BANDS, template)}
    )


def test_a_noiseless_outburst_of_the_shape_told_gives_the_matched_filter_value() -> None:
    flux = np.zeros(120)
    flux[100:] = 30.0  # on from MJD 55100.0, the start of the bin centred on 55100.5
    filt = oracle.Oracle.of(dict(zip(BANDS, (1.0, 1.0, 1.0))), 1.0, step)
    mjd, z = oracle.scores(lightcurve(flux), filt, UNIT)
    sigma = ERROR / math.sqrt(3.0)
    assert z[mjd == 55101.5][0] == pytest.approx(30.0 * math.sqrt(2.0) / sigma)  # two whole bins
    assert z[mjd == 55100.5][0] == pytest.approx(30.0 / sigma)
    assert z[mjd == 55099.5][0] == pytest.approx(0.0)  # nothing yet
    assert np.all(z[:30] == -np.inf)  # no level before 30 days


def test_the_wrong_spectrum_finds_less_and_a_dip_finds_nothing() -> None:
    flux = np.zeros(120)
    flux[100:] = 30.0
    crab = oracle.Oracle.of(dict(zip(BANDS, (1.0, 1.0, 1.0))), 1.0, step)
    hard = oracle.Oracle.of(dict(zip(BANDS, (0.5, 1.0, 2.0))), 1.0, step)
    at = 55101.5
    told = oracle.scores(lightcurve(flux, (0.5, 1.0, 2.0)), hard, UNIT)
    wrong = oracle.scores(lightcurve(flux, (0.5, 1.0, 2.0)), crab, UNIT)
    assert told[1][told[0] == at][0] > wrong[1][wrong[0] == at][0]
    _, dip = oracle.scores(lightcurve(-flux), crab, UNIT)
    assert np.all(dip[30:] <= 0.0)
