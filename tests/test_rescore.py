"""Models that learn from history before they speak, on a private Kafka and QuestDB of this module.

The stored history is written by the sink's own code (services/sink); a model rebuilt from it
must equal, state for state, the model that scored the same points live. The processor part runs
the real relevance service: an old-version state is rebuilt before the next point, which then
scores as `flashes evaluate` scores the whole file; `flashes rescore` refuses to run beside a
worker and, once it is stopped, rebuilds the selected source only. The module has its own stack
because the suite's shared one runs the pipeline's relevance worker in the same consumer group.
"""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.structs import ConsumerRecord

import schemas
from devtools.infra import child_env, free_port
from devtools.observe import read_records, wait_until
from devtools.stack import Stack, private_stack
from evaluation.methods import file_series, model_scores
from flashes import kafka, questdb, topics
from flashes.chunks import build
from flashes.errors import StateRestoreError
from flashes.kafka import ensure_topics, make_producer
from flashes.parsers import parse
from flashes.processor import Processor
from flashes.settings import Settings
from flashes.timeconv import datetime_to_mjd, mjd_to_unix_us
from services.fetcher.publish import make_chunks
from services.relevance.app import Relevance, columns_of, partition_of, rebuild, score_columns
from services.relevance.history import History
from services.relevance.model import MODEL_VERSION, SeriesModel
from services.sink.rows import derived_frame, lightcurve_frame
from services.sink.service import write_frames

DATA = Path(__file__).resolve().parent / "data"
MAXI = DATA / "maxi" / "J1535-572_g_lc_1day_all.dat"
BAT = DATA / "bat" / "CirX-1.lc.fits"
FETCHED = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 2, tzinfo=UTC)  # the clock of the in-process runs


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with private_stack(var=tmp_path_factory.mktemp("rescore")) as stack:
        asyncio.run(ensure_topics(stack.settings))
        yield stack


@pytest.fixture()
def qdb(own: Stack) -> Settings:
    return own.settings


def lightcurve(instrument: str, path: Path, source_id: str) -> list[schemas.LightcurveChunk]:
    """A real provider file as the fetcher publishes it (bounded chunks, in time order)."""
    parsed = parse(instrument, path.name, path.read_bytes())
    return make_chunks(parsed, np.ones(len(parsed), dtype=bool), source_id, instrument, f"file://{path.name}", FETCHED)


def split(chunk: schemas.LightcurveChunk, at: list[int]) -> list[schemas.LightcurveChunk]:
    """A chunk cut into consecutive chunks at the given point indices."""
    header = {name: getattr(chunk, name) for name in ("source_id", "instrument", "bands", "units", "provenance")}
    out, bounds = [], [0, *at, chunk.count]
    for a, b in zip(bounds, bounds[1:]):
        groups = {name: {k: v[a:b] for k, v in getattr(chunk, name).items()} for name in ("flux", "error", "flags")}
        out += build(schemas.LightcurveChunk, chunk.mjd[a:b], groups, time=chunk.time[a:b], **header)
    return out


def points(chunks: list[schemas.LightcurveChunk]) -> list[schemas.LightcurveChunk]:
    """The same points, cut before each one after the first of the last chunk (daily updates)."""
    *rest, last = chunks
    return [*rest, *split(last, list(range(1, last.count)))]


def derived(kind: str, source_id: str, n: int, seed: int) -> schemas.DerivedChunk:
    """A derived series with awkward doubles (the exact round trip through QuestDB is what is tested)."""
    rng = np.random.default_rng(seed)
    mjd = (58000.5 + np.arange(n) + rng.integers(0, 2, n).cumsum()).tolist()
    swift, maxi = rng.lognormal(3, 1, n), rng.lognormal(4, 1, n)
    swift_error, maxi_error = swift * rng.uniform(0.01, 0.2, n), maxi * rng.uniform(0.01, 0.2, n)
    value = swift / maxi if kind == "hardness" else swift + maxi
    error = (
        value * np.hypot(swift_error / swift, maxi_error / maxi)
        if kind == "hardness"
        else np.hypot(swift_error, maxi_error)
    )
    [one] = build(
        schemas.DerivedChunk,
        mjd,
        {
            "value": value,
            "error": error,
            "swift_flux": swift,
            "swift_error": swift_error,
            "maxi_flux": maxi,
            "maxi_error": maxi_error,
        },
        source_id=source_id,
        kind=kind,
        units="ratio" if kind == "hardness" else "mCrab",
    )
    return one


def stored(settings: Settings, chunks: list) -> None:
    """Write chunks as the sink writes them, and wait until QuestDB shows them."""
    frames: dict[str, list] = {"lightcurve": [], "derived": []}
    for c in chunks:
        if isinstance(c, schemas.DerivedChunk):
            frames["derived"].append(derived_frame(c))
        else:
            frames["lightcurve"].append(lightcurve_frame(c))
    with questdb.sender(settings) as sender:
        write_frames(sender, {table: rows for table, rows in frames.items() if rows})
    wait_until(lambda: questdb.wal_applied(settings), "QuestDB to apply the rows", 60, 0.2)


def live(chunks: list) -> tuple[SeriesModel, list[float]]:
    """The model that scored the chunks live, and its relevance of every point."""
    model, relevance = SeriesModel(), []
    for chunk in chunks:
        scored, _ = score_columns(model, columns_of(chunk), datetime_to_mjd(NOW))
        relevance += [r for c in scored for r in c.relevance]
    return model, relevance


def relevance_of(outputs: list) -> list[float]:
    return [r for o in outputs if o.spec is topics.RELEVANCE for r in o.value.relevance]


def after_retention(logic: Relevance) -> Relevance:
    """A worker whose input partitions have all lost records by retention: QuestDB stands in for them."""
    logic.lost = set(range(topics.DATA_PARTITIONS))
    return logic


@pytest.mark.parametrize("page_rows", [30_000, 1_000])
def test_a_model_rebuilt_from_questdb_equals_the_model_that_scored_the_same_points_live(
    qdb: Settings, page_rows: int
) -> None:
    tag = f"p{page_rows}"
    series = {
        "maxi": lightcurve("maxi", MAXI, f"rebuilt-maxi-{tag}"),
        "swift": lightcurve("swift", BAT, f"rebuilt-swift-{tag}"),
        "hardness": [derived("hardness", f"rebuilt-derived-{tag}", 700, 1)],
        "combined": [derived("combined", f"rebuilt-derived-{tag}", 700, 2)],
    }
    stored(qdb, [c for chunks in series.values() for c in chunks])
    history = History(qdb, page_rows=page_rows)
    for kind, chunks in series.items():
        model, relevance = live(chunks)
        logic = after_retention(Relevance(qdb, now=lambda: NOW))
        last = chunks[-1]
        following = split(last, [last.count - 1])[-1] if kind in ("maxi", "swift") else None
        if following is None:  # a derived series: the rebuild alone
            done = rebuild(history, kind, chunks[0].source_id, datetime_to_mjd(NOW), until=chunks[-1].last_mjd)
            assert done.points == sum(c.count for c in chunks), kind
            assert done.model.to_state() == model.to_state(), kind
            assert [r for c in done.chunks for r in c.relevance] == relevance, kind
            continue
        # A series met without a state while its history is stored: rebuilt up to the chunk, then scored.
        out = logic.apply(following)
        assert logic.models[f"{kind}_{chunks[0].source_id}"].to_state() == model.to_state(), kind
        assert relevance_of(out) == relevance, kind  # the replay's scores, then the chunk's own


def test_a_series_without_state_reads_nothing_of_the_chunks_still_ahead_on_the_topic(qdb: Settings) -> None:
    """The rule that keeps a worker's replay identical: points at or after the chunk are never history."""
    chunks = points(lightcurve("maxi", MAXI, "ahead"))[:-5]
    stored(qdb, chunks)  # the sink stored everything, the worker died before writing the series' state
    replayed, fresh = after_retention(Relevance(qdb, now=lambda: NOW)), Relevance(now=lambda: NOW)
    for chunk in chunks[:3]:
        assert [o.value for o in replayed.apply(chunk)] == [o.value for o in fresh.apply(chunk)]


def test_a_series_without_state_on_a_partition_that_kept_its_records_learns_from_the_topic_alone(qdb: Settings) -> None:
    """A later record dated earlier (a derived day emitted late, a revision) that the sink stored before
    the worker wrote the series' first state: restarted, the worker learns what the uninterrupted run did."""
    _, day, later = split(lightcurve("maxi", MAXI, "late-day")[0], [40, 41])
    stored(qdb, [later, day])  # the topic holds `later`, then `day`; the worker died before the state
    uninterrupted = Relevance(now=lambda: NOW)
    expected = [o.value for o in uninterrupted.apply(later)]
    assert relevance_of(uninterrupted.apply(day)) == [], "not newer: skipped"
    restarted = Relevance(qdb, now=lambda: NOW)
    assert [o.value for o in restarted.apply(later)] == expected
    assert restarted.models["maxi_late-day"].to_state() == uninterrupted.models["maxi_late-day"].to_state()
    # Where retention dropped records, QuestDB stands in for them: the stored day is history there.
    assert len(relevance_of(after_retention(Relevance(qdb, now=lambda: NOW)).apply(later))) == later.count + 1


def test_the_next_point_of_a_series_met_first_with_its_history_stored_scores_as_the_whole_file(qdb: Settings) -> None:
    chunks = points(lightcurve("maxi", MAXI, "met-late"))
    stored(qdb, chunks[:-1])
    whole = model_scores(
        file_series(parse("maxi", MAXI.name, MAXI.read_bytes()), "maxi", "maxij1535-571")
    ).relevance.tolist()
    out = after_retention(Relevance(qdb, now=lambda: NOW)).apply(chunks[-1])
    assert relevance_of(out) == whole  # the history as scored by the current model, then the new point
    assert {o.value.model_version for o in out} == {MODEL_VERSION}


def old_state(model: SeriesModel) -> dict:
    """The state an earlier model version wrote (only its tags differ: it reads as a SupersededModel)."""
    return {**model.to_state().model_dump(mode="json"), "model_version": "river-3", "state_version": 3}


def test_questdb_unreachable_during_a_rebuild_is_a_retry_of_the_runtime_until_the_worker_s_bound(
    qdb: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dead = qdb.model_copy(update={"questdb_http_port": free_port()})
    chunk = lightcurve("maxi", MAXI, "unreachable")[0]
    logic = after_retention(Relevance(dead, now=lambda: NOW))
    processor = Processor("relevance", logic, dead)
    tp = TopicPartition(topics.LIGHTCURVE.name, 0)
    processor.covered[tp] = {}
    raw = topics.LIGHTCURVE.encode(chunk)
    record = ConsumerRecord(tp.topic, 0, 7, 0, 0, chunk.source_id.encode(), raw, None, 0, len(raw), ())
    with pytest.raises(StateRestoreError, match="stored history cannot be read"):
        processor._apply(tp, [record])
    assert processor.covered[tp] == {}  # nothing applied, so the restarted runtime takes the chunk again
    logic.deadline = time.monotonic()  # the worker's bound on waiting for QuestDB spent: news goes on
    with caplog.at_level(logging.ERROR):
        out, touched = processor._apply(tp, [record])
    assert "maxi_unreachable: the stored history cannot be read" in caplog.text
    assert "rebuilt from the prior" in caplog.text
    assert relevance_of(out) == relevance_of(Relevance(now=lambda: NOW).apply(chunk))
    assert touched == {"maxi_unreachable": 8}


def test_a_stalled_questdb_read_leaves_the_event_loop_free_for_the_consumer_s_heartbeats(qdb: Settings) -> None:
    async def run() -> list[bool]:
        during: list[bool] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            during.append(not batch.done())  # served by the loop while the batch is still rebuilding
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        stalled = qdb.model_copy(update={"questdb_http_port": server.sockets[0].getsockname()[1]})
        chunk = lightcurve("maxi", MAXI, "stalled")[0]
        processor = Processor("relevance", after_retention(Relevance(stalled, now=lambda: NOW)), stalled)
        tp = TopicPartition(topics.LIGHTCURVE.name, 0)
        processor.covered[tp] = {}
        raw = topics.LIGHTCURVE.encode(chunk)
        record = ConsumerRecord(tp.topic, 0, 0, 0, 0, chunk.source_id.encode(), raw, None, 0, len(raw), ())
        batch = asyncio.ensure_future(processor._batch(None, {tp: [record]}))
        with pytest.raises(StateRestoreError, match="stored history cannot be read"):
            await batch
        server.close()
        return during

    assert asyncio.run(run())[:1] == [True]


def test_rebuilds_wait_for_the_sink_within_one_bound_per_worker_then_use_what_is_stored(
    qdb: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    behind = {f"maxi_{name}": points(lightcurve("maxi", MAXI, name)) for name in ("sink-behind", "sink-behind-too")}
    stored(qdb, [c for chunks in behind.values() for c in chunks[:-11]])  # ten points behind the old states
    model, _ = live(next(iter(behind.values()))[:-1])
    worker = Relevance(qdb, now=lambda: NOW)

    def old(key: str, model: SeriesModel) -> schemas.RelevanceState:
        return schemas.RelevanceState(
            key=key, topic=topics.LIGHTCURVE.name, partition=0, offset=9, model=old_state(model)
        )

    for key in behind:
        worker.restore(old(key, model))
    waits = []
    for key, chunks in behind.items():
        with pytest.raises(StateRestoreError, match=f"{key}: the stored history ends at MJD .* waiting for QuestDB"):
            worker.apply(chunks[-1])
        waits.append(worker.deadline)
    assert waits[0] is not None and waits == [waits[0]] * 2, "one bound for the worker: waits do not add up"
    worker.deadline = time.monotonic()  # the bound spent: no series waits any more
    with caplog.at_level(logging.ERROR):
        for chunks in behind.values():
            assert len(relevance_of(worker.apply(chunks[-1]))) == sum(c.count for c in chunks[:-11]) + 1
    assert caplog.text.count("rebuilt from what is stored") == 2 and "maxi_sink-behind-too: the stored" in caplog.text
    # A series whose history is stored in full is rebuilt from it, and the next wait has its whole bound again.
    key, chunks = next(iter(behind.items()))
    worker.restore(old(key, live(chunks[:-11])[0]))
    assert len(relevance_of(worker.apply(chunks[-1]))) == sum(c.count for c in chunks[:-11]) + 1
    assert worker.deadline is None


def test_a_point_dated_after_the_clock_is_a_dead_letter_and_a_state_it_silenced_is_rebuilt(qdb: Settings) -> None:
    chunk = lightcurve("maxi", MAXI, "future")[0]
    quiet, future, rest = split(chunk, [40, 41])
    bad = future.model_copy(
        update=dict(mjd=[95000.0], first_mjd=95000.0, last_mjd=95000.0, time=mjd_to_unix_us([95000.0]).tolist())
    )
    logic = Relevance(qdb, now=lambda: NOW)
    logic.apply(quiet)
    out = logic.apply(bad)
    [letter] = [o.value for o in out if o.spec is topics.DEADLETTER]
    assert relevance_of(out) == [] and letter.origin == f"relevance:{topics.LIGHTCURVE.name}"
    assert "MJD 95000.00000" in letter.reason and "neither scored nor learned" in letter.reason
    assert orjson.loads(letter.payload)["mjd"] == [95000.0] and letter.received_at == FETCHED
    assert len(relevance_of(logic.apply(rest))) == rest.count, "the points after the bad one are scored"
    # A state the code before this rule wrote: 95000 learned as the last time, every point after skipped.
    poisoned = SeriesModel()
    for c in (quiet, bad):
        poisoned.score_chunk(
            "maxi",
            *(getattr(columns_of(c), n) for n in ("mjd", "value", "error", "colour", "colour_error")),
            now=math.inf,
            bands=columns_of(c).bands,
        )
    assert poisoned.last_scored_mjd == 95000.0
    stored(qdb, [quiet, bad])
    healed = Relevance(qdb, now=lambda: NOW)
    healed.restore(
        schemas.RelevanceState(
            key="maxi_future", topic=topics.LIGHTCURVE.name, partition=0, offset=3, model=poisoned.to_state()
        )
    )
    expected = Relevance(now=lambda: NOW)
    assert relevance_of(healed.apply(rest)) == relevance_of(expected.apply(quiet) + expected.apply(rest))


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "flashes"), *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )


async def send(settings: Settings, spec: topics.TopicSpec, key: str, value: object, partition: int | None = None):
    producer = make_producer(settings)
    await producer.start()
    try:
        return await producer.send_and_wait(spec.name, spec.encode(value), key=key.encode(), partition=partition)
    finally:
        await producer.stop()


def scores(settings: Settings, series: str) -> list[tuple[int, float, str]]:
    """(time, relevance, model version) of every score of a series on the relevance topic, in order."""
    records = asyncio.run(read_records(settings, topics.RELEVANCE.name, timeout_s=1.0))
    return [
        (t, r, v["model_version"])
        for _, v, _ in records
        if v["series"] == series
        for t, r in zip(v["time"], v["relevance"])
    ]


async def drop_before(settings: Settings, tp: TopicPartition, offset: int) -> None:
    """What retention does: the partition's records before `offset` are deleted."""
    admin = kafka.admin(settings)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(before_offset=offset)})
    finally:
        await admin.close()


def states(settings: Settings, key: str) -> list[dict]:
    return [
        v
        for k, v, _ in asyncio.run(read_records(settings, topics.RELEVANCE_STATE.name, timeout_s=1.0))
        if k == key.encode()
    ]


def test_an_upgrade_and_flashes_rescore_on_the_running_relevance_service(own: Stack) -> None:
    settings, env = own.settings, own.env
    chunks = points(lightcurve("maxi", MAXI, "upgrade"))
    history, following, after = chunks[:-2], chunks[-2], chunks[-1]
    whole = model_scores(
        file_series(parse("maxi", MAXI.name, MAXI.read_bytes()), "maxi", "maxij1535-571")
    ).relevance.tolist()
    n = sum(c.count for c in history)
    # A source whose first chunk retention dropped from the topic: met without a state, rebuilt from QuestDB.
    retained = points(lightcurve("maxi", MAXI, "retained"))
    stored(settings, retained[:-1])
    dropped = asyncio.run(send(settings, topics.LIGHTCURVE, "retained", retained[0]))
    assert dropped.partition == partition_of("retained")
    asyncio.run(drop_before(settings, TopicPartition(topics.LIGHTCURVE.name, dropped.partition), dropped.offset + 1))
    asyncio.run(send(settings, topics.LIGHTCURVE, "retained", retained[-1]))
    # Before the upgrade: the history scored by the old model and stored; its state of the old version.
    old, _ = live(history)
    stored(settings, history)
    other = lightcurve("swift", BAT, "untouched")
    meta = asyncio.run(send(settings, topics.LIGHTCURVE, "upgrade", following))
    asyncio.run(
        send(
            settings,
            topics.RELEVANCE_STATE,
            "maxi_upgrade",
            schemas.RelevanceState(
                key="maxi_upgrade",
                topic=topics.LIGHTCURVE.name,
                partition=meta.partition,
                offset=meta.offset,
                model=old_state(old),
            ),
            partition=meta.partition,
        )
    )
    for chunk in other:
        asyncio.run(send(settings, topics.LIGHTCURVE, "untouched", chunk))
    own.start("relevance")
    try:
        # The upgraded worker rebuilds the series from QuestDB before the next point, which then scores
        # as `flashes evaluate` scores the whole file.
        wait_until(
            lambda: len(scores(settings, "maxi_upgrade")) == n + 1, "the rebuilt history and the next point", 120
        )
        got = scores(settings, "maxi_upgrade")
        assert [r for _, r, _ in got] == whole[: n + 1]
        assert {v for _, _, v in got} == {MODEL_VERSION}
        wait_until(
            lambda: len(scores(settings, "swift_untouched")) == sum(c.count for c in other), "the BAT series", 60
        )
        wait_until(lambda: len(scores(settings, "maxi_retained")) == len(whole), "the series retention cut", 60)
        assert [r for _, r, _ in scores(settings, "maxi_retained")] == whole
        result = run_cli(env, "rescore", "--source", "upgrade")
        assert result.returncode != 0 and "stop the relevance service" in result.stderr, result
    finally:
        own.stop("relevance")
    assert not own.crashed(["relevance"]), (own.logs / "relevance.log").read_text()[-3000:]
    # The sink stores the scored point; rescore (relevance stopped) rebuilds the selected source only.
    stored(settings, [following])
    untouched = states(settings, "swift_untouched")
    result = run_cli(env, "rescore", "--source", "upgrade", "--source", "nosuch")
    assert result.returncode == 0, result
    assert f"1 series rebuilt from {n + 1} stored points" in result.stdout
    assert "nosuch: no stored state" in result.stdout
    assert states(settings, "swift_untouched") == untouched
    rebuilt, _ = live([*history, following])
    assert states(settings, "maxi_upgrade")[-1]["model"] == rebuilt.to_state().model_dump(mode="json")
    assert states(settings, "maxi_upgrade")[-1]["offset"] == meta.offset + 1
    assert [r for _, r, _ in scores(settings, "maxi_upgrade")[n + 1 :]] == whole[: n + 1]  # rescored: history
    # Started again, the worker goes on from the rebuilt state: the point after scores as the whole file.
    asyncio.run(send(settings, topics.LIGHTCURVE, "upgrade", after))
    own.start("relevance")
    try:
        wait_until(lambda: len(scores(settings, "maxi_upgrade")) == 2 * (n + 1) + 1, "the point after", 120)
        assert scores(settings, "maxi_upgrade")[-1][1] == whole[n + 1]
    finally:
        own.stop("relevance")
    assert not own.crashed(["relevance"]), (own.logs / "relevance.log").read_text()[-3000:]
