"""The catalogue in the API's memory: lookup, search, tags, and records merged with the newest points
and the temporary labels of open alert episodes."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal, get_args

import numpy as np

import schemas
from flashes.subscriptions import separation
from flashes.tags import TAGS
from flashes.topics import DERIVED_KINDS
from flashes.units import mcrab_factor
from services.api.models import SeriesEntry, Source
from services.api.problems import NotFound
from services.api.store import TEMPORARY_LABELS

SortKey = Literal["name", "ra", "dec", "glon", "glat", "distance"]
SORT_FIELD: dict[SortKey, str] = {
    "name": "integral_name",
    "ra": "coord_ra",
    "dec": "coord_dec",
    "glon": "coord_glon",
    "glat": "coord_glat",
}


def _folded(text: str) -> str:
    """Names compared without case, spaces or punctuation: 'GX 339-4' ~ 'gx339 4'."""
    return re.sub(r"[^a-z0-9+]", "", text.lower())


class SourceIndex:
    def __init__(self, records: list[schemas.CatalogueSource]) -> None:
        self.records = {r.id: r for r in records}
        self.ids = list(self.records)
        self.ra = np.array([r.coord_ra for r in records])
        self.dec = np.array([r.coord_dec for r in records])
        self.names = [" ".join(_folded(n) for n in (r.id, r.integral_name, *r.alternative_names)) for r in records]
        self.series: dict[str, tuple[str, schemas.SeriesKind]] = {
            entry.series: (r.id, kind)
            for r in records
            for kind in get_args(schemas.SeriesKind)
            if (entry := r.entry(kind)) is not None
        }
        self.with_lightcurve = {r.id for r in records if r.instruments}
        # The constant tags' counts; every tag, temporary labels too, is there (a label may have no source now).
        self.constant_counts = Counter({t: 0 for t in (*TAGS, *TEMPORARY_LABELS)})
        self.constant_counts.update(t for r in records for t in r.labels_constant)

    def get(self, source_id: str) -> schemas.CatalogueSource:
        if source_id not in self.records:
            raise NotFound(f"unknown source '{source_id}'; list the known ones at /sources", "/sources")
        return self.records[source_id]

    def series_entry(self, source_id: str, kind: str) -> schemas.CatalogueSeries:
        """The record's entry of one series kind (its key and data URL)."""
        entry = self.get(source_id).entry(kind)
        if entry is None:
            raise NotFound(f"source '{source_id}' has no {kind} series", f"/sources/{source_id}")
        return entry

    def series_of(self, key: str) -> tuple[str, schemas.SeriesKind]:
        """(source id, kind) of a series key such as maxi_gx339-4."""
        if key not in self.series:
            raise NotFound(
                f"unknown series key '{key}'; a source's keys are in its record at /sources/{{id}}", "/sources"
            )
        return self.series[key]

    def tag_counts(self, dynamic: dict[str, list[str]]) -> Counter[str]:
        counts = self.constant_counts.copy()
        counts.update(t for labels in dynamic.values() for t in labels)
        return counts

    def named(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of catalogued sources only (QuestDB may hold one the catalogue has dropped), each with its name."""
        return [
            dict(r, source_name=self.records[r["source_id"]].integral_name)
            for r in rows
            if r["source_id"] in self.records
        ]

    def check_tag(self, tag: str) -> None:
        if tag not in self.constant_counts:
            raise NotFound(f"unknown tag '{tag}'; list the known ones at /tags", "/tags")

    def tagged(self, tag: str, dynamic: dict[str, list[str]]) -> list[str]:
        """The ids of the sources with a tag (a constant one or a temporary label), by name."""
        self.check_tag(tag)
        return [sid for sid, _ in self.search(None, tag, None, None, dynamic, "name", False)]

    def search(
        self,
        q: str | None,
        tag: str | None,
        instrument: str | None,
        cone: schemas.Cone | None,
        dynamic: dict[str, list[str]],
        sort: SortKey,
        descending: bool,
    ) -> list[tuple[str, float | None]]:
        """(source id, distance from the cone's centre in degrees) of the sources that pass every filter; instrument
        "any": a source with a lightcurve of any instrument."""
        keep = np.ones(len(self.ids), dtype=bool)
        distance = None
        if cone is not None:
            distance = separation(cone, self.ra, self.dec)
            keep &= distance <= cone.radius
        needle = _folded(q) if q else ""
        hits = [
            i
            for i, sid in enumerate(self.ids)
            if keep[i]
            and (not needle or needle in self.names[i])
            and (tag is None or tag in self.records[sid].labels_constant or tag in dynamic.get(sid, ()))
            and (
                instrument is None
                or (
                    sid in self.with_lightcurve
                    if instrument == "any"
                    else self.records[sid].entry(instrument) is not None
                )
            )
        ]
        if sort == "distance" and distance is not None:
            hits.sort(key=lambda i: distance[i], reverse=descending)
        else:
            key = SORT_FIELD.get(sort, "integral_name")
            hits.sort(key=lambda i: getattr(self.records[self.ids[i]], key), reverse=descending)
        return [(self.ids[i], None if distance is None else float(distance[i])) for i in hits]

    def view(
        self,
        source_id: str,
        latest: dict[str, dict[str, Any]],
        dynamic: dict[str, list[str]],
        distance: float | None = None,
    ) -> Source:
        """A source record with each series' newest point (also in mCrab) and its temporary labels."""
        rec = self.records[source_id]
        entries: dict[str, SeriesEntry | None] = {}
        for kind, field in schemas.SERIES_FIELD.items():
            entry = rec.entry(kind)
            point = latest.get(entry.series, {}) if entry is not None else {}
            mcrab = {}
            if point and kind not in DERIVED_KINDS:  # provider units; derived series are in mCrab (or a ratio) already
                mcrab = {
                    "last_flux_mcrab": point["last_flux"] * mcrab_factor(kind),
                    "last_error_mcrab": point["last_error"] * mcrab_factor(kind),
                }
            entries[field] = None if entry is None else SeriesEntry(**{**entry.model_dump(), **point, **mcrab})
        return Source(
            **{**rec.model_dump(exclude={"labels_dynamic", *entries}), **entries},
            labels_dynamic=dynamic.get(source_id, []),
            distance_deg=distance,
        )
