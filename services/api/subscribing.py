"""The API's subscription service: create, read, change, revoke, test, list deliveries, by code; e-mail links.
The JSON routes (routers/subscriptions.py) and the pages (routers/pages.py) both call this service.

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
subscription at a time (Store.locks). Refusals are the typed errors of services/api/problems.py.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import schemas
from flashes import clock, links, smtp, topics
from flashes.errors import DeliveryError, SubscriptionError
from flashes.settings import Settings
from flashes.subscriptions import (
    Vault,
    check_webhook_url,
    expired,
    new_subscription,
    new_webhook_secret,
    sources_of,
    subscription_id,
)
from flashes.timeconv import datetime_to_mjd
from services.api.models import (
    Delivery,
    QueuedTest,
    SubscriptionChange,
    SubscriptionChanged,
    SubscriptionCreated,
    SubscriptionRead,
    SubscriptionRequest,
)
from services.api.problems import Invalid, NotFound, TooMany, Unavailable
from services.api.ratelimit import Budget, RateLimit
from services.api.store import Reader
from services.api.subscription_store import Store

MAIL_DAY = timedelta(days=1)


def masked(address: str) -> str:
    user, _, domain = address.partition("@")
    return f"{user[:1]}***@{domain}"


class Subscriptions:
    """The subscription service over the catalogue's records, the Kafka store and the QuestDB reader (the
    delivery log). `network` is the client's network (ratelimit.client_network): every write draws on its
    budget, the same whether it came as JSON or from a page."""

    def __init__(
        self,
        settings: Settings,
        records: dict[str, schemas.CatalogueSource],
        tags: set[str],
        store: Store,
        reader: Reader,
    ) -> None:
        self.settings, self.records, self.tags, self.store, self.reader = settings, records, tags, store, reader
        self.vault = Vault(settings)
        self.creations = RateLimit(settings.subscriptions_per_hour, "new subscriptions", settings.rate_limit_networks)
        self.writes = RateLimit(settings.writes_per_hour, "changes", settings.rate_limit_networks)
        cap = settings.confirmation_mails_per_day
        self.recipients = Budget(
            cap,
            86400.0,
            f"at most {cap} confirmation mails to one address in 24 hours, "
            "whatever the subscriptions and networks asking",
            settings.rate_limit_networks,
        )
        self.pending = timedelta(days=settings.unconfirmed_days)

    # ------------------------------------------------------------------------------------------ the routes' work
    async def create(self, body: SubscriptionRequest, network: str) -> SubscriptionCreated:
        """A new subscription; with an address, its confirmation mail (a mail that fails undoes it)."""
        self.creations.check(network)
        sources = await self.checked(body.filters, body.channel, body.webhook_url, body.email)
        await self.store.ready()
        now = clock.now(self.settings)
        code, secret, sub = new_subscription(
            self.vault,
            body.filters,
            body.channel,
            body.webhook_url,
            body.email,
            created_at=now,
            alerts_from=await self.store.alerts_end(),
        )
        if body.channel != "webhook":  # an address to confirm, or no channel yet: either is removed if it stays so
            sub = sub.model_copy(
                update={"confirm_by": now + self.pending, "confirmations": [now] if body.email else []}
            )
        if body.email:
            self.recipients.check(self.vault.recipient(body.email))
        await self.store.write(sub.subscription_id, sub)
        if body.email:
            try:
                await self.confirm_by_mail(sub, body.email, sources, now)
            except DeliveryError as exc:
                await self.store.write(sub.subscription_id, None)
                raise Unavailable(f"the confirmation mail could not be sent ({exc}); nothing was kept") from None
        note = (
            "keep the code: it reads, changes and revokes this subscription and is not shown again"
            + ("; open the link in the confirmation mail to start e-mails" if body.email else "")
            + (
                "; channel none delivers nothing: give it a channel before confirm_by, or it is removed"
                if body.channel == "none"
                else ""
            )
        )
        return SubscriptionCreated(**self.public(sub, sources), code=code, webhook_secret=secret, note=note)

    async def read(self, code: str) -> SubscriptionRead:
        return SubscriptionRead(**self.public(await self.store.by_code(code)))

    async def update(self, code: str, change: SubscriptionChange, network: str) -> SubscriptionChanged:
        """Change filters or channel; a new e-mail address is confirmed again."""
        self.writes.check(network)
        async with self.store.locks.hold(subscription_id(code)):
            return await self._changed(await self.store.by_code(code), change)

    async def delete(self, code: str, network: str) -> None:
        """Revoke: a tombstone, and delivery stops at once."""
        self.writes.check(network)
        async with self.store.locks.hold(subscription_id(code)):
            sub = await self.store.by_code(code)
            await self.store.write(sub.subscription_id, None)

    async def confirm(self, sub_id: str, token: str, network: str) -> None:
        """Confirm an e-mail address with the link mailed to it (bound to the subscription, the address, a time)."""
        self.writes.check(network)
        await self.store.ready()
        async with self.store.locks.hold(sub_id):
            now, sub = clock.now(self.settings), self.store.view.get(sub_id)
            email = self.address(sub)
            until = self.vault.confirmation_expiry(sub_id, email, token) if email else None
            if sub is None or until is None or expired(sub, now):
                raise NotFound(
                    "this confirmation link is wrong, its address was changed after it was mailed, or "
                    "its subscription was revoked or not confirmed in time"
                )
            if until < now:
                raise NotFound(
                    f"this confirmation link expired ({self.settings.confirm_link_hours:g} h after it was "
                    "mailed); give the address again (PATCH, or the manage page) for a new one"
                )
            await self.store.write(sub_id, sub.model_copy(update={"email_confirmed": True, "confirm_by": None}))

    async def unsubscribe(self, sub_id: str, token: str) -> None:
        """The one-click unsubscribe of a mail's link. Not rate-limited: mail providers click these for their
        users, many from one network; the token is checked before anything is written."""
        await self.store.ready()
        if not self.vault.check_link(sub_id, token):
            raise NotFound("this unsubscribe link is wrong")
        async with self.store.locks.hold(sub_id):
            if self.store.view.get(sub_id):
                await self.store.write(sub_id, None)

    async def test(self, code: str, network: str) -> QueuedTest:
        """A test alert (marked test) about one of the subscription's sources, queued for its channel."""
        self.writes.check(network)
        sub = await self.store.by_code(code)
        alert = test_alert(self.settings, self.records[sources_of(sub.filters, self.records)[0]])
        task = schemas.DeliveryTask(subscription_id=sub.subscription_id, alert=alert, attempt=1, due=alert.raised_at)
        await self.store.send(topics.DELIVERY_RETRY.name, topics.DELIVERY_RETRY.encode(task), sub.subscription_id)
        return QueuedTest(alert_id=alert.alert_id, status="queued for delivery; see /subscriptions/{code}/deliveries")

    async def deliveries(self, code: str, limit: int) -> list[Delivery]:
        """The delivery log: every attempt, newest first."""
        sub = await self.store.by_code(code)
        return [Delivery(**row) for row in await self.reader.deliveries(sub.subscription_id, limit)]

    async def sources(self, code: str) -> list[str]:
        return sources_of((await self.store.by_code(code)).filters, self.records)

    # ------------------------------------------------------------------------------------------ their parts
    async def checked(
        self, filters: schemas.SubscriptionFilters, channel: str, webhook_url: str | None, email: str | None
    ) -> list[str]:
        """The sources the filters select; Invalid (422) with the reason for anything invalid."""
        unknown = [s for s in filters.sources if s not in self.records]
        if unknown:
            raise Invalid(f"unknown source {unknown[0]!r}; the known ones are listed at /sources")
        unknown = [t for t in filters.tags if t not in self.tags]
        if unknown:
            raise Invalid(f"unknown tag {unknown[0]!r}; the known ones are listed at /tags")
        for name, field, value in (("webhook", "webhook_url", webhook_url), ("email", "email", email)):
            if channel == name and not value:
                raise Invalid(f"channel {name!r} needs {field}")
            if channel != name and value:
                raise Invalid(f"{field} is only for channel {name!r}, not {channel!r}")
        if webhook_url:
            try:
                await check_webhook_url(webhook_url, self.settings.webhook_allow_loopback)
            except SubscriptionError as exc:
                raise Invalid(str(exc)) from exc
        sources = sources_of(filters, self.records)
        if not sources:
            raise Invalid("these filters select no catalogue source")
        return sources

    async def _changed(self, sub: schemas.Subscription, body: SubscriptionChange) -> SubscriptionChanged:
        """PATCH's work, under the subscription's lock."""
        given = body.model_dump(exclude_unset=True)
        current = self.address(sub)
        channel = given.get("channel") or sub.channel  # null, like absent, keeps it (as for filters)
        webhook_url = given.get("webhook_url", sub.webhook_url if channel == "webhook" else None)
        email = given.get("email", current if channel == "email" else None)
        filters = body.filters or sub.filters
        sources = await self.checked(filters, channel, webhook_url, email)
        secret = new_webhook_secret() if channel == "webhook" and not sub.webhook_secret else None
        now = clock.now(self.settings)
        new_email = email if email is not None and email != current else None
        updated = sub.model_copy(
            update={
                "filters": filters,
                "channel": channel,
                "webhook_url": webhook_url,
                "webhook_secret": (self.vault.seal(secret) if secret else sub.webhook_secret)
                if channel == "webhook"
                else None,
                **self._address_fields(sub, channel, new_email, now),
            }
        )
        await self.store.write(sub.subscription_id, updated)
        if new_email is not None:
            try:
                await self.confirm_by_mail(updated, new_email, sources, now)
            except DeliveryError as exc:
                await self.store.write(sub.subscription_id, sub)
                raise Unavailable(f"the confirmation mail could not be sent ({exc}); nothing was changed") from None
        return SubscriptionChanged(**self.public(updated, sources), webhook_secret=secret)

    def _address_fields(
        self, sub: schemas.Subscription, channel: str, new_email: str | None, now: datetime
    ) -> dict[str, Any]:
        """The fields a change sets about the address: none (it stays), a new one to confirm, or no address."""
        if new_email is not None:  # confirmed again, by a link bound to the new address; earlier links no longer do
            fields = {
                "email": self.vault.seal(new_email),
                "email_confirmed": False,
                "confirm_by": now + self.pending,
                "confirmations": self.mail_allowance(sub, now),
            }
            self.recipients.check(self.vault.recipient(new_email))
            return fields
        if channel == "email":
            return {}
        # A webhook, or channel none: removed at its deadline, set when it became none.
        was_none = sub.channel == "none" and sub.confirm_by is not None
        deadline = None if channel != "none" else sub.confirm_by if was_none else now + self.pending
        return {"email": None, "email_confirmed": False, "confirm_by": deadline}

    def mail_allowance(self, sub: schemas.Subscription, now: datetime) -> list[datetime]:
        """The confirmation mails of the last 24 h, with one more for now; TooMany (429) when the cap is reached."""
        recent = [t for t in sub.confirmations if t > now - MAIL_DAY]
        cap = self.settings.confirmation_mails_per_day
        if len(recent) >= cap:
            wait = math.ceil((min(recent) + MAIL_DAY - now).total_seconds())
            raise TooMany(
                f"at most {cap} confirmation mails per subscription in 24 hours: this address can be given "
                f"again in {wait} s",
                wait,
            )
        return [*recent, now]

    async def confirm_by_mail(self, sub: schemas.Subscription, email: str, sources: list[str], now: datetime) -> None:
        """The confirmation mail, its link bound to this subscription, this address and an expiry."""
        token = self.vault.confirm_token(
            sub.subscription_id, email, now + timedelta(hours=self.settings.confirm_link_hours)
        )
        url = f"{self.settings.api_url}/subscriptions/confirm?id={sub.subscription_id}&token={token}"
        summary = f"{len(sources)} source(s): {', '.join(sources[:10])}{' …' if len(sources) > 10 else ''}"
        await smtp.send(self.settings, smtp.confirmation_message(self.settings, email, url, summary))

    def address(self, sub: schemas.Subscription | None) -> str | None:
        if sub is None or sub.email is None:
            return None
        try:
            return self.vault.open(sub.email)
        except SubscriptionError:  # sealed under a key no longer configured: no link can be checked against it
            return None

    def public(self, sub: schemas.Subscription, sources: list[str] | None = None) -> dict[str, Any]:
        """The fields of SubscriptionRead; `sources`: its filters' sources, if already known."""
        email = self.address(sub)
        return {
            "subscription_id": sub.subscription_id,
            "created_at": sub.created_at,
            "filters": sub.filters,
            "channel": sub.channel,
            "webhook_url": sub.webhook_url,
            "email": masked(email) if email else None,
            "email_confirmed": sub.email_confirmed,
            "confirm_by": sub.confirm_by,
            "sources": sources_of(sub.filters, self.records) if sources is None else sources,
        }


def test_alert(settings: Settings, record: schemas.CatalogueSource) -> schemas.Alert:
    """An alert marked as a test, about one of the subscription's sources, now (the services' clock)."""
    at = clock.now(settings)
    return schemas.Alert(
        **links.alert_source(settings, record),
        alert_id=f"{record.id}@test-{uuid.uuid4().hex[:12]}",
        record_number=1,
        alert_type="onset",
        test=True,
        live=True,
        raised_at=at,
        series=[],
        trigger_series="",
        time=at,
        mjd=datetime_to_mjd(at),
        onset_time=at,
        onset_mjd=datetime_to_mjd(at),
        relevance=0.0,
        peak_relevance=0.0,
        terms=schemas.RelevanceTerms(model=0.0, hardness=0.0, flux=0.0, trend=0.0),
        reasons=[],
        change="a test of this subscription's channel",
        model_version="test",
        explanation=f"This is a test alert about {record.integral_name}: nothing happened to the source.",
        last_points=[],
        freshness={},
    )
