"""Subscriptions by code, without accounts: create, read, change, revoke, test, deliveries; e-mail links.

The code is returned once, at creation; it is the only key to the subscription (only its
SHA-256 is stored). Writes go to the compacted topic flashes.subscriptions.v1 and are answered
once Kafka acknowledged them; a revoke writes a tombstone and the delivery service stops at once.
"""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, EmailStr

import schemas
from flashes import links, mail, topics
from flashes.errors import DeliveryError, SubscriptionError
from flashes.kafka import make_producer
from flashes.settings import Settings
from flashes.subscriptions import (SubscriptionView, Vault, check_webhook_url, new_subscription, new_webhook_secret,
                                   sources_of, subscription_id)
from flashes.timeconv import datetime_to_mjd
from services.api.store import Reader

CODE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
SUB_ID = re.compile(r"^[0-9a-f]{64}$")


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: schemas.SubscriptionFilters = schemas.SubscriptionFilters()
    channel: schemas.Channel
    webhook_url: str | None = None
    email: EmailStr | None = None


class SubscriptionChange(BaseModel):
    """PATCH: the fields to change; the others stay."""

    model_config = ConfigDict(extra="forbid")

    filters: schemas.SubscriptionFilters | None = None
    channel: schemas.Channel | None = None
    webhook_url: str | None = None
    email: EmailStr | None = None


def masked(address: str) -> str:
    user, _, domain = address.partition("@")
    return f"{user[:1]}***@{domain}"


class RateLimit:
    """At most `per_hour` calls per client address in any hour."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self.calls: dict[str, deque[float]] = defaultdict(deque)

    def check(self, client: str) -> None:
        now, calls = time.monotonic(), self.calls[client]
        while calls and calls[0] < now - 3600:
            calls.popleft()
        if len(calls) >= self.per_hour:
            raise HTTPException(429, f"too many subscriptions from this address: at most {self.per_hour} per hour",
                                headers={"Retry-After": str(int(calls[0] + 3600 - now) + 1)})
        calls.append(now)


class Store:
    """The API's Kafka side: the live view of the topic and a producer, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.view = SubscriptionView(settings)
        self.producer: AIOKafkaProducer | None = None
        self.lock = asyncio.Lock()

    async def ready(self) -> "Store":
        async with self.lock:
            if self.producer is None:
                producer = make_producer(self.settings)
                await producer.start()
                await self.view.start()
                self.producer = producer
        return self

    async def close(self) -> None:
        if self.producer:
            await self.producer.stop()
            await self.view.stop()

    async def write(self, sub_id: str, sub: schemas.Subscription | None) -> None:
        """Write (or revoke, with None) a subscription; returns once Kafka acknowledged it."""
        value = topics.SUBSCRIPTIONS.encode(sub) if sub else None
        await self.producer.send_and_wait(topics.SUBSCRIPTIONS.name, value, key=sub_id.encode())
        self.view.apply(sub_id, value)

    async def by_code(self, code: str) -> schemas.Subscription:
        await self.ready()
        sub = self.view.get(subscription_id(code)) if CODE.match(code) else None
        if sub is None:
            raise HTTPException(404, "no subscription has this code: it is wrong or was revoked")
        return sub


def router(settings: Settings, records: dict[str, dict[str, Any]], tags: set[str], subs: Store,
           reader: Reader) -> APIRouter:
    api = APIRouter(prefix="/subscriptions", tags=["subscriptions"])
    vault = Vault(settings)
    limit = RateLimit(settings.subscriptions_per_hour)

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

    async def confirm_by_mail(sub: schemas.Subscription, email: str, sources: list[str]) -> None:
        token = vault.link_token("confirm", sub.subscription_id)
        url = f"{settings.api_url}/subscriptions/confirm?id={sub.subscription_id}&token={token}"
        summary = f"{len(sources)} source(s): {', '.join(sources[:10])}{' …' if len(sources) > 10 else ''}"
        try:
            await mail.send(settings, mail.confirmation_message(settings, email, url, summary))
        except DeliveryError as exc:
            raise HTTPException(503, f"the confirmation mail could not be sent ({exc}); nothing was stored") from exc

    def public(sub: schemas.Subscription) -> dict[str, Any]:
        return {"subscription_id": sub.subscription_id, "created_at": sub.created_at,
                "filters": sub.filters.model_dump(), "channel": sub.channel, "webhook_url": sub.webhook_url,
                "email": masked(vault.open(sub.email)) if sub.email else None,
                "email_confirmed": sub.email_confirmed, "sources": sources_of(sub.filters, records)}

    @api.post("", status_code=201, summary="Subscribe; the answer holds the code, shown this once")
    async def create(body: SubscriptionRequest, request: Request) -> dict[str, Any]:
        limit.check(request.client.host if request.client else "unknown")
        sources = await checked(body.filters, body.channel, body.webhook_url, body.email)
        await subs.ready()
        code, secret, sub = new_subscription(vault, body.filters, body.channel, body.webhook_url, body.email)
        if body.email:
            await confirm_by_mail(sub, body.email, sources)
        await subs.write(sub.subscription_id, sub)
        return {"code": code, "webhook_secret": secret, **public(sub),
                "note": "keep the code: it reads, changes and revokes this subscription and is not shown again"
                        + ("; open the link in the confirmation mail to start e-mails" if body.email else "")}

    @api.get("/confirm", response_class=HTMLResponse, summary="The e-mail confirmation page")
    async def confirm_page(id: str, token: str) -> str:  # noqa: A002 - the link's parameter
        return ("<!doctype html><title>Confirm</title><form method=post>"
                f"<input type=hidden name=id value='{id if SUB_ID.match(id) else ''}'>"
                f"<input type=hidden name=token value='{token if token.isalnum() else ''}'>"
                "<p>Start FLASHES stream alert mails to this address?</p><button>Confirm</button></form>")

    @api.post("/confirm", response_class=HTMLResponse, summary="Confirm an e-mail address (double opt-in)")
    async def confirm(id: str = Form(), token: str = Form()) -> str:  # noqa: A002
        await subs.ready()
        sub = subs.view.get(id)
        if sub is None or not vault.check_link("confirm", id, token):
            raise HTTPException(404, "this confirmation link is wrong or its subscription was revoked")
        await subs.write(id, sub.model_copy(update={"email_confirmed": True}))
        return "<!doctype html><title>Confirmed</title><p>Confirmed: alerts will now be mailed to this address.</p>"

    @api.post("/unsubscribe", summary="One-click unsubscribe (RFC 8058), the link in every alert mail")
    async def unsubscribe(id: str = Query(), token: str = Query()) -> Response:  # noqa: A002
        await subs.ready()
        if not vault.check_link("unsubscribe", id, token):
            raise HTTPException(404, "this unsubscribe link is wrong")
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
    async def change(code: str, body: SubscriptionChange) -> dict[str, Any]:
        sub = await subs.by_code(code)
        given = body.model_dump(exclude_unset=True)
        current = vault.open(sub.email) if sub.email else None
        channel = given.get("channel", sub.channel)
        webhook_url = given.get("webhook_url", sub.webhook_url if channel == "webhook" else None)
        email = given.get("email", current if channel == "email" else None)
        filters = body.filters or sub.filters
        sources = await checked(filters, channel, webhook_url, email)
        secret = new_webhook_secret() if channel == "webhook" and not sub.webhook_secret else None
        new_email = email is not None and email != current
        updated = sub.model_copy(update={
            "filters": filters, "channel": channel, "webhook_url": webhook_url,
            "webhook_secret": (vault.seal(secret) if secret else sub.webhook_secret) if channel == "webhook" else None,
            "email": (vault.seal(email) if new_email else sub.email) if email else None,
            "email_confirmed": sub.email_confirmed and email is not None and not new_email})
        if new_email:
            await confirm_by_mail(updated, email, sources)
        await subs.write(sub.subscription_id, updated)
        return {**public(updated), **({"webhook_secret": secret} if secret else {})}

    @api.delete("/{code}", status_code=204, summary="Revoke: delivery stops at once")
    async def revoke(code: str) -> Response:
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
    async def test(code: str) -> dict[str, str]:
        sub = await subs.by_code(code)
        alert = test_alert(settings, records[sources_of(sub.filters, records)[0]])
        task = schemas.DeliveryTask(subscription_id=sub.subscription_id, alert=alert, attempt=1,
                                    due=datetime.now(timezone.utc))
        await subs.producer.send_and_wait(topics.DELIVERY_RETRY.name, topics.DELIVERY_RETRY.encode(task),
                                            key=sub.subscription_id.encode())
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
