"""Units, Crab factors, MJD/UTC and error propagation against hand-computed values."""

from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.time import Time

from flashes.timeconv import datetime_to_mjd, mjd_to_datetime, mjd_to_unix_us
from flashes.units import MCRAB_PER_UNIT, to_mcrab
from services.api.render import hms
from services.derive.physics import combined, hardness
from services.relevance.series import band_colour, maxi_bands


def test_crab_factors_are_the_inverse_of_one_crab_in_each_band() -> None:
    # 1 Crab = 0.22 counts/cm²/s (BAT 15-50), 3.2 / 2.1 / 1.2 / 0.4 ph/cm²/s (MAXI 2-20 / 2-4 / 4-10 / 10-20),
    # 4.5 (GBM).
    one_crab = {
        ("swift", "15-50"): 0.22,
        ("maxi", "2-20"): 3.2,
        ("maxi", "2-4"): 2.1,
        ("maxi", "4-10"): 1.2,
        ("maxi", "10-20"): 0.4,
        ("fermi", "12-50"): 4.5,
    }
    for key, flux in one_crab.items():
        assert to_mcrab(*key, flux, 0.0)[0] == pytest.approx(1000.0, rel=1e-6), key
    assert set(one_crab) == set(MCRAB_PER_UNIT)


def _one(f, bat: tuple[float, float], maxi: tuple[float, float]) -> tuple[float, float]:
    value, error = f(*(np.array([x]) for x in (*bat, *maxi)))
    return float(value[0]), float(error[0])


def test_hardness_and_combined_flux_by_hand() -> None:
    bat = to_mcrab("swift", "15-50", 0.022, 0.0011)  # 100 mCrab ± 5
    maxi = to_mcrab("maxi", "2-20", 0.64, 0.032)  # 200 mCrab ± 10
    assert bat == pytest.approx((100.0, 5.0), rel=1e-6)
    assert maxi == pytest.approx((200.0, 10.0), rel=1e-6)
    h, dh = _one(hardness, bat, maxi)
    assert h == pytest.approx(0.5, rel=1e-6)
    assert dh == pytest.approx(0.5 * np.sqrt(0.05**2 + 0.05**2), rel=1e-6)  # 0.0353553
    phi, dphi = _one(combined, bat, maxi)
    assert phi == pytest.approx(300.0, rel=1e-6)
    assert dphi == pytest.approx(np.sqrt(5.0**2 + 10.0**2), rel=1e-6)  # 11.1803, no extra (Φ_BAT+Φ_MAXI) factor


def test_negative_flux_keeps_its_sign_and_zero_maxi_gives_no_hardness() -> None:
    h, dh = _one(hardness, (-10.0, 5.0), (100.0, 10.0))
    assert h == pytest.approx(-0.1) and dh == pytest.approx(0.1 * np.hypot(0.5, 0.1))
    assert all(np.isnan(_one(hardness, (10.0, 5.0), (0.0, 10.0))))
    assert _one(combined, (10.0, 5.0), (0.0, 10.0)) == (10.0, pytest.approx(np.hypot(5.0, 10.0)))


def test_mjd_to_utc_by_hand_and_against_astropy() -> None:
    assert mjd_to_datetime(40587.0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert mjd_to_datetime(51544.5) == datetime(2000, 1, 1, 12, tzinfo=UTC)  # J2000.0 = JD 2451545.0
    assert mjd_to_datetime(58016.5) == datetime(2017, 9, 20, 12, tzinfo=UTC)  # MAXI J1535-571 peak day
    mjd = np.array([55053.5, 58000.25, 59141.5])
    expected = Time(mjd, format="mjd", scale="utc").to_datetime(timezone=UTC)
    assert [mjd_to_datetime(m) for m in mjd] == list(expected)
    assert mjd_to_unix_us(np.array([40588.0]))[0] == 86_400_000_000
    assert datetime_to_mjd(datetime(2017, 9, 20, 12, tzinfo=UTC)) == pytest.approx(58016.5)


def test_maxi_colour_4_10_over_2_4_in_mcrab_with_propagated_error() -> None:
    # 1.2 ph/cm²/s in 4-10 keV and 2.1 in 2-4 keV are both 1 Crab: colour 1.
    flux = {"4-10": np.array([1.2, 1.2]), "2-4": np.array([2.1, -0.1])}
    error = {"4-10": np.array([0.012, 0.012]), "2-4": np.array([0.042, 0.05])}
    c, dc = band_colour(maxi_bands(flux, error))
    assert c[0] == pytest.approx(1.0, rel=1e-6)
    assert dc[0] == pytest.approx(np.hypot(0.01, 0.02), rel=1e-6)
    assert np.isnan(c[1]) and np.isnan(dc[1])  # a negative soft flux has no colour


@pytest.mark.parametrize(
    ("ra", "dec", "text"),
    [
        # The Crab: 83.63308° / 15 = 5.575539 h = 5h 34m 31.94s; 22.0145° = 22° 0′ 52.2″.
        (83.63308, 22.0145, "05h 34m 31.9s  +22° 00′ 52.2″"),
        # 359.99999° is 23h 59m 59.9976s: rounded to 0.1 s it is 0h, never 24h; a small negative Dec keeps its sign.
        (359.99999, -0.00001, "00h 00m 00.0s  -00° 00′ 00.0″"),
        (-15.0, -89.99999, "23h 00m 00.0s  -90° 00′ 00.0″"),
    ],
)
def test_sexagesimal_positions_by_hand(ra: float, dec: float, text: str) -> None:
    assert hms(ra, dec) == text
