"""End to end on real Kafka and QuestDB: sample mirror -> fetcher -> derive -> relevance -> sink/alerts.

The `pipeline` fixture (conftest.py) runs three sources through the services: MAXI real files,
BAT synthetic files, one MAXI file with malformed lines added.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from devtools.observe import PIPELINE_GROUPS, read_topic, wait_drained, wait_until
from devtools.observe import series_counts as counts
from flashes import questdb, topics
from flashes.kafka import make_producer
from flashes.settings import Settings
from services.fetcher.service import fetch_once
from tests.conftest import BAD_LINES, SOURCES, data_rows, maxi_path


def test_row_counts_equal_valid_input_rows(pipeline: Settings, expected: dict[str, int]) -> None:
    lightcurve = counts(pipeline, "lightcurve")
    for series, n in expected.items():
        if series.startswith("maxi"):
            assert lightcurve[series] == 4 * n  # four MAXI bands per point
        elif series.startswith("swift"):
            assert lightcurve[series] == n
    derived = counts(pipeline, "derived")
    for series, n in expected.items():
        if series.startswith("combined"):
            assert derived[series] == n
            assert derived[series.replace("combined", "hardness")] <= n


def test_malformed_lines_go_to_the_dead_letter_topic_with_reasons(pipeline: Settings) -> None:
    letters = [
        v
        for k, v in asyncio.run(read_topic(pipeline, "flashes.deadletter.v1"))
        if k == b"fetcher:maxi:cirx-1" and v["url"].startswith(pipeline.maxi_base_url)
    ]
    assert sorted(letter["payload"].split()[0] for letter in letters) == sorted(b.split()[0] for b in BAD_LINES)
    reasons = {letter["reason"] for letter in letters}
    assert {"expected 9 columns, found 6", "expected 9 columns, found 4", "negative error"} <= reasons
    stored = questdb.query(
        pipeline,
        "SELECT count() n FROM deadletter WHERE origin = 'fetcher:maxi:cirx-1' "
        f"AND url LIKE '{pipeline.maxi_base_url}%'",
    )
    assert stored[0]["n"] == len(BAD_LINES)


def test_hardness_equals_a_hand_computation_from_the_files(pipeline: Settings, mirror_dir: Path) -> None:
    maxi = {math.floor(r[0]): r for r in data_rows(maxi_path(mirror_dir, "J1535-572"))}
    bat = {math.floor(r[0]): r for r in data_rows(mirror_dir / SOURCES["J1535-572"][1])}
    day = 58016  # the outburst peak, in both files
    fb, eb = bat[day][1] * 4545.4545, bat[day][2] * 4545.4545
    fm, em = maxi[day][1] * 312.5, maxi[day][2] * 312.5
    h = fb / fm
    dh = h * math.sqrt((eb / fb) ** 2 + (em / fm) ** 2)
    row = questdb.query(
        pipeline, f"SELECT value, error, mjd FROM derived WHERE series = 'hardness_maxij1535-571' AND mjd = {day + 0.5}"
    )
    assert len(row) == 1
    assert row[0]["value"] == pytest.approx(h, rel=1e-9) and row[0]["error"] == pytest.approx(dh, rel=1e-9)
    combined = questdb.query(
        pipeline, f"SELECT value, error FROM derived WHERE series = 'combined_maxij1535-571' AND mjd = {day + 0.5}"
    )[0]
    assert combined["value"] == pytest.approx(fb + fm) and combined["error"] == pytest.approx(math.hypot(eb, em))


def test_replaying_the_sample_adds_no_rows(
    pipeline: Settings, webhook_receiver: tuple[str, list[dict]], expected: dict[str, int]
) -> None:
    tables = ("lightcurve", "derived", "relevance")

    def rows() -> dict:
        alerts = questdb.query(pipeline, "SELECT source_id, count() n FROM alerts")
        return {**{t: counts(pipeline, t) for t in tables}, "alerts": {r["source_id"]: r["n"] for r in alerts}}

    before = rows()
    alerts_before = len(webhook_receiver[1])
    report = asyncio.run(fetch_once(pipeline, [sid for sid, _ in SOURCES.values()], full=True))  # a backfill
    assert report.points == sum(n for series, n in expected.items() if series.startswith(("maxi", "swift")))
    wait_drained(pipeline, PIPELINE_GROUPS + ("flashes-delivery",))
    assert rows() == before
    assert len(webhook_receiver[1]) == alerts_before


def test_undecodable_chunks_go_to_the_dead_letter_topic_with_the_reason_and_the_stream_goes_on(
    pipeline: Settings, mirror_dir: Path
) -> None:
    bad_count = json.dumps(
        {
            "version": 2,
            "source_id": "cirx-1",
            "instrument": "maxi",
            "bands": ["2-20"],
            "units": "photons/cm2/s",
            "provenance": {"url": "x", "fetched_at": "2026-01-01T00:00:00Z"},
            "first_mjd": 60000.5,
            "last_mjd": 60000.5,
            "count": 2,
            "time": [1],
            "mjd": [60000.5],
            "flux": {"2-20": [1.0]},
            "error": {"2-20": [0.1]},
        }
    ).encode()

    async def send() -> None:
        producer = make_producer(pipeline)
        await producer.start()
        for value in (b"{not json", bad_count):
            await producer.send_and_wait(topics.LIGHTCURVE.name, value, key=b"cirx-1")
        await producer.stop()

    asyncio.run(send())

    def letters() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for key, v in asyncio.run(read_topic(pipeline, topics.DEADLETTER.name, timeout_s=1.0)):
            if key.decode().endswith(topics.LIGHTCURVE.name):
                out.setdefault(key.decode(), set()).add(v["reason"])
        return out

    wait_until(lambda: len(letters()) == 3, "derive, relevance and the sink to refuse both messages", 60)
    for origin, reasons in letters().items():
        assert len(reasons) == 2, (origin, reasons)
        assert any("not JSON" in r for r in reasons)
        assert any("column time has 1 values, the header says count=2" in r for r in reasons)
    # ... and the stream goes on: the next day of Cir X-1 is scored and stored.
    path = maxi_path(mirror_dir, "J1520-571")
    day = data_rows(path)[-1][0] + 1
    path.write_text(path.read_text() + f"{day:.6f} 0.5 0.05 0.2 0.03 0.2 0.03 0.1 0.02\r\n")
    assert asyncio.run(fetch_once(pipeline, ["cirx-1"], ["maxi"])).points == 1
    wait_until(
        lambda: (
            questdb.query(pipeline, f"SELECT count() n FROM relevance WHERE series = 'maxi_cirx-1' AND mjd = {day}")[0][
                "n"
            ]
            == 1
        ),
        "the next day's score",
        60,
    )
