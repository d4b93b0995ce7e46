"""Attacks on the subscriptions API (issue #21): replayed and forged links, the mail-bomb, rate limits by network
in bounded memory, oversized requests, unconfirmed subscriptions that linger, Kafka failing under a subscribe, and
clock skew between the API and Kafka. Real Kafka, real aiosmtpd, real HTTP receivers, the delivery service as its
own process; each test provokes the failure and asserts it is refused.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography.fernet import Fernet
from fastapi import HTTPException
from fastapi.testclient import TestClient

import schemas
from flashes import stack, topics
from flashes.infra import free_port
from flashes.kafka import COMPACTED, ensure_topics, make_producer, security
from flashes.observe import group_lag, positioned, wait_until
from flashes.settings import Settings
from flashes.subscriptions import Vault, made_before
from services.api.app import create_app
from services.api.ratelimit import RateLimit, network
from tests.conftest import Mailbox, confirm_link, receiver
from tests.kafka_helpers import read_records

CIRX = {"sources": ["cirx-1"], "history": True}
EXAMPLE = schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_bytes())


@pytest.fixture(scope="module")
def base(settings: Settings, smtp_server: tuple[int, Mailbox]) -> Settings:
    """The API's settings on the session's Kafka, mailing to aiosmtpd; budgets high unless a test lowers them."""
    asyncio.run(ensure_topics(settings))
    return settings.model_copy(update={"smtp_port": smtp_server[0], "smtp_security": "none",
                                       "webhook_allow_loopback": True, "subscriptions_per_hour": 1000,
                                       "writes_per_hour": 1000})


@contextmanager
def api(s: Settings, client: tuple[str, int] = ("192.0.2.1", 50000), **changes: object) -> Iterator[TestClient]:
    """The whole API app (its Kafka store, rate limits, body limit) seen from the client address `client`."""
    with TestClient(create_app(s.model_copy(update=changes)), client=client) as c:
        yield c


def address() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.org"


def link_of(mailbox: Mailbox, to: str) -> tuple[str, str]:
    """The (id, token) of the newest confirmation link mailed to `to`."""
    query = parse_qs(urlsplit(confirm_link(mailbox.to(to)[-1])).query)
    return query["id"][0], query["token"][0]


def subscribe_by_mail(c: TestClient, to: str) -> dict:
    r = c.post("/subscriptions", json={"channel": "email", "email": to, "filters": CIRX})
    assert r.status_code == 201, r.text
    return r.json()


def tombstoned(s: Settings, sub_id: str) -> bool:
    records = asyncio.run(read_records(s, topics.SUBSCRIPTIONS.name, 1.0))
    return any(key == sub_id.encode() and value is None for key, value, _ in records)


def test_a_link_kept_and_replayed_after_the_address_changed_confirms_nobody(
        base: Settings, smtp_server: tuple[int, Mailbox]) -> None:
    mailbox, mine, victim = smtp_server[1], address(), address()
    with api(base) as c:
        made = subscribe_by_mail(c, mine)
        kept = link_of(mailbox, mine)
        assert c.patch(f"/subscriptions/{made['code']}", json={"email": victim}).status_code == 200
        replay = c.post("/subscriptions/confirm", data=dict(zip(("id", "token"), kept)))
        assert replay.status_code == 404 and "address was changed" in replay.json()["detail"]
        assert c.get(f"/subscriptions/{made['code']}").json()["email_confirmed"] is False
        # The victim's own link, bound to the victim's address, is the only one that confirms it.
        own = dict(zip(("id", "token"), link_of(mailbox, victim)))
        assert c.post("/subscriptions/confirm", data=own).status_code == 200
        assert c.get(f"/subscriptions/{made['code']}").json()["email_confirmed"] is True


def test_expired_and_forged_links_are_refused(base: Settings, smtp_server: tuple[int, Mailbox]) -> None:
    mailbox, to = smtp_server[1], address()
    with api(base) as c:
        made = subscribe_by_mail(c, to)
    sub_id, token = link_of(mailbox, to)
    expires, mac = token.split("-")
    other = Vault(Settings(secret_keys=[Fernet.generate_key().decode()]))
    forged = [f"{int(expires) + 86400 * 365}-{mac}",  # a later expiry under the same MAC
              other.confirm_token(sub_id, to, datetime(2100, 1, 1, tzinfo=timezone.utc)),  # another key
              Vault(base).link_token("confirm", sub_id),  # the old, unbound form
              "0" * 10 + "-" + "0" * 64]
    with api(base) as c:
        for bad in forged:
            r = c.post("/subscriptions/confirm", data={"id": sub_id, "token": bad})
            assert r.status_code in (404, 422) and "expired" not in r.text, (bad, r.text)
    with api(base, clock_offset_days=base.confirm_link_hours / 24 + 0.1) as late:  # the same link, 48 h later
        r = late.post("/subscriptions/confirm", data={"id": sub_id, "token": token})
        assert r.status_code == 404 and "expired" in r.json()["detail"]
    with api(base) as c:
        assert c.get(f"/subscriptions/{made['code']}").json()["email_confirmed"] is False
        assert c.post("/subscriptions/confirm", data={"id": sub_id, "token": token}).status_code == 200


def test_the_unsubscribe_link_keeps_working_across_changes(base: Settings, smtp_server: tuple[int, Mailbox]) -> None:
    with api(base) as c:
        made = subscribe_by_mail(c, address())
        link = {"id": made["subscription_id"], "token": Vault(base).link_token("unsubscribe", made["subscription_id"])}
        for change in ({"email": address()}, {"filters": {"sources": ["maxij1535-571"]}}, {"email": address()}):
            assert c.patch(f"/subscriptions/{made['code']}", json=change).status_code == 200
        wrong = {**link, "token": link["token"][:-1] + ("1" if link["token"][-1] == "0" else "0")}
        assert c.post("/subscriptions/unsubscribe", params=wrong).status_code == 404
        assert c.post("/subscriptions/unsubscribe", params=link).status_code == 200
        assert c.get(f"/subscriptions/{made['code']}").status_code == 404


def test_thirty_address_changes_send_a_bounded_number_of_mails(base: Settings,
                                                               smtp_server: tuple[int, Mailbox]) -> None:
    mailbox, victims = smtp_server[1], [address() for _ in range(30)]
    with api(base, confirmation_mails_per_day=3) as c:
        made = subscribe_by_mail(c, address())  # the first of the three mails
        answers = [c.patch(f"/subscriptions/{made['code']}", json={"email": v}) for v in victims]
    assert [a.status_code for a in answers] == [200, 200] + [429] * 28
    assert all(int(a.headers["Retry-After"]) > 23 * 3600 for a in answers[2:])
    assert "at most 3 confirmation mails" in answers[-1].json()["detail"]
    assert sum(len(mailbox.to(v)) for v in victims) == 2


def test_every_write_is_limited_per_network(base: Settings) -> None:
    with api(base, writes_per_hour=4) as c:
        code = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()["code"]
        writes = [c.patch(f"/subscriptions/{code}", json={"filters": CIRX}), c.post(f"/subscriptions/{code}/test"),
                  c.post("/subscriptions/confirm", data={"id": "0" * 64, "token": "x"}),
                  c.patch(f"/subscriptions/{code}", json={"filters": CIRX}), c.delete(f"/subscriptions/{code}")]
        page = c.post("/web/manage/revoke", data={"code": code, "confirm": "yes"})
    assert [w.status_code for w in writes] == [200, 202, 404, 200, 429]
    assert int(writes[-1].headers["Retry-After"]) > 0 and "too many changes" in writes[-1].json()["detail"]
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 0  # the page's revoke is the same write


def test_two_addresses_of_one_ipv6_64_share_a_budget() -> None:
    limit = RateLimit(2, "calls", networks=100)
    a, b, c = network("2001:db8:1:2::1"), network("2001:db8:1:2:ffff:ffff:ffff:fffe"), network("2001:db8:1:3::1")
    assert a == b == "2001:db8:1:2::/64" and c != a
    assert network("::ffff:192.0.2.7") == network("192.0.2.7") == "192.0.2.7/32" != network("192.0.2.8")
    limit.check(a)
    limit.check(b)
    with pytest.raises(HTTPException) as refused:
        limit.check(a)
    assert refused.value.status_code == 429
    limit.check(c)  # the next /64 has its own budget


def test_the_limit_over_http_keys_on_the_64(base: Settings) -> None:
    async def subscribe_from(app: object, host: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(host, 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post("/subscriptions", json={"channel": "none", "filters": CIRX})

    with api(base, subscriptions_per_hour=2) as c:  # one app; each request from its own address
        answers = [c.portal.call(subscribe_from, c.app, host) for host in
                   ("2001:db8:5:6::1", "2001:db8:5:6:a:b:c:d", "2001:db8:5:6::2", "2001:db8:5:7::1")]
    assert [a.status_code for a in answers] == [201, 201, 429, 201]
    assert int(answers[2].headers["Retry-After"]) > 0


def test_the_limiter_forgets_the_oldest_networks_and_stays_bounded() -> None:
    now = [0.0]
    limit = RateLimit(1, "calls", networks=1000, clock=lambda: now[0])
    for i in range(20_000):
        limit.check(network(f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1"))
    assert len(limit.buckets) == 1000
    newest = network(f"2001:db8:0:{19_999:x}::1")
    with pytest.raises(HTTPException):  # the most recent networks are remembered: their budget is spent
        limit.check(newest)
    limit.check(network("2001:db8:0:0::1"))  # the oldest was forgotten: it starts afresh
    now[0] = 3600.0
    limit.check(newest)  # an hour refills a budget


def test_an_oversized_body_is_refused_before_it_is_read_and_an_overlong_list_is_422(base: Settings) -> None:
    before = len(asyncio.run(read_records(base, topics.SUBSCRIPTIONS.name, 1.0)))
    huge = json.dumps({"channel": "none", "filters": {"sources": ["cirx-1"] * 500_000}}).encode()  # 5 MB
    with api(base) as c:
        declared = c.post("/subscriptions", content=huge, headers={"content-type": "application/json"})
        streamed = c.post("/subscriptions", content=iter([huge[i:i + 8192] for i in range(0, len(huge), 8192)]),
                          headers={"content-type": "application/json"})
        overlong = c.post("/subscriptions", json={"channel": "none", "filters": {"sources": ["cirx-1"] * 1001}})
        made = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()
        long_patch = c.patch(f"/subscriptions/{made['code']}", json={"filters": {"tags": ["BLACK HOLE"] * 101}})
        long_url = c.post("/subscriptions", json={"channel": "webhook", "webhook_url": "https://x.org/" + "a" * 3000})
    for r in (declared, streamed):
        assert r.status_code == 413 and "larger than 65536 bytes" in r.json()["detail"], r.text
    assert overlong.status_code == 422 and "filters.sources" in overlong.text and "1000" in overlong.text
    assert long_patch.status_code == 422 and "filters.tags" in long_patch.text
    assert long_url.status_code == 422 and "webhook_url" in long_url.text
    assert len(asyncio.run(read_records(base, topics.SUBSCRIPTIONS.name, 1.0))) == before + 1  # only `made`


def test_an_unconfirmed_subscription_expires_and_is_removed(base: Settings, smtp_server: tuple[int, Mailbox]) -> None:
    to = address()
    with api(base, unconfirmed_days=0.0) as c:  # its address must be confirmed at once: it never is
        made = subscribe_by_mail(c, to)
    sub_id, token = link_of(smtp_server[1], to)
    with api(base):  # a fresh API sweeps at start; nothing asks for the subscription
        wait_until(lambda: tombstoned(base, sub_id), "the expired subscription's tombstone", 30, 0.2)
    with api(base) as c:
        assert c.get(f"/subscriptions/{made['code']}").status_code == 404
        assert c.post("/subscriptions/confirm", data={"id": sub_id, "token": token}).status_code == 404


def test_kafka_down_at_subscribe_answers_503_and_mails_nothing(base: Settings,
                                                               smtp_server: tuple[int, Mailbox]) -> None:
    mailbox, nowhere, refused = smtp_server[1], address(), address()
    with api(base, kafka_port=free_port()) as c:  # no broker at all
        r = c.post("/subscriptions", json={"channel": "email", "email": nowhere, "filters": CIRX})
    assert r.status_code == 503 and r.json()["error"] == "unavailable" and "nothing was stored" in r.json()["detail"]
    with api(base) as c:
        c.get("/subscriptions/" + "x" * 43)  # the store is up: the broker refuses the write itself, below
        with topic_refusing_records(base):
            r = c.post("/subscriptions", json={"channel": "email", "email": refused, "filters": CIRX})
    assert r.status_code == 503 and "no mail was sent" in r.json()["detail"]
    assert mailbox.to(nowhere) == [] and mailbox.to(refused) == []


@contextmanager
def topic_refusing_records(s: Settings) -> Iterator[None]:
    """The subscriptions topic refuses every record (max.message.bytes below any record) while inside."""
    async def alter(extra: dict[str, str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, **security(s))
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topics.SUBSCRIPTIONS.name,
                                      configs={**COMPACTED, **extra})
            await admin.alter_configs([resource])
        finally:
            await admin.close()

    async def limit() -> str:
        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, **security(s))
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topics.SUBSCRIPTIONS.name, configs=None)
            (answer,) = await admin.describe_configs([resource])
        finally:
            await admin.close()
        return next(entry[1] for entry in answer.resources[0][4] if entry[0] == "max.message.bytes")

    asyncio.run(alter({"max.message.bytes": "64"}))
    try:
        wait_until(lambda: asyncio.run(limit()) == "64", "the broker to take the topic's new limit", 30, 0.2)
        yield
    finally:
        asyncio.run(alter({}))


async def publish(s: Settings, alert: schemas.Alert) -> None:
    producer = make_producer(s)
    await producer.start()
    try:
        await producer.send_and_wait(topics.ALERTS.name, topics.ALERTS.encode(alert), key=alert.source_id.encode())
    finally:
        await producer.stop()


def cirx_alert() -> schemas.Alert:
    return EXAMPLE.model_copy(update={"source_id": "cirx-1", "alert_id": f"cirx-1@{uuid.uuid4().hex}",
                                      "alert_type": "onset", "record_number": 1})


def test_kafkas_order_not_the_api_clock_decides_which_alerts_a_new_subscription_gets(base: Settings) -> None:
    server, url, received = receiver(204)
    logs = base.var_dir / "logs" / "security-subscriptions"
    env = {"FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true"}

    def got(path: str) -> set[str]:
        return {json.loads(r["body"])["alert_id"] for r in received if r["path"] == path}

    def start_delivery() -> dict:
        processes = stack.spawn(("delivery",), env, logs)
        wait_until(lambda: asyncio.run(positioned(base, "flashes-delivery", topics.ALERTS.name)), "delivery", 120)
        return processes

    delivery = start_delivery()
    try:
        with api(base, clock_offset_days=1.0) as ahead:  # the API's host a day ahead of the broker's
            made = ahead.post("/subscriptions", json={"channel": "webhook", "webhook_url": f"{url}/ahead",
                                                      "filters": CIRX}).json()
        assert datetime.fromisoformat(made["created_at"]) > datetime.now(timezone.utc) + timedelta(hours=12)
        first = cirx_alert()
        asyncio.run(publish(base, first))
        wait_until(lambda: first.alert_id in got("/ahead"), "the alert appended after the subscription", 60, 0.2)
        stack.terminate(delivery)
        before = cirx_alert()  # appended while delivery is down, before the next subscription
        asyncio.run(publish(base, before))
        with api(base, clock_offset_days=-1.0) as behind:  # a day behind: its subscription seems older than `before`
            behind.post("/subscriptions", json={"channel": "webhook", "webhook_url": f"{url}/behind", "filters": CIRX})
        delivery = start_delivery()
        after = cirx_alert()
        asyncio.run(publish(base, after))
        wait_until(lambda: after.alert_id in got("/behind"), "the alert appended after the second subscription",
                   60, 0.2)
        wait_until(lambda: asyncio.run(group_lag(base, ("flashes-delivery",))) == 0, "delivery to commit", 60, 0.2)
        assert before.alert_id not in got("/behind")
        assert {first.alert_id, before.alert_id, after.alert_id} <= got("/ahead")
    finally:
        stack.terminate(delivery)
        server.shutdown()
    assert not stack.crashed(logs, delivery), f"delivery logged a traceback: see {logs}"


def test_made_before_reads_the_offsets_of_each_partition() -> None:
    sub = schemas.Subscription(subscription_id="a" * 64, created_at=EXAMPLE.raised_at,
                               filters=schemas.SubscriptionFilters(), channel="none", alerts_from=[5])
    assert not made_before(sub, 0, 4) and made_before(sub, 0, 5) and made_before(sub, 1, 0)
    assert made_before(sub.model_copy(update={"alerts_from": []}), 0, 0)  # written before the field: every alert


def test_confirmation_links_survive_a_key_rotation_and_no_other_key_signs_them() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    until = datetime(2100, 1, 1, tzinfo=timezone.utc)
    mailed = Vault(Settings(secret_keys=[old])).confirm_token("s" * 64, "a@example.org", until)
    assert Vault(Settings(secret_keys=[new, old])).confirmation_expiry("s" * 64, "a@example.org", mailed) == until
    assert Vault(Settings(secret_keys=[new])).confirmation_expiry("s" * 64, "a@example.org", mailed) is None
    assert Vault(Settings(secret_keys=[old])).confirmation_expiry("t" * 64, "a@example.org", mailed) is None
