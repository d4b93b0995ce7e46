"""A small client for people who consume FLASHES alerts from Kafka, in the spirit of gcn-kafka.

Example (not executed)::

    >>> import asyncio
    >>> from datetime import datetime, timezone
    >>> from flashes.client import AlertListener
    >>> from schemas import Cone, SubscriptionFilters
    >>> async def main() -> None:
    ...     wanted = SubscriptionFilters(cone=Cone(ra=233.8, dec=-57.2, radius=2.0), reasons=["state_change"],
    ...                                  min_relevance=0.8, history=True)
    ...     listener = AlertListener("kafka.example.org:9092", wanted, since=datetime(2024, 5, 1, tzinfo=timezone.utc),
    ...                              exit_at_end=True)
    ...     async for alert in listener:
    ...         print(alert.time, alert.alert_type, alert.source_name, alert.explanation)
    >>> asyncio.run(main())

An alert is taken when it passes the filters: a schemas.SubscriptionFilters, matched by the
function delivery uses (flashes/subscriptions.py `matches`), so a listener and a subscription with
the same filters take the same alerts. The listener reads the alerts topic partition by partition
in offset order. Without a consumer group it commits nothing: every listener decides where it
starts (`since`, `from_beginning`, or the end: new alerts only). With `group_id` it commits what the caller
has taken and, when neither `since` nor `from_beginning` is given, resumes after the last committed alert. To
stop early, leave the loop inside `contextlib.aclosing(aiter(listener))` so that the consumer is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

import schemas
from flashes import topics
from flashes.errors import DecodeError
from flashes.kafka import security
from flashes.settings import Settings
from flashes.subscriptions import matches

log = logging.getLogger(__name__)
METADATA_RETRY_S = 5.0
EVERY_ALERT = schemas.SubscriptionFilters(history=True)


class AlertListener:
    """An async iterator over the alerts (schemas.Alert) that pass `filters` (default: every alert, news and
    history, as a subscription's filters with `history` set).

    `since`: alerts published (Kafka record time) at or after this time (a naive datetime is UTC);
    `from_beginning`: every stored alert; neither: only alerts published after the listener started.
    `exit_at_end`: stop at the end the topic had when it started.
    `positioned` is set once the start positions are taken: an alert published after it is not missed.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        filters: schemas.SubscriptionFilters = EVERY_ALERT,
        since: datetime | None = None,
        from_beginning: bool = False,
        exit_at_end: bool = False,
        group_id: str | None = None,
        login: dict[str, str] | None = None,
    ) -> None:
        if since is not None and from_beginning:
            raise ValueError("give either since or from_beginning, not both")
        self.bootstrap_servers = bootstrap_servers
        self.filters = filters
        self.since = since
        self.from_beginning = from_beginning
        self.exit_at_end = exit_at_end
        self.group_id = group_id
        self.login = login or {}  # flashes.kafka.security: SASL keyword arguments, none for PLAINTEXT
        self.positioned = asyncio.Event()

    @classmethod
    def from_settings(
        cls, settings: Settings, filters: schemas.SubscriptionFilters = EVERY_ALERT, **start: Any
    ) -> AlertListener:
        """A listener on the Kafka of the FLASHES settings (FLASHES_KAFKA_HOST/PORT)."""
        return cls(settings.kafka_bootstrap, filters, login=security(settings), **start)

    async def __aiter__(self) -> AsyncIterator[schemas.Alert]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.login,
        )
        try:
            await consumer.start()
            partitions = await self._partitions(consumer)
            if not partitions:
                return
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            for tp, offset in (await self._start_offsets(consumer, partitions, ends)).items():
                consumer.seek(tp, offset)
            self.positioned.set()
            pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            while pending or not self.exit_at_end:
                batches = await consumer.getmany(*(pending if self.exit_at_end else ()), timeout_ms=1000)
                for tp, records in batches.items():
                    if self.exit_at_end:
                        records = [r for r in records if r.offset < ends[tp]]
                    for record in records:
                        if record.timestamp < self.since_ms:  # record times need not grow with the offset
                            continue
                        if (alert := self._decoded(record)) is not None and matches(self.filters, alert):
                            yield alert
                    if self.group_id is not None and records:  # the caller has taken these
                        await consumer.commit({tp: records[-1].offset + 1})
                    if self.exit_at_end and await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()

    @property
    def since_ms(self) -> int:
        """`since` as Kafka record time (ms; naive means UTC); 0 without it."""
        if self.since is None:
            return 0
        since = self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)
        return max(0, int(since.timestamp() * 1000))

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The alert topic's partitions (as declared in flashes/topics.py), once the topic exists;
        none if it does not and the listener is to exit at the end."""
        while topics.ALERTS.name not in await consumer.topics():
            if self.exit_at_end:
                return []
            log.info("topic %s does not exist yet; waiting", topics.ALERTS.name)
            await asyncio.sleep(METADATA_RETRY_S)
        return [TopicPartition(topics.ALERTS.name, p) for p in range(topics.ALERTS.partitions)]

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Where each partition is read from; the end offsets are taken once, so nothing published
        after the start is missed."""
        if self.from_beginning:
            return await consumer.beginning_offsets(partitions)
        if self.since is not None:
            found = await consumer.offsets_for_times({tp: self.since_ms for tp in partitions})
            return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}
        if self.group_id is not None:
            committed = {tp: await consumer.committed(tp) for tp in partitions}
            return {tp: ends[tp] if committed[tp] is None else committed[tp] for tp in partitions}
        return dict(ends)

    @staticmethod
    def _decoded(record: ConsumerRecord) -> schemas.Alert | None:
        try:
            return topics.ALERTS.decode(record.value)
        except DecodeError as exc:  # a client cannot dead-letter it: say so and go on
            log.warning(
                "skipping the undecodable record at %s:%d offset %d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None
