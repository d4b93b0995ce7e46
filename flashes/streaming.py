"""The Faust app factory shared by the stream processors (derive, relevance, alerts)."""
from __future__ import annotations

import faust

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
        web_enabled=False,
        stream_wait_empty=False,
    )


def topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, partitions=spec.partitions, key_serializer="raw", value_serializer="json")


def run_worker(app: faust.App) -> None:
    """Run the app until SIGTERM/SIGINT (the worker handles both and shuts down cleanly)."""
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
