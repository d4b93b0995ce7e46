"""Hardness ratio and combined flux of Swift/BAT 15-50 keV and MAXI 2-20 keV, both in mCrab.

h = Φ_BAT/Φ_MAXI, Δh = |h|·sqrt((ΔΦ_BAT/Φ_BAT)² + (ΔΦ_MAXI/Φ_MAXI)²);
Φc = Φ_BAT + Φ_MAXI, ΔΦc = sqrt(ΔΦ_BAT² + ΔΦ_MAXI²) (plain error propagation; the original
FLASHES README has an extra factor (Φ_BAT + Φ_MAXI) that is not dimensionally consistent).
A zero MAXI flux gives no hardness (the ratio is undefined); the combined flux is still given.
"""
from __future__ import annotations

import math


def hardness(bat: tuple[float, float], maxi: tuple[float, float]) -> tuple[float, float] | None:
    (fb, eb), (fm, em) = bat, maxi
    if fm == 0 or fb == 0:
        return None
    h = fb / fm
    return h, abs(h) * math.sqrt((eb / fb) ** 2 + (em / fm) ** 2)


def combined(bat: tuple[float, float], maxi: tuple[float, float]) -> tuple[float, float]:
    (fb, eb), (fm, em) = bat, maxi
    return fb + fm, math.hypot(eb, em)
