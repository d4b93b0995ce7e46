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

The logic is one pure function, `step(state, point, rules) -> Decision`: it changes nothing it is
given; the decision holds the next state (schemas.EpisodeState, what the alerts state topic stores)
and the record to raise, if any.
"""

from __future__ import annotations

from dataclasses import dataclass

import schemas
from flashes import trigger
from flashes.topics import DERIVED_KINDS, INSTRUMENTS, series_kind
from flashes.units import value_units
from schemas import REASON_OF_TERM

LATE_DAYS = 10.0
STALE_DAYS = 30.0
DOUBLING = 2.0
FUSION_DAYS, AGREE, DECISIVE = 2.0, 0.5, 0.95
KEEP_POINTS = 5  # the last points of a series kept for the alert's `last_points`
NOTHING = schemas.EpisodeState(series={})  # a source not seen yet


@dataclass(frozen=True)
class Rules:
    """The settings an episode decision reads (the alerts threshold, FLASHES_EPISODE_END_POINTS)."""

    threshold: float
    end_points: int


@dataclass(frozen=True)
class Point:
    """One scored point as the episode logic sees it."""

    source_id: str
    series: str
    kind: str
    mjd: float
    value: float  # mCrab (hardness: ratio)
    error: float
    relevance: float
    terms: dict[str, float]  # schemas.RelevanceTerms' fields


@dataclass(frozen=True)
class Record:
    """An alert record to raise: its type, what changed, and the episode as this record reports it."""

    alert_type: schemas.AlertType
    change: str
    episode: schemas.Episode


@dataclass(frozen=True)
class Decision:
    """What one point makes of a source's state: the next state and the record to raise, if any."""

    state: schemas.EpisodeState
    record: Record | None = None


def alone(p: Point, tracks: dict[str, schemas.SeriesTrack]) -> bool:
    """Is this crossing one instrument's word while another instrument of the source sees nothing?

    A derived series (hardness, combined) is made of the instruments' points, so an instrument whose
    own crossing is held does not agree with it: that would be the glitch agreeing with itself."""
    if p.relevance >= DECISIVE:
        return False
    derived = p.kind in DERIVED_KINDS
    others = [
        t
        for s, t in tracks.items()
        if series_kind(s) in INSTRUMENTS and series_kind(s) != p.kind and abs(t.last_mjd - p.mjd) <= FUSION_DAYS
    ]
    return bool(others) and all(t.last["relevance"] < AGREE or (derived and t.held) for t in others)


def step(state: schemas.EpisodeState, p: Point, rules: Rules) -> Decision:
    """Apply one point to a source's state (neither is changed): the next state and the record to raise.

    A point not newer than its series' last one (a replayed score) changes nothing. After an "end" the
    next state has no episode; the record carries the episode it ends."""
    before = state.series.get(p.series)
    if before is not None and p.mjd <= before.last_mjd:
        return Decision(state)
    current = trigger.snapshot(p.relevance, p.terms)
    crossed = trigger.reasons(before.last if before else None, current, rules.threshold)
    # A hold is answered by the series' next point, whatever it is: the new track is not held unless held again.
    held = bool(before and before.held and before.points and p.mjd - before.points[-1][0] <= FUSION_DAYS)
    kept = before.points[-(KEEP_POINTS - 1) :] if before else []
    track = schemas.SeriesTrack(last_mjd=p.mjd, last=current, points=[*kept, (p.mjd, p.value, p.error)])
    tracks = {**state.series, p.series: track}
    high, newest = p.relevance >= rules.threshold, max(t.last_mjd for t in tracks.values())
    if p.mjd < newest - LATE_DAYS:
        return Decision(schemas.EpisodeState(series=tracks, episode=state.episode))
    if state.episode is None:
        return _opened(p, tracks, crossed, held and high, rules)
    return _continued(state.episode, p, tracks, crossed, high, newest, rules)


def _opened(
    p: Point, tracks: dict[str, schemas.SeriesTrack], crossed: list[str], confirmed: bool, rules: Rules
) -> Decision:
    """No episode open: this point opens one, is held (a lone instrument's crossing), or is usual."""
    if confirmed:
        reasons = [REASON_OF_TERM[t] for t in trigger.above(tracks[p.series].last, rules.threshold)]
        change = f"{p.series} unusual on two points in a row, another instrument not ({', '.join(reasons)})"
    elif crossed and alone(p, tracks):
        waiting = tracks[p.series].model_copy(update={"held": True})
        return Decision(schemas.EpisodeState(series={**tracks, p.series: waiting}))
    elif crossed:
        reasons = [REASON_OF_TERM[t] for t in crossed]
        change = f"{p.series} became unusual ({', '.join(reasons)})"
    else:
        return Decision(schemas.EpisodeState(series=tracks))
    opened = schemas.Episode(
        alert_id=f"{p.source_id}@{p.mjd:.5f}",
        record_number=1,
        onset_mjd=p.mjd,
        series=[p.series],
        reasons=reasons,
        peak_relevance=p.relevance,
        reported={p.series: p.value},
        quiet={p.series: 0},
    )
    return Decision(schemas.EpisodeState(series=tracks, episode=opened), Record("onset", change, opened))


def _continued(
    episode: schemas.Episode,
    p: Point,
    tracks: dict[str, schemas.SeriesTrack],
    crossed: list[str],
    high: bool,
    newest: float,
    rules: Rules,
) -> Decision:
    """An episode open: this point ends it, escalates it (an update), or only counts."""
    if not high:
        quiet = {**episode.quiet, p.series: episode.quiet[p.series] + 1} if p.series in episode.quiet else episode.quiet
        if all(n >= rules.end_points or tracks[s].last_mjd < newest - STALE_DAYS for s, n in quiet.items()):
            ended = episode.model_copy(update={"quiet": quiet, "record_number": episode.record_number + 1})
            change = f"back to usual: each series had {rules.end_points} points below the threshold"
            return Decision(schemas.EpisodeState(series=tracks), Record("end", change, ended))
        return Decision(schemas.EpisodeState(series=tracks, episode=episode.model_copy(update={"quiet": quiet})))
    series, reasons, reported = list(episode.series), list(episode.reasons), dict(episode.reported)
    changes = []
    if p.series not in series:
        series.append(p.series)
        reported[p.series] = p.value
        changes.append(f"{p.series} joined the episode")
    for reason in (REASON_OF_TERM[t] for t in crossed):
        if reason not in reasons:
            reasons.append(reason)
            changes.append(f"new reason: {reason}")
    last = reported[p.series]
    if value_units(p.kind) == "mCrab" and last > 0 and p.value >= DOUBLING * last:
        changes.append(f"{p.series} doubled since the last record ({last:.1f} -> {p.value:.1f} mCrab)")
        reported[p.series] = p.value
    escalated = episode.model_copy(
        update={
            "series": series,
            "reasons": reasons,
            "reported": reported,
            "quiet": {**episode.quiet, p.series: 0},
            "peak_relevance": max(episode.peak_relevance, p.relevance),
            "record_number": episode.record_number + (1 if changes else 0),
        }
    )
    state = schemas.EpisodeState(series=tracks, episode=escalated)
    return Decision(state, Record("update", "; ".join(changes), escalated) if changes else None)
