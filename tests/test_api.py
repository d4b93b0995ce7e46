"""The API on the real QuestDB and Kafka, after the sample went through the pipeline."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
from astropy.io import votable
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

import schemas
from devtools.infra import free_port
from devtools.observe import wait_until
from flashes import questdb, topics
from flashes.settings import PROJECT_ROOT, Settings
from flashes.tags import TAGS
from services.api.app import create_app
from services.api.store import AlertQuery, Reader
from services.relevance.model import MODEL_VERSION
from services.sink.rows import FRAMES, SYMBOLS
from tests.conftest import data_rows, maxi_path


@pytest.fixture(scope="module")
def client(pipeline: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline)) as c:
        c.app_settings = pipeline
        yield c


def test_health_of_kafka_and_questdb(client: TestClient) -> None:
    kafka = client.get("/health/kafka")
    assert kafka.status_code == 200 and "flashes.lightcurve.v2" in kafka.json()["topics"]
    db = client.get("/health/questdb")
    assert db.status_code == 200 and {"lightcurve", "relevance"} <= set(db.json()["tables"])


def test_source_record_carries_the_latest_point(client: TestClient) -> None:
    body = client.get("/sources/maxij1535-571").json()
    last = data_rows(maxi_path(PROJECT_ROOT / "data" / "mirror", "J1535-572"))[-1]  # the last line: MJD 59141.5
    assert body["maxi"]["last_timestamp"] == "2020-10-19T12:00:00.000000Z"  # MJD 59141.5
    assert body["maxi"]["last_flux"] == last[1] and body["maxi"]["last_error"] == last[2]
    assert body["hardness_ratio"]["last_timestamp"] is not None
    assert body["labels_constant"] == ["HMXRB", "BINARY", "BE STAR", "BLACK HOLE"]  # class 1330
    assert body["class_name"] == "HMXRB Be star, black hole"
    assert body["maxi"]["last_flux_mcrab"] == pytest.approx(last[1] * 312.5)


def test_sources_filter_by_tag_and_instrument(client: TestClient) -> None:
    page = client.get("/sources", params={"instrument": "swift", "tag": "BLACK HOLE", "limit": 3000}).json()
    with_bat = page["items"]
    assert with_bat and page["total"] == len(with_bat)
    assert all(r["swift"] and "BLACK HOLE" in r["labels_constant"] for r in with_bat)
    every = client.get("/sources", params={"limit": 3000}).json()["items"]
    assert len(with_bat) == sum(1 for r in every if r["swift"] and "BLACK HOLE" in r["labels_constant"])
    assert len(with_bat) < len(every)


def test_sources_search_names_and_alternative_names(client: TestClient) -> None:
    assert [r["_id"] for r in client.get("/sources", params={"q": "gx 339"}).json()["items"]] == ["gx339-4"]
    # "4U 1658-48" is only an alternative name of GX 339-4
    assert [r["_id"] for r in client.get("/sources", params={"q": "4u1658"}).json()["items"]] == ["gx339-4"]
    assert client.get("/sources", params={"q": "no such name at all"}).json() == {
        "total": 0,
        "offset": 0,
        "limit": 100,
        "items": [],
    }


def test_cone_search_sorted_by_distance(client: TestClient) -> None:
    # Around Sgr A* (RA 266.417, Dec -29.008): the nearest catalogued sources, nearest first.
    page = client.get("/sources", params={"ra": 266.417, "dec": -29.008, "radius": 1.0, "sort": "distance"}).json()
    distances = [r["distance_deg"] for r in page["items"]]
    assert page["total"] == len(distances) > 3 and distances == sorted(distances) and distances[-1] <= 1.0
    # Every source within 1 degree, by the haversine formula worked independently here.
    every = client.get("/sources", params={"limit": 3000}).json()["items"]
    ra0, dec0 = math.radians(266.417), math.radians(-29.008)

    def sep(r: dict) -> float:
        ra, dec = math.radians(r["coord_ra"]), math.radians(r["coord_dec"])
        h = math.sin((dec - dec0) / 2) ** 2 + math.cos(dec) * math.cos(dec0) * math.sin((ra - ra0) / 2) ** 2
        return math.degrees(2 * math.asin(math.sqrt(h)))

    assert {r["_id"] for r in page["items"]} == {r["_id"] for r in every if sep(r) <= 1.0}


def test_pagination_reports_the_total(client: TestClient) -> None:
    first = client.get("/sources", params={"limit": 5, "sort": "ra"}).json()
    second = client.get("/sources", params={"limit": 5, "offset": 5, "sort": "ra"}).json()
    assert first["total"] == second["total"] == 2410 and len(first["items"]) == len(second["items"]) == 5
    ras = [r["coord_ra"] for r in first["items"] + second["items"]]
    assert ras == sorted(ras)
    beyond = client.get("/sources", params={"offset": 5000}).json()
    assert beyond["total"] == 2410 and beyond["items"] == []


def test_tags(client: TestClient) -> None:
    tags = {t["tag"]: t["sources"] for t in client.get("/tags").json() if not t["temporary"]}
    assert set(tags) == set(TAGS) and tags["LMXRB"] == 333 and tags["BINARY"] > tags["LMXRB"] + tags["HMXRB"] - 1
    members = client.get("/tags/BLACK HOLE").json()["sources"]
    assert "maxij1535-571" in members and len(members) == tags["BLACK HOLE"]


def test_timeseries_rows_in_mcrab_with_error_band(client: TestClient) -> None:
    rows = client.get(
        "/timeseries",
        params={
            "source": "maxij1535-571",
            "series": "maxi",
            "start": "2017-09-20T00:00:00",
            "end": "2017-09-21T00:00:00",
        },
    ).json()
    assert len(rows) == 1
    row = rows[0]
    # File line: 58016.500000 7.411582 0.061271 ... -> 2316.119 mCrab ± 19.147
    assert row["time"] == "2017-09-20T12:00:00.000000Z" and row["mjd"] == 58016.5
    assert row["flux 2-20"] == pytest.approx(7.411582 * 312.5)
    assert row["flux 2-20 max"] == pytest.approx((7.411582 + 0.061271) * 312.5)
    assert row["flux 2-20 min"] == pytest.approx((7.411582 - 0.061271) * 312.5)
    assert {"flux 2-4", "flux 4-10", "flux 10-20"} <= set(row)
    hardness = client.get(
        "/timeseries",
        params={"source": "maxij1535-571", "series": "hardness", "start": "2017-09-20", "end": "2017-09-21"},
    ).json()
    assert len(hardness) == 1 and "flux hardness" in hardness[0]


def test_timeseries_defaults_to_the_last_year(client: TestClient) -> None:
    assert client.get("/timeseries", params={"source": "maxij1535-571"}).json() == []  # the sample ends in 2020
    # ... and the same query over the last year of the sample has its points
    last_year = client.get("/timeseries", params={"source": "maxij1535-571", "end": "2020-10-20"}).json()
    assert 250 < len(last_year) <= 366


def test_timeseries_takes_the_seed_grafana_parameters(client: TestClient) -> None:
    seed = client.get(
        "/timeseries",
        params={"influx_key": "maxi_maxij1535-571", "channel": "2-20", "start": "2017-09-20", "end": "2017-09-22"},
    ).json()
    ours = client.get(
        "/timeseries", params={"source": "maxij1535-571", "series": "maxi", "start": "2017-09-20", "end": "2017-09-22"}
    ).json()
    assert (
        len(seed) == 2
        and [set(r) for r in seed] == [{"time", "mjd", "flux 2-20", "flux 2-20 max", "flux 2-20 min"}] * 2
    )
    assert [r["flux 2-20"] for r in seed] == [r["flux 2-20"] for r in ours]
    bad = client.get("/timeseries", params={"influx_key": "maxi_maxij1535-571", "channel": "15-50"})
    assert bad.status_code == 422 and "2-20" in bad.json()["detail"]


def test_download_csv_has_provider_units_and_mcrab(client: TestClient) -> None:
    r = client.get("/download/maxi_maxij1535-571", params={"start": "2017-09-20", "end": "2017-09-21"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="maxi_maxij1535-571.csv"' in r.headers["content-disposition"]
    frame = pd.read_csv(io.StringIO(r.text), comment="#")
    assert len(frame) == 1
    row = frame.iloc[0]
    # File line: 58016.500000 7.411582 0.061271 4.610519 0.057688 2.674983 0.030062 0.350699 0.014271
    assert row["mjd"] == 58016.5 and row["time"] == "2017-09-20T12:00:00.000000Z"
    assert row["flux 2-20 keV [photons/cm2/s]"] == pytest.approx(7.411582)
    assert row["flux 2-20 keV [mCrab]"] == pytest.approx(2316.119375)  # 7.411582 x 312.5
    assert row["error 2-20 keV [mCrab]"] == pytest.approx(19.1471875)  # 0.061271 x 312.5
    assert row["flux 10-20 keV [mCrab]"] == pytest.approx(876.7475)  # 0.350699 x 2500
    assert row["flux 2-4 keV [mCrab]"] == pytest.approx(4.610519 * 476.1905)
    assert "maxi 2-20 keV x312.5" in r.text.splitlines()[3]


def test_download_swift_and_whole_history_by_default(client: TestClient) -> None:
    frame = pd.read_csv(io.StringIO(client.get("/download/swift_maxij1535-571").text), comment="#")
    bat = data_rows(PROJECT_ROOT / "data" / "mirror" / "swift/results/transients/weak/MAXIJ1535-571.lc.txt")
    assert len(frame) == len(bat)
    assert frame["flux 15-50 keV [counts/cm2/s]"].iloc[0] == pytest.approx(bat[0][1])
    assert frame["flux 15-50 keV [mCrab]"].iloc[0] == pytest.approx(bat[0][1] * 4545.4545)


def test_download_hid_as_json_and_votable(client: TestClient) -> None:
    path = "/download/hid/hardness_maxij1535-571/combined_maxij1535-571"
    rows = client.get(path, params={"start": "2017-09-20", "end": "2017-09-21", "format": "json"}).json()
    assert len(rows) == 1
    bat = next(
        r
        for r in data_rows(PROJECT_ROOT / "data" / "mirror" / "swift/results/transients/weak/MAXIJ1535-571.lc.txt")
        if r[0] == 58016.0
    )
    bat_mcrab, maxi_mcrab = bat[1] * 4545.4545, 7.411582 * 312.5
    assert rows[0]["hardness"] == pytest.approx(bat_mcrab / maxi_mcrab)
    assert rows[0]["combined [mCrab]"] == pytest.approx(bat_mcrab + maxi_mcrab)
    assert rows[0]["combined error [mCrab]"] == pytest.approx(math.hypot(bat[2] * 4545.4545, 0.061271 * 312.5))
    assert rows[0]["hardness error"] == pytest.approx(
        rows[0]["hardness"] * math.hypot(bat[2] / bat[1], 0.061271 / 7.411582)
    )
    xml = client.get(path, params={"start": "2017-09-20", "end": "2017-09-23", "format": "votable"})
    table = votable.parse_single_table(io.BytesIO(xml.content)).to_table(use_names_over_ids=True)
    assert len(table) == 3 and {"hardness", "combined [mCrab]"} <= set(table.colnames)
    assert client.get("/download/hid/combined_maxij1535-571/hardness_maxij1535-571").status_code == 422


def test_plots_redirect_to_the_dashboard_of_the_instruments(client: TestClient) -> None:
    r = client.get("/plots/maxij1535-571", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"].startswith(f"{client.app_settings.grafana_url}/d/flashes-swift-maxi")
    assert "var-source=maxij1535-571" in r.headers["location"]
    only_maxi = client.get("/plots/maxij1631-478", follow_redirects=False).headers["location"]
    assert "/d/flashes-maxi" in only_maxi and "/d/flashes-swift" not in only_maxi
    every = client.get("/sources", params={"limit": 3000}).json()["items"]
    no_data = next(r["_id"] for r in every if not (r["maxi"] or r["swift"] or r["fermi"]))
    r = client.get(f"/plots/{no_data}", follow_redirects=False)
    assert r.status_code == 404 and "no lightcurve" in r.json()["detail"]


def test_relevance_top_is_ordered_and_names_the_source(client: TestClient) -> None:
    top = client.get("/relevance/top", params={"limit": 50}).json()
    assert len(top) == 3  # the three sample sources, one row each
    assert [t["relevance"] for t in top] == sorted((t["relevance"] for t in top), reverse=True)
    first = top[0]
    newest = client.get(
        "/relevance",
        params={"source": first["source_id"], "series": first["kind"], "start": "2009-01-01", "end": "2030-01-01"},
    ).json()[-1]
    assert newest["relevance"] == first["relevance"] and newest["time"] == first["time"]


def test_relevance_rows_carry_the_terms_that_explain_them(client: TestClient) -> None:
    params = {"source": "maxij1535-571", "series": "maxi", "start": "2017-08-01", "end": "2017-12-01"}
    rows = client.get("/relevance", params=params).json()
    assert len(rows) > 100 and all(r["model_version"] == MODEL_VERSION for r in rows)
    high = client.get("/relevance", params={**params, "min_relevance": 0.7}).json()
    assert high and all(r["relevance"] >= 0.7 for r in high) and len(high) < len(rows)
    first = high[0]
    assert 57996 <= first["mjd"] <= 58010 and first["terms"]["model"] >= 0.7  # the outburst's rise, and why
    assert set(first["terms"]) == {"model", "hardness", "flux", "trend"}


def test_alerts_list_their_reasons_and_explanation(client: TestClient) -> None:
    alerts = client.get("/alerts", params={"source": "maxij1535-571", "limit": 1000}).json()["items"]
    onset = min(
        (a for a in alerts if a["alert_type"] == "onset" and 57996 <= a["onset_mjd"] <= 58010), key=lambda a: a["mjd"]
    )  # the 2017 outburst's episode (other tests publish alerts of their own)
    outburst = [a for a in alerts if a["alert_id"] == onset["alert_id"]]
    assert [a["mjd"] for a in outburst] == sorted((a["mjd"] for a in outburst), reverse=True)  # newest first
    assert outburst[-1] == onset and onset["record_number"] == 1 and "brightening" in onset["reasons"]
    assert [a["record_number"] for a in outburst] == list(range(len(outburst), 0, -1)) and all(
        a["explanation"] for a in outburst
    )
    assert all(a["source_id"] == "maxij1535-571" for a in alerts)
    assert client.get("/alerts", params={"source": "no-such-source"}).status_code == 404
    assert client.get("/relevance", params={"source": "maxij1535-571", "min_relevance": 2}).status_code == 422


def test_alert_filters_and_pages(client: TestClient) -> None:
    every = client.get("/alerts", params={"limit": 1000}).json()
    assert every["total"] == len(every["items"]) > 3
    onsets = client.get("/alerts", params={"alert_type": "onset", "limit": 1000}).json()
    assert onsets["items"] == [a for a in every["items"] if a["alert_type"] == "onset"] and onsets["total"] > 0
    bright = client.get("/alerts", params={"reason": "brightening", "min_relevance": 0.9, "limit": 1000}).json()
    assert bright["items"] == [a for a in every["items"] if "brightening" in a["reasons"] and a["relevance"] >= 0.9]
    page = client.get("/alerts", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == every["total"] and page["items"] == every["items"][1:3]
    tagged = client.get("/alerts", params={"tag": "BLACK HOLE", "limit": 1000}).json()["items"]
    assert tagged and all("BLACK HOLE" in a["tags"] for a in tagged)
    window = client.get("/alerts", params={"start": "2017-09-01", "end": "2017-10-01", "limit": 1000}).json()
    assert window["items"] == [a for a in every["items"] if "2017-09-01" <= a["time"][:10] < "2017-10-01"]
    assert client.get("/alerts", params={"alert_type": "sideways"}).status_code == 422


def store_alert(settings: Settings, alert: schemas.Alert) -> None:
    """An alert record written to QuestDB as the sink writes it (not through Kafka: nobody is notified)."""
    table, frame = FRAMES[topics.ALERTS.name]
    with questdb.sender(settings) as sender:
        sender.dataframe(frame(alert), table_name=table, symbols=SYMBOLS[table], at="ts")
        sender.flush()
    wait_until(lambda: questdb.wal_applied(settings), "the alert in QuestDB", 60)


def test_temporary_labels_follow_the_open_episodes(pipeline: Settings, client: TestClient) -> None:
    named = {"brightening": "OUTBURST", "state_change": "STATE CHANGE", "unusual": "UNUSUAL"}
    every = client.get("/alerts", params={"limit": 1000}).json()["items"]
    newest = {}
    for a in every:  # newest first
        newest.setdefault(a["source_id"], a)
    for sid, alert in newest.items():  # the sample's sources: open episodes labelled, ended ones not
        labels = client.get(f"/sources/{sid}").json()["labels_dynamic"]
        assert labels == ([] if alert["alert_type"] == "end" else sorted({named[r] for r in alert["reasons"]}))
    # GX 339-4 (not in the sample) gets an episode: labelled while it is open, not once it has ended.
    onset = schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_text()).model_copy(
        update={
            "alert_id": "gx339-4@55197.00000",
            "source_id": "gx339-4",
            "alert_type": "onset",
            "record_number": 1,
            "reasons": ["brightening", "state_change"],
            "time": datetime(2010, 1, 1, tzinfo=UTC),
        }
    )
    end = onset.model_copy(update={"alert_type": "end", "record_number": 2, "time": datetime(2010, 1, 6, tzinfo=UTC)})
    for record, expected in ((onset, ["OUTBURST", "STATE CHANGE"]), (end, [])):
        store_alert(pipeline, record)
        with TestClient(create_app(pipeline)) as fresh:  # a new app: the labels are read at most every 5 s
            assert fresh.get("/sources/gx339-4").json()["labels_dynamic"] == expected
            outburst = fresh.get("/sources", params={"tag": "OUTBURST", "limit": 3000}).json()["items"]
            assert ("gx339-4" in {r["_id"] for r in outburst}) == bool(expected)
            if expected:
                assert "gx339-4" in fresh.get("/tags/STATE CHANGE").json()["sources"]


@pytest.mark.parametrize(
    "path, params",
    [
        ("/sources/x'; DROP TABLE lightcurve; --", {}),
        ("/timeseries", {"source": "maxij1535-571'; DROP TABLE lightcurve; --"}),
        ("/timeseries", {"influx_key": "maxi_x' OR '1'='1"}),
        ("/download/maxi_maxij1535-571' OR '1'='1", {}),
        ("/alerts", {"source": "'; DELETE FROM alerts; --"}),
        ('/tags/x"; DROP TABLE relevance;', {}),
    ],
)
def test_quotes_and_semicolons_reach_no_sql(client: TestClient, path: str, params: dict) -> None:
    before = client.get("/timeseries", params={"source": "maxij1535-571", "start": "2017-01-01"}).json()
    r = client.get(path, params=params)
    assert r.status_code == 404 and r.json()["error"] == "not_found" and r.json()["see"]
    assert client.get("/timeseries", params={"source": "maxij1535-571", "start": "2017-01-01"}).json() == before
    assert {"lightcurve", "relevance", "alerts"} <= set(client.get("/health/questdb").json()["tables"])


def test_request_values_are_bind_parameters_in_the_store(pipeline: Settings) -> None:
    """Below the catalogue checks: the reader itself takes quotes and semicolons as plain values."""

    async def run() -> tuple:
        reader = Reader(pipeline)
        try:
            evil = "maxij1535-571' OR '1'='1"
            return (
                await reader.alerts(AlertQuery(sources=[evil, "x'; DROP TABLE alerts; --"]), 10, 0),
                await reader.alerts(AlertQuery(sources=["maxij1535-571"]), 10, 0),
                await reader.timeseries(f"maxi_{evil}", "maxi", datetime(2017, 1, 1), datetime(2018, 1, 1)),
                await reader.deliveries("'; DELETE FROM deliveries; --", 10),
                await reader.tables(),
            )
        finally:
            await reader.close()

    (evil_items, evil_total), (items, total), series, deliveries, tables = asyncio.run(run())
    assert (evil_items, evil_total, series, deliveries) == ([], 0, b"[]", []) and total > 0 and items
    assert {"alerts", "deliveries", "lightcurve"} <= set(tables)


def test_grafana_health_when_configured_down_or_not(pipeline: Settings, httpserver: HTTPServer) -> None:
    # A stand-in for Grafana (it cannot be installed on these machines) answering its documented /api/health.
    httpserver.expect_request("/api/health").respond_with_json({"database": "ok", "version": "12.2.0"})
    for url, status, word in (
        (httpserver.url_for("/").rstrip("/"), 200, "ok"),
        ("", 200, "not configured"),
        (f"http://127.0.0.1:{free_port()}", 503, "unavailable"),
    ):
        with TestClient(create_app(pipeline.model_copy(update={"grafana_url": url}))) as c:
            r = c.get("/health/grafana")
            assert r.status_code == status and r.json()["status"] == word, r.text


def test_make_runs_episode_list_leads_with_the_real_outburst_and_says_why_per_source(
    pipeline: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run`'s summary (devtools/run.py) on the sample: the MAXI J1535-571 outburst, which escalated most, leads;
    then every sample source with its episodes' onsets and reasons, or 'none'."""
    from devtools import run
    from tests.conftest import SOURCES

    sources = [sid for sid, _ in SOURCES.values()]
    run.print_episodes(pipeline, sources)
    lines = capsys.readouterr().out.splitlines()
    listed = lines[2:5]
    # Which BAT points join (records) depends on how the test pipeline interleaves the instruments, so the 2017
    # outburst is among the first three, not necessarily first.
    assert any(
        line.split()[:2] == ["MAXI", "J1535-571"] and line.split()[2].startswith("2017-09-0") and "brightening" in line
        for line in listed
    ), lines
    header = next(i for i, line in enumerate(lines) if line.startswith("Per source"))
    per_source = {line.split()[0]: line for line in lines[header + 1 :]}
    assert set(per_source) == set(sources)
    found = run.episodes(pipeline)
    for sid in sources:
        count = sum(e["source_id"] == sid for e in found)
        assert per_source[sid].split()[1] == str(count)
        reasons = {"brightening", "state_change", "unusual"}
        assert per_source[sid].endswith("none") if count == 0 else any(r in per_source[sid] for r in reasons)
