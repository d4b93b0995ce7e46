"""The galactic sky as the pages draw it (an SVG, templates/macros.html.j2): a Hammer-Aitoff projection with its
grid, one dot per catalogue source coloured by its class, and optionally one source marked."""

from __future__ import annotations

from typing import Any

import numpy as np

import schemas

# Sky-map colours: each source takes the first of these tags it has.
MAP_CLASSES = (
    ("BLACK HOLE", "#d62728"),
    ("PULSAR", "#9467bd"),
    ("LMXRB", "#1f77b4"),
    ("HMXRB", "#17becf"),
    ("BINARY", "#2ca02c"),
    ("AGN", "#ff7f0e"),
    ("CLUSTER", "#8c564b"),
    ("GAMMA RAY SOURCE", "#e377c2"),
    ("other", "#7f7f7f"),
)


def hammer(glon: np.ndarray, glat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hammer-Aitoff projection in units of the map's half width: x in [-1, 1] (l = 0 at the centre,
    l increasing to the left), y in [-0.5, 0.5] (b = +90 at the top)."""
    lon = np.radians((np.asarray(glon, dtype=float) + 180.0) % 360.0 - 180.0)
    lat = np.radians(np.asarray(glat, dtype=float))
    z = np.sqrt(1.0 + np.cos(lat) * np.cos(lon / 2.0))
    x = 2.0 * np.sqrt(2.0) * np.cos(lat) * np.sin(lon / 2.0) / z
    y = np.sqrt(2.0) * np.sin(lat) / z
    return -x / (2.0 * np.sqrt(2.0)), -y / (2.0 * np.sqrt(2.0))


def _path(xs: np.ndarray, ys: np.ndarray, w: float) -> str:
    return "M" + " L".join(f"{(x + 1) * w / 2:.1f},{(y + 0.5) * w / 2:.1f}" for x, y in zip(xs, ys))


def map_class(tags: list[str]) -> int:
    return next((i for i, (tag, _) in enumerate(MAP_CLASSES) if tag in tags), len(MAP_CLASSES) - 1)


def sky_map(
    records: list[schemas.CatalogueSource], width: float, marked: schemas.CatalogueSource | None = None
) -> dict[str, Any]:
    """What the SVG template draws: the outline and grid of the galactic sky (every 60° in l, 30° in b),
    one dot per record and optionally a marked source."""
    b = np.linspace(-90, 90, 61)
    l_ = np.linspace(-179.999, 179.999, 121)
    grid = [_path(*hammer(np.full_like(b, lon), b), width) for lon in (-120, -60, 0, 60, 120)]
    grid += [_path(*hammer(l_, np.full_like(l_, lat)), width) for lat in (-60, -30, 0, 30, 60)]
    outline = _path(*hammer(np.r_[np.full_like(b, -179.999), np.full_like(b, 179.999)], np.r_[b, b[::-1]]), width)
    labels = []
    for lon in (0, 60, 120, 240, 300):
        x, y = hammer(np.array([lon]), np.array([0.0]))
        labels.append({"x": (x[0] + 1) * width / 2, "y": (y[0] + 0.5) * width / 2 - 3, "text": f"{lon}°"})
    dots = []
    if records:
        xs, ys = hammer(np.array([r.coord_glon for r in records]), np.array([r.coord_glat for r in records]))
        for r, x, y in zip(records, xs, ys):
            has_data = bool(r.instruments)
            dots.append(
                {
                    "id": r.id,
                    "name": r.integral_name,
                    "x": (x + 1) * width / 2,
                    "y": (y + 0.5) * width / 2,
                    "cls": map_class(r.labels_constant),
                    "r": 2.6 if has_data else 1.5,
                    "data": has_data,
                }
            )
    mark = None
    if marked is not None:
        x, y = hammer(np.array([marked.coord_glon]), np.array([marked.coord_glat]))
        mark = {"x": (x[0] + 1) * width / 2, "y": (y[0] + 0.5) * width / 2, "name": marked.integral_name}
    return {
        "width": width,
        "height": width / 2,
        "grid": grid,
        "outline": outline,
        "labels": labels,
        "dots": dots,
        "mark": mark,
        "classes": MAP_CLASSES,
    }
