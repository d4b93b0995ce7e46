"""Crab conversion factors: mCrab = factor × provider flux (counts/cm²/s or photons/cm²/s).

From the original FLASHES: 1 Crab gives 0.22 counts/cm²/s in BAT 15-50 keV, 3.2 photons/cm²/s in
MAXI 2-20 keV (2.1, 1.2, 0.4 in 2-4, 4-10, 10-20 keV) and 4.5 in GBM 12-50 keV.
"""

from __future__ import annotations

MCRAB_PER_UNIT: dict[tuple[str, str], float] = {
    ("swift", "15-50"): 4545.4545,
    ("maxi", "2-20"): 312.5,
    ("maxi", "2-4"): 476.1905,
    ("maxi", "4-10"): 833.3333,
    ("maxi", "10-20"): 2500.0,
    ("fermi", "12-50"): 222.2222,
}

MAIN_BAND = {"maxi": "2-20", "swift": "15-50", "fermi": "12-50"}
BANDS = {inst: tuple(band for i, band in MCRAB_PER_UNIT if i == inst) for inst in MAIN_BAND}  # main band first


def mcrab_factor(kind: str) -> float:
    """mCrab per unit of a series' scored value: an instrument's main band is in provider units;
    derived series are in mCrab already (hardness is a ratio)."""
    return MCRAB_PER_UNIT[(kind, MAIN_BAND[kind])] if kind in MAIN_BAND else 1.0


def value_units(kind: str) -> str:
    """Units of a series' values once converted with mcrab_factor."""
    return "ratio" if kind == "hardness" else "mCrab"


def to_mcrab(instrument: str, band: str, flux: float, error: float) -> tuple[float, float]:
    factor = MCRAB_PER_UNIT[(instrument, band)]
    return flux * factor, error * factor


UNITS = {"maxi": "photons/cm2/s", "swift": "counts/cm2/s", "fermi": "photons/cm2/s"}
INSTRUMENTS = {"maxi": "MAXI/GSC", "swift": "Swift/BAT", "fermi": "Fermi/GBM"}
SERIES_TITLES = {**INSTRUMENTS, "hardness": "Hardness ratio (BAT/MAXI)", "combined": "Combined flux (BAT + MAXI)"}


def series_label(kind: str, band: str | None = None) -> str:
    """A series as it is named in alerts, plots and dashboards, e.g. 'MAXI/GSC 2-20 keV'."""
    return f"{INSTRUMENTS[kind]} {band or MAIN_BAND[kind]} keV" if kind in MAIN_BAND else SERIES_TITLES[kind]
