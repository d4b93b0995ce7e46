"""The relevance stream processor: one score per new point of every series, a chunk at a time.

Each input chunk (lightcurve or derived) goes through its series' River model point by point
(online learning is sequential, services/relevance/model.py); decoding, state and producing are
paid once per chunk. The model of every series is explicit data (SeriesModel.to_state) in the
compacted state topic, with the input offset it covers (flashes/processor.py). A point that is
not newer than the last one scored for its series (a replay, a re-published point) is neither
scored nor learned again, so duplicates upstream change nothing.
"""
from __future__ import annotations

from collections.abc import Iterable

import schemas
from flashes import topics
from flashes.chunks import spans
from flashes.processor import Output, Processor
from flashes.settings import Settings
from flashes.topics import catalogue_series
from services.relevance.model import MODEL_VERSION, SeriesModel
from services.relevance.series import SeriesColumns, from_derived, from_lightcurve

Chunk = schemas.LightcurveChunk | schemas.DerivedChunk


def score_columns(model: SeriesModel, cols: SeriesColumns) -> list[schemas.RelevanceChunk]:
    """Score a series' columns with its model (which learns them); the bounded relevance chunks."""
    scores = model.score_chunk(cols.kind, cols.mjd, cols.value, cols.error, cols.colour, cols.colour_error)
    keep = scores.keep
    columns = [cols.time[keep], cols.mjd[keep], cols.value[keep], cols.error[keep], scores.relevance,
               *(scores.terms[name] for name in schemas.RelevanceTermColumns.model_fields)]
    out = []
    for part in spans(len(columns[0]), len(columns)):
        time, mjd, value, error, relevance, *terms = (c[part].tolist() for c in columns)
        out.append(schemas.RelevanceChunk(
            series=cols.series, source_id=cols.source_id, kind=cols.kind, model_version=MODEL_VERSION,
            first_mjd=mjd[0], last_mjd=mjd[-1], count=len(mjd), time=time, mjd=mjd, value=value, error=error,
            relevance=relevance,
            terms=schemas.RelevanceTermColumns(**dict(zip(schemas.RelevanceTermColumns.model_fields, terms)))))
    return out


def columns_of(chunk: Chunk) -> SeriesColumns | None:
    return from_derived(chunk) if isinstance(chunk, schemas.DerivedChunk) else from_lightcurve(chunk)


class Relevance:
    """The relevance `Logic` (see flashes/processor.py): state per series = its model."""

    inputs = (topics.LIGHTCURVE, topics.DERIVED)
    state = topics.RELEVANCE_STATE

    def __init__(self) -> None:
        self.models: dict[str, SeriesModel] = {}

    def key(self, chunk: Chunk) -> str:
        kind = chunk.kind if isinstance(chunk, schemas.DerivedChunk) else chunk.instrument
        return catalogue_series(kind, chunk.source_id)

    def restore(self, state: schemas.RelevanceState) -> None:
        self.models[state.key] = SeriesModel.from_state(state.model)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.models.pop(key, None)

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.RelevanceState:
        model = self.models.setdefault(key, SeriesModel())
        return schemas.RelevanceState(key=key, topic=topic, partition=partition, offset=offset,
                                      model=model.to_state())

    def apply(self, chunk: Chunk) -> list[Output]:
        cols = columns_of(chunk)
        if cols is None:
            return []
        model = self.models.setdefault(cols.series, SeriesModel())
        return [Output(topics.RELEVANCE, chunk.source_id, c) for c in score_columns(model, cols)]


def build(settings: Settings) -> Processor:
    return Processor("relevance", Relevance(), settings, max_records=16)
