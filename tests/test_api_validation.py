"""The API's refusals that need no data: bad parameters, bodies and names answer with the Problem shape (and the
pages with their words) before any store is read.

The app is the real one (create_app) on the bundled catalogue, without its lifespan (no heartbeat, no sweep).
The QuestDB reader, the labels and the subscriptions' Kafka store are replaced through `app.dependency_overrides`
by stand-ins that fail the test when used: a refusal that came only after a read would fail here, and no
server is started.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from flashes.settings import Settings
from flashes.tags import TAGS
from services.api import deps
from services.api.app import create_app
from services.api.routers.pages import subscription_body
from services.api.subscribing import Subscriptions


class Untouched:
    """Where a store would be: any use of it fails the test."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"{self.what} was used ({name}): the request should have been refused before")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"))
    app = create_app(settings)
    index, reader = app.state.index, Untouched("the QuestDB reader")
    app.dependency_overrides.update(
        {
            deps.reader: lambda: reader,
            deps.labels: lambda: Untouched("the labels"),
            deps.subscriptions: lambda: Subscriptions(
                settings, index.records, set(TAGS), Untouched("the Kafka store"), reader
            ),
        }
    )
    yield TestClient(app)  # not entered: the lifespan does not run


def test_unknown_source_and_tag_are_404_with_a_message(client: TestClient) -> None:
    for path in ("/sources/no-such-source", "/tags/no-such-tag"):
        r = client.get(path)
        assert r.status_code == 404 and "unknown" in r.json()["detail"]
    r = client.get("/timeseries", params={"source": "no-such-source"})
    assert r.status_code == 404
    r = client.get("/timeseries", params={"source": "maxij1631-478", "series": "swift"})
    assert r.status_code == 404 and "no swift series" in r.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"source": "maxij1535-571", "series": "optical"},
        {"source": "maxij1535-571", "start": "yesterday"},
        {"source": "maxij1535-571", "start": "2020-01-02", "end": "2020-01-01"},
        {},
    ],
)
def test_bad_timeseries_parameters_are_422(client: TestClient, params: dict) -> None:
    r = client.get("/timeseries", params=params)
    assert r.status_code == 422 and r.json()["detail"]


def test_bad_list_parameters_are_422(client: TestClient) -> None:
    assert client.get("/sources", params={"limit": 0}).status_code == 422
    assert client.get("/sources", params={"instrument": "xmm"}).status_code == 422
    # found by the schemathesis run: an offset beyond int64 reached QuestDB as a bind parameter (503)
    assert client.get("/alerts", params={"offset": 10**35}).status_code == 422


def test_every_error_has_the_same_shape(client: TestClient) -> None:
    for path, params, status in (
        ("/sources/nope", {}, 404),
        ("/sources", {"radius": 500}, 422),
        ("/timeseries", {"source": "maxij1535-571", "start": "yesterday"}, 422),
        ("/download/maxi_maxij1535-571", {"start": "2020-01-02", "end": "2020-01-01"}, 422),
        # times whose conversion to UTC overflowed (500) before they were bounded
        ("/timeseries", {"source": "maxij1535-571", "end": "0001-06-01T00:00:00Z"}, 422),
        ("/alerts", {"start": "0001-01-01T00:00:00+01:00"}, 422),
        ("/plots/maxij1535-571", {"end": "9999-12-31T23:59:59-01:00"}, 422),
    ):
        body = client.get(path, params=params).json()
        assert set(body) == {"status", "error", "detail", "see"} and body["status"] == status, body
    assert client.get("/sources/nope").json()["see"] == "/sources"


def test_a_content_length_that_is_no_number_is_400(client: TestClient) -> None:
    r = client.post(
        "/subscriptions", content=b"{}", headers={"content-type": "application/json", "content-length": "12x"}
    )
    assert r.status_code == 400 and r.json()["error"] == "bad_request" and "Content-Length" in r.json()["detail"]


def test_the_json_route_and_the_page_refuse_a_subscription_in_the_same_words(client: TestClient) -> None:
    """Both call the one subscription service: its refusal reaches the JSON caller as a Problem and the visitor
    as the form again, with the same status and words, before Kafka is touched."""
    form = {"sources": "", "min_relevance": "", "ra": "", "dec": "", "radius": "", "email": "", "history": ""}
    for body, fields, words in (
        ({"channel": "webhook"}, {"channel": "webhook", "webhook_url": ""}, "channel 'webhook' needs webhook_url"),
        (
            {"channel": "none", "filters": {"sources": ["no-such-source"]}},
            {"channel": "none", "sources": "no-such-source", "webhook_url": ""},
            "unknown source 'no-such-source'",
        ),
    ):
        answer = client.post("/subscriptions", json=body)
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
        page = client.post("/web/subscribe", data={**form, **fields})
        assert page.status_code == 422 and words.replace("'", "&#39;") in page.text, page.text
    page = client.post("/web/subscribe", data={**form, "channel": "none", "webhook_url": "", "min_relevance": "2"})
    assert page.status_code == 422 and "filters.min_relevance" in page.text  # the request model's own refusal


def test_the_confirmation_page_carries_only_a_well_formed_link(client: TestClient) -> None:
    good = {"id": "a" * 64, "token": f"4102444800-{'f' * 64}"}
    page = client.get("/subscriptions/confirm", params=good)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store" and "<form method=post>" in page.text
    assert f'name="id" value="{good["id"]}"' in page.text and f'name="token" value="{good["token"]}"' in page.text
    forged = client.get("/subscriptions/confirm", params={"id": "x'><script>", "token": "<b>"})
    assert forged.status_code == 200 and "<script>" not in forged.text and "<b>" not in forged.text
    assert 'name="id" value=""' in forged.text and 'name="token" value=""' in forged.text


def test_subscribe_form_becomes_the_api_body() -> None:
    fields = {
        "sources": "MAXI J1535-571; gx339-4",
        "tags": ["BLACK HOLE"],
        "instruments": [],
        "reasons": [],
        "alert_types": ["onset"],
        "min_relevance": "0.8",
        "ra": "",
        "dec": "",
        "radius": "",
        "channel": "webhook",
        "webhook_url": " https://example.org/hook ",
        "email": "ignored@example.org",
    }
    body, error = subscription_body(fields)
    assert error is None and body == {
        "channel": "webhook",
        "webhook_url": "https://example.org/hook",
        "filters": {
            "sources": ["maxij1535-571", "gx339-4"],
            "tags": ["BLACK HOLE"],
            "alert_types": ["onset"],
            "min_relevance": 0.8,
        },
    }
    assert subscription_body({**fields, "history": "on"})[0]["filters"]["history"] is True
    assert subscription_body({**fields, "ra": "10"})[1] == "a cone needs RA, Dec and radius"
    assert subscription_body({**fields, "min_relevance": "high"})[1] == "relevance, RA, Dec and radius are numbers"
