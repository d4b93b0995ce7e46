"""Subscriptions and delivery end to end: the API, the alerts and delivery services, real Kafka and QuestDB,
a real SMTP server (aiosmtpd) and real HTTP receivers.

The `pipeline` fixture subscribes through the API before the sample flows (see conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

import schemas
from devtools import infra
from devtools.observe import Mailbox, produce, read_records, read_topic, receiver, wait_until
from flashes import questdb, topics
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_code, new_webhook_secret, subscription_id
from tests.conftest import PIPELINE_SERVICES, SOURCES, Subscribers, subscribe

EXAMPLE = schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_bytes())


def bodies(received: list[dict], path: str) -> list[tuple[schemas.Alert, dict]]:
    return [(schemas.Alert.model_validate_json(r["body"]), r) for r in received if r["path"] == path]


def test_an_outburst_is_one_signed_episode_per_source_at_the_webhook(
    pipeline: Settings, webhook_receiver: tuple[str, list[dict]], subscribers: Subscribers
) -> None:
    received = bodies(webhook_receiver[1], "/all")
    hook = Webhook(subscribers.made["all"]["webhook_secret"])
    for alert, r in received:  # Standard Webhooks, checked with its reference library
        hook.verify(r["body"], {k: r["headers"][k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")})
        assert r["headers"]["webhook-id"] == f"{alert.alert_id}#{alert.record_number}"
    # MAXI J1535-571 went into outburst on MJD ~57998 (ATel #10700): one episode, from its onset on.
    episode = sorted(
        (a for a, _ in received if a.source_id == "maxij1535-571" and 57996 <= a.onset_mjd <= 58010),
        key=lambda a: a.record_number,
    )
    assert episode and episode[0].alert_type == "onset" and episode[0].record_number == 1
    assert [a.record_number for a in episode] == list(range(1, len(episode) + 1))
    assert len({a.alert_id for a in episode}) == 1 and "brightening" in episode[0].reasons
    onset = episode[0]
    assert "MAXI J1535-571 is unusual" in onset.explanation and onset.last_points and onset.freshness
    assert onset.links["grafana"].endswith("/d/flashes-swift-maxi?var-source=maxij1535-571")
    # every record of the pipeline's sources on the topic reached the subscriber once (and no more); alerts of other
    # sources may be on the topic from tests that ran before the subscription was made
    ours = {sid for sid, _ in SOURCES.values()}
    on_topic = {
        (v["alert_id"], v["record_number"])
        for _, v in asyncio.run(read_topic(pipeline, topics.ALERTS.name))
        if v["source_id"] in ours
    }
    everything = {(v["alert_id"], v["record_number"]) for _, v in asyncio.run(read_topic(pipeline, topics.ALERTS.name))}
    got = [(a.alert_id, a.record_number) for a, _ in received]
    assert {(a.alert_id, a.record_number) for a, _ in received if a.source_id in ours} == on_topic
    assert set(got) <= everything  # nothing reached the subscriber that is not on the topic
    assert len(got) == len(set(got))


def test_email_needs_confirmation_then_brings_the_explanation_and_a_plot(
    pipeline: Settings, smtp_server: tuple[int, Mailbox], subscribers: Subscribers
) -> None:
    mailbox = smtp_server[1]
    lazy = mailbox.to("lazy@example.org")
    assert len(lazy) == 1 and "Confirm" in lazy[0]["Subject"]  # nothing but the confirmation
    mails = mailbox.to("astro@example.org")
    assert "Confirm" in mails[0]["Subject"]
    alerts = mails[1:]
    assert len(alerts) == 2  # the daily cap; the rest is held for the digest
    first = alerts[0]
    assert "maxij1535-571" in first["X-Flashes-Alert-Id"] and "MAXI J1535-571" in first["Subject"]
    text = first.get_body(("plain",)).get_content()
    assert "MAXI J1535-571 is " in text and "mCrab" in text and "relevance" in text
    png = [p for p in first.walk() if p.get_content_type() == "image/png"]
    assert png and png[0].get_content().startswith(b"\x89PNG\r\n\x1a\n")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    code = subscribers.made["mail"]["code"]
    log = httpx.get(f"{subscribers.api}/subscriptions/{code}/deliveries", params={"limit": 1000}).json()
    statuses = {r["status"] for r in log}
    assert "delivered" in statuses and "held" in statuses
    # one click (RFC 8058) revokes it
    url = first["List-Unsubscribe"].strip("<>")
    assert httpx.post(url, content=b"List-Unsubscribe=One-Click").status_code == 200
    assert httpx.get(f"{subscribers.api}/subscriptions/{code}").status_code == 404


def test_a_failing_receiver_is_retried_then_dead_lettered_while_another_receives_on_time(
    pipeline: Settings,
    failing_receiver: tuple[str, list[dict]],
    webhook_receiver: tuple[str, list[dict]],
    subscribers: Subscribers,
) -> None:
    wait_until(lambda: len(failing_receiver[1]) >= 3, "three attempts at the failing receiver", 60)
    attempts = failing_receiver[1]
    first_id = attempts[0]["headers"]["webhook-id"]
    tries = [r for r in attempts if r["headers"]["webhook-id"] == first_id]
    assert len(tries) == pipeline.delivery_max_attempts == 3  # same message id on every retry
    assert tries[1]["at"] - tries[0]["at"] >= 0.95 and tries[2]["at"] - tries[1]["at"] >= 1.95  # backoff doubles
    healthy = next(r for r in webhook_receiver[1] if r["headers"]["webhook-id"] == first_id)
    # The healthy receiver did not wait for the retries (3 s of back-off; the alert can queue behind the backlog's
    # other deliveries to it for a second on a loaded machine, so not "before the first retry").
    assert healthy["at"] < tries[2]["at"]
    sub_id = subscribers.made["failing"]["subscription_id"]
    wait_until(
        lambda: any(
            k == f"delivery:webhook:{sub_id[:12]}".encode()
            for k, _ in asyncio.run(read_topic(pipeline, topics.DEADLETTER.name, 1.0))
        ),
        "the dead letter",
        30,
    )
    code = subscribers.made["failing"]["code"]
    wait_until(
        lambda: "dead" in {r["status"] for r in httpx.get(f"{subscribers.api}/subscriptions/{code}/deliveries").json()},
        "the delivery log",
        30,
    )
    log = httpx.get(f"{subscribers.api}/subscriptions/{code}/deliveries").json()
    assert [r["status"] for r in log if f"{r['alert_id']}#{r['record_number']}" == first_id] == [
        "dead",
        "retrying",
        "retrying",
    ]


async def publish(settings: Settings, alert: schemas.Alert) -> None:
    await produce(settings, [(topics.ALERTS.name, alert.source_id.encode(), topics.ALERTS.encode(alert))])


def test_a_revoked_subscription_gets_nothing_more_and_the_test_button_works(
    pipeline: Settings, subscribers: Subscribers
) -> None:
    server, url, received = receiver(204)
    try:
        filters = {"sources": ["cirx-1"]}
        kept = subscribe(subscribers.api, {"channel": "webhook", "webhook_url": f"{url}/kept", "filters": filters})
        gone = subscribe(subscribers.api, {"channel": "webhook", "webhook_url": f"{url}/gone", "filters": filters})
        assert httpx.post(f"{subscribers.api}/subscriptions/{gone['code']}/test").status_code == 202
        wait_until(lambda: any(r["path"] == "/gone" for r in received), "the test alert", 30)
        test = bodies(received, "/gone")[0][0]
        assert test.test and test.source_id == "cirx-1"
        assert httpx.delete(f"{subscribers.api}/subscriptions/{gone['code']}").status_code == 204
        assert httpx.get(f"{subscribers.api}/subscriptions/{gone['code']}").status_code == 404
        alert = EXAMPLE.model_copy(
            update={
                "source_id": "cirx-1",
                "alert_id": f"cirx-1@{uuid.uuid4().hex}",
                "alert_type": "onset",
                "record_number": 1,
            }
        )
        asyncio.run(publish(pipeline, alert))
        wait_until(lambda: any(a.alert_id == alert.alert_id for a, _ in bodies(received, "/kept")), "the alert", 30)
        assert [a.test for a, _ in bodies(received, "/gone")] == [True]
        assert kept["sources"] == ["cirx-1"]
    finally:
        server.stop()


def paths(received: list[dict], alert: schemas.Alert) -> set[str]:
    """Where an alert was received."""
    return {r["path"] for r in received if r["headers"]["webhook-id"] == alert.message_id}


def test_subscriptions_match_by_cone_tag_reason_and_relevance(pipeline: Settings, subscribers: Subscribers) -> None:
    server, url, received = receiver(204)
    cone = {"ra": EXAMPLE.ra, "dec": EXAMPLE.dec, "radius": 0.5}  # around MAXI J1535-571
    made = {
        name: subscribe(subscribers.api, {"channel": "webhook", "webhook_url": f"{url}/{name}", "filters": f})
        for name, f in {
            "cone": {"cone": cone},
            "tag": {"tags": ["BLACK HOLE"]},
            "state": {"reasons": ["state_change"]},
            "high": {"min_relevance": 0.99},
        }.items()
    }
    try:
        assert "maxij1535-571" in made["cone"]["sources"] and len(made["cone"]["sources"]) < 10
        alert = EXAMPLE.model_copy(update={"alert_id": f"maxij1535-571@{uuid.uuid4().hex}", "peak_relevance": 0.98})
        after = EXAMPLE.model_copy(
            update={
                "alert_id": f"maxij1535-571@{uuid.uuid4().hex}",
                "peak_relevance": 0.995,
                "reasons": ["state_change"],
            }
        )
        asyncio.run(publish(pipeline, alert))
        asyncio.run(publish(pipeline, after))
        # One partition, matched in order: once `after` reached every subscriber, `alert` has been matched with all.
        wait_until(
            lambda: len(paths(received, after)) == 4 and {"/cone", "/tag"} <= paths(received, alert),
            "the matching subscribers",
            30,
        )
        assert paths(received, alert) == {"/cone", "/tag"}  # not: another reason, too low, elsewhere
    finally:
        server.stop()


def test_history_is_pushed_only_to_those_who_ask_and_a_test_alert_always(
    pipeline: Settings, subscribers: Subscribers
) -> None:
    server, url, received = receiver(204)
    filters = {"sources": ["maxij1820+070"]}
    news = subscribe(subscribers.api, {"channel": "webhook", "webhook_url": f"{url}/news", "filters": filters})
    both = subscribe(
        subscribers.api, {"channel": "webhook", "webhook_url": f"{url}/both", "filters": {**filters, "history": True}}
    )
    try:
        old, new = (
            EXAMPLE.model_copy(
                update={"source_id": "maxij1820+070", "live": live, "alert_id": f"maxij1820+070@{uuid.uuid4().hex}"}
            )
            for live in (False, True)
        )
        asyncio.run(publish(pipeline, old))
        asyncio.run(publish(pipeline, new))
        assert httpx.post(f"{subscribers.api}/subscriptions/{news['code']}/test").status_code == 202
        wait_until(
            lambda: (
                paths(received, old) == {"/both"}
                and paths(received, new) == {"/news", "/both"}
                and any(a.test for a, _ in bodies(received, "/news"))
            ),
            "the alerts and the test alert",
            30,
        )
        # One partition, matched in order: `new` reached /news after `old` was matched (and not for /news).
        assert [a.alert_id for a, _ in bodies(received, "/news") if not a.test] == [new.alert_id]
    finally:
        server.stop()
        for made in (news, both):
            httpx.delete(f"{subscribers.api}/subscriptions/{made['code']}")


def test_a_job_that_fails_fails_alone_with_its_reason_while_the_others_are_served(
    pipeline: Settings, subscribers: Subscribers
) -> None:
    """A subscription sealed under a key the service does not have (an exception that used to stop the
    service) and a receiver that refuses connections: each retried, then a dead letter with its reason."""
    server, url, received = receiver(204)
    filters = {"sources": ["gx339-4"]}
    refused_url = f"http://127.0.0.1:{infra.free_port()}/private-path"
    good = subscribe(subscribers.api, {"channel": "webhook", "webhook_url": f"{url}/good", "filters": filters})
    refused = subscribe(subscribers.api, {"channel": "webhook", "webhook_url": refused_url, "filters": filters})
    code = new_code()
    lost = schemas.Subscription(
        subscription_id=subscription_id(code),
        created_at=datetime.now(UTC),
        channel="webhook",
        filters=schemas.SubscriptionFilters(**filters),
        webhook_url=f"{url}/lost",
        webhook_secret=Vault(Settings(secret_keys=[Fernet.generate_key().decode()])).seal(new_webhook_secret()),
    )
    asyncio.run(write_subscription(pipeline, lost))
    try:
        first, second = (
            EXAMPLE.model_copy(update={"source_id": "gx339-4", "alert_id": f"gx339-4@{uuid.uuid4().hex}"})
            for _ in range(2)
        )
        asyncio.run(publish(pipeline, first))
        origins = {f"delivery:webhook:{s[:12]}".encode(): s for s in (lost.subscription_id, refused["subscription_id"])}

        def letters() -> dict[str, str]:
            return {
                origins[k]: v["reason"]
                for k, v in asyncio.run(read_topic(pipeline, topics.DEADLETTER.name, 1.0))
                if k in origins
            }

        wait_until(lambda: len(letters()) == 2, "both dead letters", 60)
        asyncio.run(publish(pipeline, second))  # and the service goes on
        wait_until(lambda: paths(received, second) == {"/good"}, "the next alert", 30)
        assert paths(received, first) == {"/good"}  # never /lost: its secret does not open
        log = [
            v
            for _, v in asyncio.run(read_topic(pipeline, topics.DELIVERIES.name, 1.0))
            if v["alert_id"] == first.alert_id
        ]
        for sub_id, reason in (
            (lost.subscription_id, "SubscriptionError: a stored secret does not decrypt with any of the keys"),
            (refused["subscription_id"], "connection refused"),
        ):
            mine = [r for r in log if r["subscription_id"] == sub_id]
            assert [(r["attempt"], r["status"]) for r in mine] == [(1, "retrying"), (2, "retrying"), (3, "dead")]
            assert all(r["detail"].startswith(reason) for r in mine), mine
            assert letters()[sub_id].startswith(reason)
        text = json.dumps([[r["detail"] for r in log], letters()])  # the reasons: no part of the subscriber's URL
        assert all(part not in text for part in ("127.0.0.1", str(urlsplit(refused_url).port), "private-path"))
    finally:
        server.stop()
        asyncio.run(write_subscription(pipeline, lost, revoke=True))
        for made in (good, refused):
            httpx.delete(f"{subscribers.api}/subscriptions/{made['code']}")


class Garbage(socketserver.StreamRequestHandler):
    """Reads a whole request, answers with bytes that are not HTTP."""

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            length = int(value) if name.strip().lower() == "content-length" else length
        self.rfile.read(length)
        self.wfile.write(b"garbage, not a status line\r\n\r\n")


def test_a_receiver_answering_malformed_http_leaves_nothing_of_its_url_anywhere(
    pipeline: Settings, subscribers: Subscribers
) -> None:
    """aiohttp's ClientResponseError quotes yarl's normalised URL (here SECRET%7eTOKEN becomes SECRET~TOKEN, which
    no replacement of the stored URL finds): the reason in the delivery log, the service's log and the dead letter
    is one of the closed set of words (services/delivery/webhooks.py FAILURES)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Garbage)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    made = subscribe(
        subscribers.api,
        {
            "channel": "webhook",
            "webhook_url": f"http://{host}:{port}/incoming/T0B0X9/SECRET%7eTOKEN",
            "filters": {"sources": ["scox-1"]},
        },
    )
    sub_id = made["subscription_id"]
    try:
        alert = EXAMPLE.model_copy(update={"source_id": "scox-1", "alert_id": f"scox-1@{uuid.uuid4().hex}"})
        asyncio.run(publish(pipeline, alert))

        def records() -> list[dict]:
            return [
                v
                for _, v in asyncio.run(read_topic(pipeline, topics.DELIVERIES.name, 1.0))
                if v["subscription_id"] == sub_id
            ]

        def served() -> list[dict]:
            return httpx.get(f"{subscribers.api}/subscriptions/{made['code']}/deliveries").json()

        # the dead letter is sent before the "dead" record, which the API serves once the sink has stored it
        wait_until(lambda: "dead" in {r["status"] for r in served()}, "the delivery log", 60)
        mine = records()
        assert [(r["attempt"], r["status"]) for r in mine] == [(1, "retrying"), (2, "retrying"), (3, "dead")]
        origin = f"delivery:webhook:{sub_id[:12]}".encode()
        letter = next(v for k, v in asyncio.run(read_topic(pipeline, topics.DEADLETTER.name, 1.0)) if k == origin)
        reason = "not an HTTP answer"
        assert all(r["detail"].startswith(reason) for r in mine) and letter["reason"].startswith(reason)
        logged = [
            line
            for line in (pipeline.var_dir / "logs" / "delivery.log").read_text().splitlines()
            if sub_id[:12] in line
        ]
        assert len(logged) >= 3 and all(reason in line for line in logged)  # each retry and the dead letter
        assert letter["url"] is None
        text = json.dumps([[r["detail"] for r in mine + served()], letter["origin"], letter["reason"], logged])
        for part in (host, str(port), "incoming", "T0B0X9", "SECRET", "TOKEN"):
            assert part not in text, part
    finally:
        server.shutdown()
        server.server_close()
        httpx.delete(f"{subscribers.api}/subscriptions/{made['code']}")


async def write_subscription(settings: Settings, sub: schemas.Subscription, revoke: bool = False) -> None:
    """As the API writes (or revokes: a tombstone) a subscription."""
    value = None if revoke else topics.SUBSCRIPTIONS.encode(sub)
    await produce(settings, [(topics.SUBSCRIPTIONS.name, sub.subscription_id.encode(), value)])


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"channel": "email", "email": "not-an-address"}, 422, "email"),
        ({"channel": "webhook", "webhook_url": "https://10.1.2.3/hook"}, 422, "private"),
        ({"channel": "webhook", "webhook_url": "ftp://example.org/hook"}, 422, "https"),
        ({"channel": "webhook"}, 422, "needs webhook_url"),
        ({"channel": "none", "filters": {"sources": ["no-such-source"]}}, 422, "unknown source 'no-such-source'"),
        ({"channel": "none", "filters": {"tags": ["no such tag"]}}, 422, "unknown tag 'no such tag'"),
        ({"channel": "none", "filters": {"cone": {"ra": 10, "dec": 0, "radius": 200}}}, 422, "radius"),
        ({"channel": "none", "filters": {"min_relevance": 1.5}}, 422, "min_relevance"),
    ],
)
def test_invalid_subscriptions_get_a_precise_error_and_nothing_is_stored(
    pipeline: Settings, subscribers: Subscribers, body: dict, status: int, words: str
) -> None:
    before = len(asyncio.run(read_records(pipeline, topics.SUBSCRIPTIONS.name, 1.0)))
    r = httpx.post(f"{subscribers.api}/subscriptions", json=body)
    assert r.status_code == status and words in r.text, r.text
    assert len(asyncio.run(read_records(pipeline, topics.SUBSCRIPTIONS.name, 1.0))) == before


def test_a_wrong_or_revoked_code_is_refused(pipeline: Settings, subscribers: Subscribers) -> None:
    for code in ("x" * 43, "short", subscribers.made["all"]["code"][:-2] + "zz"):
        r = httpx.get(f"{subscribers.api}/subscriptions/{code}")
        assert r.status_code == 404 and "wrong or was revoked" in r.text


def test_no_code_secret_or_address_appears_in_any_log(pipeline: Settings, subscribers: Subscribers) -> None:
    logs = "".join(p.read_text(errors="replace") for p in (pipeline.var_dir / "logs").glob("*.log"))
    assert "POST /subscriptions" in logs  # the API's access log is there, redacted
    for made in subscribers.made.values():
        assert made["code"] not in logs
        assert not made["webhook_secret"] or made["webhook_secret"].removeprefix("whsec_") not in logs
    assert "astro@example.org" not in logs and "lazy@example.org" not in logs


def test_subscription_creation_is_rate_limited_per_client(pipeline: Settings) -> None:
    from fastapi.testclient import TestClient

    from services.api.app import create_app

    with TestClient(create_app(pipeline.model_copy(update={"subscriptions_per_hour": 2}))) as client:
        answers = [client.post("/subscriptions", json={"channel": "none"}).status_code for _ in range(3)]
    assert answers == [201, 201, 429]


def test_the_heartbeat_tells_liveness_and_freshness(pipeline: Settings) -> None:
    newest = {
        r["instrument"]: r["ts"]
        for r in questdb.query(pipeline, "SELECT instrument, max(ts) ts FROM lightcurve GROUP BY instrument")
    }
    since = datetime.now(UTC)

    def read() -> list[schemas.Heartbeat]:
        return [
            schemas.Heartbeat.model_validate(v)
            for _, v in asyncio.run(read_topic(pipeline, topics.HEARTBEAT.name, 1.0))
        ]

    # Every service has beaten since the newest rows were read: the beats below tell of them.
    wait_until(
        lambda: set(PIPELINE_SERVICES) <= {b.service for b in read() if b.at >= since},
        "a heartbeat of every service",
        60,
        pipeline.heartbeat_s / 3,
    )
    beats = read()
    assert {"sink", "derive", "relevance", "alerts", "delivery", "api"} <= {b.service for b in beats}
    sink = [b for b in beats if b.service == "sink"][-1]
    assert {i: f"{f.time:%Y-%m-%dT%H:%M:%S.%fZ}" for i, f in sink.freshness.items()} == newest
