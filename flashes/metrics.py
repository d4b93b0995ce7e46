"""Prometheus metrics of every service (prometheus-client), declared once here.

Each service process serves its own registry (flashes.metrics.serve); labels are bounded sets
(service, topic, instrument, channel, status, a dead letter's reason class), never a source id,
an address or a free-text reason.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POINTS_IN = Counter("flashes_points_in", "points read by a stage", ["service", "topic"])
POINTS_OUT = Counter("flashes_points_out", "points (or records) produced by a stage", ["service", "topic"])
CONSUMER_LAG = Gauge("flashes_consumer_lag", "records behind the end of the topic", ["group", "topic"])
DEAD_LETTERS = Counter("flashes_dead_letters", "inputs refused to the dead-letter topic", ["service", "reason"])
FETCHES = Counter("flashes_fetches", "provider file requests by outcome", ["provider", "outcome"])
NEWEST_POINT = Gauge("flashes_newest_point_seconds", "UNIX time of the newest stored point", ["instrument"])
DELIVERIES = Counter("flashes_deliveries", "delivery attempts by channel and status", ["channel", "status"])
DELIVERY_LATENCY = Histogram("flashes_delivery_latency_seconds", "alert raised -> delivered", ["channel"],
                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400))
