"""Every Kafka topic: name, key, contract, partition count, and its encode/decode, declared once here.

Producers call `spec.encode(model)`, consumers `spec.decode(raw)`; nobody else turns bytes into
contracts. A value that does not decode raises DecodeError whose message is the reason the
dead letter carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, get_args

import orjson
from pydantic import BaseModel, ValidationError

import schemas
from flashes.errors import DecodeError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class TopicSpec(Generic[M]):
    name: str
    model: type[M]
    key: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None  # None: the broker's default (7 days); -1: forever

    def encode(self, value: M) -> bytes:
        """The value as JSON (orjson; datetimes in RFC 3339)."""
        return orjson.dumps(value.model_dump())

    def decode(self, raw: bytes | None) -> M:
        """The contract of a raw value; DecodeError with the reason if it is not one."""
        if raw is None:
            raise DecodeError(f"{self.name}: empty value (tombstone) where a {self.model.__name__} was expected")
        try:
            return self.model.model_validate(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"{self.name}: not JSON: {exc}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "value"
            raise DecodeError(
                f"{self.name}: not a {self.model.__name__}: {where}: {first['msg']}"
                + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
            ) from exc


# Data topics are keyed by source id, so Kafka's default partitioner (murmur2 of the key) puts
# every series of a source, on every data topic, on the same partition number.
DATA_PARTITIONS = 4
LIGHTCURVE = TopicSpec("flashes.lightcurve.v2", schemas.LightcurveChunk, "{source_id}", DATA_PARTITIONS)
DERIVED = TopicSpec("flashes.derived.v2", schemas.DerivedChunk, "{source_id}", DATA_PARTITIONS)
RELEVANCE = TopicSpec("flashes.relevance.v2", schemas.RelevanceChunk, "{source_id}", DATA_PARTITIONS)
ALERTS = TopicSpec("flashes.alerts.v3", schemas.Alert, "{source_id}", 1, retention_ms=-1)
SUBSCRIPTIONS = TopicSpec("flashes.subscriptions.v1", schemas.Subscription, "subscription id", 1, compacted=True)
DELIVERY_RETRY = TopicSpec("flashes.delivery.retry.v1", schemas.DeliveryTask, "subscription id", 4)
DELIVERIES = TopicSpec("flashes.deliveries.v1", schemas.DeliveryRecord, "subscription id", 1)
HEARTBEAT = TopicSpec("flashes.heartbeat.v1", schemas.Heartbeat, "service", 1, retention_ms=24 * 3600 * 1000)
DEADLETTER = TopicSpec("flashes.deadletter.v1", schemas.DeadLetter, "origin", 1)
FETCHSTATE = TopicSpec("flashes.fetchstate.v1", schemas.FetchState, "series key", 1, compacted=True)
# Processor state, on the partition number of the input it covers (see flashes/processor.py).
DERIVE_STATE = TopicSpec("flashes.state.derive.v1", schemas.DeriveState, "{source_id}", DATA_PARTITIONS, True)
RELEVANCE_STATE = TopicSpec("flashes.state.relevance.v1", schemas.RelevanceState, "series key", DATA_PARTITIONS, True)
ALERTS_STATE = TopicSpec("flashes.state.alerts.v2", schemas.AlertState, "{source_id}", DATA_PARTITIONS, True)

INSTRUMENTS: tuple[str, ...] = get_args(schemas.Instrument)
DERIVED_KINDS: tuple[str, ...] = get_args(schemas.DerivedKind)  # made by derive from BAT and MAXI
SERIES_KINDS = INSTRUMENTS + DERIVED_KINDS

ALL = (
    LIGHTCURVE,
    DERIVED,
    RELEVANCE,
    ALERTS,
    SUBSCRIPTIONS,
    DELIVERY_RETRY,
    DELIVERIES,
    HEARTBEAT,
    DEADLETTER,
    FETCHSTATE,
    DERIVE_STATE,
    RELEVANCE_STATE,
    ALERTS_STATE,
)
BY_NAME = {t.name: t for t in ALL}
STORED = (LIGHTCURVE, DERIVED, RELEVANCE, ALERTS, DELIVERIES, DEADLETTER)  # what the sink writes into QuestDB


def series_key(kind: str, source_id: str) -> str:
    """Key of a series in the fetch state and dead-letter origins: '{kind}:{source_id}'."""
    return f"{kind}:{source_id}"


def catalogue_series(kind: str, source_id: str) -> str:
    """The seed catalogue's (and QuestDB's) name of a series: '{kind}_{source_id}'."""
    return f"{kind}_{source_id}"


def series_kind(series: str) -> str:
    """The kind (maxi, swift, fermi, hardness, combined) of a catalogue series name."""
    return series.split("_", 1)[0]
