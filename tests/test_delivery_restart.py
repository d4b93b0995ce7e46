"""Each mail once: the delivery service SIGKILLed with retries and digests pending, restarted, sends nothing twice.

A private Kafka (the session's pipeline runs a delivery service of its own on the session's topics),
the delivery service as its own process (`flashes run delivery`), a real SMTP server (aiosmtpd) and
real HTTP receivers. The service runs with two keys, newest first; the subscriptions were sealed
under either, as they would be across a key change.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

import schemas
from devtools.observe import Mailbox, group_lag, produce, read_topic, receiver, wait_positioned, wait_until
from devtools.stack import Stack, private_stack
from flashes import topics
from flashes.kafka import ensure_topics
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_code, new_webhook_secret, subscription_id

pytestmark = pytest.mark.integration  # starts its own services and servers

NEW, OLD = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SOURCE = "restart-test"
EXAMPLE = schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_bytes())


def test_links_are_signed_with_the_newest_key_and_old_secrets_and_links_still_work() -> None:
    old, rotated, new = (Vault(Settings(secret_keys=keys)) for keys in ([OLD], [NEW, OLD], [NEW]))
    sealed = old.seal("astro@example.org")
    assert rotated.open(sealed) == "astro@example.org"
    assert rotated.link_token("s") == new.link_token("s") != old.link_token("s")
    assert rotated.check_link("s", old.link_token("s"))  # mailed before the change
    assert not rotated.check_link("t", old.link_token("s"))  # another subscription's link
    with pytest.raises(Exception, match="does not decrypt with any of the keys"):
        new.open(sealed)  # once the old key is dropped


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, smtp_server: tuple[int, Mailbox]) -> Iterator[Stack]:
    """Kafka alone on free loopback ports; the delivery service's settings (cap 2 mails a day, retries 1 s doubling
    for up to 10 attempts, keys [NEW, OLD], QuestDB absent: charts from the alerts' points)."""
    env = {
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
        "FLASHES_SMTP_HOST": "127.0.0.1",
        "FLASHES_SMTP_PORT": str(smtp_server[0]),
        "FLASHES_SMTP_USER": "",
        "FLASHES_SMTP_SECURITY": "none",
        "FLASHES_EMAIL_DAILY_CAP": "2",
        "FLASHES_DELIVERY_BACKOFF_S": "1.0",
        "FLASHES_DELIVERY_MAX_ATTEMPTS": "10",
        "FLASHES_SECRET_KEYS": json.dumps([NEW, OLD]),
        "FLASHES_CLOCK_OFFSET_DAYS": "0.0",
    }
    with private_stack(env=env, var=tmp_path_factory.mktemp("delivery-restart"), servers=("kafka",)) as stack:
        asyncio.run(ensure_topics(stack.settings))
        yield stack


def subscription(key: str, channel: str, **fields: object) -> tuple[schemas.Subscription, str | None]:
    """A subscription to SOURCE sealed under `key`, as the API writes it; and its webhook secret."""
    vault = Vault(Settings(secret_keys=[key]))
    secret = new_webhook_secret() if channel == "webhook" else None
    sealed = {"webhook_secret": vault.seal(secret)} if secret else {"email": vault.seal(str(fields.pop("email")))}
    sub = schemas.Subscription(
        subscription_id=subscription_id(new_code()),
        channel=channel,
        created_at=datetime.now(UTC) - timedelta(minutes=1),
        filters=schemas.SubscriptionFilters(sources=[SOURCE]),
        **sealed,
        **fields,
    )
    return sub, secret


def alert(name: str) -> schemas.Alert:
    return EXAMPLE.model_copy(
        update={
            "source_id": SOURCE,
            "alert_id": f"{SOURCE}@{name}",
            "record_number": 1,
            "live": True,
            "raised_at": datetime.now(UTC),
        }
    )


def record(spec: topics.TopicSpec, key: str, value: object) -> tuple[str, bytes, bytes]:
    """(topic, key, value) for observe.produce, encoded by the topic's codec."""
    return spec.name, key.encode(), spec.encode(value)


def digest_task(sub: schemas.Subscription, a: schemas.Alert) -> tuple[str, bytes, bytes]:
    """A mail held for the digest, due now (as the held ones are at midnight)."""
    task = schemas.DeliveryTask(
        subscription_id=sub.subscription_id, alert=a, attempt=1, due=datetime.now(UTC), digest=True
    )
    return record(topics.DELIVERY_RETRY, sub.subscription_id, task)


class Log:
    """The delivery log as read at one moment (read again with `Log(settings)`)."""

    def __init__(self, settings: Settings) -> None:
        self.records = [
            schemas.DeliveryRecord.model_validate(v)
            for _, v in asyncio.run(read_topic(settings, topics.DELIVERIES.name, 1.0))
        ]

    def of(self, sub: schemas.Subscription) -> list[schemas.DeliveryRecord]:
        return [r for r in self.records if r.subscription_id == sub.subscription_id]

    def count(self, sub: schemas.Subscription, status: str) -> Counter[str]:
        """How many records of `status` each alert id of the subscription has."""
        return Counter(r.alert_id for r in self.of(sub) if r.status == status)


def test_a_killed_delivery_service_sends_each_mail_and_webhook_once(
    private: Stack, smtp_server: tuple[int, Mailbox]
) -> None:
    settings = private.settings
    address = f"restart-{uuid.uuid4().hex[:8]}@example.org"
    (ok_server, ok_url, ok_got), (flaky_server, flaky_url, flaky_got) = receiver(204), receiver(500)
    mail_sub, _ = subscription(OLD, "email", email=address, email_confirmed=True)
    ok_sub, ok_secret = subscription(OLD, "webhook", webhook_url=f"{ok_url}/ok")
    flaky_sub, flaky_secret = subscription(NEW, "webhook", webhook_url=f"{flaky_url}/flaky")
    first, later = [alert(f"a{i}") for i in (1, 2, 3)], alert("a4")
    held_early, held_late = alert("digest-1"), alert("digest-2")
    ids = {a.alert_id for a in [*first, later]}
    try:
        subs = [record(topics.SUBSCRIPTIONS, s.subscription_id, s) for s in (mail_sub, ok_sub, flaky_sub)]
        asyncio.run(produce(settings, subs))
        private.start("delivery")
        wait_positioned(settings, 60)
        asyncio.run(produce(settings, [record(topics.ALERTS, a.source_id, a) for a in first]))

        def first_round() -> bool:
            log = Log(settings)
            return (
                sum(log.count(mail_sub, "delivered").values()) == 2
                and sum(log.count(mail_sub, "held").values()) == 1
                and len(log.count(ok_sub, "delivered")) == 3
                and len(log.count(flaky_sub, "retrying")) == 3
                and min(log.count(flaky_sub, "retrying").values()) >= 2
            )

        wait_until(first_round, "two mails, one held, three webhooks and retries under way", 60, 0.5)
        asyncio.run(produce(settings, [digest_task(mail_sub, held_early)]))  # after the held one, on its partition
        wait_until(lambda: Log(settings).count(mail_sub, "digested") == {held_early.alert_id: 1}, "the digest", 60, 0.5)

        assert private.kill("delivery")  # retries and the midnight digest pending
        flaky_server.status = 204
        before_restart = len(flaky_got)
        private.start("delivery")
        news = [record(topics.ALERTS, later.source_id, later), digest_task(mail_sub, held_late)]
        asyncio.run(produce(settings, news))

        def second_round() -> bool:
            log = Log(settings)
            return (
                set(log.count(flaky_sub, "delivered")) == ids == set(log.count(ok_sub, "delivered"))
                and later.alert_id in log.count(mail_sub, "held")
                and held_late.alert_id in log.count(mail_sub, "digested")
            )

        wait_until(second_round, "the restarted service to deliver the retries, the new alert and the digest", 120, 0.5)
        # Every alert's attempts recorded and committed: a duplicate from an alert read again would be here by now.
        wait_until(lambda: asyncio.run(group_lag(settings, ("flashes-delivery",))) == 0, "delivery to commit", 60, 0.2)

        mails = smtp_server[1].to(address)
        alert_mails = Counter(m["X-Flashes-Alert-Id"] for m in mails if m["X-Flashes-Alert-Id"])
        assert sorted(alert_mails.values()) == [1, 1] and set(alert_mails) < {f"{a.alert_id}#1" for a in first}
        digests = [m.get_body(("plain",)).get_content() for m in mails if "digest" in m["Subject"]]
        assert len(digests) == 2 and [held_early.alert_id in d for d in digests] == [True, False]
        assert held_late.alert_id in digests[1]
        assert len(mails) == 4  # two alerts (the cap, counted across the restart), two digests: nothing twice
        assert not any(later.alert_id in m.get_body(("plain",)).get_content() for m in mails)  # held: cap reached

        for got, secret in ((ok_got, ok_secret), (flaky_got[before_restart:], flaky_secret)):
            assert Counter(r["headers"]["webhook-id"] for r in got) == {f"{i}#1": 1 for i in ids}
            for r in got:  # secrets sealed under the old key and the new one both sign
                Webhook(secret).verify(
                    r["body"], {k: r["headers"][k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
                )
        flaky_log = Log(settings).of(flaky_sub)
        assert len({(r.alert_id, r.attempt) for r in flaky_log}) == len(flaky_log)  # no attempt made twice
        assert not any(flaky_got[i]["headers"]["webhook-id"] == f"{later.alert_id}#1" for i in range(before_restart))

        unsubscribe = urlsplit(mails[0]["List-Unsubscribe"].strip("<>"))
        token = parse_qs(unsubscribe.query)["token"][0]
        assert Vault(Settings(secret_keys=[NEW])).check_link(mail_sub.subscription_id, token)
        assert not Vault(Settings(secret_keys=[OLD])).check_link(mail_sub.subscription_id, token)
        assert private.processes["delivery"].poll() is None and not private.crashed(["delivery"])
    finally:
        private.stop("delivery")
        ok_server.stop()
        flaky_server.stop()
