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
(services/delivery/): detection never waits for a receiver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import schemas
from flashes import catalogue, clock, links, topics
from flashes.processor import Output, Processor
from flashes.settings import Settings
from flashes.timeconv import mjd_to_datetime
from flashes.topics import series_kind
from flashes.units import mcrab_factor, series_label, value_units
from services.alerts.episodes import NOTHING, Point, Record, Rules, step

TERMS = tuple(schemas.RelevanceTerms.model_fields)
WHY = {
    "brightening": "brighter than its usual level",
    "state_change": "its colour (hard/soft) switched",
    "unusual": "several terms together are unusual",
}


def explain(name: str, record: Record, p: Point, threshold: float) -> str:
    """The alert's explanation: what is unusual about source `name` (or that it is back to usual) and the point."""
    units = "" if value_units(p.kind) == "ratio" else " mCrab"
    terms = p.terms
    point = (
        f"{series_label(p.kind)} {p.value:.4g} ± {p.error:.2g}{units} on {mjd_to_datetime(p.mjd):%Y-%m-%d} "
        f"(MJD {p.mjd:.2f}), relevance {p.relevance:.2f} (threshold {threshold:.2f}; model term "
        f"{terms['model']:.2f}, hardness {terms['hardness']:.2f}, flux S/N {terms['flux']:.2f}, "
        f"trend {terms['trend']:.2f})"
    )
    episode, change = record.episode, record.change
    if record.alert_type == "end":
        return (
            f"{name} is back to its usual behaviour ({change}); the episode began on "
            f"{mjd_to_datetime(episode.onset_mjd):%Y-%m-%d} with peak relevance {episode.peak_relevance:.2f}. "
            f"Last: {point}."
        )
    why = "; ".join(WHY[r] for r in episode.reasons)
    return f"{name} is unusual: {why}. {change[0].upper()}{change[1:]}. {point}."


class Alerts:
    """The alerts `Logic` (see flashes/processor.py): state per source, a schemas.EpisodeState."""

    inputs = (topics.RELEVANCE,)
    state = topics.ALERTS_STATE

    def __init__(self, settings: Settings, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.rules = Rules(settings.relevance_threshold, settings.episode_end_points)
        self.now = now or (lambda: clock.now(settings))
        self.records = {rec.id: rec for rec in catalogue.load(settings)}
        self.sources: dict[str, schemas.EpisodeState] = {}

    def key(self, chunk: schemas.RelevanceChunk) -> str:
        return chunk.source_id

    def restore(self, state: schemas.AlertState) -> None:
        self.sources[state.key] = state

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.sources.pop(key, None)

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.AlertState:
        source = self.sources[key]
        return schemas.AlertState(
            key=key, topic=topic, partition=partition, offset=offset, series=source.series, episode=source.episode
        )

    def apply(self, chunk: schemas.RelevanceChunk) -> list[Output]:
        """Every point of the chunk through the episode logic, in order; the source's state is replaced once the
        whole chunk is applied, so a chunk that fails (a dead letter) leaves it as it was."""
        if chunk.source_id not in self.records:
            raise ValueError(f"unknown source '{chunk.source_id}': not in the catalogue")
        state = self.sources.get(chunk.source_id, NOTHING)
        columns = {name: getattr(chunk.terms, name) for name in TERMS}
        factor = mcrab_factor(chunk.kind)
        out = []
        for i, mjd in enumerate(chunk.mjd):
            point = Point(
                chunk.source_id,
                chunk.series,
                chunk.kind,
                mjd,
                chunk.value[i] * factor,
                chunk.error[i] * factor,
                chunk.relevance[i],
                {name: c[i] for name, c in columns.items()},
            )
            decision = step(state, point, self.rules)
            state = decision.state
            if decision.record is not None:
                alert = self.alert(chunk.model_version, point, decision.record, state)
                out.append(Output(topics.ALERTS, alert.source_id, alert))
        self.sources[chunk.source_id] = state
        return out

    def alert(self, model_version: str, p: Point, record: Record, state: schemas.EpisodeState) -> schemas.Alert:
        """The alert record `record` of the episode, raised by point `p`, as published (the state is after `p`)."""
        source = self.records[p.source_id]
        episode = record.episode
        last_points = [
            schemas.AlertPoint(
                series=s, time=mjd_to_datetime(m), mjd=m, value=v, error=e, units=value_units(series_kind(s))
            )
            for s in episode.series
            for m, v, e in state.series[s].points
        ]
        freshness = {
            series_kind(s): mjd_to_datetime(t.last_mjd)
            for s, t in state.series.items()
            if series_kind(s) in topics.INSTRUMENTS
        }
        raised_at, time = self.now(), mjd_to_datetime(p.mjd)
        return schemas.Alert(
            alert_id=episode.alert_id,
            record_number=episode.record_number,
            alert_type=record.alert_type,
            live=raised_at - time <= timedelta(days=self.settings.live_days),
            raised_at=raised_at,
            **links.alert_source(self.settings, source),
            series=list(episode.series),
            trigger_series=p.series,
            time=time,
            mjd=p.mjd,
            onset_time=mjd_to_datetime(episode.onset_mjd),
            onset_mjd=episode.onset_mjd,
            relevance=p.relevance,
            peak_relevance=episode.peak_relevance,
            terms=schemas.RelevanceTerms(**p.terms),
            reasons=list(episode.reasons),
            change=record.change,
            explanation=explain(source.integral_name, record, p, self.rules.threshold),
            model_version=model_version,
            last_points=last_points,
            freshness=freshness,
        )


def build(settings: Settings) -> Processor:
    return Processor("alerts", Alerts(settings), settings, max_records=64)
