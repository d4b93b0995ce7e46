"""The alerts stream processor: relevance scores in, alert episodes per source out (flashes.alerts.v3).

News or history: a record is `live` (news, pushed to subscribers) when its triggering point is at
most `live_days` old by the wall clock at the moment the record is raised; otherwise it is history
(a backfill, an added source, a re-published archive, a model rebuilt from stored data), stored and
shown but not pushed. The rule reads only the point's time and the clock, so it is the same for
every way old data can arrive. A replay can turn a record raised as news into history only when
it is replayed after its point has aged past `live_days`, never the other way round.

Its state per source (each series' trigger snapshot and last points, the open episode) is in the
compacted state topic with the input offset it covers (flashes/processor.py), so a replayed
batch raises the same records with the same ids. Delivery to subscribers is another service
(services/alerts/delivery.py): detection never waits for a receiver.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import schemas
from flashes import catalogue, clock, links, topics, trigger
from flashes.processor import Output, Processor
from flashes.settings import Settings
from flashes.timeconv import mjd_to_datetime
from flashes.topics import series_kind
from flashes.units import mcrab_factor, series_label, value_units
from services.alerts.episodes import Episode, Point, Track, step

TERMS = tuple(schemas.RelevanceTerms.model_fields)
WHY = {"brightening": "brighter than its usual level", "state_change": "its colour (hard/soft) switched",
       "unusual": "several terms together are unusual"}


def explain(name: str, alert_type: str, change: str, episode: Episode, p: Point, error: float, kind: str,
            terms: schemas.RelevanceTerms, threshold: float) -> str:
    units = "" if value_units(kind) == "ratio" else " mCrab"
    point = (f"{series_label(kind)} {p.value:.4g} ± {error:.2g}{units} on {mjd_to_datetime(p.mjd):%Y-%m-%d} "
             f"(MJD {p.mjd:.2f}), relevance {p.relevance:.2f} (threshold {threshold:.2f}; model term "
             f"{terms.model:.2f}, hardness {terms.hardness:.2f}, flux S/N {terms.flux:.2f}, trend {terms.trend:.2f})")
    if alert_type == "end":
        return (f"{name} is back to its usual behaviour ({change}); the episode began on "
                f"{mjd_to_datetime(episode.onset_mjd):%Y-%m-%d} with peak relevance {episode.peak_relevance:.2f}. "
                f"Last: {point}.")
    why = "; ".join(WHY[r] for r in episode.reasons)
    return f"{name} is unusual: {why}. {change[0].upper()}{change[1:]}. {point}."


class SourceState:
    """One source's tracks and open episode."""

    def __init__(self, tracks: dict[str, Track] | None = None, episode: Episode | None = None) -> None:
        self.tracks = tracks or {}
        self.episode = episode


class Alerts:
    """The alerts `Logic` (see flashes/processor.py): state per source."""

    inputs = (topics.RELEVANCE,)
    state = topics.ALERTS_STATE

    def __init__(self, settings: Settings, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.now = now or (lambda: clock.now(settings))
        self.records = {rec["_id"]: rec for rec in catalogue.load(settings)}
        self.sources: dict[str, SourceState] = {}

    def key(self, chunk: schemas.RelevanceChunk) -> str:
        return chunk.source_id

    def restore(self, state: schemas.AlertState) -> None:
        tracks = {s: Track(t.last_mjd, dict(t.last), [tuple(p) for p in t.points], t.held) for s, t in state.series.items()}
        self.sources[state.key] = SourceState(tracks, Episode.from_state(state.episode) if state.episode else None)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.sources.pop(key, None)

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.AlertState:
        source = self.sources[key]
        return schemas.AlertState(
            key=key, topic=topic, partition=partition, offset=offset,
            series={s: schemas.SeriesTrack(last_mjd=t.last_mjd, last=t.last, points=t.points, held=t.held)
                    for s, t in source.tracks.items()},
            episode=source.episode.to_state() if source.episode else None)

    def apply(self, chunk: schemas.RelevanceChunk) -> list[Output]:
        if chunk.source_id not in self.records:
            raise ValueError(f"unknown source '{chunk.source_id}': not in the catalogue")
        source = self.sources.setdefault(chunk.source_id, SourceState())
        columns = {name: getattr(chunk.terms, name) for name in TERMS}
        factor = mcrab_factor(chunk.kind)
        values, errors = [v * factor for v in chunk.value], [e * factor for e in chunk.error]
        out = []
        for i, mjd in enumerate(chunk.mjd):
            track = source.tracks.get(chunk.series)
            if track and mjd <= track.last_mjd:  # a replayed score
                continue
            threshold = self.settings.relevance_threshold
            current = trigger.snapshot(chunk.relevance[i], {name: c[i] for name, c in columns.items()})
            crossed = trigger.reasons(track.last if track else None, current, threshold)
            if track is None:
                track = source.tracks[chunk.series] = Track(mjd, current)
            track.add(mjd, current, values[i], errors[i])
            point = Point(chunk.series, chunk.kind, mjd, values[i], chunk.relevance[i], crossed)
            episode, alert_type, change = step(source.episode, point, source.tracks, chunk.source_id, threshold,
                                               self.settings.episode_end_points)
            if alert_type:
                terms = schemas.RelevanceTerms(**{name: c[i] for name, c in columns.items()})
                alert = self.alert(chunk, point, errors[i], terms, episode, alert_type, change, source.tracks)
                out.append(Output(topics.ALERTS, alert.source_id, alert))
            source.episode = None if alert_type == "end" else episode
        return out

    def alert(self, chunk: schemas.RelevanceChunk, p: Point, error: float, terms: schemas.RelevanceTerms,
              episode: Episode, alert_type: str, change: str, tracks: dict[str, Track]) -> schemas.Alert:
        record = self.records[chunk.source_id]
        name = record["integral_name"]
        last_points = [schemas.AlertPoint(series=s, time=mjd_to_datetime(m), mjd=m, value=v, error=e,
                                          units=value_units(series_kind(s)))
                       for s in episode.series for m, v, e in tracks[s].points]
        freshness = {series_kind(s): mjd_to_datetime(t.last_mjd) for s, t in tracks.items()
                     if series_kind(s) in topics.INSTRUMENTS}
        raised_at, time = self.now(), mjd_to_datetime(p.mjd)
        return schemas.Alert(
            alert_id=episode.alert_id, record_number=episode.record_number, alert_type=alert_type,
            live=raised_at - time <= timedelta(days=self.settings.live_days), raised_at=raised_at,
            **links.alert_source(self.settings, record), series=list(episode.series),
            trigger_series=p.series, time=time, mjd=p.mjd,
            onset_time=mjd_to_datetime(episode.onset_mjd), onset_mjd=episode.onset_mjd, relevance=p.relevance,
            peak_relevance=episode.peak_relevance, terms=terms, reasons=list(episode.reasons), change=change,
            explanation=explain(name, alert_type, change, episode, p, error, chunk.kind, terms,
                                self.settings.relevance_threshold),
            model_version=chunk.model_version, last_points=last_points, freshness=freshness)


def build(settings: Settings) -> Processor:
    return Processor("alerts", Alerts(settings), settings, max_records=64)
