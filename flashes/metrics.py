"""Prometheus metrics of every service (prometheus-client), declared once here.

Each service process serves the default registry on its own port (`serve`; the API on GET /metrics);
Prometheus adds the job and instance. Labels are bounded sets (service, topic, instrument, provider,
channel, status, a dead letter's reason class such as "undecodable" or "columns"), never a source
id, an address or a free-text reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from flashes.settings import Settings

log = logging.getLogger(__name__)

POINTS_IN = Counter(
    "flashes_points_in", "points a stage read (a chunk's points; 1 per other record)", ["service", "topic"]
)
POINTS_OUT = Counter(
    "flashes_points_out",
    "points a stage produced, to a topic or (the sink) into a QuestDB table",
    ["service", "output"],
)
CONSUMER_LAG = Gauge(
    "flashes_consumer_lag",
    "records of the partitions this worker owns not fetched yet (sum over a group's workers: the group's lag)",
    ["group", "topic"],
)
DEAD_LETTERS = Counter(
    "flashes_dead_letters", "inputs refused to the dead-letter topic, by reason class", ["service", "reason"]
)
FETCHES = Counter("flashes_fetches", "provider file requests by outcome", ["provider", "outcome"])
NEWEST_POINT = Gauge("flashes_newest_point_seconds", "UNIX time of the newest stored point", ["instrument"])
DELIVERIES = Counter("flashes_deliveries", "delivery attempts by channel and status", ["channel", "status"])
DELIVERY_LATENCY = Histogram(
    "flashes_delivery_latency_seconds",
    "alert raised -> delivered",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)


def serve(settings: Settings, port: int) -> bool:
    """Serve /metrics on settings.metrics_host:port in a background thread.

    A second worker of a service on the same host finds the port taken: it runs on without metrics
    (a warning says so) rather than exit; give it its own FLASHES_METRICS_PORT to scrape it.
    """
    try:
        start_http_server(port, addr=settings.metrics_host)
    except OSError as exc:
        log.warning(
            "metrics not served: %s:%d is taken (%s); this worker runs without them",
            settings.metrics_host,
            port,
            exc.strerror,
        )
        return False
    return True


def points(value: object) -> int:
    """The points a message carries: a chunk's count, 1 for any other record (an alert, a delivery)."""
    return getattr(value, "count", 1)


async def observe_lag(consumer: AIOKafkaConsumer, group: str, topics: Iterable[str]) -> None:
    """Set the group's lag on `topics` from this consumer: highwater minus position over the partitions it
    owns (a topic it owns nothing of: 0). Cheap (no request: both come with the fetches), so call it per poll."""
    behind = dict.fromkeys(topics, 0)
    highwater = {tp: consumer.highwater(tp) for tp in consumer.assignment() if tp.topic in behind}
    for tp, high in highwater.items():
        if high is None:  # nothing fetched from it yet
            continue
        try:
            behind[tp.topic] += max(0, high - await consumer.position(tp))
        except IllegalStateError:  # revoked meanwhile: its new owner reports it
            continue
    for topic, n in behind.items():
        CONSUMER_LAG.labels(group=group, topic=topic).set(n)
