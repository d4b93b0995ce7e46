"""Subscriptions by code, without accounts: create, read, change, revoke, test, deliveries; e-mail links.

The code is returned once, at creation; it is the only key to the subscription (only its
SHA-256 is stored). Writes go to the compacted topic flashes.subscriptions.v1 and are answered
once Kafka acknowledged them; a revoke writes a tombstone and the delivery service stops at once.
A confirmation mail goes out only after its subscription is acknowledged (Kafka down: 503, no
mail); a mail that cannot be sent undoes the write. Every write is rate-limited per client
network (services/api/ratelimit.py); a subscription gets at most `confirmation_mails_per_day`
confirmation mails in any 24 h, however often its address changes, and so does an address, however
many subscriptions and networks ask. E-mail subscriptions not confirmed within `unconfirmed_days`,
and subscriptions left on channel `none` (it delivers nothing) as long, are removed (tombstones):
at the API's start, hourly, and when their code is used. The API writes one record per
subscription at a time (Store.locks).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, EmailStr, StringConstraints

import schemas
from flashes import clock, kafka, links, mail, topics
from flashes.errors import DeliveryError, SubscriptionError
from flashes.kafka import make_producer
from flashes.settings import Settings
from flashes.subscriptions import (CONFIRM_TOKEN, SUBSCRIPTION_ID, SubscriptionView, Vault, check_webhook_url,
                                   expired, new_subscription, new_webhook_secret, sources_of, subscription_id)
from flashes.timeconv import datetime_to_mjd
from flashes.keyedcap import KeyedCap
from services.api.ratelimit import Budget, RateLimit, client_network
from services.api.store import Reader

log = logging.getLogger(__name__)
CODE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
SWEEP_EVERY_S = 3600.0  # unconfirmed subscriptions live for days: an hourly sweep removes them within the hour
ClientT = TypeVar("ClientT", AIOKafkaProducer, AIOKafkaConsumer, SubscriptionView)
WebhookURL = Annotated[str, StringConstraints(max_length=schemas.URL_LENGTH)]  # EmailStr is bounded by itself


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: schemas.SubscriptionFilters = schemas.SubscriptionFilters()
    channel: schemas.Channel
    webhook_url: WebhookURL | None = None
    email: EmailStr | None = None


class SubscriptionChange(BaseModel):
    """PATCH: the fields to change; the others stay."""

    model_config = ConfigDict(extra="forbid")

    filters: schemas.SubscriptionFilters | None = None
    channel: schemas.Channel | None = None
    webhook_url: WebhookURL | None = None
    email: EmailStr | None = None


def masked(address: str) -> str:
    user, _, domain = address.partition("@")
    return f"{user[:1]}***@{domain}"


def unavailable(exc: Exception) -> HTTPException:
    """503 for a Kafka failure: the broker's own words name internal hosts, so only the error's class is told."""
    return HTTPException(503, f"the subscription store (Kafka) is unavailable ({type(exc).__name__}): nothing was "
                              "stored and no mail was sent; try again later")


class Store:
    """The API's Kafka side: the live view of the topic, a producer, and the alerts topic's end offsets (which
    date a new subscription in Kafka's order, see flashes.subscriptions.made_before); started on first use.

    `locks` holds one lock per subscription: a change reads the subscription, waits for Kafka's acknowledgement
    of the new record and may write the old one back (a mail that failed); without the lock, parallel requests
    would each start from the same snapshot and all pass the mail cap, or undo each other."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.view = SubscriptionView(settings)
        self.producer: AIOKafkaProducer | None = None
        self.offsets: AIOKafkaConsumer | None = None
        self.lock = asyncio.Lock()
        self.locks = KeyedCap(1)

    async def ready(self) -> "Store":
        """Start what is not running: at first use, after a record Kafka refused (the producer was dropped) and
        after the view's follower stopped (a new view reads the topic again; the old one serves until then)."""
        async with self.lock:
            if self.producer is None:
                self.producer = await started(make_producer(self.settings))
            if self.offsets is None:
                self.offsets = await started(kafka.consumer(self.settings, group_id=None))
            if self.view.task is None or self.view.task.done():
                view = await started(SubscriptionView(self.settings))
                stopped, self.view = self.view, view
                if stopped.task is not None:
                    log.warning("the subscription view's follower stopped (%s); the topic was read again",
                                "cancelled" if stopped.task.cancelled() else type(stopped.task.exception()).__name__)
                    await stopped.stop()
        return self

    async def close(self) -> None:
        for client in (self.producer, self.offsets, self.view):
            if client:
                await client.stop()

    async def send(self, topic: str, value: bytes | None, key: str) -> None:
        """One record, returned once Kafka acknowledged it (503 if it did not). After a refused record the
        idempotent producer has a gap in its sequence numbers and the broker refuses each of its later batches
        (OutOfOrderSequenceNumber), so a failed send drops the producer: the next request makes a new one."""
        producer = (await self.ready()).producer
        try:
            await producer.send_and_wait(topic, value, key=key.encode())
        except KafkaError as exc:
            async with self.lock:
                if self.producer is producer:
                    self.producer = None
                    with contextlib.suppress(Exception):
                        await producer.stop()
            raise unavailable(exc) from None

    async def write(self, sub_id: str, sub: schemas.Subscription | None) -> None:
        """Write (or revoke, with None) a subscription; returns once Kafka acknowledged it (503 if it did not)."""
        value = topics.SUBSCRIPTIONS.encode(sub) if sub else None
        await self.send(topics.SUBSCRIPTIONS.name, value, sub_id)
        self.view.apply(sub_id, value)

    async def alerts_end(self) -> list[int]:
        """The end offset of each partition of the alerts topic now: a subscription made now gets the alerts
        appended from there on."""
        tps = [TopicPartition(topics.ALERTS.name, p) for p in range(topics.ALERTS.partitions)]
        try:
            ends = await self.offsets.end_offsets(tps)
        except KafkaError as exc:
            raise unavailable(exc) from None
        return [ends[tp] for tp in tps]

    async def by_code(self, code: str) -> schemas.Subscription:
        await self.ready()
        sub = self.view.get(subscription_id(code)) if CODE.match(code) else None
        if sub is not None and expired(sub, clock.now(self.settings)):
            await self.write(sub.subscription_id, None)
            sub = None
        if sub is None:
            raise HTTPException(404, "no subscription has this code: it is wrong or was revoked (or it expired: its "
                                     "e-mail address was not confirmed, or it stayed on channel none, in time)")
        return sub

    async def sweep(self) -> int:
        """Remove (tombstone) every subscription past its `confirm_by`; how many."""
        now, removed = clock.now(self.settings), 0
        for sub_id in [i for i, sub in list(self.view.subscriptions.items()) if expired(sub, now)]:
            async with self.locks.hold(sub_id):
                sub = self.view.get(sub_id)
                if sub is not None and expired(sub, now):
                    await self.write(sub_id, None)
                    removed += 1
        return removed

    async def keep_clean(self, every_s: float = SWEEP_EVERY_S) -> None:
        """Remove the expired subscriptions: at the API's start, then hourly (run by the app). A turn that fails
        (Kafka away, or anything else) is logged by the error's class, and the next turn tries again."""
        while True:
            try:
                await self.ready()
                if removed := await self.sweep():
                    log.info("removed %d expired subscription(s)", removed)
            except Exception as exc:  # noqa: BLE001 - the sweeper must outlive any one failure
                log.warning("the sweep of expired subscriptions failed (%s); the next in %g s",
                            exc.detail if isinstance(exc, HTTPException) else type(exc).__name__, every_s)
            await asyncio.sleep(every_s)


async def started(client: ClientT) -> ClientT:
    """The client, started; a Kafka error or timeout is a 503, and nothing is left open."""
    try:
        await client.start()
    except BaseException as exc:  # the app stopping meanwhile, too
        with contextlib.suppress(Exception):
            await client.stop()
        if isinstance(exc, KafkaError | TimeoutError):
            raise unavailable(exc) from None
        raise
    return client


def router(settings: Settings, records: dict[str, dict[str, Any]], tags: set[str], subs: Store,
           reader: Reader) -> APIRouter:
    api = APIRouter(prefix="/subscriptions", tags=["subscriptions"])
    vault = Vault(settings)
    creations = RateLimit(settings.subscriptions_per_hour, "new subscriptions", settings.rate_limit_networks)
    writes = RateLimit(settings.writes_per_hour, "changes", settings.rate_limit_networks)
    mails = settings.confirmation_mails_per_day
    recipients = Budget(mails, 86400.0, f"at most {mails} confirmation mails to one address in 24 hours, whatever "
                                        "the subscriptions and networks asking", settings.rate_limit_networks)
    link_life = timedelta(hours=settings.confirm_link_hours)
    pending = timedelta(days=settings.unconfirmed_days)
    mail_day = timedelta(days=1)

    async def checked(filters: schemas.SubscriptionFilters, channel: str, webhook_url: str | None,
                      email: str | None) -> list[str]:
        """The sources the filters select; 422 with the reason for anything invalid."""
        unknown = [s for s in filters.sources if s not in records]
        if unknown:
            raise HTTPException(422, f"unknown source {unknown[0]!r}; the known ones are listed at /sources")
        unknown = [t for t in filters.tags if t not in tags]
        if unknown:
            raise HTTPException(422, f"unknown tag {unknown[0]!r}; the known ones are listed at /tags")
        need = {"webhook": ("webhook_url", webhook_url), "email": ("email", email)}
        for name, (field, value) in need.items():
            if channel == name and not value:
                raise HTTPException(422, f"channel {name!r} needs {field}")
            if channel != name and value:
                raise HTTPException(422, f"{field} is only for channel {name!r}, not {channel!r}")
        if webhook_url:
            try:
                await check_webhook_url(webhook_url, settings.webhook_allow_loopback)
            except SubscriptionError as exc:
                raise HTTPException(422, str(exc)) from exc
        sources = sources_of(filters, records)
        if not sources:
            raise HTTPException(422, "these filters select no catalogue source")
        return sources

    def mail_allowance(sub: schemas.Subscription | None, now: datetime) -> list[datetime]:
        """The confirmation mails of the last 24 h, with one more for now; 429 when the cap is reached."""
        recent = [t for t in (sub.confirmations if sub else []) if t > now - mail_day]
        cap = settings.confirmation_mails_per_day
        if len(recent) >= cap:
            wait = math.ceil((min(recent) + mail_day - now).total_seconds())
            raise HTTPException(429, f"at most {cap} confirmation mails per subscription in 24 hours: this address "
                                     f"can be given again in {wait} s", headers={"Retry-After": str(wait)})
        return [*recent, now]

    async def confirm_by_mail(sub: schemas.Subscription, email: str, sources: list[str], now: datetime) -> None:
        """The confirmation mail, its link bound to this subscription, this address and an expiry."""
        token = vault.confirm_token(sub.subscription_id, email, now + link_life)
        url = f"{settings.api_url}/subscriptions/confirm?id={sub.subscription_id}&token={token}"
        summary = f"{len(sources)} source(s): {', '.join(sources[:10])}{' …' if len(sources) > 10 else ''}"
        await mail.send(settings, mail.confirmation_message(settings, email, url, summary))

    def address(sub: schemas.Subscription | None) -> str | None:
        if sub is None or sub.email is None:
            return None
        try:
            return vault.open(sub.email)
        except SubscriptionError:  # sealed under a key no longer configured: no link can be checked against it
            return None

    def public(sub: schemas.Subscription) -> dict[str, Any]:
        email = address(sub)
        return {"subscription_id": sub.subscription_id, "created_at": sub.created_at,
                "filters": sub.filters.model_dump(), "channel": sub.channel, "webhook_url": sub.webhook_url,
                "email": masked(email) if email else None, "email_confirmed": sub.email_confirmed,
                "confirm_by": sub.confirm_by, "sources": sources_of(sub.filters, records)}

    @api.post("", status_code=201, summary="Subscribe; the answer holds the code, shown this once")
    async def create(body: SubscriptionRequest, request: Request) -> dict[str, Any]:
        creations.check(client_network(request))
        sources = await checked(body.filters, body.channel, body.webhook_url, body.email)
        await subs.ready()
        now = clock.now(settings)
        code, secret, sub = new_subscription(vault, body.filters, body.channel, body.webhook_url, body.email,
                                             created_at=now, alerts_from=await subs.alerts_end())
        if body.channel != "webhook":  # an address to confirm, or no channel yet: either is removed if it stays so
            sub = sub.model_copy(update={"confirm_by": now + pending, "confirmations": [now] if body.email else []})
        if body.email:
            recipients.check(vault.recipient(body.email))
        await subs.write(sub.subscription_id, sub)
        if body.email:
            try:
                await confirm_by_mail(sub, body.email, sources, now)
            except DeliveryError as exc:
                await subs.write(sub.subscription_id, None)
                raise HTTPException(503, f"the confirmation mail could not be sent ({exc}); nothing was kept") from None
        return {"code": code, "webhook_secret": secret, **public(sub),
                "note": "keep the code: it reads, changes and revokes this subscription and is not shown again"
                        + ("; open the link in the confirmation mail to start e-mails" if body.email else "")
                        + ("; channel none delivers nothing: give it a channel before confirm_by, or it is removed"
                           if body.channel == "none" else "")}

    @api.get("/confirm", response_class=HTMLResponse, summary="The e-mail confirmation page")
    async def confirm_page(id: str = Query(max_length=64),  # noqa: A002 - the link's parameter
                           token: str = Query(max_length=100)) -> str:
        return ("<!doctype html><title>Confirm</title><form method=post>"
                f"<input type=hidden name=id value='{id if SUBSCRIPTION_ID.fullmatch(id.encode()) else ''}'>"
                f"<input type=hidden name=token value='{token if CONFIRM_TOKEN.match(token) else ''}'>"
                "<p>Start FLASHES stream alert mails to this address?</p><button>Confirm</button></form>")

    @api.post("/confirm", response_class=HTMLResponse, summary="Confirm an e-mail address (double opt-in)")
    async def confirm(request: Request, id: str = Form(max_length=64),  # noqa: A002
                      token: str = Form(max_length=100)) -> str:
        writes.check(client_network(request))
        await subs.ready()
        async with subs.locks.hold(id):
            now, sub = clock.now(settings), subs.view.get(id)
            email = address(sub)
            until = vault.confirmation_expiry(id, email, token) if email else None
            if sub is None or until is None or expired(sub, now):
                raise HTTPException(404, "this confirmation link is wrong, its address was changed after it was "
                                         "mailed, or its subscription was revoked or not confirmed in time")
            if until < now:
                raise HTTPException(404, f"this confirmation link expired ({settings.confirm_link_hours:g} h after it "
                                         "was mailed); give the address again (PATCH, or the manage page) for a new one")
            await subs.write(id, sub.model_copy(update={"email_confirmed": True, "confirm_by": None}))
        return "<!doctype html><title>Confirmed</title><p>Confirmed: alerts will now be mailed to this address.</p>"

    @api.post("/unsubscribe", summary="One-click unsubscribe (RFC 8058), the link in every alert mail")
    async def unsubscribe(id: str = Query(max_length=64), token: str = Query(max_length=100)) -> Response:  # noqa: A002
        # Not rate-limited: mail providers click these for their users, many from one network; the token is
        # checked before anything is written.
        await subs.ready()
        if not vault.check_link(id, token):
            raise HTTPException(404, "this unsubscribe link is wrong")
        async with subs.locks.hold(id):
            if subs.view.get(id):
                await subs.write(id, None)
        return HTMLResponse("<!doctype html><title>Unsubscribed</title><p>Unsubscribed: no more mails.</p>")

    @api.get("/unsubscribe", response_class=HTMLResponse, summary="The unsubscribe page of a mail's link")
    async def unsubscribe_page() -> str:
        return ("<!doctype html><title>Unsubscribe</title><form method=post>"
                "<p>Stop these FLASHES stream alert mails?</p><button>Unsubscribe</button></form>")

    @api.get("/{code}", summary="A subscription, read with its code")
    async def read(code: str) -> dict[str, Any]:
        return public(await subs.by_code(code))

    @api.patch("/{code}", summary="Change filters or channel; a new e-mail address is confirmed again")
    async def change(code: str, body: SubscriptionChange, request: Request) -> dict[str, Any]:
        writes.check(client_network(request))
        async with subs.locks.hold(subscription_id(code)):
            return await changed(await subs.by_code(code), body)

    async def changed(sub: schemas.Subscription, body: SubscriptionChange) -> dict[str, Any]:
        """PATCH's work, under the subscription's lock."""
        given = body.model_dump(exclude_unset=True)
        current = address(sub)
        channel = given.get("channel", sub.channel)
        webhook_url = given.get("webhook_url", sub.webhook_url if channel == "webhook" else None)
        email = given.get("email", current if channel == "email" else None)
        filters = body.filters or sub.filters
        sources = await checked(filters, channel, webhook_url, email)
        secret = new_webhook_secret() if channel == "webhook" and not sub.webhook_secret else None
        now = clock.now(settings)
        new_email = email is not None and email != current
        if email is None:  # a webhook, or channel none: removed at its deadline, set when it became none
            was_none = sub.channel == "none" and sub.confirm_by is not None
            deadline = None if channel != "none" else sub.confirm_by if was_none else now + pending
            address_fields: dict[str, Any] = {"email": None, "email_confirmed": False, "confirm_by": deadline}
        elif new_email:  # confirmed again, by a link bound to the new address; earlier links no longer confirm
            address_fields = {"email": vault.seal(email), "email_confirmed": False, "confirm_by": now + pending,
                              "confirmations": mail_allowance(sub, now)}
            recipients.check(vault.recipient(email))
        else:
            address_fields = {}
        updated = sub.model_copy(update={
            "filters": filters, "channel": channel, "webhook_url": webhook_url,
            "webhook_secret": (vault.seal(secret) if secret else sub.webhook_secret) if channel == "webhook" else None,
            **address_fields})
        await subs.write(sub.subscription_id, updated)
        if new_email:
            try:
                await confirm_by_mail(updated, email, sources, now)
            except DeliveryError as exc:
                await subs.write(sub.subscription_id, sub)
                raise HTTPException(503, f"the confirmation mail could not be sent ({exc}); nothing was changed") \
                    from None
        return {**public(updated), **({"webhook_secret": secret} if secret else {})}

    @api.delete("/{code}", status_code=204, summary="Revoke: delivery stops at once")
    async def revoke(code: str, request: Request) -> Response:
        writes.check(client_network(request))
        async with subs.locks.hold(subscription_id(code)):
            sub = await subs.by_code(code)
            await subs.write(sub.subscription_id, None)
        return Response(status_code=204)

    @api.get("/{code}/sources", summary="The catalogue sources the subscription's filters select")
    async def sources(code: str) -> dict[str, list[str]]:
        return {"sources": sources_of((await subs.by_code(code)).filters, records)}

    @api.get("/{code}/deliveries", summary="The delivery log: every attempt, newest first")
    async def deliveries(code: str, limit: int = Query(100, ge=1, le=10000)) -> list[dict]:
        sub = await subs.by_code(code)
        return await reader.deliveries(sub.subscription_id, limit)

    @api.post("/{code}/test", status_code=202, summary="Send a test alert (marked test) through the channel")
    async def test(code: str, request: Request) -> dict[str, str]:
        writes.check(client_network(request))
        sub = await subs.by_code(code)
        alert = test_alert(settings, records[sources_of(sub.filters, records)[0]])
        task = schemas.DeliveryTask(subscription_id=sub.subscription_id, alert=alert, attempt=1,
                                    due=datetime.now(timezone.utc))
        await subs.send(topics.DELIVERY_RETRY.name, topics.DELIVERY_RETRY.encode(task), sub.subscription_id)
        return {"alert_id": alert.alert_id, "status": "queued for delivery; see /subscriptions/{code}/deliveries"}

    return api


def test_alert(settings: Settings, record: dict[str, Any]) -> schemas.Alert:
    """An alert marked as a test, about one of the subscription's sources, now."""
    at = datetime.now(timezone.utc)
    return schemas.Alert(
        **links.alert_source(settings, record),
        alert_id=f"{record['_id']}@test-{uuid.uuid4().hex[:12]}", record_number=1, alert_type="onset", test=True,
        live=True, raised_at=at, series=[], trigger_series="", time=at,
        mjd=datetime_to_mjd(at), onset_time=at, onset_mjd=datetime_to_mjd(at), relevance=0.0, peak_relevance=0.0,
        terms=schemas.RelevanceTerms(model=0.0, hardness=0.0, flux=0.0, trend=0.0), reasons=[],
        change="a test of this subscription's channel", model_version="test",
        explanation=f"This is a test alert about {record['integral_name']}: nothing happened to the source.",
        last_points=[], freshness={})
