"""Make SYNTHETIC Swift/BAT `*.lc.fits` and Fermi/GBM pulsar `*_old.fits.gz` files for the mirror.

No real file of either can be had offline. These follow the providers' documented layouts:
BAT: a binary table `RATE` with TIME (MJD, unit d), RATE, ERROR (count/cm2/s, 15-50 keV), YEAR,
DAY, STAT_ERR, SYS_ERR, DATA_FLAG, TIMEDEL_EXPO, TIMEDEL_CODED, TIMEDEL_DITHERED; GBM: a gzip FITS
binary table with PSRTIME (MJD), AMPLITUDE, AMPLITUDE_ERR (12-50 keV), the error column 0 as it
often is in the provider's files. Values follow the MAXI lightcurve of the same source (seeded
noise). Every file says SYNTHETIC in its primary header (ORIGIN and COMMENT).

Run: .venv/bin/python data/make_synthetic_fits.py
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

ROOT = Path(__file__).resolve().parent
MIRROR = ROOT / "mirror"
MAXI_COLUMNS = ["mjd", "f", "e", "f2_4", "e2_4", "f4_10", "e4_10", "f10_20", "e10_20"]


def primary(note: str) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    hdu.header["ORIGIN"] = "SYNTHETIC"
    hdu.header["COMMENT"] = f"SYNTHETIC file made by data/make_synthetic_fits.py: {note}; not real data."
    return hdu


def bat_fits(maxi: pd.DataFrame, rng: np.random.Generator) -> bytes:
    day = np.floor(maxi["mjd"].to_numpy())
    rate = maxi["f10_20"].to_numpy() * 2500.0 / 4545.4545 * 0.9 + rng.normal(0, 0.0012, len(day))
    err = np.hypot(0.5 * maxi["e10_20"].to_numpy() * 2500.0 / 4545.4545, 0.0012)
    expo = rng.integers(600, 6000, len(day))
    cols = [
        fits.Column("TIME", "D", unit="d", array=day),
        fits.Column("RATE", "E", unit="count/cm2/s", array=rate),
        fits.Column("ERROR", "E", unit="count/cm2/s", array=err),
        fits.Column("YEAR", "J", array=np.full(len(day), 2010)),
        fits.Column("DAY", "J", array=np.ones(len(day), int)),
        fits.Column("STAT_ERR", "E", unit="count/cm2/s", array=err),
        fits.Column("SYS_ERR", "E", unit="count/cm2/s", array=np.zeros(len(day))),
        fits.Column("DATA_FLAG", "J", array=(rng.random(len(day)) < 0.02).astype(int)),
        fits.Column("TIMEDEL_EXPO", "E", unit="s", array=expo),
        fits.Column("TIMEDEL_CODED", "E", unit="s", array=expo * 0.9),
        fits.Column("TIMEDEL_DITHERED", "E", unit="s", array=expo * 0.95),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="RATE")
    buf = io.BytesIO()
    fits.HDUList([primary("Swift/BAT transient monitor layout"), table]).writeto(buf)
    return buf.getvalue()


def gbm_fits(maxi: pd.DataFrame, rng: np.random.Generator) -> bytes:
    m = maxi.iloc[::3]  # the pulsar monitor has a point every few days
    amp = np.clip(m["f10_20"].to_numpy(), 0, None) * 2500.0 / 222.2222 + rng.normal(0, 0.002, len(m))
    cols = [
        fits.Column("PSRTIME", "D", unit="d", array=m["mjd"].to_numpy()),
        fits.Column("AMPLITUDE", "E", unit="keV/cm2/s", array=amp),
        fits.Column("AMPLITUDE_ERR", "E", unit="keV/cm2/s", array=np.zeros(len(m))),
    ]
    buf = io.BytesIO()
    fits.HDUList([primary("Fermi/GBM pulsar monitor layout"), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    return gzip.compress(buf.getvalue(), mtime=0)


def read(maxi_id: str) -> pd.DataFrame:
    path = MIRROR / "maxi" / "star_data" / maxi_id / f"{maxi_id}_g_lc_1day_all.dat"
    return pd.read_csv(path, sep=r"\s+", header=None, names=MAXI_COLUMNS)


def main() -> None:
    rng = np.random.default_rng(2)
    out = {
        MIRROR / "fermi" / "swiftj0243_old.fits.gz": gbm_fits(read("J0243+614"), rng),
        ROOT.parent / "tests" / "data" / "bat" / "CirX-1.lc.fits": bat_fits(read("J1520-571"), rng),
    }
    for path, content in out.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        print(f"wrote {path.relative_to(ROOT.parent)} ({len(content)} bytes)")


if __name__ == "__main__":
    main()
