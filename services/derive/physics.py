"""Hardness ratio and combined flux of Swift/BAT 15-50 keV and MAXI 2-20 keV, both in mCrab, per day.

h = Φ_BAT/Φ_MAXI, Δh = |h|·sqrt((ΔΦ_BAT/Φ_BAT)² + (ΔΦ_MAXI/Φ_MAXI)²);
Φc = Φ_BAT + Φ_MAXI, ΔΦc = sqrt(ΔΦ_BAT² + ΔΦ_MAXI²) (plain error propagation; the original
FLASHES README has an extra factor (Φ_BAT + Φ_MAXI) that is not dimensionally consistent).
A zero flux gives no hardness (NaN: the ratio is undefined); the combined flux is still given.
Every function works on whole columns (numpy arrays) at once.
"""

from __future__ import annotations

import numpy as np


def hardness(fb: np.ndarray, eb: np.ndarray, fm: np.ndarray, em: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, Δh) per day; NaN where either flux is 0."""
    defined = (fb != 0) & (fm != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(defined, fb / fm, np.nan)
        dh = np.abs(h) * np.sqrt((eb / fb) ** 2 + (em / fm) ** 2)
    return h, np.where(defined, dh, np.nan)


def combined(fb: np.ndarray, eb: np.ndarray, fm: np.ndarray, em: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Φc, ΔΦc) per day."""
    return fb + fm, np.hypot(eb, em)
