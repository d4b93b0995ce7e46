"""The API on the real QuestDB and Kafka, after the sample went through the pipeline."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from flashes.settings import Settings
from services.api.app import create_app
from tests.conftest import maxi_path, data_rows
from flashes.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def client(pipeline: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline)) as c:
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
    assert body["labels_constant"] == ["HMXRB Be star", "black hole"]


def test_sources_filter_by_tag_and_instrument(client: TestClient) -> None:
    with_bat = client.get("/sources", params={"instrument": "swift", "tag": "black hole"}).json()
    assert with_bat and all(r["swift"] and "black hole" in r["labels_constant"] for r in with_bat)
    assert len(client.get("/sources", params={"limit": 5}).json()) == 5


def test_tags(client: TestClient) -> None:
    tags = {t["tag"]: t["sources"] for t in client.get("/tags").json()}
    assert tags["LMXRB"] > 100
    members = client.get("/tags/black hole").json()["sources"]
    assert "maxij1535-571" in members and len(members) == tags["black hole"]


def test_timeseries_rows_in_mcrab_with_error_band(client: TestClient) -> None:
    rows = client.get("/timeseries", params={"source": "maxij1535-571", "series": "maxi",
                                             "start": "2017-09-20T00:00:00", "end": "2017-09-21T00:00:00"}).json()
    assert len(rows) == 1
    row = rows[0]
    # File line: 58016.500000 7.411582 0.061271 ... -> 2316.119 mCrab ± 19.147
    assert row["time"] == "2017-09-20T12:00:00.000000Z" and row["mjd"] == 58016.5
    assert row["flux 2-20"] == pytest.approx(7.411582 * 312.5)
    assert row["flux 2-20 max"] == pytest.approx((7.411582 + 0.061271) * 312.5)
    assert row["flux 2-20 min"] == pytest.approx((7.411582 - 0.061271) * 312.5)
    assert {"flux 2-4", "flux 4-10", "flux 10-20"} <= set(row)
    hardness = client.get("/timeseries", params={"source": "maxij1535-571", "series": "hardness",
                                                 "start": "2017-09-20", "end": "2017-09-21"}).json()
    assert len(hardness) == 1 and "flux hardness" in hardness[0]


def test_timeseries_defaults_to_the_last_year(client: TestClient) -> None:
    assert client.get("/timeseries", params={"source": "maxij1535-571"}).json() == []  # the sample ends in 2020


def test_unknown_source_and_tag_are_404_with_a_message(client: TestClient) -> None:
    for path in ("/sources/no-such-source", "/tags/no-such-tag"):
        r = client.get(path)
        assert r.status_code == 404 and "unknown" in r.json()["detail"]
    r = client.get("/timeseries", params={"source": "no-such-source"})
    assert r.status_code == 404
    r = client.get("/timeseries", params={"source": "maxij1631-478", "series": "swift"})
    assert r.status_code == 404 and "no swift series" in r.json()["detail"]


@pytest.mark.parametrize("params", [
    {"source": "maxij1535-571", "series": "optical"},
    {"source": "maxij1535-571", "start": "yesterday"},
    {"source": "maxij1535-571", "start": "2020-01-02", "end": "2020-01-01"},
    {},
])
def test_bad_timeseries_parameters_are_422(client: TestClient, params: dict) -> None:
    r = client.get("/timeseries", params=params)
    assert r.status_code == 422 and r.json()["detail"]


def test_bad_list_parameters_are_422(client: TestClient) -> None:
    assert client.get("/sources", params={"limit": 0}).status_code == 422
    assert client.get("/sources", params={"instrument": "xmm"}).status_code == 422


def test_relevance_rows_carry_the_terms_that_explain_them(client: TestClient) -> None:
    params = {"source": "maxij1535-571", "series": "maxi", "start": "2017-08-01", "end": "2017-12-01"}
    rows = client.get("/relevance", params=params).json()
    assert len(rows) > 100 and all(r["model_version"] == "river-1" for r in rows)
    high = client.get("/relevance", params={**params, "min_relevance": 0.7}).json()
    assert high and all(r["relevance"] >= 0.7 for r in high) and len(high) < len(rows)
    first = high[0]
    assert 57996 <= first["mjd"] <= 58010 and first["terms"]["model"] >= 0.7  # the outburst's rise, and why
    assert set(first["terms"]) == {"model", "hardness", "flux", "trend"}


def test_alerts_list_their_reasons_and_explanation(client: TestClient) -> None:
    alerts = client.get("/alerts", params={"source": "maxij1535-571"}).json()
    outburst = [a for a in alerts if 57996 <= a["onset_mjd"] <= 58010]
    assert [a["mjd"] for a in outburst] == sorted((a["mjd"] for a in outburst), reverse=True)  # newest first
    onset = outburst[-1]
    assert onset["alert_type"] == "onset" and onset["record_number"] == 1 and "brightening" in onset["reasons"]
    assert all(a["explanation"] and a["alert_id"] == onset["alert_id"] for a in outburst)
    assert all(a["source_id"] == "maxij1535-571" for a in alerts)
    assert client.get("/alerts", params={"source": "no-such-source"}).status_code == 404
    assert client.get("/relevance", params={"source": "maxij1535-571", "min_relevance": 2}).status_code == 422
