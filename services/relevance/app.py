"""The relevance stream processor: one score per new point of every series, a chunk at a time.

Each input chunk (lightcurve or derived) goes through its series' River model point by point
(online learning is sequential, services/relevance/model.py); decoding, state and producing are
paid once per chunk. The model of every series is explicit data (SeriesModel.to_state) in the
compacted state topic, with the input offset it covers (flashes/processor.py). A point that is
not newer than the last one scored for its series (a replay, a re-published point) is neither
scored nor learned again, so duplicates upstream change nothing. A point dated more than a day
after the clock is neither scored nor learned: it goes to the dead-letter topic with the reason.

Models learn from history before they speak: a series whose state is of another model or state
version (an upgrade) or does not read, or whose last point lies in the future (written before that
rule), or a series met without a state on an input partition that has lost records by retention, is
first rebuilt by replaying its stored points from QuestDB (services/relevance/history.py) through a
fresh model, in time order, with the same code as live; the scores of that replay are emitted too
(history: the alerts processor skips what it has seen). The replay reads the points strictly
before the incoming chunk's first one, and, for a restored state, every point up to the last one
that state had scored. A series without a state on a partition that kept all its records starts
from the prior without asking QuestDB: the runtime writes a key's state only after its outputs and
commits only after the states, so every earlier chunk of it is still ahead on the topic, whereas
the sink may already hold a later record dated earlier (a derived day emitted after the next one,
a revision), which the run that skipped it as not newer never learned; a restart between the
outputs and the first state must learn the same. (Where retention has dropped records, QuestDB
stands in for them, and that rare case remains.) A QuestDB that cannot answer, or whose history
ends before what the state had scored (the sink still behind), raises StateRestoreError: the
runtime starts over from the stored state and tries again. The wait is bounded per worker, not
per series (waits would add up over an upgrade): `relevance_history_wait_s` after the first one
began, and until a rebuild reads a whole history again, a series is rebuilt from what is stored, or
from the prior if QuestDB cannot answer, with an error in the log, so news is never held longer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

import schemas
from flashes import chunks, clock, metrics, topics
from flashes.clock import FUTURE_DAYS
from flashes.errors import StateRestoreError
from flashes.kafka import dead_letter
from flashes.processor import Output, Processor
from flashes.settings import Settings
from flashes.timeconv import datetime_to_mjd
from flashes.topics import catalogue_series
from services.relevance.history import History
from services.relevance.model import MODEL_VERSION, SeriesModel
from services.relevance.series import SeriesColumns, from_derived, from_lightcurve

Chunk = schemas.LightcurveChunk | schemas.DerivedChunk
NAME = "relevance"
log = logging.getLogger(__name__)


def score_columns(
    model: SeriesModel, cols: SeriesColumns, now: float
) -> tuple[list[schemas.RelevanceChunk], np.ndarray]:
    """Score a series' columns with its model (which learns them): the bounded relevance chunks, and which
    points were refused for being dated more than FUTURE_DAYS after `now` (MJD)."""
    scores = model.score_chunk(
        cols.kind, cols.mjd, cols.value, cols.error, cols.colour, cols.colour_error, now=now, bands=cols.bands
    )
    keep = scores.keep
    columns = {
        "value": cols.value[keep],
        "error": cols.error[keep],
        "relevance": scores.relevance,
        "terms": {name: scores.terms[name] for name in schemas.RelevanceTermColumns.model_fields},
    }
    scored = chunks.build(
        schemas.RelevanceChunk,
        cols.mjd[keep],
        columns,
        time=cols.time[keep],
        series=cols.series,
        source_id=cols.source_id,
        kind=cols.kind,
        model_version=MODEL_VERSION,
    )
    return scored, scores.future


def columns_of(chunk: Chunk) -> SeriesColumns | None:
    return from_derived(chunk) if isinstance(chunk, schemas.DerivedChunk) else from_lightcurve(chunk)


@dataclass
class Rebuilt:
    """A model rebuilt from stored history, the scores the replay raised, and how far the history went."""

    model: SeriesModel = field(default_factory=SeriesModel)
    chunks: list[schemas.RelevanceChunk] = field(default_factory=list)
    points: int = 0
    stored_until: float = -math.inf  # the newest stored point read (scored, or refused as a replay or future)

    def reaches(self, until: float | None, now: float) -> bool:
        """Whether the history read reaches the last point a state had scored (nothing to reach if the
        state does not say, or if that point was dated in the future: no stored history holds it)."""
        return until is None or until > now + FUTURE_DAYS or self.stored_until >= until


def rebuild(
    history: History, kind: str, source_id: str, now: float, before_us: int | None = None, until: float | None = None
) -> Rebuilt:
    """Replay a series' stored points before `before_us` (µs) and up to `until` (MJD) through a fresh model,
    in time order, page by page with the live scoring code. StateRestoreError if QuestDB cannot answer."""
    out = Rebuilt()
    for page in history.pages(kind, source_id, before_us, until):
        scored, _ = score_columns(out.model, page, now)  # a future point was dead-lettered when it arrived
        out.chunks += scored
        out.points += len(page.mjd)
        out.stored_until = float(page.mjd[-1])
    return out


def partition_of(source_id: str) -> int:
    """The partition of a source's chunks on every data topic (keyed by source id: flashes/topics.py)."""
    return DefaultPartitioner()(source_id.encode(), list(range(topics.DATA_PARTITIONS)), [])


def future_letter(chunk: Chunk, cols: SeriesColumns, refused: np.ndarray, now: float) -> schemas.DeadLetter:
    """The dead letter of a chunk's points dated more than FUTURE_DAYS after `now` (MJD)."""
    topic = topics.DERIVED if isinstance(chunk, schemas.DerivedChunk) else topics.LIGHTCURVE
    mjd = cols.mjd[refused]
    reason = (
        f"{len(mjd)} point(s) of {cols.series} dated MJD {mjd[0]:.5f}{'…' if len(mjd) > 1 else ''}, more "
        f"than {FUTURE_DAYS:g} day after the clock (MJD {now:.5f}): neither scored nor learned"
    )
    payload = orjson.dumps(
        {
            "series": cols.series,
            "time": cols.time[refused].tolist(),
            "mjd": mjd.tolist(),
            "value": cols.value[refused].tolist(),
            "error": cols.error[refused].tolist(),
        }
    ).decode()
    # The fetch time makes the letter of a replayed chunk the same letter (derived chunks carry none).
    fetched = chunk.provenance.fetched_at if isinstance(chunk, schemas.LightcurveChunk) else None
    return dead_letter(
        f"{NAME}:{topic.name}", reason, payload, at_ms=None if fetched is None else int(fetched.timestamp() * 1000)
    )


class Relevance:
    """The relevance `Logic` (see flashes/processor.py): state per series = its model.

    Without `settings` there is no stored history (an in-process run over a whole topic) and the
    clock is the system's; `now` replaces the clock (tests, simulations).
    """

    inputs = (topics.LIGHTCURVE, topics.DERIVED)
    state = topics.RELEVANCE_STATE

    def __init__(self, settings: Settings | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.history = History(settings) if settings else None
        self.now = now or ((lambda: clock.now(settings)) if settings else (lambda: datetime.now(UTC)))
        self.models: dict[str, SeriesModel] = {}
        self.stale: dict[str, float | None] = {}  # restored states to rebuild: the last MJD each had scored
        self.lost: set[int] = set()  # the input partitions that have lost records by retention (set by the runtime)
        # Until when (monotonic) rebuilds wait for QuestDB: set when the first wait begins, cleared by a
        # complete rebuild, kept across the runtime's restarts (forget), which is what bounds the wait.
        self.deadline: float | None = None

    def key(self, chunk: Chunk) -> str:
        kind = chunk.kind if isinstance(chunk, schemas.DerivedChunk) else chunk.instrument
        return catalogue_series(kind, chunk.source_id)

    def restore(self, state: schemas.RelevanceState) -> None:
        restored = SeriesModel.restore(state.model)
        self.models[state.key] = restored.model
        if restored.rebuild:
            self.stale[state.key] = restored.scored_until
        else:
            self.stale.pop(state.key, None)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.models.pop(key, None)
            self.stale.pop(key, None)

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.RelevanceState:
        model = self.models.setdefault(key, SeriesModel())
        return schemas.RelevanceState(key=key, topic=topic, partition=partition, offset=offset, model=model.to_state())

    def apply(self, chunk: Chunk) -> list[Output]:
        cols = columns_of(chunk)
        if cols is None:
            return []
        now = datetime_to_mjd(self.now())
        out: list[Output] = []
        model = self.models.get(cols.series)
        if model is None and partition_of(chunk.source_id) not in self.lost:  # its history is on the topic
            model = self.models[cols.series] = SeriesModel()
        if model is None or cols.series in self.stale or model.last_scored_mjd > now + FUTURE_DAYS:
            model, history = self._rebuilt(cols, now)
            out += [Output(topics.RELEVANCE, chunk.source_id, c) for c in history]
        scored, refused = score_columns(model, cols, now)
        out += [Output(topics.RELEVANCE, chunk.source_id, c) for c in scored]
        if refused.any():
            letter = future_letter(chunk, cols, refused, now)
            out.append(Output(topics.DEADLETTER, letter.origin, letter))
            metrics.DEAD_LETTERS.labels(NAME, "future_dated").inc()
        return out

    def _rebuilt(self, cols: SeriesColumns, now: float) -> tuple[SeriesModel, list[schemas.RelevanceChunk]]:
        """The series' model rebuilt from its stored history before this chunk (and up to what its restored
        state had scored), and the replay's scores; StateRestoreError to have the runtime retry."""
        series = cols.series
        done, problem, fallback = Rebuilt(), None, "what is stored"
        if self.history is not None:
            until = self.stale.get(series)
            try:
                done = rebuild(self.history, cols.kind, cols.source_id, now, before_us=int(cols.time[0]), until=until)
                if not done.reaches(until, now):
                    problem = (
                        f"the stored history ends at MJD {done.stored_until}, before MJD {until}, the last "
                        "point its state had scored"
                    )
            except StateRestoreError as exc:
                problem, fallback = str(exc), "the prior"
        if problem is None:
            self.deadline = None
        else:
            assert self.settings is not None  # a problem comes only from the history, which only settings give
            if self.deadline is None:
                self.deadline = time.monotonic() + self.settings.relevance_history_wait_s
            if time.monotonic() < self.deadline:
                raise StateRestoreError(f"{series}: {problem}; waiting for QuestDB")
            log.error(
                "%s: %s; rebuilt from %s, this worker's %g s of waiting for QuestDB being spent",
                series,
                problem,
                fallback,
                self.settings.relevance_history_wait_s,
            )
        if done.points:
            log.info("%s rebuilt from %d stored points (%s)", series, done.points, MODEL_VERSION)
        self.stale.pop(series, None)
        self.models[series] = done.model
        return done.model, done.chunks


class RelevanceProcessor(Processor):
    """The runtime of `Relevance`, which also tells it, at each assignment, which of its input partitions
    have lost records by retention (their beginning offset is above 0)."""

    def __init__(self, logic: Relevance, settings: Settings) -> None:
        super().__init__(NAME, logic, settings, max_records=16)
        self.relevance = logic

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None  # it calls this listener
        try:
            starts = await self.consumer.beginning_offsets(sorted(assigned)) if assigned else {}
        except KafkaError as exc:  # raised by the batch loop, as a failed restore is
            self.failure = StateRestoreError(f"{NAME}: the beginning offsets of {sorted(assigned)}: {exc!r}")
            return
        self.relevance.lost = {tp.partition for tp, start in starts.items() if start > 0}
        await super().on_partitions_assigned(assigned)


def build(settings: Settings) -> Processor:
    return RelevanceProcessor(Relevance(settings), settings)
