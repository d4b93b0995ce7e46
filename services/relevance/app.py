"""The relevance stream processor: one score per new point of every series.

Events are scored in batches. Each series' River model (services/relevance/model.py) is a
checkpoint in a changelog-backed Faust table keyed by series, written only after the batch's
scores are acknowledged by Kafka: a worker killed at any moment restarts from a checkpoint
whose scores were all delivered, re-scores what came after it and emits the same scores
again (the store keeps one row per series and time). A point that is not newer than the last
one scored for its series (a replay) is not scored again.
"""
from __future__ import annotations

import asyncio

import faust
from pydantic import ValidationError

import schemas
from flashes import topics
from flashes.kafka import dead_letter
from flashes.settings import Settings
from flashes.streaming import make_app, topic
from services.relevance.model import MODEL_VERSION, SeriesModel
from services.relevance.series import SeriesPoint, from_derived, from_lightcurve

BATCH_EVENTS, BATCH_WAIT_S = 2000, 0.5


def parse(topic_name: str, value: dict) -> SeriesPoint | None:
    if topic_name == topics.DERIVED.name:
        return from_derived(schemas.DerivedPoint.model_validate(value))
    return from_lightcurve(schemas.LightcurvePoint.model_validate(value))


def score_point(model: SeriesModel, point: SeriesPoint) -> schemas.RelevanceScore:
    relevance, terms = model.score(point)
    return schemas.RelevanceScore(series=point.series, source_id=point.source_id, kind=point.kind,
                                  time=point.time, mjd=point.mjd, value=point.value, error=point.error,
                                  relevance=relevance, terms=schemas.RelevanceTerms(**terms),
                                  model_version=MODEL_VERSION)


def build(settings: Settings) -> faust.App:
    app = make_app("relevance", settings)
    inputs = app.topic(topics.LIGHTCURVE.name, topics.DERIVED.name, key_serializer="raw", value_serializer="json")
    relevance = topic(app, topics.RELEVANCE)
    deadletter = topic(app, topics.DEADLETTER)
    checkpoints = app.Table("relevance-model", default=None, partitions=topics.LIGHTCURVE.partitions)

    @app.agent(inputs)
    async def score(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH_EVENTS, within=BATCH_WAIT_S):
            models: dict[str, tuple[SeriesModel, faust.EventT]] = {}
            deliveries = []
            for event in events:
                try:
                    point = parse(event.message.topic, event.value)
                except ValidationError as exc:
                    letter = dead_letter("relevance", f"invalid input: {exc.errors()[0]['msg']}", str(event.value))
                    deliveries.append(await deadletter.send(key=b"relevance", value=letter.model_dump(mode="json")))
                    continue
                if point is None:
                    continue
                model = models[point.series][0] if point.series in models else \
                    SeriesModel.from_text(checkpoints.get(point.series))
                if point.mjd <= model.last_scored_mjd:
                    continue
                models[point.series] = model, event
                result = score_point(model, point)
                deliveries.append(await relevance.send(key=event.key, value=result.model_dump(mode="json")))
            await asyncio.gather(*deliveries)
            # A table write goes to the changelog partition of the stream's current event. Name
            # the event each series came from (one series, one input partition), then restore
            # the current event: take_events files the next buffered value under it.
            current = stream.current_event
            for series, (model, event) in models.items():
                stream._set_current_event(event)
                checkpoints[series] = model.to_text()
            stream._set_current_event(current)

    return app
