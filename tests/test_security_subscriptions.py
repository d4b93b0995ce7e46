"""Attacks on the subscriptions API (issue #21): replayed and forged links, the mail-bomb, rate limits by network
in bounded memory, oversized requests, unconfirmed subscriptions that linger, Kafka failing under a subscribe, and
clock skew between the API and Kafka. Real Kafka, real aiosmtpd, real HTTP receivers, the delivery service as its
own process; each test provokes the failure and asserts it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography.fernet import Fernet
from fastapi import HTTPException
from fastapi.testclient import TestClient

import schemas
from devtools.infra import free_port
from devtools.observe import Mailbox, group_lag, produce, read_records, receiver, wait_positioned, wait_until
from devtools.stack import Stack
from flashes import clock, kafka, topics
from flashes.kafka import COMPACTED, ensure_topics
from flashes.settings import Settings
from flashes.subscriptions import Vault, made_before, new_subscription
from services.api.app import create_app
from services.api.ratelimit import Budget, RateLimit, network
from services.api.subscription_store import Store
from tests.conftest import confirm_link

CIRX = {"sources": ["cirx-1"], "history": True}
EXAMPLE = schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_bytes())


@pytest.fixture(scope="module")
def base(settings: Settings, smtp_server: tuple[int, Mailbox]) -> Settings:
    """The API's settings on the session's Kafka, mailing to aiosmtpd; budgets high unless a test lowers them."""
    asyncio.run(ensure_topics(settings))
    return settings.model_copy(
        update={
            "smtp_port": smtp_server[0],
            "smtp_security": "none",
            "webhook_allow_loopback": True,
            "subscriptions_per_hour": 1000,
            "writes_per_hour": 1000,
        }
    )


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


def unbound(s: Settings, sub_id: str) -> str:
    """A confirmation token in the form before #21: HMAC("confirm:" + id), bound to no address and no expiry."""
    key = hashlib.sha256(b"flashes-links:" + s.secret_key.get_secret_value().encode()).digest()
    return hmac.new(key, f"confirm:{sub_id}".encode(), hashlib.sha256).hexdigest()


async def at_once(app: object, calls: list[tuple[str, str, str, dict]]) -> list[httpx.Response]:
    """The requests (client host, method, path, httpx keywords) sent together, each from its own client, so
    that all are in flight at once; the answers in order."""

    async def one(host: str, method: str, path: str, kw: dict) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(host, 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=60) as client:
            return await client.request(method, path, **kw)

    return list(await asyncio.gather(*(one(*call) for call in calls)))


def tombstoned(s: Settings, sub_id: str) -> bool:
    records = asyncio.run(read_records(s, topics.SUBSCRIPTIONS.name, 1.0))
    return any(key == sub_id.encode() and value is None for key, value, _ in records)


def test_a_link_kept_and_replayed_after_the_address_changed_confirms_nobody(
    base: Settings, smtp_server: tuple[int, Mailbox]
) -> None:
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
    forged = [
        f"{int(expires) + 86400 * 365}-{mac}",  # a later expiry under the same MAC
        other.confirm_token(sub_id, to, datetime(2100, 1, 1, tzinfo=UTC)),  # another key
        unbound(base, sub_id),  # the old form, bound to the subscription alone
        "0" * 10 + "-" + "0" * 64,
    ]
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
        link = {"id": made["subscription_id"], "token": Vault(base).link_token(made["subscription_id"])}
        for change in ({"email": address()}, {"filters": {"sources": ["maxij1535-571"]}}, {"email": address()}):
            assert c.patch(f"/subscriptions/{made['code']}", json=change).status_code == 200
        wrong = {**link, "token": link["token"][:-1] + ("1" if link["token"][-1] == "0" else "0")}
        assert c.post("/subscriptions/unsubscribe", params=wrong).status_code == 404
        assert c.post("/subscriptions/unsubscribe", params=link).status_code == 200
        assert c.get(f"/subscriptions/{made['code']}").status_code == 404


def test_a_change_giving_null_keeps_the_channel_and_the_filters(base: Settings) -> None:
    """Found by the OpenAPI fuzzer: `{"channel": null}` was stored as a subscription without a channel, which the
    store then could not read back (500)."""
    with api(base) as c:
        made = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()
        for change in ({"channel": None}, {"filters": None}, {"channel": None, "filters": None}):
            r = c.patch(f"/subscriptions/{made['code']}", json=change)
            assert r.status_code == 200, r.text
            assert r.json()["channel"] == "none" and r.json()["sources"] == made["sources"]
        assert c.get(f"/subscriptions/{made['code']}").json()["channel"] == "none"


def test_thirty_address_changes_send_a_bounded_number_of_mails(
    base: Settings, smtp_server: tuple[int, Mailbox]
) -> None:
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
        writes = [
            c.patch(f"/subscriptions/{code}", json={"filters": CIRX}),
            c.post(f"/subscriptions/{code}/test"),
            c.post("/subscriptions/confirm", data={"id": "0" * 64, "token": "x"}),
            c.patch(f"/subscriptions/{code}", json={"filters": CIRX}),
            c.delete(f"/subscriptions/{code}"),
        ]
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
        answers = [
            c.portal.call(subscribe_from, c.app, host)
            for host in ("2001:db8:5:6::1", "2001:db8:5:6:a:b:c:d", "2001:db8:5:6::2", "2001:db8:5:7::1")
        ]
    assert [a.status_code for a in answers] == [201, 201, 429, 201]
    assert int(answers[2].headers["Retry-After"]) > 0


def test_the_limiter_forgets_the_oldest_networks_and_stays_bounded() -> None:
    now = [0.0]
    limit = RateLimit(1, "calls", networks=1000, clock=lambda: now[0])
    for i in range(20_000):
        limit.check(network(f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1"))
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
        streamed = c.post(
            "/subscriptions",
            content=iter([huge[i : i + 8192] for i in range(0, len(huge), 8192)]),
            headers={"content-type": "application/json"},
        )
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


def test_kafka_down_at_subscribe_answers_503_and_mails_nothing(
    base: Settings, smtp_server: tuple[int, Mailbox]
) -> None:
    mailbox, nowhere, refused = smtp_server[1], address(), address()
    with api(base, kafka_port=free_port()) as c:  # no broker at all
        r = c.post("/subscriptions", json={"channel": "email", "email": nowhere, "filters": CIRX})
    assert r.status_code == 503 and r.json()["error"] == "unavailable" and "nothing was stored" in r.json()["detail"]
    with api(base) as c:
        made = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()  # the store is up
        with topic_refusing_records(base):  # the broker refuses the write itself
            r = c.post("/subscriptions", json={"channel": "email", "email": refused, "filters": CIRX})
        assert r.status_code == 503 and "no mail was sent" in r.json()["detail"]
        assert mailbox.to(nowhere) == [] and mailbox.to(refused) == []
        # The same app once the broker takes records again: the producer whose record was refused is replaced
        # (its sequence numbers have a gap: the broker would refuse every later record it sends).
        again = c.post("/subscriptions", json={"channel": "email", "email": refused, "filters": CIRX})
        changed = c.patch(f"/subscriptions/{made['code']}", json={"filters": {"sources": ["maxij1535-571"]}})
        test = c.post(f"/subscriptions/{made['code']}/test")
    assert again.status_code == 201 and changed.status_code == 200 and test.status_code == 202, (
        again.text,
        changed.text,
        test.text,
    )
    assert len(mailbox.to(refused)) == 1


@contextmanager
def topic_refusing_records(s: Settings) -> Iterator[None]:
    """The subscriptions topic refuses every record (max.message.bytes below any record) while inside."""

    async def alter(extra: dict[str, str]) -> None:
        admin = kafka.admin(s)
        await admin.start()
        try:
            resource = ConfigResource(
                ConfigResourceType.TOPIC, topics.SUBSCRIPTIONS.name, configs={**COMPACTED, **extra}
            )
            await admin.alter_configs([resource])
        finally:
            await admin.close()

    async def limit() -> str:
        admin = kafka.admin(s)
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
        wait_until(lambda: asyncio.run(limit()) != "64", "the broker to drop the topic's limit", 30, 0.2)


async def publish(s: Settings, alert: schemas.Alert) -> None:
    await produce(s, [(topics.ALERTS.name, alert.source_id.encode(), topics.ALERTS.encode(alert))])


def cirx_alert() -> schemas.Alert:
    return EXAMPLE.model_copy(
        update={
            "source_id": "cirx-1",
            "alert_id": f"cirx-1@{uuid.uuid4().hex}",
            "alert_type": "onset",
            "record_number": 1,
        }
    )


def test_kafkas_order_not_the_api_clock_decides_which_alerts_a_new_subscription_gets(
    base: Settings, stack: Stack
) -> None:
    server, url, received = receiver(204)
    delivery = "delivery#subscriptions"

    def got(path: str) -> set[str]:
        return {json.loads(r["body"])["alert_id"] for r in received if r["path"] == path}

    def start_delivery() -> None:
        stack.start(delivery, env={"FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true"})
        wait_positioned(base)

    start_delivery()
    try:
        with api(base, clock_offset_days=1.0) as ahead:  # the API's host a day ahead of the broker's
            made = ahead.post(
                "/subscriptions", json={"channel": "webhook", "webhook_url": f"{url}/ahead", "filters": CIRX}
            ).json()
        assert datetime.fromisoformat(made["created_at"]) > datetime.now(UTC) + timedelta(hours=12)
        first = cirx_alert()
        asyncio.run(publish(base, first))
        wait_until(lambda: first.alert_id in got("/ahead"), "the alert appended after the subscription", 60, 0.2)
        stack.stop(delivery)
        before = cirx_alert()  # appended while delivery is down, before the next subscription
        asyncio.run(publish(base, before))
        with api(base, clock_offset_days=-1.0) as behind:  # a day behind: its subscription seems older than `before`
            behind.post("/subscriptions", json={"channel": "webhook", "webhook_url": f"{url}/behind", "filters": CIRX})
        start_delivery()
        after = cirx_alert()
        asyncio.run(publish(base, after))
        wait_until(
            lambda: after.alert_id in got("/behind"), "the alert appended after the second subscription", 60, 0.2
        )
        wait_until(lambda: asyncio.run(group_lag(base, ("flashes-delivery",))) == 0, "delivery to commit", 60, 0.2)
        assert before.alert_id not in got("/behind")
        assert {first.alert_id, before.alert_id, after.alert_id} <= got("/ahead")
    finally:
        stack.stop(delivery)
        server.stop()
    assert not stack.crashed([delivery]), f"delivery logged a traceback: see {stack.logs}"


def test_made_before_reads_the_offsets_of_each_partition() -> None:
    sub = schemas.Subscription(
        subscription_id="a" * 64,
        created_at=EXAMPLE.raised_at,
        filters=schemas.SubscriptionFilters(),
        channel="none",
        alerts_from=[5],
    )
    assert not made_before(sub, 0, 4) and made_before(sub, 0, 5) and made_before(sub, 1, 0)
    assert made_before(sub.model_copy(update={"alerts_from": []}), 0, 0)  # written before the field: every alert


def test_confirmation_links_survive_a_key_rotation_and_no_other_key_signs_them() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    until = datetime(2100, 1, 1, tzinfo=UTC)
    mailed = Vault(Settings(secret_keys=[old])).confirm_token("s" * 64, "a@example.org", until)
    assert Vault(Settings(secret_keys=[new, old])).confirmation_expiry("s" * 64, "a@example.org", mailed) == until
    assert Vault(Settings(secret_keys=[new])).confirmation_expiry("s" * 64, "a@example.org", mailed) is None
    assert Vault(Settings(secret_keys=[old])).confirmation_expiry("t" * 64, "a@example.org", mailed) is None


def test_one_address_gets_three_confirmation_mails_however_many_networks_ask(
    base: Settings, smtp_server: tuple[int, Mailbox]
) -> None:
    mailbox, user = smtp_server[1], uuid.uuid4().hex[:12]
    # One mailbox, written 30 ways (case, RFC 5233 subaddresses), from 30 IPv6 /64s: one budget.
    forms = [f"{user}@example.org", f"{user.upper()}@Example.ORG"] + [f"{user}+{i}@example.org" for i in range(28)]
    calls = [
        (f"2001:db8:{i:x}::1", "POST", "/subscriptions", {"json": {"channel": "email", "email": to, "filters": CIRX}})
        for i, to in enumerate(forms)
    ]
    with api(base) as c:
        answers = [c.portal.call(at_once, c.app, [call])[0] for call in calls]
        other = c.post("/subscriptions", json={"channel": "email", "email": address(), "filters": CIRX})
        made = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()
        patched = c.patch(f"/subscriptions/{made['code']}", json={"channel": "email", "email": f"{user}+x@example.org"})
    assert [a.status_code for a in answers] == [201] * 3 + [429] * 27
    assert "at most 3 confirmation mails to one address" in answers[-1].json()["detail"]
    assert int(answers[-1].headers["Retry-After"]) > 23 * 3600
    assert patched.status_code == 429 and other.status_code == 201  # a PATCH draws on it too; others have their own
    assert sum(1 for m in mailbox.messages if user in m["To"].lower()) == 3
    assert user not in json.dumps([a.json() for a in answers[3:]])  # the refusal does not repeat the address


def test_the_address_budget_is_a_sliding_day_in_bounded_memory() -> None:
    now = [0.0]
    budget = Budget(3, 86400.0, "mails", keys=100, clock=lambda: now[0])
    for at in (0.0, 3600.0, 7200.0):
        now[0] = at
        budget.check("a")
    now[0] = 86399.0
    with pytest.raises(HTTPException) as refused:  # three in the last day: a token bucket would have refilled one
        budget.check("a")
    assert refused.value.headers["Retry-After"] == "1"
    now[0] = 86400.5
    budget.check("a")  # the first of the three is a day old
    for i in range(1000):
        budget.check(f"k{i}")
    assert len(budget.uses) == 100 and all(len(times) <= 3 for times in budget.uses.values())


def test_thirty_address_changes_at_once_send_no_more_mails_than_one_after_another(
    base: Settings, smtp_server: tuple[int, Mailbox]
) -> None:
    mailbox, victims = smtp_server[1], [address() for _ in range(30)]
    with api(base, confirmation_mails_per_day=3) as c:
        made = subscribe_by_mail(c, address())  # the first of the three mails
        path = f"/subscriptions/{made['code']}"
        answers = c.portal.call(at_once, c.app, [("192.0.2.1", "PATCH", path, {"json": {"email": v}}) for v in victims])
        stored = c.get(path).json()
    assert sorted(a.status_code for a in answers) == [200, 200] + [429] * 28
    assert sum(len(mailbox.to(v)) for v in victims) == 2 and stored["email_confirmed"] is False


def test_a_confirmation_and_a_change_at_once_both_stay(base: Settings, smtp_server: tuple[int, Mailbox]) -> None:
    for _ in range(3):
        to = address()
        with api(base) as c:
            made = subscribe_by_mail(c, to)
            link = dict(zip(("id", "token"), link_of(smtp_server[1], to)))
            confirmed, changed = c.portal.call(
                at_once,
                c.app,
                [
                    ("192.0.2.1", "POST", "/subscriptions/confirm", {"data": link}),
                    (
                        "192.0.2.1",
                        "PATCH",
                        f"/subscriptions/{made['code']}",
                        {"json": {"filters": {"sources": ["maxij1535-571"]}}},
                    ),
                ],
            )
            stored = c.get(f"/subscriptions/{made['code']}").json()
        assert confirmed.status_code == 200 and changed.status_code == 200
        assert stored["email_confirmed"] is True and stored["filters"]["sources"] == ["maxij1535-571"], stored


def test_a_revoke_during_a_change_whose_mail_fails_is_not_undone(base: Settings) -> None:
    with api(base, smtp_port=free_port()) as c:  # no mail server: a PATCH of the address fails and writes back
        made = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()
        path = f"/subscriptions/{made['code']}"
        changed, revoked = c.portal.call(
            at_once,
            c.app,
            [
                ("192.0.2.1", "PATCH", path, {"json": {"channel": "email", "email": address()}}),
                ("192.0.2.1", "DELETE", path, {}),
            ],
        )
        after = c.get(path)
    assert changed.status_code in (503, 404) and revoked.status_code == 204  # 404: the revoke went first
    assert after.status_code == 404  # the PATCH's write-back did not bring the revoked subscription back
    assert tombstoned(base, made["subscription_id"])


def test_a_subscription_left_on_channel_none_expires_and_one_given_a_channel_stays(base: Settings) -> None:
    server, url, _ = receiver(204)
    try:
        with api(base, unconfirmed_days=0.0) as c:  # it must be given a channel at once: it never is
            idle = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()
        with api(base) as c:
            kept = c.post("/subscriptions", json={"channel": "none", "filters": CIRX}).json()
            refiltered = c.patch(f"/subscriptions/{kept['code']}", json={"filters": {"sources": ["maxij1535-571"]}})
            hook = c.patch(f"/subscriptions/{kept['code']}", json={"channel": "webhook", "webhook_url": f"{url}/k"})
        assert idle["confirm_by"] is not None and "channel none delivers nothing" in idle["note"]
        assert refiltered.json()["confirm_by"] == kept["confirm_by"]  # a change of filters does not extend it
        assert hook.status_code == 200 and hook.json()["confirm_by"] is None
        with api(base):  # a fresh API sweeps at start
            wait_until(lambda: tombstoned(base, idle["subscription_id"]), "the idle subscription's tombstone", 30, 0.2)
        with api(base) as c:
            assert c.get(f"/subscriptions/{idle['code']}").status_code == 404
            assert c.get(f"/subscriptions/{kept['code']}").status_code == 200
    finally:
        server.stop()


def test_the_api_reads_the_topic_again_when_its_view_stopped(base: Settings) -> None:
    async def scenario() -> tuple[bool, bool]:
        store, other = Store(base), Store(base)
        try:
            await store.ready()
            await other.ready()
            store.view.task.cancel()  # the follower stops (before #21, a dead letter Kafka refused stopped it)
            with contextlib.suppress(asyncio.CancelledError):
                await store.view.task
            _, _, sub = new_subscription(
                Vault(base), schemas.SubscriptionFilters(sources=["cirx-1"]), "none", created_at=clock.now(base)
            )
            await other.write(sub.subscription_id, sub)  # written by another API process
            await store.ready()
            await store.view.caught_up()
            return store.view.task.done(), store.view.get(sub.subscription_id) is not None
        finally:
            await store.close()
            await other.close()

    stopped, seen = asyncio.run(scenario())
    assert not stopped and seen
