"""The subscriptions' Kafka side in the API: the live view of flashes.subscriptions.v1, the producer that writes
it, the alerts topic's end offsets, and the hourly sweep of expired subscriptions.

Every write is answered once Kafka acknowledged it; a Kafka failure is `Unavailable` (503) in words that
name only the error's class (the broker's own words name internal hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

import schemas
from flashes import clock, kafka, topics
from flashes.kafka import make_producer
from flashes.keyedcap import KeyedCap
from flashes.settings import Settings
from flashes.subscriptions import SubscriptionView, expired, subscription_id
from services.api.problems import ApiError, NotFound, Unavailable

log = logging.getLogger(__name__)
CODE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
SWEEP_EVERY_S = 3600.0  # unconfirmed subscriptions live for days: an hourly sweep removes them within the hour
ClientT = TypeVar("ClientT", AIOKafkaProducer, AIOKafkaConsumer, SubscriptionView)


def unavailable(exc: Exception) -> Unavailable:
    """503 for a Kafka failure: the broker's own words name internal hosts, so only the error's class is told."""
    return Unavailable(
        f"the subscription store (Kafka) is unavailable ({type(exc).__name__}): nothing was "
        "stored and no mail was sent; try again later"
    )


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

    async def ready(self) -> Store:
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
                    log.warning(
                        "the subscription view's follower stopped (%s); the topic was read again",
                        "cancelled" if stopped.task.cancelled() else type(stopped.task.exception()).__name__,
                    )
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
        assert producer is not None  # ready() made it, and nothing ran between
        try:
            await producer.send_and_wait(topic, value, key=key.encode())
        except KafkaError as exc:
            async with self.lock:
                # Not dropped already by a parallel request. A flag: `if self.producer is producer` would make
                # mypy narrow `producer` to the attribute's Optional type.
                current = self.producer is producer
                if current:
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
        assert self.offsets is not None  # the caller's ready() made it
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
            raise NotFound(
                "no subscription has this code: it is wrong or was revoked (or it expired: its "
                "e-mail address was not confirmed, or it stayed on channel none, in time)"
            )
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
                log.warning(
                    "the sweep of expired subscriptions failed (%s); the next in %g s",
                    exc.detail if isinstance(exc, ApiError) else type(exc).__name__,
                    every_s,
                )
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
