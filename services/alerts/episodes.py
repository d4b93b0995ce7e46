"""Alert episodes per source: when one opens, escalates and ends.

An episode opens (onset) when a point of any series of the source crosses the threshold
(flashes/trigger.py: the relevance, or the model or hardness term, after being below it). While
it is open a record (update) is sent when it escalates:

- another series is unusual too (it joins the episode), or
- another reason appears (e.g. a state change during an outburst), or
- a flux series has doubled since the value reported in the episode's last record.

It ends when each series in it has had `end_points` consecutive points below the threshold (a
series that has sent nothing for STALE_DAYS while the source's others went on is not waited for).

Fusion per source: one instrument's glitch alone does not open an episode. A crossing below
DECISIVE while every other instrument of the source with a newest point within FUSION_DAYS of it
is not unusual (relevance below AGREE) is held: it opens the episode only if the series' next
point, at most FUSION_DAYS later, is still above the threshold. Agreement (another instrument's
newest point at AGREE or more), a decisive score, or a source without such a point of another
instrument opens it at once. Hardness and combined flux are made of both instruments: they are held
like a lone instrument, and an instrument whose own crossing is held does not agree with them. The
hold is the series' `held` flag in the alerts state: a decision reads only that state and the point,
so a replayed input raises the same records. AGREE and DECISIVE are relevances, whatever the alert
threshold (at a threshold of DECISIVE or more nothing is held).

Points arrive per series in time order, but series are not interleaved in a backfill (a whole
MAXI history, then a whole BAT one) nor when a provider is late. A point more than LATE_DAYS
older than the source's newest point is the catch-up history of a lagging series: it is tracked
but opens, joins and ends nothing (its news is old, and the other series told it when it was new).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import schemas
from flashes import trigger
from flashes.topics import DERIVED_KINDS, INSTRUMENTS, series_kind
from flashes.units import value_units
from schemas import REASON_OF_TERM

LATE_DAYS = 10.0
STALE_DAYS = 30.0
DOUBLING = 2.0
FUSION_DAYS, AGREE, DECISIVE = 2.0, 0.5, 0.95


@dataclass
class Track:
    """One series of the source: its last score's trigger snapshot and its last points."""

    last_mjd: float
    last: dict[str, float]
    points: list[tuple[float, float, float]] = field(default_factory=list)  # (mjd, value, error)
    held: bool = False  # its last point was a lone crossing, waiting for this series' next point
    KEEP = 5

    def add(self, mjd: float, snapshot: dict[str, float], value: float, error: float) -> None:
        self.last_mjd, self.last = mjd, snapshot
        self.points = [*self.points[-(self.KEEP - 1):], (mjd, value, error)]


@dataclass
class Episode:
    alert_id: str
    onset_mjd: float
    series: list[str]
    reasons: list[str]
    peak_relevance: float
    reported: dict[str, float]
    quiet: dict[str, int]
    record_number: int = 1

    @classmethod
    def from_state(cls, e: schemas.Episode) -> "Episode":
        return cls(e.alert_id, e.onset_mjd, list(e.series), list(e.reasons), e.peak_relevance, dict(e.reported),
                   dict(e.quiet), e.record_number)

    def to_state(self) -> schemas.Episode:
        return schemas.Episode(alert_id=self.alert_id, record_number=self.record_number, onset_mjd=self.onset_mjd,
                               series=self.series, reasons=self.reasons, peak_relevance=self.peak_relevance,
                               reported=self.reported, quiet=self.quiet)


@dataclass(frozen=True)
class Point:
    """One scored point as the episode logic sees it."""

    series: str
    kind: str
    mjd: float
    value: float  # mCrab (hardness: ratio)
    relevance: float
    crossed: list[str]  # trigger terms that crossed the threshold at this point


def alone(p: Point, tracks: dict[str, Track]) -> bool:
    """Is this crossing one instrument's word while another instrument of the source sees nothing?

    A derived series (hardness, combined) is made of the instruments' points, so an instrument whose
    own crossing is held does not agree with it: that would be the glitch agreeing with itself."""
    if p.relevance >= DECISIVE:
        return False
    derived = p.kind in DERIVED_KINDS
    others = [t for s, t in tracks.items() if series_kind(s) in INSTRUMENTS and series_kind(s) != p.kind
              and abs(t.last_mjd - p.mjd) <= FUSION_DAYS]
    return bool(others) and all(t.last["relevance"] < AGREE or (derived and t.held) for t in others)


def step(episode: Episode | None, p: Point, tracks: dict[str, Track], source_id: str, threshold: float,
         end_points: int) -> tuple[Episode | None, str | None, str]:
    """Apply one point: the episode (changed in place), the alert type to send (or None) and what changed.

    After an "end" the caller sends the record and drops the episode."""
    high, newest = p.relevance >= threshold, max(t.last_mjd for t in tracks.values())
    track = tracks[p.series]  # p is its newest point already
    held = track.held and len(track.points) > 1 and p.mjd - track.points[-2][0] <= FUSION_DAYS
    track.held = False  # a hold is answered by the series' next point, whatever it is
    if p.mjd < newest - LATE_DAYS:
        return episode, None, ""
    if episode is None:
        if held and high:
            reasons = [REASON_OF_TERM[t] for t in trigger.above(track.last, threshold)]
            change = f"{p.series} unusual on two points in a row, another instrument not ({', '.join(reasons)})"
        elif p.crossed and alone(p, tracks):
            track.held = True
            return None, None, ""
        elif p.crossed:
            reasons = [REASON_OF_TERM[t] for t in p.crossed]
            change = f"{p.series} became unusual ({', '.join(reasons)})"
        else:
            return None, None, ""
        opened = Episode(f"{source_id}@{p.mjd:.5f}", p.mjd, [p.series], reasons, p.relevance, {p.series: p.value},
                         {p.series: 0})
        return opened, "onset", change
    if not high:
        if p.series in episode.quiet:
            episode.quiet[p.series] += 1
        if all(n >= end_points or tracks[s].last_mjd < newest - STALE_DAYS for s, n in episode.quiet.items()):
            episode.record_number += 1
            return episode, "end", f"back to usual: each series had {end_points} points below the threshold"
        return episode, None, ""
    episode.peak_relevance = max(episode.peak_relevance, p.relevance)
    changes = []
    if p.series not in episode.series:
        episode.series.append(p.series)
        episode.reported[p.series] = p.value
        changes.append(f"{p.series} joined the episode")
    episode.quiet[p.series] = 0
    for reason in (REASON_OF_TERM[t] for t in p.crossed):
        if reason not in episode.reasons:
            episode.reasons.append(reason)
            changes.append(f"new reason: {reason}")
    reported = episode.reported[p.series]
    if value_units(p.kind) == "mCrab" and reported > 0 and p.value >= DOUBLING * reported:
        changes.append(f"{p.series} doubled since the last record ({reported:.1f} -> {p.value:.1f} mCrab)")
        episode.reported[p.series] = p.value
    if not changes:
        return episode, None, ""
    episode.record_number += 1
    return episode, "update", "; ".join(changes)
