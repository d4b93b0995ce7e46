"""What the benchmarks share (importable from a script in bench/, whose folder Python puts on sys.path)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import schemas
from flashes import infra, mirror, questdb, stack, topics
from flashes.kafka import make_producer
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_subscription


def tidy(var: Path, logs: Path, services: Iterable[str], keep: bool, ok: bool) -> None:
    """Warn about every service that logged a traceback; remove the private stack's folder unless
    asked to keep it or something went wrong (then say where it is)."""
    for name in stack.crashed(logs, services):
        print(f"warning: {name} logged a traceback (see {logs / (name + '.log')})", file=sys.stderr)
        ok = False
    if ok and not keep:
        shutil.rmtree(var, ignore_errors=True)
    else:
        print(f"kept {var}", file=sys.stderr)


@dataclass
class Private:
    """A private stack: its folder, settings and environment, the mirror it serves, the services spawned."""

    var: Path
    settings: Settings
    env: dict[str, str]
    folder: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    ok: bool = False  # set when the run succeeded: then the folder is removed (unless kept)

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    def spawn(self, services: tuple[str, ...]) -> None:
        self.processes.update(stack.spawn(services, self.env, self.logs))


@contextmanager
def private_stack(prefix: str, env: dict[str, str], folder: Path | None, keep: bool) -> Iterator[Private]:
    """Kafka and QuestDB on free loopback ports under a new temporary folder, the provider mirror `folder`
    (None: an empty one in that folder) served over HTTP, every setting in the environment; on leaving,
    the services and servers stopped and the folder tidied."""
    var = Path(tempfile.mkdtemp(prefix=prefix))
    if folder is None:
        folder = var / "mirror"
        folder.mkdir()
    env = {**infra.isolated_env(var), **env}
    server, base = mirror.serve(folder)
    env.update(mirror.provider_env(base))
    os.environ.update(env)
    run = Private(var, Settings(), env, folder)
    try:
        infra.start(run.settings)
        questdb.ensure_tables(run.settings)
        yield run
    finally:
        stack.terminate(run.processes)
        server.shutdown()
        infra.stop(run.settings)
        tidy(var, run.logs, run.processes, keep, run.ok)


def webhook_subscriptions(settings: Settings, urls: list[str]) -> list[schemas.Subscription]:
    """One subscription to every alert per URL, as the API makes them (the codes are thrown away)."""
    vault = Vault(settings)
    return [new_subscription(vault, schemas.SubscriptionFilters(), "webhook", url)[2] for url in urls]


async def write_subscriptions(settings: Settings, subs: list[schemas.Subscription]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for sub in subs:
            await producer.send(topics.SUBSCRIPTIONS.name, topics.SUBSCRIPTIONS.encode(sub),
                                key=sub.subscription_id.encode())
    finally:
        await producer.stop()
