"""The delivery service: every alert matched with the live subscriptions, each pair delivered at least once.

Two consumers feed one deliverer:

- `flashes.alerts.v2` (group flashes-delivery): an alert is matched against every subscription
  acknowledged before it (SubscriptionView.caught_up) and created before it was published, and
  its first attempts start at once, concurrently;
- `flashes.delivery.retry.v1` (group flashes-delivery-retry): attempts that failed, due after an
  exponential backoff (delivery_backoff_s, doubling, for about 17 hours), test alerts, and mails
  held back by the daily cap (due at the next UTC midnight, sent as one digest).

An offset is committed only once every pair of its record has been delivered or handed on (a
retry task or a dead letter acknowledged by Kafka): a killed service delivers again rather than
never, and receivers drop repeats by `webhook-id`. Every attempt is logged to
`flashes.deliveries.v1` (served by GET /subscriptions/{code}/deliveries). A receiver that never
answers costs one timeout per attempt and holds up no other: attempts run concurrently.
Nothing here logs a code, a secret, an address or a webhook URL: subscriptions are named by the
first characters of their id.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

import schemas
from flashes import mail, topics
from flashes.errors import DecodeError, DeliveryError
from flashes.heartbeat import beat
from flashes.kafka import dead_letter, ensure_topics, make_producer, rejected, send_dead_letter
from flashes.settings import Settings
from flashes.subscriptions import SubscriptionView, Vault, matches
from services.alerts import mail as alert_mail
from services.alerts.webhooks import post

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 1.0
CHARTS = 64


def now() -> datetime:
    return datetime.now(timezone.utc)


class Offsets:
    """Offsets taken and not yet done, per partition; the commit point is the first one not done."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, Counter[int]] = defaultdict(Counter)
        self.next: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}  # what this consumer last committed

    def take(self, tp: TopicPartition, offset: int, jobs: int = 1) -> None:
        if jobs:
            self.pending[tp][offset] += jobs
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        self.pending[tp][offset] -= 1
        if not self.pending[tp][offset]:
            del self.pending[tp][offset]

    def commit_points(self) -> dict[TopicPartition, int]:
        return {tp: min(self.pending[tp], default=n) for tp, n in self.next.items()}


class Deliverer:
    """Sends one alert to one subscription, records the outcome, hands failures to the retry topic."""

    def __init__(self, settings: Settings, view: SubscriptionView, producer: AIOKafkaProducer,
                 client: aiohttp.ClientSession) -> None:
        self.settings, self.view, self.producer, self.client = settings, view, producer, client
        self.vault = Vault(settings)
        self.secret = lru_cache(maxsize=16_384)(self.vault.open)  # webhook secrets and addresses: decrypt once
        self.charts: OrderedDict[str, asyncio.Task[bytes]] = OrderedDict()  # per alert record: one chart for all
        self.slots = asyncio.Semaphore(settings.delivery_concurrency)
        self.mails: Counter[tuple[str, date]] = Counter()  # alert mails per subscription and UTC day

    async def deliver(self, sub_id: str, alert: schemas.Alert, body: bytes, attempt: int) -> None:
        sub = self.view.get(sub_id)
        if sub is None:  # revoked: delivery stops at once
            return
        async with self.slots:
            try:
                status, detail = await self._send(sub, alert, body)
            except DeliveryError as exc:
                await self._failed(sub, alert, attempt, str(exc), body)
                return
        await self._record(sub, alert, attempt, status, detail)

    async def _send(self, sub: schemas.Subscription, alert: schemas.Alert, body: bytes) -> tuple[str, str]:
        if sub.channel == "webhook":
            await post(self.client, sub.webhook_url, self.secret(sub.webhook_secret), alert.message_id, body)
            return "delivered", "2xx"
        if not sub.email_confirmed:
            return "unconfirmed", "nothing is sent before the address is confirmed"
        day = now().date()
        if self.mails[sub.subscription_id, day] >= self.settings.email_daily_cap:
            midnight = datetime.combine(day + timedelta(days=1), time(0), timezone.utc)
            await self._retry(schemas.DeliveryTask(subscription_id=sub.subscription_id, alert=alert, attempt=1,
                                                   due=midnight, digest=True))
            return "held", f"daily cap of {self.settings.email_daily_cap} mails reached: in the digest at {midnight:%Y-%m-%d %H:%M} UTC"
        self.mails[sub.subscription_id, day] += 1  # taken before sending: mails to one address run concurrently
        try:
            message = alert_mail.alert_message(self.settings, self.secret(sub.email), alert,
                                               self.unsubscribe_url(sub), await asyncio.shield(self.chart(alert)))
            await mail.send(self.settings, message)
        except DeliveryError:
            self.mails[sub.subscription_id, day] -= 1
            raise
        return "delivered", "mail accepted by the SMTP server"

    def chart(self, alert: schemas.Alert) -> asyncio.Task[bytes]:
        """The PNG of the source's recent points for an alert record: queried and drawn once however many
        addresses it goes to (the last CHARTS records are kept)."""
        key = alert.message_id
        task = self.charts.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception())):  # a failure is tried again
            async def draw() -> bytes:
                points = await asyncio.to_thread(alert_mail.recent_points, self.settings, alert)
                return await asyncio.to_thread(alert_mail.lightcurve_png, alert, points)
            self.charts[key] = asyncio.ensure_future(draw())
            while len(self.charts) > CHARTS:
                self.charts.popitem(last=False)
        return self.charts[key]

    async def digest(self, sub_id: str, alerts: list[schemas.Alert]) -> None:
        """One mail with the alerts held back by the daily cap (a failure retries them one by one)."""
        sub = self.view.get(sub_id)
        if sub is None:
            return
        try:
            await mail.send(self.settings, alert_mail.digest_message(self.settings, self.secret(sub.email), alerts,
                                                                     self.unsubscribe_url(sub)))
        except DeliveryError as exc:
            await asyncio.gather(*(self._failed(sub, a, 1, str(exc), topics.ALERTS.encode(a)) for a in alerts))
            return
        await asyncio.gather(*(self._record(sub, a, 1, "digested", f"in a digest of {len(alerts)}") for a in alerts))

    def unsubscribe_url(self, sub: schemas.Subscription) -> str:
        token = self.vault.link_token("unsubscribe", sub.subscription_id)
        return f"{self.settings.api_url}/subscriptions/unsubscribe?id={sub.subscription_id}&token={token}"

    async def _failed(self, sub: schemas.Subscription, alert: schemas.Alert, attempt: int, reason: str,
                      body: bytes) -> None:
        if attempt < self.settings.delivery_max_attempts:
            delay = self.settings.delivery_backoff_s * 2 ** (attempt - 1)
            await self._retry(schemas.DeliveryTask(subscription_id=sub.subscription_id, alert=alert,
                                                   attempt=attempt + 1, due=now() + timedelta(seconds=delay)))
            await self._record(sub, alert, attempt, "retrying", f"{reason}; attempt {attempt + 1} in {delay:.0f} s")
            return
        letter = dead_letter(f"delivery:{sub.channel}:{sub.subscription_id[:12]}",
                             f"{reason} after {attempt} attempts", body.decode())
        await send_dead_letter(self.producer, letter)
        await self._record(sub, alert, attempt, "dead", f"{reason}; gave up after {attempt} attempts")

    async def _retry(self, task: schemas.DeliveryTask) -> None:
        await (await self.producer.send(topics.DELIVERY_RETRY.name, topics.DELIVERY_RETRY.encode(task),
                                        key=task.subscription_id.encode()))

    async def _record(self, sub: schemas.Subscription, alert: schemas.Alert, attempt: int, status: str,
                      detail: str) -> None:
        record = schemas.DeliveryRecord(subscription_id=sub.subscription_id, alert_id=alert.alert_id,
                                        record_number=alert.record_number, test=alert.test, channel=sub.channel,
                                        attempt=attempt, status=status, detail=detail, at=now())
        if status in ("retrying", "dead"):
            log.warning("delivery of %s #%d to %s… (%s): %s", alert.alert_id, alert.record_number,
                        sub.subscription_id[:12], sub.channel, detail)
        await (await self.producer.send(topics.DELIVERIES.name, topics.DELIVERIES.encode(record),
                                        key=sub.subscription_id.encode()))


class Jobs:
    """Delivery jobs running in the background; the first one that fails unexpectedly stops the service."""

    def __init__(self, offsets: Offsets) -> None:
        self.offsets = offsets
        self.running: set[asyncio.Task] = set()
        self.failure: BaseException | None = None

    def start(self, tp: TopicPartition, offset: int, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self.running.add(task)
        task.add_done_callback(lambda t: self._finished(t, tp, offset))

    def _finished(self, task: asyncio.Task, tp: TopicPartition, offset: int) -> None:
        self.running.discard(task)
        if task.cancelled():
            return
        if task.exception() is None:
            self.offsets.done(tp, offset)
        else:
            self.failure = task.exception()

    def check(self) -> None:
        if self.failure:
            raise self.failure


async def commit(consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
    points = {tp: n for tp, n in offsets.commit_points().items()
              if tp in consumer.assignment() and offsets.committed.get(tp) != n}  # an idle poll commits nothing
    if points:
        try:
            await consumer.commit(points)
            offsets.committed.update(points)
        except (CommitFailedError, IllegalStateError) as exc:  # after a rebalance: the new owner delivers again
            log.warning("delivery: commit refused (%s)", exc)


Decoded = list[tuple[TopicPartition, ConsumerRecord, Any]]


async def follow(settings: Settings, spec: topics.TopicSpec, group: str, producer: AIOKafkaProducer,
                 handle: Callable[[Decoded, Jobs], Awaitable[None]], poll_ms: int) -> None:
    """Consume `spec` as `group`: decode each batch (a record that does not decode becomes a dead letter),
    let `handle` start its delivery jobs, then commit up to the first record whose jobs are not done."""
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    jobs = Jobs(Offsets())
    await consumer.start()
    try:
        while True:
            decoded: Decoded = []
            for tp, records in (await consumer.getmany(timeout_ms=poll_ms)).items():
                for r in records:
                    try:
                        decoded.append((tp, r, spec.decode(r.value)))
                    except DecodeError as exc:
                        await send_dead_letter(producer, rejected(group, str(exc), r))
                        jobs.offsets.take(tp, r.offset, 0)
            await handle(decoded, jobs)
            jobs.check()
            await commit(consumer, jobs.offsets)
    finally:
        await consumer.stop()


async def follow_alerts(settings: Settings, view: SubscriptionView, deliverer: Deliverer) -> None:
    """Each alert to every live subscription it matches that was made before the alert was published."""
    async def handle(decoded: Decoded, jobs: Jobs) -> None:
        if decoded:
            await view.caught_up()
        for tp, r, alert in decoded:
            published = datetime.fromtimestamp(r.timestamp / 1000, timezone.utc)
            subs = [s.subscription_id for s in view.subscriptions.values()
                    if s.channel != "none" and s.created_at <= published and matches(s.filters, alert)]
            jobs.offsets.take(tp, r.offset, len(subs))
            for sub_id in subs:  # the record's value is the alert as encoded: it is the webhook body
                jobs.start(tp, r.offset, deliverer.deliver(sub_id, alert, r.value, 1))

    await follow(settings, topics.ALERTS, "flashes-delivery", deliverer.producer, handle,
                 int(COMMIT_EVERY_S * 1000))


async def follow_retries(settings: Settings, deliverer: Deliverer) -> None:
    """Retry tasks wait in a heap until due; digest tasks due together are sent as one mail per subscription."""
    waiting: list[tuple[datetime, int, TopicPartition, int, schemas.DeliveryTask]] = []
    order = itertools.count()

    async def handle(decoded: Decoded, jobs: Jobs) -> None:
        for tp, r, task in decoded:
            jobs.offsets.take(tp, r.offset)
            heapq.heappush(waiting, (task.due, next(order), tp, r.offset, task))
        digests: dict[str, list[tuple[TopicPartition, int, schemas.Alert]]] = defaultdict(list)
        while waiting and waiting[0][0] <= now():
            _, _, tp, offset, task = heapq.heappop(waiting)
            if task.digest:
                digests[task.subscription_id].append((tp, offset, task.alert))
            else:
                jobs.start(tp, offset, deliverer.deliver(task.subscription_id, task.alert,
                                                         topics.ALERTS.encode(task.alert), task.attempt))
        for sub_id, held in digests.items():
            done = asyncio.ensure_future(deliverer.digest(sub_id, [a for _, _, a in held]))
            for tp, offset, _ in held:
                jobs.start(tp, offset, asyncio.shield(done))

    await follow(settings, topics.DELIVERY_RETRY, "flashes-delivery-retry", deliverer.producer, handle, 200)


async def run_forever(settings: Settings) -> None:
    await ensure_topics(settings)
    view = SubscriptionView(settings)
    producer = make_producer(settings)
    await view.start()
    await producer.start()
    connector = aiohttp.TCPConnector(limit=settings.delivery_concurrency)
    try:
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_s)) as client:
            deliverer = Deliverer(settings, view, producer, client)
            log.info("delivery: %d subscriptions; following %s and %s", len(view.subscriptions),
                     topics.ALERTS.name, topics.DELIVERY_RETRY.name)
            await asyncio.gather(follow_alerts(settings, view, deliverer), follow_retries(settings, deliverer),
                                 beat(settings, "delivery"))
    finally:
        await producer.stop()
        await view.stop()
