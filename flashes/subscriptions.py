"""Subscriptions without accounts, shared by the API and the delivery service (and `flashes listen`'s filters):
codes, secrets at rest, webhook URL checks, matching, and the live view.

A subscriber holds a random code (256 bits); only its SHA-256 (`subscription_id`) is stored.
E-mail addresses and webhook secrets are stored encrypted with the settings' Fernet keys. Links in
mails carry an HMAC, so they need no storage: an unsubscribe link signs the subscription id alone
(it keeps working whatever the subscriber changes); a confirmation link signs the id, the SHA-256
of the address it was mailed to and its expiry, so a link kept and replayed after the address was
changed, or after it expired, confirms nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from astropy.coordinates import angular_separation
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

import schemas
from flashes import kafka, topics
from flashes.errors import DecodeError, RefusedAddress, SubscriptionError
from flashes.kafka import dead_letter, make_producer, send_dead_letter
from flashes.netguard import Guard, webhook_port
from flashes.settings import Settings
from flashes.topics import series_kind

log = logging.getLogger(__name__)

CODE_BYTES = 32


def new_code() -> str:
    """The subscriber's code: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(CODE_BYTES)


def subscription_id(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: 'whsec_' + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_subscription(
    vault: Vault,
    filters: schemas.SubscriptionFilters,
    channel: str,
    webhook_url: str | None = None,
    email: str | None = None,
    email_confirmed: bool = False,
    created_at: datetime | None = None,
    alerts_from: list[int] | None = None,
) -> tuple[str, str | None, schemas.Subscription]:
    """A new subscription as stored (address and webhook secret sealed), with its code and the webhook
    secret in clear: both are shown to the subscriber once and never stored. `alerts_from`: see made_before."""
    code = new_code()
    secret = new_webhook_secret() if channel == "webhook" else None
    sub = schemas.Subscription(
        subscription_id=subscription_id(code),
        created_at=created_at or datetime.now(UTC),
        filters=filters,
        channel=channel,
        webhook_url=webhook_url,
        webhook_secret=vault.seal(secret) if secret else None,
        email=vault.seal(email) if email else None,
        email_confirmed=email_confirmed,
        alerts_from=alerts_from or [],
    )
    return code, secret, sub


def made_before(sub: schemas.Subscription, partition: int, offset: int) -> bool:
    """Was the subscription made before the alert at (`partition`, `offset`) of flashes.alerts.v3 was appended?

    Kafka's order decides, not a clock: `alerts_from` holds the end offset of each partition of the alerts
    topic when the API made the subscription, so a skew between the API's host and the broker's or the alerts
    service's changes nothing. A subscription without it (written before it existed) takes every alert."""
    return offset >= (sub.alerts_from[partition] if partition < len(sub.alerts_from) else 0)


def expired(sub: schemas.Subscription, now: datetime) -> bool:
    """Is it past its `confirm_by` (to be removed, never served): an e-mail address not confirmed in time, or a
    subscription left on channel `none` (it delivers nothing) past its deadline?"""
    return not sub.email_confirmed and sub.confirm_by is not None and now > sub.confirm_by


SUBSCRIPTION_ID = re.compile(rb"[0-9a-f]{64}")
WEBHOOK_LOOKUP_S = 10.0  # a subscribe-time lookup longer than this is refused (the API answers, not hangs)
CONFIRM_TOKEN = re.compile(r"^([0-9]{1,12})-([0-9a-f]{64})$")


class Vault:
    """Encrypts what must be readable again (e-mail addresses, webhook secrets) and signs mail links.

    Key rotation: `secret_keys` lists Fernet keys newest first (empty: [secret_key]). The newest seals
    and signs; every one opens and verifies (cryptography's MultiFernet), so secrets stored and links
    mailed before a new key was put first keep working for as long as their key stays in the list.
    """

    def __init__(self, settings: Settings) -> None:
        keys = [k.get_secret_value().encode() for k in settings.keys_in_use]
        self.fernet = MultiFernet([Fernet(k) for k in keys])
        self.mac_keys = [hashlib.sha256(b"flashes-links:" + k).digest() for k in keys]

    def seal(self, text: str) -> str:
        return self.fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SubscriptionError(
                "a stored secret does not decrypt with any of the keys in FLASHES_SECRET_KEYS (was its key removed?)"
            ) from exc

    def link_token(self, sub_id: str) -> str:
        """The token of an unsubscribe link, bound to the subscription alone, signed with the newest key."""
        return self._mac(self.mac_keys[0], f"unsubscribe:{sub_id}")

    def check_link(self, sub_id: str, token: str) -> bool:
        """Is it the token of this subscription's unsubscribe link under any of the keys?"""
        return self._verifies(f"unsubscribe:{sub_id}", token)

    def recipient(self, address: str) -> str:
        """The key of an address's mail budget: an HMAC, so that the budgets' memory holds no address. Case and a
        `+tag` (RFC 5233 subaddress) are dropped: they reach the same mailbox."""
        user, _, domain = address.lower().rpartition("@")
        return self._mac(self.mac_keys[0], f"recipient:{user.partition('+')[0]}@{domain}")

    def confirm_token(self, sub_id: str, address: str, expires: datetime) -> str:
        """The token of a confirmation link: `{expiry, Unix seconds}-{HMAC of id, address hash and expiry}`."""
        at = int(expires.timestamp())
        return f"{at}-{self._mac(self.mac_keys[0], self._confirmation(sub_id, address, at))}"

    def confirmation_expiry(self, sub_id: str, address: str, token: str) -> datetime | None:
        """The expiry a confirmation token carries if it was made for this subscription and this address under
        any of the keys; None for a forged token, another subscription's, or one mailed to another address."""
        parts = CONFIRM_TOKEN.match(token)
        if parts is None or not self._verifies(self._confirmation(sub_id, address, int(parts[1])), parts[2]):
            return None
        return datetime.fromtimestamp(int(parts[1]), UTC)

    @staticmethod
    def _confirmation(sub_id: str, address: str, at: int) -> str:
        return f"confirm:{sub_id}:{hashlib.sha256(address.encode()).hexdigest()}:{at}"

    def _verifies(self, message: str, token: str) -> bool:
        return any(
            hmac.compare_digest(self._mac(key, message).encode(), token.encode())  # bytes: any text
            for key in self.mac_keys
        )

    @staticmethod
    def _mac(key: bytes, message: str) -> str:
        return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


async def check_webhook_url(url: str, allow_loopback: bool, guard: Guard | None = None) -> None:
    """Refuse a URL that is not https or whose host is not public addresses only: the rule of flashes/netguard.py,
    which the delivery applies again at every connection (`guard`: a Guard with another resolver, for tests).

    `allow_loopback` (tests) accepts http(s) on a loopback address. The reasons name neither the host nor what it
    resolved to, and a host that does not resolve is refused in the same words as one that resolves inward: the
    answer tells nothing of the service's network or of its internal names.
    """
    parts = urlsplit(url)
    try:
        port = webhook_port(parts)
    except ValueError:
        raise SubscriptionError("webhook_url has an invalid port") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SubscriptionError("webhook_url must be an https URL with a host")
    try:
        async with asyncio.timeout(WEBHOOK_LOOKUP_S):
            addresses = await (guard or Guard(allow_loopback)).addresses(parts.hostname, port)
    except (RefusedAddress, TimeoutError):
        raise SubscriptionError(
            "webhook_url's host must resolve to public addresses only, not to loopback, "
            "private, link-local, reserved or translated (NAT64, 6to4, Teredo, IPv4-mapped) "
            "ones"
        ) from None
    if parts.scheme != "https" and not (allow_loopback and all(a.is_loopback for a in addresses)):
        raise SubscriptionError(f"webhook_url must use https, not {parts.scheme}")


def separation(cone: schemas.Cone, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Angular distance (degrees) of positions (degrees) from the cone's centre."""
    return np.degrees(angular_separation(*np.radians([cone.ra, cone.dec]), np.radians(ra), np.radians(dec)))


def in_cone(cone: schemas.Cone, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Which positions (degrees) lie within the cone."""
    return separation(cone, ra, dec) <= cone.radius


def sources_of(filters: schemas.SubscriptionFilters, records: Mapping[str, schemas.CatalogueSource]) -> list[str]:
    """The catalogue sources the source filters (sources, tags, instruments, cone) let through.

    One pass over the catalogue with set look-ups: O(catalogue + filters), whatever the lists' lengths."""
    wanted, tags, instruments = set(filters.sources), set(filters.tags), set(filters.instruments)
    ids = [
        i
        for i, r in records.items()
        if (not wanted or i in wanted)
        and (not tags or not tags.isdisjoint(r.labels_constant + r.labels_dynamic))
        and (not instruments or not instruments.isdisjoint(r.instruments))
    ]
    if filters.cone and ids:
        inside = in_cone(
            filters.cone, np.array([records[i].coord_ra for i in ids]), np.array([records[i].coord_dec for i in ids])
        )
        ids = [i for i, ok in zip(ids, inside) if ok]
    return sorted(ids)


def matches(filters: schemas.SubscriptionFilters, alert: schemas.Alert) -> bool:
    """Does an alert pass every filter given? History (`live` false) only if the subscription asks for it."""
    return (
        (alert.live or filters.history)
        and (not filters.sources or alert.source_id in filters.sources)
        and (not filters.tags or not set(filters.tags).isdisjoint(alert.tags))
        and (not filters.instruments or any(series_kind(s) in filters.instruments for s in alert.series))
        and (not filters.reasons or bool(set(filters.reasons) & set(alert.reasons)))
        and (not filters.alert_types or alert.alert_type in filters.alert_types)
        and alert.peak_relevance >= filters.min_relevance
        and (filters.cone is None or bool(in_cone(filters.cone, np.array([alert.ra]), np.array([alert.dec]))[0]))
    )


# What a record of each keyed topic is filed under. A record keyed otherwise (or not at all) was not written by the
# service that owns the topic: it would sit beside another source's alerts, or replace another subscription on
# the compacted topic. It is a dead letter; the API's view and the delivery's consumers check here, in one wording.
KEY_OF: dict[str, tuple[str, Callable[[Any], str]]] = {
    topics.SUBSCRIPTIONS.name: ("subscription id", lambda sub: sub.subscription_id),
    topics.DELIVERY_RETRY.name: ("subscription id", lambda task: task.subscription_id),
    topics.ALERTS.name: ("source id", lambda alert: alert.source_id),
}


def keyed(spec: topics.TopicSpec, key: bytes | None, value: Any) -> str:
    """The record's key if it is the one its decoded value is filed under; DecodeError with the reason otherwise.
    A tombstone (value None; spec.decode refuses one on every topic but the subscriptions) must be keyed by a
    subscription id."""
    what, key_of = KEY_OF[spec.name]
    if key is None:
        raise DecodeError(f"{spec.name}: a record without a key (they are keyed by {what})")
    if value is None:
        if not SUBSCRIPTION_ID.fullmatch(key):
            raise DecodeError(f"{spec.name}: the record's key is not a subscription id (64 hex digits)")
    elif key != key_of(value).encode():
        raise DecodeError(f"{spec.name}: the record's key is not its value's {what}")
    return key.decode()


class SubscriptionView:
    """Every live subscription, read from the compacted topic and kept up to date (a tombstone removes one).

    `caught_up()` waits until the view holds everything written before the call, so an alert is
    matched against every subscription acknowledged before it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscriptions: dict[str, schemas.Subscription] = {}
        self.position = 0
        self.consumer: AIOKafkaConsumer | None = None
        self.probe: AIOKafkaConsumer | None = None  # asks for the end offset on a connection of its own
        self.task: asyncio.Task | None = None
        self.tp = TopicPartition(topics.SUBSCRIPTIONS.name, 0)
        self.letters: AIOKafkaProducer | None = None  # dead letters: made when the first bad record comes

    async def start(self) -> None:
        self.consumer = kafka.consumer(self.settings, group_id=None, enable_auto_commit=False)
        self.probe = kafka.consumer(self.settings, group_id=None)
        await self.consumer.start()
        await self.probe.start()
        self.consumer.assign([self.tp])
        await self.consumer.seek_to_beginning(self.tp)
        self.task = asyncio.ensure_future(self._follow(self.consumer))
        await self.caught_up()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        for client in (self.consumer, self.probe, self.letters):
            if client:
                await client.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    try:
                        self.apply(r.key, r.value)
                    except DecodeError as exc:
                        await self._refuse(r, str(exc))
                    self.position = r.offset + 1

    def apply(self, key: bytes | str | None, value: bytes | None) -> None:
        """One record of the topic, as read (key bytes) or as the API wrote it (the id): a subscription filed under
        its own id, or a tombstone that revokes one; DecodeError with the reason for anything else (nothing
        changes)."""
        sub = None if value is None else topics.SUBSCRIPTIONS.decode(value)
        sub_id = keyed(topics.SUBSCRIPTIONS, key.encode() if isinstance(key, str) else key, sub)
        if sub is None:
            self.subscriptions.pop(sub_id, None)
        else:
            self.subscriptions[sub_id] = sub

    async def _refuse(self, record: ConsumerRecord, reason: str) -> None:
        """A record the view cannot use, to the dead letters (on a producer made for the first one). Its value is
        not copied: a subscription holds a webhook URL; the letter says where the record is. A letter Kafka does
        not take is logged and the record skipped: the follower goes on, or the view would go stale."""
        where = f"{record.topic} partition {record.partition} offset {record.offset}"
        try:
            if self.letters is None:
                letters = make_producer(self.settings)
                await letters.start()
                self.letters = letters
            await send_dead_letter(
                self.letters, dead_letter(topics.SUBSCRIPTIONS.name, reason, where, at_ms=record.timestamp)
            )
        except KafkaError as exc:
            log.error("%s: the dead letter was not sent (%s); the record is skipped", where, type(exc).__name__)

    async def caught_up(self, timeout_s: float = 30.0) -> None:
        assert self.probe is not None and self.task is not None  # start() made them before it waits here
        # Not the follower's connection: its idle long-poll fetch would hold the request up to 0.5 s.
        end = (await self.probe.end_offsets([self.tp]))[self.tp]
        async with asyncio.timeout(timeout_s):
            while self.position < end:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)

    def get(self, sub_id: str) -> schemas.Subscription | None:
        return self.subscriptions.get(sub_id)
