"""The relevance stream processor: one score per new point of every series.

The per-series state (last points) lives in a changelog-backed Faust table keyed like the
input topics, so a restarted worker continues exactly where it stopped. A point that is not
newer than the last one scored for its series (a replay) is not scored again.
"""
from __future__ import annotations

import faust
from pydantic import ValidationError

import schemas
from flashes import topics
from flashes.kafka import dead_letter
from flashes.settings import Settings
from flashes.streaming import make_app, topic
from services.relevance import formula
from services.relevance.series import SeriesPoint, from_derived, from_lightcurve


def parse(topic_name: str, value: dict) -> SeriesPoint | None:
    if topic_name == topics.DERIVED.name:
        return from_derived(schemas.DerivedPoint.model_validate(value))
    return from_lightcurve(schemas.LightcurvePoint.model_validate(value))


def score_point(state: formula.SeriesState, point: SeriesPoint) -> schemas.RelevanceScore:
    relevance, terms = formula.score(state, point.mjd, point.value, point.error, point.colour)
    return schemas.RelevanceScore(series=point.series, source_id=point.source_id, kind=point.kind,
                                  time=point.time, mjd=point.mjd, value=point.value, error=point.error,
                                  relevance=relevance, terms=schemas.RelevanceTerms(**terms),
                                  model_version=formula.MODEL_VERSION)


def build(settings: Settings) -> faust.App:
    app = make_app("relevance", settings)
    inputs = app.topic(topics.LIGHTCURVE.name, topics.DERIVED.name, key_serializer="raw", value_serializer="json")
    relevance = topic(app, topics.RELEVANCE)
    deadletter = topic(app, topics.DEADLETTER)
    states = app.Table("relevance-state", default=None, partitions=topics.LIGHTCURVE.partitions)

    @app.agent(inputs)
    async def score(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                point = parse(event.message.topic, event.value)
            except ValidationError as exc:
                letter = dead_letter("relevance", f"invalid input: {exc.errors()[0]['msg']}", str(event.value))
                await deadletter.send(key=b"relevance", value=letter.model_dump(mode="json"))
                continue
            if point is None:
                continue
            state = formula.SeriesState.from_json(states.get(point.series))
            if state.mjd and point.mjd <= state.mjd[-1]:
                continue
            result = score_point(state, point)
            states[point.series] = state.to_json()
            await relevance.send(key=event.key, value=result.model_dump(mode="json"))

    return app
