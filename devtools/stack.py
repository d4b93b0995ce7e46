"""One stack for tests, benchmarks and `make run`: Kafka and QuestDB, a provider mirror, services as processes.

    with private_stack(services=("sink", "derive"), env={"FLASHES_HTTP_RETRIES": "1"}, mirror=folder) as stack:
        stack.settings                        # the settings every service was given
        stack.start("relevance#2", env={...}) # a second worker (slot SERVICE#LABEL), its own variables on top
        stack.kill("derive"); stack.start("derive")
        stack.restart_exited()                # what exited on its own, again, with the variables it had
        stack.stop("kafka"); stack.start("kafka")

A private stack runs on free loopback ports under a new temporary folder, removed afterwards unless kept or
something failed; `make run` runs the same `running_stack` on the configured ports and `var/`. A service is
`flashes run NAME` given exactly the stack's FLASHES_* variables (devtools.infra.child_env), logging to
logs/SLOT.log; a traceback there counts as a crash (`Stack.crashed`).
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from devtools import infra
from devtools.infra import SERVERS, KafkaLogins
from devtools.mirror import provider_env, serve
from flashes import catalogue, questdb
from flashes.settings import PROJECT_ROOT, Settings
from schemas import CatalogueSource

log = logging.getLogger(__name__)
SAMPLE_MIRROR = PROJECT_ROOT / "data" / "mirror"
FLASHES = Path(sys.executable).parent / "flashes"


class Stack:
    """Servers and service processes run with one set of FLASHES_* variables (`env`, read as `settings`)."""

    def __init__(self, env: Mapping[str, str], kafka_logins: KafkaLogins | None = None) -> None:
        self.env = dict(env)
        self.settings = Settings.from_env(self.env)
        self.kafka_logins = kafka_logins
        self.logs = self.settings.var_dir / "logs"
        self.processes: dict[str, subprocess.Popen] = {}  # running slots
        self.slots: set[str] = set()  # every slot ever started: their logs are checked for crashes
        self.started_with: dict[str, dict[str, str]] = {}  # slot -> the `env` it was last started with
        self.keep = False  # set to keep a private stack's folder after a run that went wrong without raising

    def settings_with(self, env: Mapping[str, str]) -> Settings:
        """The settings of a service started with `env` on top of the stack's variables."""
        return Settings.from_env({**self.env, **env})

    def start(self, *names: str, env: Mapping[str, str] | None = None) -> None:
        """Start servers ("kafka", "questdb") and services (NAME, or a slot NAME#LABEL for one more of it); a
        service gets the stack's variables with `env` on top. A server already running is left as it is."""
        servers = tuple(n for n in names if n in SERVERS)
        if servers:
            infra.start(self.settings, servers=servers, kafka_logins=self.kafka_logins)
        child = infra.child_env({**self.env, **(env or {})})
        self.logs.mkdir(parents=True, exist_ok=True)
        for slot in (n for n in names if n not in SERVERS):
            if slot in self.processes and self.processes[slot].poll() is None:
                raise ValueError(f"{slot} is running: stop or kill it first, or start another slot ({slot}#2)")
            out = (self.logs / f"{slot}.log").open("ab")
            self.processes[slot] = subprocess.Popen(
                [str(FLASHES), "run", slot.split("#")[0]],
                env=child,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            out.close()  # the child holds its own descriptor
            self.slots.add(slot)
            self.started_with[slot] = dict(env or {})

    def restart_exited(self) -> list[str]:
        """Start again, with the `env` each was last started with, the services that exited without being stopped
        or killed (as a supervisor would); their slots."""
        exited = [slot for slot, proc in self.processes.items() if proc.poll() is not None]
        for slot in exited:
            log.warning("%s exited (%s); restarting it", slot, self.processes[slot].returncode)
            self.start(slot, env=self.started_with[slot])
        return exited

    def stop(self, *names: str, timeout_s: float = 30.0) -> None:
        """SIGTERM the services (no names: every running one) and give them `timeout_s` to commit and leave their
        groups, then SIGKILL stragglers; stop the servers named."""
        slots = [n for n in names if n not in SERVERS] if names else list(self.processes)
        _terminate({s: self.processes.pop(s) for s in slots if s in self.processes}, timeout_s)
        servers = tuple(n for n in names if n in SERVERS)
        if servers:
            infra.stop(self.settings, servers=servers)

    def kill(self, slot: str) -> bool:
        """SIGKILL a service (nothing committed, nothing left cleanly); whether it was running."""
        proc = self.processes.pop(slot, None)
        if proc is None or proc.poll() is not None:
            return False
        proc.kill()
        proc.wait()
        return True

    def crashed(self, slots: Iterable[str] | None = None) -> list[str]:
        """The slots (default: every one started) whose log shows a traceback."""
        return [
            slot
            for slot in sorted(self.slots if slots is None else slots)
            if (log := self.logs / f"{slot}.log").exists() and "Traceback" in log.read_text(errors="replace")
        ]


def _terminate(processes: Mapping[str, subprocess.Popen], timeout_s: float = 30.0) -> None:
    """SIGTERM every process, wait up to `timeout_s` in all, then SIGKILL stragglers."""
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in processes.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_stack(
    env: Mapping[str, str],
    services: tuple[str, ...] = (),
    mirror: Path | None = None,
    servers: tuple[str, ...] = SERVERS,
    kafka_logins: KafkaLogins | None = None,
) -> Iterator[Stack]:
    """The provider mirror folder `mirror` served over HTTP on loopback (the providers' URLs added to the
    variables), the servers (and QuestDB's tables), then the services. On leaving: the services stopped, the
    servers, the mirror; each service that logged a traceback is named on stderr."""
    served, base = serve(mirror) if mirror is not None else (None, "")
    try:
        stack = Stack({**env, **provider_env(base)} if served else env, kafka_logins)
        try:
            stack.start(*servers)
            if "questdb" in servers:
                questdb.ensure_tables(stack.settings)
            stack.start(*services)
            yield stack
        finally:
            stack.stop()
            stack.stop(*servers)
            for name in stack.crashed():
                print(f"warning: {name} logged a traceback (see {stack.logs / (name + '.log')})", file=sys.stderr)
    finally:
        if served is not None:
            served.shutdown()


@contextmanager
def private_stack(
    services: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    mirror: Path | None = None,
    var: Path | None = None,
    servers: tuple[str, ...] = SERVERS,
    kafka_logins: KafkaLogins | None = None,
    keep: bool = False,
) -> Iterator[Stack]:
    """`running_stack` on free loopback ports with its data under `var` (default: a new temporary folder, removed
    afterwards unless `keep`, an error, a crashed service or `stack.keep` says otherwise); `env` on top."""
    temporary = var is None
    folder = Path(tempfile.mkdtemp(prefix="flashes-stack-")) if var is None else var
    failed = True
    try:
        with running_stack(
            {**infra.isolated_env(folder), **(env or {})}, services, mirror, servers, kafka_logins
        ) as stack:
            yield stack
        failed = stack.keep or bool(stack.crashed())
    finally:
        if temporary and (keep or failed):
            print(f"kept {folder}", file=sys.stderr)
        elif temporary:
            shutil.rmtree(folder, ignore_errors=True)


def mirrored_sources(settings: Settings, folder: Path) -> list[str]:
    """Ids of the catalogue sources that have a MAXI file in a provider-layout mirror folder."""
    present = {p.name for p in (folder / "maxi" / "star_data").iterdir() if p.is_dir()}
    return [r.id for r in catalogue.load(settings) if r.maxi and r.maxi.provider_id in present]


def maxi_and_bat_sources(settings: Settings) -> list[CatalogueSource]:
    """The catalogue sources that MAXI and BAT both observe, in catalogue order."""
    return [rec for rec in catalogue.load(settings) if rec.maxi and rec.swift]


class SamplePair(NamedTuple):
    """A sample source's MAXI file, its BAT file and its catalogue record."""

    maxi: Path
    bat: Path
    record: CatalogueSource


def sample_pairs(settings: Settings) -> list[SamplePair]:
    """Every sample source that has both files (benchmarks and the fault and operation runs reuse them)."""
    pairs = []
    for rec in maxi_and_bat_sources(settings):
        maxi_id = rec.maxi.provider_id
        maxi = SAMPLE_MIRROR / "maxi" / "star_data" / maxi_id / f"{maxi_id}_g_lc_1day_all.dat"
        bat = list(SAMPLE_MIRROR.glob(f"swift/results/transients/**/{rec.swift.provider_id}.lc.txt"))
        if maxi.exists() and bat:
            pairs.append(SamplePair(maxi, bat[0], rec))
    return pairs
