"""The delivery service: every alert matched with the live subscriptions, each pair delivered once.

Two consumers feed one deliverer:

- `flashes.alerts.v3` (group flashes-delivery): an alert is matched against every subscription
  acknowledged before it (SubscriptionView.caught_up) and made before it was appended (in Kafka's
  order, not by a clock: flashes.subscriptions.made_before), news only unless the subscription asks
  for history too; its first attempts start at once, concurrently. A group without a committed
  offset starts at the end of the topic (which is kept forever: from its start it would push every
  alert ever raised to every subscriber) and commits
  that position as soon as it joins, so everything published after that is delivered, and its
  committed offset tells anyone waiting that it has joined.
- `flashes.delivery.retry.v1` (group flashes-delivery-retry): attempts that failed, due after an
  exponential backoff (delivery_backoff_s, doubling, for about 17 hours), test alerts, and mails
  held back by the daily cap (due at the next UTC midnight, sent as one digest). This group starts
  at the oldest task: a test alert queued before the service ever ran still goes out, and the
  topic keeps tasks only for the broker's retention (7 days).

Each attempt is claimed in the ledger (services/delivery/ledger.py, read from the delivery log
`flashes.deliveries.v1` at start) and its outcome recorded there before the offset of its alert
or task is committed, so a restarted service skips what was done: the retry tasks, tests and
digests it reads again from the retry topic's commit point (the oldest pending task, often the
next midnight's digest) and the alerts after the last commit. The daily cap is counted from the
same log. What remains is a kill between the receiver accepting (SMTP 250, HTTP 2xx) and Kafka
acknowledging the record, a few milliseconds per attempt: that mail or webhook goes out once
more (at least once, the record checked first), with the same `webhook-id` and the same
Message-ID, by which receivers drop it. SIGTERM leaves no such window: no new work is taken,
running attempts finish and are recorded, and the offsets are committed.

One worker: the ledger is this process's own, read from the log once at start, and the daily cap is
counted in it. A second worker in the groups would not know the first one's attempts (a retry
partition moving to it would send again what the other had sent) and would count the cap apart, so
delivery runs as one process (docker-compose and `make run` start one); its attempts run
concurrently, about 3,300 webhooks a second on 2 cores (bench/delivery.py).

Whatever goes wrong in one attempt (a receiver, a subscription sealed under a key that was
removed, a chart that cannot be drawn) is a failed attempt with its reason: retried, then a dead
letter, while every other subscriber is served. A receiver that never answers costs one timeout
per attempt and holds up no other: attempts run concurrently, at most webhook_per_subscription per
subscription and webhook_per_host per receiving network (services/delivery/caps.py), caps taken
before a global slot; a subscription whose last webhook_suspect_after attempts got no answer takes
one of webhook_suspect_slots instead, so dead receivers spread over many networks wait for each
other, not for the global slots (the streaks are read from the delivery log at start). Webhooks
connect through the Guard (flashes/netguard.py): public addresses only, checked when connecting.
Nothing here logs a code, a secret, an address or a webhook URL, and no reason carries them (a
webhook's is one of webhooks.FAILURES): subscriptions are named by the first characters of their
id. A record on the alerts or retry topic keyed otherwise than its value is a dead letter
(flashes.subscriptions.keyed).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import signal
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

import schemas
from flashes import clock, kafka, metrics, smtp, topics
from flashes.errors import DecodeError, SubscriptionError
from flashes.heartbeat import beat
from flashes.kafka import dead_letter, ensure_topics, make_producer, read_to_end, rejected, send_dead_letter
from flashes.netguard import Guard, webhook_port
from flashes.settings import Settings
from flashes.subscriptions import SubscriptionView, Vault, keyed, made_before, matches
from services.delivery import messages
from services.delivery.caps import KeyedCap, Streaks
from services.delivery.ledger import Ledger
from services.delivery.webhooks import failure, post

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 1.0
CHARTS = 64


class Offsets:
    """Offsets taken and not yet done, per partition; the commit point is the first one not done."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, Counter[int]] = defaultdict(Counter)
        self.next: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}  # what this consumer last committed
        self.assigned: set[TopicPartition] = set()  # the partitions whose start position is known

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

    def __init__(
        self,
        settings: Settings,
        view: SubscriptionView,
        producer: AIOKafkaProducer,
        client: aiohttp.ClientSession,
        guard: Guard,
        ledger: Ledger,
    ) -> None:
        self.settings, self.view, self.producer, self.client, self.ledger = settings, view, producer, client, ledger
        self.guard = guard  # the client's resolver: the per-host cap's key comes from the lookup it connects with
        self.vault = Vault(settings)
        self.secret = lru_cache(maxsize=16_384)(self.vault.open)  # webhook secrets and addresses: decrypt once
        self.charts: OrderedDict[str, asyncio.Task[bytes]] = OrderedDict()  # per alert record: one chart for all
        self.slots = asyncio.Semaphore(settings.delivery_concurrency)
        self.per_subscription = KeyedCap(settings.webhook_per_subscription)
        self.per_host = KeyedCap(settings.webhook_per_host)
        self.streaks = Streaks(settings.webhook_suspect_after)
        self.suspects = asyncio.Semaphore(settings.webhook_suspect_slots)  # their attempts, instead of `slots`

    def now(self) -> datetime:
        return clock.now(self.settings)

    async def deliver(self, sub_id: str, alert: schemas.Alert, body: bytes, attempt: int) -> None:
        """One attempt, unless the subscription was revoked or the ledger has this attempt (or the pair) done."""
        sub = self.view.get(sub_id)
        if sub is None or not self.ledger.claim(sub_id, alert, attempt, self.now().date()):
            return
        try:
            async with contextlib.AsyncExitStack() as caps:
                await self._take_slot(sub, caps)
                status, detail = await self._send(sub, alert, body, attempt)
        except Exception as exc:  # noqa: BLE001 - whatever fails in one attempt fails that attempt only
            why = self._reason(exc, sub)
            self._streak(sub, why)
            await self._failed(sub, alert, attempt, why, body)
            return
        self._streak(sub, None)
        await self._record(sub, alert, attempt, status, detail)

    async def _take_slot(self, sub: schemas.Subscription, caps: contextlib.AsyncExitStack) -> None:
        """An attempt's caps and slot, in this order: a webhook's subscription cap; the lookup of its receiving
        network (a suspect's inside a suspect slot, so suspects hold at most that many lookup threads); the
        network's per-host cap; then a global slot, or a suspect one for a suspect (Streaks). Waiting for a cap
        holds no slot."""
        slot = self.slots
        if sub.channel == "webhook":
            assert sub.webhook_url is not None  # the API (the topic's one writer) refuses a webhook without one
            await caps.enter_async_context(self.per_subscription.hold(sub.subscription_id))
            if self.streaks.suspect(sub.subscription_id):
                slot = self.suspects
                async with slot:
                    network = await self._network(sub.webhook_url)
            else:
                network = await self._network(sub.webhook_url)
            await caps.enter_async_context(self.per_host.hold(network))
        await caps.enter_async_context(slot)

    def _streak(self, sub: schemas.Subscription, why: str | None) -> None:
        if sub.channel == "webhook":
            self.streaks.note(sub.subscription_id, why)
            self.streaks.prune(self.view.subscriptions)

    async def _network(self, url: str) -> str:
        """The receiving network of a webhook URL (its per-host cap), looked up by the client's own Guard, whose
        answer the connection then uses; a refused or silent host fails here, before its per-host cap and any
        global slot are waited for."""
        parts = urlsplit(url)
        async with asyncio.timeout(self.settings.webhook_timeout_s):
            return await self.guard.network(parts.hostname or "", webhook_port(parts))

    async def _send(
        self, sub: schemas.Subscription, alert: schemas.Alert, body: bytes, attempt: int
    ) -> tuple[str, str]:
        if sub.channel == "webhook":
            assert sub.webhook_url is not None  # as in _take_slot
            await post(self.client, sub.webhook_url, self.secret(sub.webhook_secret), alert.message_id, body)
            return "delivered", "2xx"
        if not sub.email_confirmed:
            return "unconfirmed", "nothing is sent before the address is confirmed"
        day = self.now().date()
        cap = self.settings.email_daily_cap
        if not self.ledger.take_mail(sub.subscription_id, day, cap):  # taken before sending: mails run concurrently
            midnight = datetime.combine(day + timedelta(days=1), time(0), UTC)
            await self._retry(
                schemas.DeliveryTask(
                    subscription_id=sub.subscription_id, alert=alert, attempt=attempt, due=midnight, digest=True
                )
            )
            return "held", f"daily cap of {cap} mails reached: in the digest at {midnight:%Y-%m-%d %H:%M} UTC"
        try:
            message = messages.alert_message(
                self.settings,
                self.secret(sub.email),
                alert,
                self.unsubscribe_url(sub),
                await asyncio.shield(self.chart(alert)),
                smtp.make_id(self.settings, f"{sub.subscription_id}/{alert.message_id}"),
            )
            await smtp.send(self.settings, message)
        except BaseException:
            self.ledger.give_back_mail(sub.subscription_id, day)
            raise
        return "delivered", "mail accepted by the SMTP server"

    def chart(self, alert: schemas.Alert) -> asyncio.Task[bytes]:
        """The PNG of the source's recent points for an alert record: queried and drawn once however many
        addresses it goes to (the last CHARTS records are kept)."""
        key = alert.message_id
        task = self.charts.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception())):  # a failure is tried again

            async def draw() -> bytes:
                points = await messages.recent_points(self.settings, alert)
                return await asyncio.to_thread(messages.lightcurve_png, alert, points)

            self.charts[key] = asyncio.ensure_future(draw())
            while len(self.charts) > CHARTS:
                self.charts.popitem(last=False)
        return self.charts[key]

    async def digest(self, sub_id: str, tasks: list[schemas.DeliveryTask]) -> None:
        """One mail with the alerts held back by the daily cap that are not digested yet (a failure retries them
        one by one)."""
        sub = self.view.get(sub_id)
        if sub is None:
            return
        today = self.now().date()
        tasks = [t for t in tasks if self.ledger.claim(sub_id, t.alert, t.attempt, today, digest=True)]
        if not tasks:
            return
        alerts = [t.alert for t in tasks]
        try:
            message_id = smtp.make_id(self.settings, f"{sub_id}/digest/{','.join(a.message_id for a in alerts)}")
            await smtp.send(
                self.settings,
                messages.digest_message(
                    self.settings, self.secret(sub.email), alerts, self.unsubscribe_url(sub), message_id
                ),
            )
        except Exception as exc:  # noqa: BLE001 - as in deliver: the digest's failure is its own
            why = self._reason(exc, sub)
            await asyncio.gather(
                *(self._failed(sub, t.alert, t.attempt, why, topics.ALERTS.encode(t.alert)) for t in tasks)
            )
            return
        await asyncio.gather(
            *(self._record(sub, t.alert, t.attempt, "digested", f"in a digest of {len(tasks)}") for t in tasks)
        )

    def unsubscribe_url(self, sub: schemas.Subscription) -> str:
        token = self.vault.link_token(sub.subscription_id)
        return f"{self.settings.api_url}/subscriptions/unsubscribe?id={sub.subscription_id}&token={token}"

    def _reason(self, exc: Exception, sub: schemas.Subscription) -> str:
        """A webhook's own failures are words of webhooks.FAILURES or an HTTP status (post raises them as
        DeliveryError; a lookup that failed before the POST is read the same way); whatever else failed (a key,
        a chart, the SMTP server) is cleaned of the subscriber's URL, host and address here."""
        if sub.channel == "webhook" and isinstance(exc, OSError | asyncio.TimeoutError):
            return failure(exc)
        url = urlsplit(sub.webhook_url or "")
        private = [sub.webhook_url, url.netloc, url.hostname]
        if sub.email:
            with contextlib.suppress(SubscriptionError):  # a secret that does not open is not in the text either
                private.append(self.secret(sub.email))
        return smtp.reason(exc, private)

    async def _failed(
        self, sub: schemas.Subscription, alert: schemas.Alert, attempt: int, why: str, body: bytes
    ) -> None:
        if attempt < self.settings.delivery_max_attempts:
            delay = self.settings.delivery_backoff_s * 2 ** (attempt - 1)
            await self._retry(
                schemas.DeliveryTask(
                    subscription_id=sub.subscription_id,
                    alert=alert,
                    attempt=attempt + 1,
                    due=self.now() + timedelta(seconds=delay),
                )
            )
            await self._record(sub, alert, attempt, "retrying", f"{why}; attempt {attempt + 1} in {delay:.0f} s")
            return
        letter = dead_letter(
            f"delivery:{sub.channel}:{sub.subscription_id[:12]}", f"{why} after {attempt} attempts", body.decode()
        )
        await send_dead_letter(self.producer, letter)
        metrics.DEAD_LETTERS.labels("delivery", "delivery_gave_up").inc()
        await self._record(sub, alert, attempt, "dead", f"{why}; gave up after {attempt} attempts")

    async def _retry(self, task: schemas.DeliveryTask) -> None:
        await (
            await self.producer.send(
                topics.DELIVERY_RETRY.name, topics.DELIVERY_RETRY.encode(task), key=task.subscription_id.encode()
            )
        )

    async def _record(
        self, sub: schemas.Subscription, alert: schemas.Alert, attempt: int, status: str, detail: str
    ) -> None:
        """The outcome to the delivery log (acknowledged), then the ledger and the metrics."""
        record = schemas.DeliveryRecord(
            subscription_id=sub.subscription_id,
            alert_id=alert.alert_id,
            record_number=alert.record_number,
            test=alert.test,
            channel=sub.channel,
            attempt=attempt,
            status=status,
            detail=detail,
            at=self.now(),
        )
        if status in ("retrying", "dead"):
            log.warning(
                "delivery of %s #%d to %s… (%s): %s",
                alert.alert_id,
                alert.record_number,
                sub.subscription_id[:12],
                sub.channel,
                detail,
            )
        await (
            await self.producer.send(
                topics.DELIVERIES.name, topics.DELIVERIES.encode(record), key=sub.subscription_id.encode()
            )
        )
        self.ledger.note(record)
        metrics.DELIVERIES.labels(channel=sub.channel, status=status).inc()
        if status in ("delivered", "digested"):
            metrics.DELIVERY_LATENCY.labels(channel=sub.channel).observe(
                max(0.0, (record.at - alert.raised_at).total_seconds())
            )


class Jobs:
    """Delivery jobs running in the background. An attempt's own failures are handled inside it; a job that fails
    outside (Kafka refusing its record or task) starts the service over from the committed offsets."""

    def __init__(self, offsets: Offsets) -> None:
        self.offsets = offsets
        self.running: set[asyncio.Future] = set()
        self.failure: BaseException | None = None

    def start(self, tp: TopicPartition, offset: int, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self.running.add(task)
        task.add_done_callback(lambda t: self._finished(t, tp, offset))

    def _finished(self, task: asyncio.Future, tp: TopicPartition, offset: int) -> None:
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

    async def finish(self) -> None:
        """Wait for every running job (at most a webhook or SMTP timeout and a Kafka acknowledgement)."""
        await asyncio.gather(*self.running, return_exceptions=True)


async def position(consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
    """Newly assigned partitions: where this consumer starts reading becomes their commit point, stored by the next
    commit. For a group without a committed offset that is where auto_offset_reset put it, kept from then on."""
    assigned = consumer.assignment()
    for tp in assigned - offsets.assigned:
        try:
            offsets.next[tp] = max(offsets.next.get(tp, 0), await consumer.position(tp))
        except IllegalStateError:  # taken away again meanwhile
            continue
    offsets.assigned = set(assigned)


async def commit(consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
    points = {
        tp: n
        for tp, n in offsets.commit_points().items()
        if tp in consumer.assignment() and offsets.committed.get(tp) != n
    }  # an idle poll commits nothing
    if points:
        try:
            await consumer.commit(points)
            offsets.committed.update(points)
        except (CommitFailedError, IllegalStateError) as exc:  # after a rebalance: the new owner delivers again
            log.warning("delivery: commit refused (%s)", exc)


Decoded = list[tuple[TopicPartition, ConsumerRecord, Any]]


async def follow(
    settings: Settings,
    spec: topics.TopicSpec,
    group: str,
    reset: str,
    producer: AIOKafkaProducer,
    handle: Callable[[Decoded, Jobs], Awaitable[None]],
    poll_ms: int,
    stop: asyncio.Event,
) -> None:
    """Consume `spec` as `group` until `stop`: decode each batch (a record that does not decode becomes a dead
    letter), let `handle` start its delivery jobs, then commit up to the first record whose jobs are not done.
    A group without a committed offset starts at `reset` (earliest or latest) and commits that position at once."""
    consumer = kafka.consumer(settings, spec.name, group_id=group, enable_auto_commit=False, auto_offset_reset=reset)
    jobs = Jobs(Offsets())
    await consumer.start()  # returns once the group has assigned this consumer its partitions
    try:
        while not stop.is_set():
            await position(consumer, jobs.offsets)
            await commit(consumer, jobs.offsets)
            decoded: Decoded = []
            for tp, records in (await consumer.getmany(timeout_ms=poll_ms)).items():
                for r in records:
                    try:
                        value = spec.decode(r.value)
                        keyed(spec, r.key, value)  # a record keyed otherwise than its value is a dead letter
                        decoded.append((tp, r, value))
                    except DecodeError as exc:
                        await send_dead_letter(producer, rejected(group, str(exc), r))
                        metrics.DEAD_LETTERS.labels("delivery", "undecodable").inc()
                        jobs.offsets.take(tp, r.offset, 0)
            metrics.POINTS_IN.labels("delivery", spec.name).inc(len(decoded))
            await handle(decoded, jobs)
            jobs.check()
            await commit(consumer, jobs.offsets)
            await metrics.observe_lag(consumer, group, [spec.name])
        await jobs.finish()
        jobs.check()
        await commit(consumer, jobs.offsets)
    finally:
        await consumer.stop()


async def follow_alerts(settings: Settings, view: SubscriptionView, deliverer: Deliverer, stop: asyncio.Event) -> None:
    """Each alert to every live subscription it matches that was made before the alert was published."""

    async def handle(decoded: Decoded, jobs: Jobs) -> None:
        if decoded:
            await view.caught_up()
        for tp, r, alert in decoded:
            subs = [
                s.subscription_id
                for s in view.subscriptions.values()
                if s.channel != "none" and made_before(s, tp.partition, r.offset) and matches(s.filters, alert)
            ]
            jobs.offsets.take(tp, r.offset, len(subs))
            for sub_id in subs:  # the record's value is the alert as encoded: it is the webhook body
                jobs.start(tp, r.offset, deliverer.deliver(sub_id, alert, r.value, 1))

    await follow(
        settings,
        topics.ALERTS,
        "flashes-delivery",
        "latest",
        deliverer.producer,
        handle,
        int(COMMIT_EVERY_S * 1000),
        stop,
    )


async def follow_retries(settings: Settings, deliverer: Deliverer, stop: asyncio.Event) -> None:
    """Retry tasks wait in a heap until due; digest tasks due together are sent as one mail per subscription."""
    waiting: list[tuple[datetime, int, TopicPartition, int, schemas.DeliveryTask]] = []
    order = itertools.count()

    async def handle(decoded: Decoded, jobs: Jobs) -> None:
        for tp, r, task in decoded:
            jobs.offsets.take(tp, r.offset)
            heapq.heappush(waiting, (task.due, next(order), tp, r.offset, task))
        digests: dict[str, list[tuple[TopicPartition, int, schemas.DeliveryTask]]] = defaultdict(list)
        while waiting and waiting[0][0] <= deliverer.now():
            _, _, tp, offset, task = heapq.heappop(waiting)
            if task.digest:
                digests[task.subscription_id].append((tp, offset, task))
            else:
                jobs.start(
                    tp,
                    offset,
                    deliverer.deliver(task.subscription_id, task.alert, topics.ALERTS.encode(task.alert), task.attempt),
                )
        for sub_id, held in digests.items():
            done = asyncio.ensure_future(deliverer.digest(sub_id, [task for _, _, task in held]))
            for tp, offset, _ in held:
                jobs.start(tp, offset, asyncio.shield(done))

    # Earliest: a task queued before the group first joined (a test alert) is still due; the topic keeps tasks
    # for the broker's retention only, and the ledger skips the ones already done.
    await follow(
        settings, topics.DELIVERY_RETRY, "flashes-delivery-retry", "earliest", deliverer.producer, handle, 200, stop
    )


async def delivery_log(settings: Settings) -> list[schemas.DeliveryRecord]:
    """Every record of the delivery log, to the end it has now (a record that does not decode is skipped)."""
    out = []
    tps = [TopicPartition(topics.DELIVERIES.name, p) for p in range(topics.DELIVERIES.partitions)]
    for r in await read_to_end(settings, tps):
        try:
            out.append(topics.DELIVERIES.decode(r.value))
        except DecodeError as exc:
            log.warning("delivery log record at offset %d skipped: %s", r.offset, exc)
    return out


async def run_forever(settings: Settings) -> None:
    """Read the delivery log, then follow the alerts and the retry topic until SIGTERM (then finish what runs)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await ensure_topics(settings)
    ledger = Ledger()
    records = await delivery_log(settings)
    ledger.load(records, clock.now(settings).date())
    view = SubscriptionView(settings)
    producer = make_producer(settings)
    await view.start()
    await producer.start()
    heartbeat = asyncio.ensure_future(beat(settings, "delivery"))
    guard = Guard(settings.webhook_allow_loopback)
    try:
        async with aiohttp.ClientSession(
            connector=guard.connector(settings.delivery_concurrency),
            timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_s),
        ) as client:
            deliverer = Deliverer(settings, view, producer, client, guard, ledger)
            deliverer.streaks.load(records)
            log.info(
                "delivery: %d subscriptions, %d records in the delivery log; following %s and %s",
                len(view.subscriptions),
                len(records),
                topics.ALERTS.name,
                topics.DELIVERY_RETRY.name,
            )
            await asyncio.gather(
                follow_alerts(settings, view, deliverer, stop), follow_retries(settings, deliverer, stop)
            )
    finally:
        heartbeat.cancel()
        await producer.stop()
        await view.stop()
