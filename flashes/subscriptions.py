"""Subscriptions without accounts: codes, secrets at rest, webhook URL checks, matching, and the live view.

A subscriber holds a random code (256 bits); only its SHA-256 (`subscription_id`) is stored.
E-mail addresses and webhook secrets are stored encrypted with the settings' Fernet keys; links
in mails (confirm, unsubscribe) carry an HMAC of the subscription id, so they need no storage.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, TopicPartition
from astropy.coordinates import angular_separation
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
import numpy as np

import schemas
from flashes import topics
from flashes.errors import DecodeError, SubscriptionError
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


def new_subscription(vault: "Vault", filters: schemas.SubscriptionFilters, channel: str,
                     webhook_url: str | None = None, email: str | None = None,
                     email_confirmed: bool = False) -> tuple[str, str | None, schemas.Subscription]:
    """A new subscription as stored (address and webhook secret sealed), with its code and the webhook
    secret in clear: both are shown to the subscriber once and never stored."""
    code = new_code()
    secret = new_webhook_secret() if channel == "webhook" else None
    sub = schemas.Subscription(
        subscription_id=subscription_id(code), created_at=datetime.now(timezone.utc), filters=filters,
        channel=channel, webhook_url=webhook_url, webhook_secret=vault.seal(secret) if secret else None,
        email=vault.seal(email) if email else None, email_confirmed=email_confirmed)
    return code, secret, sub


class Vault:
    """Encrypts what must be readable again (e-mail addresses, webhook secrets) and signs mail links.

    Key rotation: `secret_keys` lists Fernet keys newest first (empty: [secret_key]). The newest seals
    and signs; every one opens and verifies (cryptography's MultiFernet), so secrets stored and links
    mailed before a new key was put first keep working for as long as their key stays in the list.
    """

    def __init__(self, settings: Settings) -> None:
        keys = [k.encode() for k in settings.secret_keys or [settings.secret_key]]
        self.fernet = MultiFernet([Fernet(k) for k in keys])
        self.mac_keys = [hashlib.sha256(b"flashes-links:" + k).digest() for k in keys]

    def seal(self, text: str) -> str:
        return self.fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SubscriptionError("a stored secret does not decrypt with any of the keys in "
                                    "FLASHES_SECRET_KEYS (was its key removed?)") from exc

    def link_token(self, purpose: str, sub_id: str) -> str:
        """The token of a confirm or unsubscribe link for one subscription, signed with the newest key."""
        return self._mac(self.mac_keys[0], purpose, sub_id)

    def check_link(self, purpose: str, sub_id: str, token: str) -> bool:
        """Does the token verify under any of the keys?"""
        return any(hmac.compare_digest(self._mac(key, purpose, sub_id).encode(), token.encode())  # bytes: any text
                   for key in self.mac_keys)

    @staticmethod
    def _mac(key: bytes, purpose: str, sub_id: str) -> str:
        return hmac.new(key, f"{purpose}:{sub_id}".encode(), hashlib.sha256).hexdigest()


async def check_webhook_url(url: str, allow_loopback: bool) -> None:
    """Refuse URLs that are not https or that resolve to loopback, private, link-local or reserved addresses.

    `allow_loopback` (tests) accepts http(s) on a loopback address.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SubscriptionError(f"webhook_url must be an https URL with a host, not {url!r}")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SubscriptionError(f"webhook_url host {parts.hostname!r} does not resolve: {exc.strerror}") from exc
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    if allow_loopback and all(a.is_loopback for a in addresses):
        return
    if parts.scheme != "https":
        raise SubscriptionError(f"webhook_url must use https, not {parts.scheme}")
    bad = sorted(str(a) for a in addresses if not a.is_global)
    if bad:
        raise SubscriptionError(f"webhook_url host {parts.hostname!r} resolves to a loopback, private, link-local "
                                f"or reserved address ({', '.join(bad)}); webhooks go to public addresses only")


def separation(cone: schemas.Cone, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Angular distance (degrees) of positions (degrees) from the cone's centre."""
    return np.degrees(angular_separation(*np.radians([cone.ra, cone.dec]), np.radians(ra), np.radians(dec)))


def in_cone(cone: schemas.Cone, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Which positions (degrees) lie within the cone."""
    return separation(cone, ra, dec) <= cone.radius


def sources_of(filters: schemas.SubscriptionFilters, records: dict[str, dict[str, Any]]) -> list[str]:
    """The catalogue sources the source filters (sources, tags, instruments, cone) let through."""
    ids = [i for i, r in records.items()
           if (not filters.sources or i in filters.sources)
           and (not filters.tags or set(filters.tags) & set(r["labels_constant"] + r["labels_dynamic"]))
           and (not filters.instruments or any(r[i] for i in filters.instruments))]
    if filters.cone and ids:
        inside = in_cone(filters.cone, np.array([records[i]["coord_ra"] for i in ids]),
                         np.array([records[i]["coord_dec"] for i in ids]))
        ids = [i for i, ok in zip(ids, inside) if ok]
    return sorted(ids)


def matches(filters: schemas.SubscriptionFilters, alert: schemas.Alert) -> bool:
    """Does an alert pass every filter given? History (`live` false) only if the subscription asks for it."""
    return ((alert.live or filters.history)
            and (not filters.sources or alert.source_id in filters.sources)
            and (not filters.tags or bool(set(filters.tags) & set(alert.tags)))
            and (not filters.instruments
                 or any(series_kind(s) in filters.instruments for s in alert.series))
            and (not filters.reasons or bool(set(filters.reasons) & set(alert.reasons)))
            and (not filters.alert_types or alert.alert_type in filters.alert_types)
            and alert.peak_relevance >= filters.min_relevance
            and (filters.cone is None or bool(in_cone(filters.cone, np.array([alert.ra]), np.array([alert.dec]))[0])))


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

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                         enable_auto_commit=False)
        self.probe = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None)
        await self.consumer.start()
        await self.probe.start()
        self.consumer.assign([self.tp])
        await self.consumer.seek_to_beginning(self.tp)
        self.task = asyncio.ensure_future(self._follow())
        await self.caught_up()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        for client in (self.consumer, self.probe):
            if client:
                await client.stop()

    async def _follow(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.key is None:  # not written by the API: no subscription id to file it under
                        log.error("subscription record at offset %d skipped: it has no key", r.offset)
                    else:
                        self.apply(r.key.decode(errors="replace"), r.value)
                    self.position = r.offset + 1

    def apply(self, key: str, value: bytes | None) -> None:
        """One record of the topic: a subscription, or a tombstone that revokes it."""
        if value is None:
            self.subscriptions.pop(key, None)
            return
        try:
            self.subscriptions[key] = topics.SUBSCRIPTIONS.decode(value)
        except DecodeError as exc:
            log.error("subscription record skipped: %s", exc)

    async def caught_up(self, timeout_s: float = 30.0) -> None:
        # Not the follower's connection: its idle long-poll fetch would hold the request up to 0.5 s.
        end = (await self.probe.end_offsets([self.tp]))[self.tp]
        async with asyncio.timeout(timeout_s):
            while self.position < end:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)

    def get(self, sub_id: str) -> schemas.Subscription | None:
        return self.subscriptions.get(sub_id)
