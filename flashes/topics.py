"""Every Kafka topic, its key and value contract, and its partition count: declared once, here."""
from __future__ import annotations

from dataclasses import dataclass

from aiokafka.partitioner import murmur2
from pydantic import BaseModel

import schemas


@dataclass(frozen=True)
class TopicSpec:
    name: str
    model: type[BaseModel]
    key: str
    partitions: int
    compacted: bool = False


LIGHTCURVE = TopicSpec("flashes.lightcurve.v1", schemas.LightcurvePoint,
                       "{instrument}:{source_id}, partitioned by source_id (see source_partition)", 4)
DERIVED = TopicSpec("flashes.derived.v1", schemas.DerivedPoint, "hardness:{source_id} | combined:{source_id}", 4)
RELEVANCE = TopicSpec("flashes.relevance.v1", schemas.RelevanceScore, "series key", 4)
ALERTS = TopicSpec("flashes.alerts.v1", schemas.Alert, "{source_id}", 1)
SUBSCRIPTIONS = TopicSpec("flashes.subscriptions.v1", schemas.Subscription, "subscription id", 1, compacted=True)
DEADLETTER = TopicSpec("flashes.deadletter.v1", schemas.DeadLetter, "origin", 1)
FETCHSTATE = TopicSpec("flashes.fetchstate.v1", schemas.FetchState, "series key", 1, compacted=True)

INSTRUMENTS = ("maxi", "swift", "fermi")

ALL = (LIGHTCURVE, DERIVED, RELEVANCE, ALERTS, SUBSCRIPTIONS, DEADLETTER, FETCHSTATE)


def source_partition(source_id: str, partitions: int) -> int:
    """Partition of every lightcurve message of a source (Kafka's murmur2 of the source id, not of the key).

    All instruments of a source share a partition, so derive joins MAXI and BAT without
    repartitioning, and per-series state stays with its partition.
    """
    return (murmur2(source_id.encode()) & 0x7FFFFFFF) % partitions


def series_key(kind: str, source_id: str) -> str:
    """Kafka key of a series: '{kind}:{source_id}'."""
    return f"{kind}:{source_id}"


def catalogue_series(kind: str, source_id: str) -> str:
    """The seed catalogue's (and QuestDB's) name of a series: '{kind}_{source_id}'."""
    return f"{kind}_{source_id}"
