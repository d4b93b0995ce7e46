"""The derive stream processor: hardness ratio and combined flux per source and UTC day, per chunk.

Every series of a source is on one partition of flashes.lightcurve.v2 (keyed by source id). For
each source that has both MAXI and BAT in the catalogue, derive keeps the main-band values
(mCrab) per UTC day (floor of MJD) of both instruments. When a chunk of one instrument arrives,
its days are merged in (a revised day replaces the old value) and every day of the chunk that
the other instrument also has is (re)emitted, as one hardness and one combined chunk.

State stays bounded: a day of one instrument is kept only while the other instrument may still
bring that day, i.e. until the other's newest day is more than `revision_days` past it. In
steady state that is a month of days per source; only a full backfill holds one instrument's
history until the other's arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

import schemas
from flashes import catalogue, chunks, topics
from flashes.processor import Output, Processor
from flashes.settings import Settings
from flashes.units import MAIN_BAND, mcrab_factor
from services.derive.physics import combined, hardness

JOINED = ("swift", "maxi")
REVISION_DAYS = 30


@dataclass(frozen=True)
class Days:
    """One instrument's values per UTC day, days strictly increasing."""

    day: np.ndarray
    flux: np.ndarray
    error: np.ndarray

    @staticmethod
    def empty() -> Days:
        return Days(np.empty(0, np.int64), np.empty(0), np.empty(0))

    def merge(self, other: Days) -> Days:
        """Union of days; where both have a day, `other`'s (newer) value wins."""
        day = np.concatenate([self.day, other.day])
        flux = np.concatenate([self.flux, other.flux])
        error = np.concatenate([self.error, other.error])
        # Last occurrence of each day wins: unique over the reversed arrays.
        _, last = np.unique(day[::-1], return_index=True)
        keep = len(day) - 1 - last
        return Days(day[keep], flux[keep], error[keep])

    def since(self, first_day: int) -> Days:
        keep = self.day >= first_day
        return Days(self.day[keep], self.flux[keep], self.error[keep])

    def columns(self) -> schemas.DayColumns:
        return schemas.DayColumns(day=self.day.tolist(), flux=self.flux.tolist(), error=self.error.tolist())

    @staticmethod
    def of(c: schemas.DayColumns) -> Days:
        return Days(np.array(c.day, np.int64), np.array(c.flux, float), np.array(c.error, float))


def chunk_days(chunk: schemas.LightcurveChunk) -> Days:
    """The chunk's main band per UTC day in mCrab (a day binned twice keeps its last bin)."""
    band, factor = MAIN_BAND[chunk.instrument], mcrab_factor(chunk.instrument)
    points = Days(
        np.floor(np.array(chunk.mjd)).astype(np.int64),
        np.array(chunk.flux[band]) * factor,
        np.array(chunk.error[band]) * factor,
    )
    return Days.empty().merge(points)


def derived_chunks(source_id: str, swift: Days, maxi: Days) -> list[schemas.DerivedChunk]:
    """Hardness and combined chunks of the days both instruments have (swift and maxi aligned by day)."""
    out = []
    for kind, units, (value, error) in (
        ("hardness", "ratio", hardness(swift.flux, swift.error, maxi.flux, maxi.error)),
        ("combined", "mCrab", combined(swift.flux, swift.error, maxi.flux, maxi.error)),
    ):
        defined = np.isfinite(value) & np.isfinite(error)
        columns = {
            "value": value,
            "error": error,
            "swift_flux": swift.flux,
            "swift_error": swift.error,
            "maxi_flux": maxi.flux,
            "maxi_error": maxi.error,
        }
        out += chunks.build(
            schemas.DerivedChunk,
            swift.day[defined] + 0.5,
            {name: c[defined] for name, c in columns.items()},
            source_id=source_id,
            kind=kind,
            units=units,
        )
    return out


class Derive:
    """The derive `Logic` (see flashes/processor.py): state per source = both instruments' recent days."""

    inputs = (topics.LIGHTCURVE,)
    state = topics.DERIVE_STATE

    def __init__(self, joinable: set[str], revision_days: int = REVISION_DAYS) -> None:
        self.joinable = joinable
        self.revision_days = revision_days
        self.days: dict[str, dict[str, Days]] = {}

    def key(self, chunk: schemas.LightcurveChunk) -> str:
        return chunk.source_id

    def restore(self, state: schemas.DeriveState) -> None:
        self.days[state.key] = {inst: Days.of(getattr(state, inst)) for inst in JOINED}

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.days.pop(key, None)

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.DeriveState:
        days = self.days.get(key) or {inst: Days.empty() for inst in JOINED}
        return schemas.DeriveState(
            key=key,
            topic=topic,
            partition=partition,
            offset=offset,
            swift=days["swift"].columns(),
            maxi=days["maxi"].columns(),
        )

    def apply(self, chunk: schemas.LightcurveChunk) -> list[Output]:
        if (
            chunk.instrument not in JOINED
            or chunk.source_id not in self.joinable
            or MAIN_BAND[chunk.instrument] not in chunk.flux
        ):
            return []
        new = chunk_days(chunk)
        days = self.days.setdefault(chunk.source_id, {inst: Days.empty() for inst in JOINED})
        mine = chunk.instrument
        other = "maxi" if mine == "swift" else "swift"
        days[mine] = days[mine].merge(new)
        both, in_new, in_other = np.intersect1d(new.day, days[other].day, assume_unique=True, return_indices=True)
        pairs = {
            mine: Days(both, new.flux[in_new], new.error[in_new]),
            other: Days(both, days[other].flux[in_other], days[other].error[in_other]),
        }
        for inst, peer in ((mine, other), (other, mine)):  # keep only days the peer may still bring
            if len(days[peer].day):
                days[inst] = days[inst].since(int(days[peer].day[-1]) - self.revision_days)
        return (
            [
                Output(topics.DERIVED, chunk.source_id, c)
                for c in derived_chunks(chunk.source_id, pairs["swift"], pairs["maxi"])
            ]
            if len(both)
            else []
        )


def joinable_sources(settings: Settings) -> set[str]:
    """Ids of the catalogue sources with both a MAXI and a BAT series."""
    return {r.id for r in catalogue.load(settings) if set(JOINED) <= set(r.instruments)}


def build(settings: Settings) -> Processor:
    return Processor("derive", Derive(joinable_sources(settings)), settings, max_records=256)
