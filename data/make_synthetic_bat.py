"""Make SYNTHETIC Swift/BAT daily lightcurves for the sample mirror (no real BAT file is available offline).

For each MAXI file in data/mirror/maxi/star_data/ whose source has a Swift ID in the catalogue, write
data/mirror/swift/results/transients/[weak/]{SwiftID}.lc.txt in the BAT transient monitor's text
layout (`#` comment lines, a column-name line, then TIME RATE ERROR YEAR DAY STAT_ERR SYS_ERR
DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED). The 15-50 keV rate follows the MAXI
10-20 keV flux (converted through mCrab, so the source's state changes show up in the hardness
ratio), with BAT-like noise, ~10 % missing days and ~2 % flagged days. Deterministic (seeded).

Run: .venv/bin/python data/make_synthetic_bat.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.time import Time

ROOT = Path(__file__).resolve().parent
MCRAB_MAXI_10_20, MCRAB_BAT = 2500.0, 4545.4545
HEADER = """# Swift/BAT transient monitor daily light curve, 15-50 keV -- SYNTHETIC
# synthetic: made by data/make_synthetic_bat.py from the MAXI/GSC 10-20 keV light curve of the same
# synthetic: source; NOT real Swift/BAT data. Source: {name}
# Time: MJD (UTC) of the start of the day; RATE, ERROR in counts/cm^2/s
TIME RATE ERROR YEAR DAY STAT_ERR SYS_ERR DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED
"""


def synthesise(maxi: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    keep = rng.random(len(maxi)) > 0.10
    m = maxi[keep]
    day = np.floor(m["mjd"].to_numpy())
    true_rate = m["f10_20"].to_numpy() * MCRAB_MAXI_10_20 / MCRAB_BAT * 0.9
    stat = np.hypot(0.5 * m["e10_20"].to_numpy() * MCRAB_MAXI_10_20 / MCRAB_BAT, 0.0012)
    rate = true_rate + rng.normal(0.0, 0.0012, len(m))
    t = Time(day, format="mjd", scale="utc")
    expo = rng.integers(600, 6000, len(m))
    return pd.DataFrame({
        "TIME": day, "RATE": rate, "ERROR": stat, "YEAR": t.datetime64.astype("datetime64[Y]").astype(int) + 1970,
        "DAY": [int(s.split(":")[1]) for s in t.yday],
        "STAT_ERR": stat, "SYS_ERR": 0.0, "DATA_FLAG": (rng.random(len(m)) < 0.02).astype(int),
        "TIMEDEL_EXPO": expo, "TIMEDEL_CODED": (expo * 0.9).astype(int), "TIMEDEL_DITHERED": (expo * 0.95).astype(int),
    })


def main() -> None:
    table = pd.read_csv(ROOT / "master_table.csv", dtype=str, keep_default_na=False)
    by_maxi = {row["Maxi ID"]: row for row in table.to_dict("records")}
    rng = np.random.default_rng(1)
    for path in sorted((ROOT / "mirror" / "maxi" / "star_data").glob("*/*_g_lc_1day_all.dat")):
        row = by_maxi[path.parent.name]
        if row["Swift ID"] == "noSwift":
            continue
        maxi = pd.read_csv(path, sep=r"\s+", header=None,
                           names=["mjd", "f", "e", "f2_4", "e2_4", "f4_10", "e4_10", "f10_20", "e10_20"])
        bat = synthesise(maxi, rng)
        folder = ROOT / "mirror" / "swift" / "results" / "transients" / ("weak" if row["Swift Weak"] == "yes" else "")
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{row['Swift ID']}.lc.txt"
        lines = [f"{r.TIME:.1f} {r.RATE:.6f} {r.ERROR:.6f} {r.YEAR} {r.DAY} {r.STAT_ERR:.6f} {r.SYS_ERR:.6f} "
                 f"{r.DATA_FLAG} {r.TIMEDEL_EXPO} {r.TIMEDEL_CODED} {r.TIMEDEL_DITHERED}" for r in bat.itertuples()]
        out.write_text(HEADER.format(name=row["Integral Name"]) + "\n".join(lines) + "\n")
        print(f"wrote {out.relative_to(ROOT)} ({len(lines)} rows)")


if __name__ == "__main__":
    main()
