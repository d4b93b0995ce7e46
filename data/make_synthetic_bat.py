"""Make SYNTHETIC Swift/BAT 15-50 keV daily lightcurves for the sample mirror from the same source's
real MAXI/GSC lightcurve (no real BAT file can be had offline).

For each MAXI file in data/mirror/maxi/star_data/ whose source has a Swift ID in the catalogue, write
data/mirror/swift/results/transients/[weak/]{SwiftID}.lc.txt in the BAT transient monitor's text
layout (`#` comment lines, a column-name line, then TIME RATE ERROR YEAR DAY STAT_ERR SYS_ERR
DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED). Every number below is in Crab units
(mCrab = factor x provider flux, flashes/units.py), so the Crab's own spectrum cancels.

1. Spectral scaling (what BAT would see of the spectrum MAXI measures). The source's photon
   spectrum is taken as a power law N(E) ~ E^-G between 4 and 50 keV, and the Crab's as
   E^-2.1 (G_CRAB). The flux in mCrab in a band [a, b] is then A * I(a, b, G) / I(a, b, 2.1), with
   I(a, b, G) = integral of E^-G from a to b. So the ratio of the MAXI 10-20 and 4-10 keV fluxes in
   mCrab fixes G (r = 1 for a Crab-like spectrum, r > 1 harder, r < 1 softer), and the 15-50 keV
   flux in mCrab follows from the 10-20 keV one:
       BAT = F(10-20) * [I(15,50,G)/I(15,50,2.1)] / [I(10,20,G)/I(10,20,2.1)].
   One day's MAXI colour is noisy, so r is the ratio of the band fluxes' medians over a centred
   window of days: the narrowest of 7, 15, 31, 61 days in which both band means have S/N >= 10 (a
   bright source keeps a one-week colour, a faint one a longer one). A running median keeps a
   monotonic change (a state transition) where it is and ignores a one-day excursion of one band.
   G is clipped to 1.4..3.5; where no window reaches S/N 10 in both bands the spectrum is taken
   as Crab-like (G = 2.1, C = 1). So a faint excess in the 10-20 keV band alone is not
   extrapolated: MAXI J1535-571's quiescence has several (e.g. MJD 59112-59123: ~100 mCrab in
   10-20 keV, ~10 in 4-10 keV, harder than any power law, likely background), and BAT with its
   finer imaging would not see them. The spectral factor C = BAT / F(2-20 keV), both in mCrab from the same window,
   scales the day's MAXI 2-20 keV flux:
       BAT_true(day) = C(day) * F_MAXI 2-20(day),
   except that a one-day MAXI glitch, a day more than 5 sigma and a factor 2 away from the median
   of itself and its two neighbours, is replaced by that median (BAT would not share it).
   A soft state (strong 2-4 keV, weak 10-20 keV: MAXI J1535-571 after MJD ~58006, MAXI J1820+070
   in MJD ~58305-58385) has r << 1, so G is steep and BAT/MAXI is low; a hard state has r > 1 and
   BAT/MAXI is high: the hardness ratio changes at the real state transitions. A source whose
   spectrum does not change state (Sco X-1) keeps a nearly constant C: its hardness wanders only
   as much as its week-long MAXI colour does (a few %), within the 3 % systematic below.
   Days MAXI lacks are interpolated (in time, linearly) over MAXI gaps of at most 3 days; in a
   longer MAXI gap BAT has no day either.
2. BAT-like noise: the statistical error is what BAT's transient monitor gives for a source near
   the centre of its field, constant in counts/cm^2/s apart from the day's exposure:
   STAT_ERR = 0.004 x sqrt(1500 s / exposure), the exposure uniform in 1500-6000 s, i.e.
   0.002-0.004 counts/cm^2/s (9-18 mCrab); SYS_ERR = 3 % of the true rate (calibration; it matters
   for bright sources only); ERROR = hypot(STAT_ERR, SYS_ERR). RATE = BAT_true / 4545.4545 +
   Gaussian noise of that error. Random numbers come from a generator seeded with the CRC-32 of
   the Swift ID, so each file is reproducible on its own.
3. BAT-like gaps, days as BAT's (MJD of the start of the UTC day, xxxxx.0):
   - the Sun constraint: no day while the Sun's ecliptic longitude is within 22 deg of the source's
     (about 45 days around the solar conjunction each year; a simplification of the real
     constraint, which also depends on the ecliptic latitude);
   - ~10 % of the other days missing at random;
   - ~2 % of the days kept have DATA_FLAG = 1 (suspect; the value is drawn as for any other day).

Run: .venv/bin/python data/make_synthetic_bat.py   (deterministic: the same files every time)
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import BarycentricMeanEcliptic, SkyCoord
from astropy.time import Time

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
from flashes.parsers import MAXI_BANDS, ParsedLightcurve, parse  # noqa: E402
from flashes.units import MCRAB_PER_UNIT, to_mcrab  # noqa: E402

MCRAB_BAT = MCRAB_PER_UNIT[("swift", "15-50")]
G_CRAB, G_MIN, G_MAX = 2.1, 1.4, 3.5
WINDOWS_D = (7, 15, 31, 61)
MIN_SNR = 10.0
MAX_INTERPOLATED_GAP_D = 3
GLITCH_SIGMA, GLITCH_FACTOR = 5.0, 2.0
ERROR_AT_REF, EXPO_REF_S, EXPO_RANGE_S = 0.004, 1500.0, (1500, 6000)
SYSTEMATIC = 0.03
SUN_HALF_GAP_DEG = 22.0
MISSING_FRACTION, FLAGGED_FRACTION = 0.10, 0.02

HEADER = """# Swift/BAT transient monitor daily light curve, 15-50 keV -- SYNTHETIC
# synthetic: made by data/make_synthetic_bat.py from the real MAXI/GSC light curve of the same
# synthetic: source; NOT real Swift/BAT data. Source: {name}
# synthetic: spectral scaling: power law N(E) ~ E^-G through the MAXI 4-10 and 10-20 keV fluxes in
# synthetic: mCrab (Crab G = 2.1); G from the ratio of their running medians over 7 days (longer,
# synthetic: up to 61, until S/N >= 10), clipped to 1.4..3.5; 15-50 keV mCrab = 10-20 keV mCrab x
# synthetic: [I(15,50,G)/I(15,50,2.1)] / [I(10,20,G)/I(10,20,2.1)], I = integral of E^-G, applied as
# synthetic: a factor on the day's MAXI 2-20 keV mCrab (a one-day MAXI glitch, > 5 sigma and a
# synthetic: factor 2 off the 3-day median, replaced by that median); counts/cm^2/s = mCrab / 4545.4545
# synthetic: noise: Gaussian of ERROR = hypot(STAT_ERR, SYS_ERR), STAT_ERR = 0.004 x
# synthetic: sqrt(1500 s / TIMEDEL_EXPO), SYS_ERR = 3 % of the rate (seed: CRC-32 of {swift_id!r})
# synthetic: gaps: Sun within 22 deg of the source's ecliptic longitude ({lam:.1f} deg), ~10 % random
# synthetic: days, MAXI gaps > 3 days; DATA_FLAG = 1 on ~2 % of days
# Time: MJD (UTC) of the start of the day; RATE, ERROR in counts/cm^2/s
TIME RATE ERROR YEAR DAY STAT_ERR SYS_ERR DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED
"""


def band_integral(a: float, b: float, gamma: np.ndarray) -> np.ndarray:
    """Integral of E^-gamma dE from a to b (keV), for gamma != 1."""
    return (b ** (1 - gamma) - a ** (1 - gamma)) / (1 - gamma)


def in_crab(a: float, b: float, gamma: np.ndarray) -> np.ndarray:
    """Flux in [a, b] keV of E^-gamma relative to the Crab's E^-2.1 (same normalisation)."""
    return band_integral(a, b, gamma) / band_integral(a, b, G_CRAB)


GAMMA_GRID = np.linspace(G_MIN, G_MAX, 2101)
RATIO_GRID = in_crab(10, 20, GAMMA_GRID) / in_crab(4, 10, GAMMA_GRID)  # decreasing in gamma


def photon_index(ratio: np.ndarray) -> np.ndarray:
    """G of the power law whose 10-20 / 4-10 keV flux ratio in mCrab is `ratio`, clipped to G_MIN..G_MAX."""
    return np.interp(ratio, RATIO_GRID[::-1], GAMMA_GRID[::-1])  # beyond the grid: the clipped ends


def bat_over_10_20(gamma: np.ndarray) -> np.ndarray:
    """BAT 15-50 keV mCrab per MAXI 10-20 keV mCrab for a power law of index gamma."""
    return in_crab(15, 50, gamma) / in_crab(10, 20, gamma)


def spectral_factor(daily: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(C = BAT / MAXI 2-20 keV in mCrab, photon index G) per day of the daily grid."""
    factor, gamma = np.full(len(daily), np.nan), np.full(len(daily), np.nan)
    for width in WINDOWS_D:
        n = daily["m2-20"].notna().astype(float).rolling(width, center=True, min_periods=1).sum()
        median = {b: daily[f"m{b}"].rolling(width, center=True, min_periods=1).median().to_numpy() for b in MAXI_BANDS}
        error = {
            b: (np.sqrt(daily[f"v{b}"].rolling(width, center=True, min_periods=1).sum()) / n).to_numpy()
            for b in MAXI_BANDS
        }
        good = (n.to_numpy() > 0) & np.isnan(factor)
        for b in ("4-10", "10-20"):  # a colour measured, not a ratio of noise
            good &= median[b] >= MIN_SNR * error[b]
        good &= median["2-20"] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            g = photon_index(median["10-20"] / median["4-10"])
            c = median["10-20"] * bat_over_10_20(g) / median["2-20"]
        factor[good], gamma[good] = c[good], g[good]
    crab_like = np.isnan(factor)  # too faint for a colour in any window: a Crab-like spectrum
    factor[crab_like], gamma[crab_like] = 1.0, G_CRAB
    return factor, gamma


def daily_grid(maxi: ParsedLightcurve) -> pd.DataFrame:
    """MAXI band fluxes (m{band}) and variances (v{band}) in mCrab on every day from the first to the last."""
    day = np.floor(maxi.mjd).astype(int)
    cols = {}
    for band in MAXI_BANDS:
        flux, error = to_mcrab("maxi", band, *maxi.bands[band])
        cols[f"m{band}"] = flux
        cols[f"v{band}"] = error**2
    frame = pd.DataFrame(cols, index=day)
    frame = frame[~frame.index.duplicated(keep="last")]
    return frame.reindex(np.arange(day.min(), day.max() + 1))


def true_bat_mcrab(daily: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(BAT 15-50 keV mCrab per day of the grid, NaN in MAXI gaps > 3 days; photon index G)."""
    maxi = daily[["m2-20", "v2-20"]].dropna()
    flux, sigma = maxi["m2-20"].to_numpy(), np.sqrt(maxi["v2-20"].to_numpy())
    median3 = maxi["m2-20"].rolling(3, center=True, min_periods=1).median().to_numpy()
    glitch = (np.abs(flux - median3) > GLITCH_SIGMA * sigma) & (
        (flux > GLITCH_FACTOR * median3) | (flux < median3 / GLITCH_FACTOR)
    )
    level = pd.Series(np.where(glitch, median3, flux), index=maxi.index)
    level = level.reindex(daily.index).interpolate(method="index", limit_area="inside")
    present = daily["m2-20"].notna().to_numpy()
    # Length of the MAXI gap each day belongs to: interpolate only across short gaps.
    gap_id = np.cumsum(present)
    gap_len = pd.Series(~present).groupby(gap_id).transform("sum").to_numpy()
    level[~present & (gap_len > MAX_INTERPOLATED_GAP_D)] = np.nan
    factor, gamma = spectral_factor(daily)
    return factor * level.to_numpy(), gamma


def sun_longitude_deg(mjd: np.ndarray) -> np.ndarray:
    """Apparent ecliptic longitude of the Sun (Astronomical Almanac low-precision formula, ~0.01 deg)."""
    n = mjd + 2400000.5 - 2451545.0
    mean_lon = 280.460 + 0.9856474 * n
    anomaly = np.radians(357.528 + 0.9856003 * n)
    return np.mod(mean_lon + 1.915 * np.sin(anomaly) + 0.020 * np.sin(2 * anomaly), 360.0)


def source_longitude_deg(ra: float, dec: float) -> float:
    sky = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").transform_to(BarycentricMeanEcliptic())
    return float(sky.lon.deg)


def synthesise(maxi: ParsedLightcurve, longitude: float, rng: np.random.Generator) -> pd.DataFrame:
    daily = daily_grid(maxi)
    bat_mcrab, _ = true_bat_mcrab(daily)
    day = daily.index.to_numpy().astype(float)
    elongation = np.abs((sun_longitude_deg(day + 0.5) - longitude + 180.0) % 360.0 - 180.0)
    # Draw every random number for every day of the grid, so one rule's change does not move the others.
    expo = rng.integers(*EXPO_RANGE_S, len(day), endpoint=True)
    noise = rng.standard_normal(len(day))
    dropped = rng.random(len(day)) < MISSING_FRACTION
    flagged = (rng.random(len(day)) < FLAGGED_FRACTION).astype(int)
    stat = ERROR_AT_REF * np.sqrt(EXPO_REF_S / expo)
    true_rate = bat_mcrab / MCRAB_BAT
    sys_err = SYSTEMATIC * np.abs(np.nan_to_num(true_rate))
    error = np.hypot(stat, sys_err)
    keep = np.isfinite(bat_mcrab) & (elongation > SUN_HALF_GAP_DEG) & ~dropped
    rate = true_rate + noise * error
    t = Time(day[keep], format="mjd", scale="utc")
    return pd.DataFrame(
        {
            "TIME": day[keep],
            "RATE": rate[keep],
            "ERROR": error[keep],
            "YEAR": t.datetime64.astype("datetime64[Y]").astype(int) + 1970,
            "DAY": [int(s.split(":")[1]) for s in t.yday],
            "STAT_ERR": stat[keep],
            "SYS_ERR": sys_err[keep],
            "DATA_FLAG": flagged[keep],
            "TIMEDEL_EXPO": expo[keep],
            "TIMEDEL_CODED": (expo[keep] * 0.9).astype(int),
            "TIMEDEL_DITHERED": (expo[keep] * 0.95).astype(int),
        }
    )


def main() -> None:
    table = pd.read_csv(ROOT / "master_table.csv", dtype=str, keep_default_na=False)
    by_maxi = {row["Maxi ID"]: row for row in table.to_dict("records")}
    for path in sorted((ROOT / "mirror" / "maxi" / "star_data").glob("*/*_g_lc_1day_all.dat")):
        row = by_maxi[path.parent.name]
        if row["Swift ID"] == "noSwift":
            continue
        longitude = source_longitude_deg(float(row["Ra Obj"]), float(row["Dec Obj"]))
        rng = np.random.default_rng(zlib.crc32(row["Swift ID"].encode()))
        bat = synthesise(parse("maxi", path.name, path.read_bytes()), longitude, rng)
        folder = ROOT / "mirror" / "swift" / "results" / "transients" / ("weak" if row["Swift Weak"] == "yes" else "")
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{row['Swift ID']}.lc.txt"
        lines = [
            f"{r.TIME:.1f} {r.RATE:.6f} {r.ERROR:.6f} {r.YEAR} {r.DAY} {r.STAT_ERR:.6f} {r.SYS_ERR:.6f} "
            f"{r.DATA_FLAG} {r.TIMEDEL_EXPO} {r.TIMEDEL_CODED} {r.TIMEDEL_DITHERED}"
            for r in bat.itertuples()
        ]
        header = HEADER.format(name=row["Integral Name"], swift_id=row["Swift ID"], lam=longitude)
        out.write_text(header + "\n".join(lines) + "\n")
        print(f"wrote {out.relative_to(ROOT)} ({len(lines)} rows)")


if __name__ == "__main__":
    main()
