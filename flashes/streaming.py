"""The Faust app factory shared by the stream processors (derive, relevance, alerts)."""
from __future__ import annotations

import asyncio

import faust

from flashes.kafka import create_topics, ensure_topics

from flashes.settings import Settings
from flashes.topics import TopicSpec


def make_app(name: str, settings: Settings) -> faust.App:
    """A Faust app named flashes-{name}: JSON values, raw keys, in-memory tables restored from changelogs."""
    datadir = settings.var_dir / "faust" / name
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"flashes-{name}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="json",
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.05,  # batch outputs and changelog writes: one produce request per event was the bottleneck
        producer_max_batch_size=512 * 1024,
        producer_compression_type="lz4",
        broker_session_timeout=15.0,  # a killed worker's partitions move on after 15 s, not Faust's default 60 s
        web_enabled=False,
        stream_wait_empty=False,
    )


def topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, partitions=spec.partitions, key_serializer="raw", value_serializer="json")


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run the app until SIGTERM/SIGINT (the worker handles both and shuts down cleanly).

    Every topic the app needs (contract topics, table changelogs) is created
    before the worker starts: a topic Faust creates itself may still have no partitions in its
    metadata when the first event arrives, and the table write then fails (PartitionsMismatch).
    """
    wanted = {table.changelog_topic_name: (table.partitions or app.conf.topic_partitions, True)
              for table in app.tables.values()}
    asyncio.run(ensure_topics(settings))
    asyncio.run(create_topics(settings, wanted))
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
