"""Kafka (KRaft, single node) and QuestDB on loopback, from Maven Central jars, without Docker: `make run`'s
servers and every private stack's (devtools/stack.py).

`fetch_jars` copies the artifacts pinned in deploy/maven/pom.xml into the cache once and checks
them against deploy/maven/jars.sha256; `start` formats and starts both servers in the
background (pid files under var_dir) and waits until they answer; `stop` ends them cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

from aiokafka.errors import KafkaError

from flashes import kafka, questdb
from flashes.errors import InfraError
from flashes.kafka_acl import ADMIN, PLAN
from flashes.kafka_deploy import PASSWORD_ENV, kafka_properties, scram_users
from flashes.settings import PREFIX, PROJECT_ROOT, Settings
from services.registry import SERVICES

POM = PROJECT_ROOT / "deploy" / "maven" / "pom.xml"
CHECKSUMS = PROJECT_ROOT / "deploy" / "maven" / "jars.sha256"
SERVERS = ("kafka", "questdb")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(n: int) -> int:
    """The first of `n` consecutive free loopback ports."""
    while True:
        first = free_port()
        try:
            with ExitStack() as held:
                for port in range(first + 1, first + n):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            return first
        except (OSError, OverflowError):  # one of them is taken, or past 65535: another start
            continue


def isolated_env(var_dir: Path) -> dict[str, str]:
    """FLASHES_* settings for a private stack (tests, benchmarks): free loopback ports (a run of them for the
    services' metrics), own data folder."""
    ports = (
        "KAFKA_PORT",
        "KAFKA_CONTROLLER_PORT",
        "QUESTDB_HTTP_PORT",
        "QUESTDB_PG_PORT",
        "QUESTDB_MIN_HTTP_PORT",
        "API_PORT",
    )
    return {
        "FLASHES_VAR_DIR": str(var_dir),
        "FLASHES_CACHE_DIR": str(PROJECT_ROOT / ".cache"),
        **{f"FLASHES_{name}": str(free_port()) for name in ports},
        "FLASHES_METRICS_PORT": str(free_ports(len(SERVICES))),
    }


def child_env(env: Mapping[str, str], base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A child process's environment: `base` (this process's) without its FLASHES_* variables, then `env`; so a
    child has the settings it is given, never the shell's."""
    return {k: v for k, v in base.items() if not k.startswith(PREFIX)} | dict(env)


def jar_dir(settings: Settings) -> Path:
    return settings.cache_dir / "jars"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expected_checksums() -> dict[str, str]:
    lines = CHECKSUMS.read_text().split("\n")
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def _verify(jars: Path) -> list[str]:
    """Names of jars that are missing or whose sha256 differs from the committed list."""
    return [
        name
        for name, digest in _expected_checksums().items()
        if not (jars / name).is_file() or _sha256(jars / name) != digest
    ]


def checksummed_jars(jars: Path) -> list[Path]:
    """The jars named in the committed list, which `fetch_jars` has verified: any other jar lying in the cache
    never reaches a classpath."""
    return [jars / name for name in sorted(_expected_checksums())]


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise InfraError("java not found on PATH: install OpenJDK 17 (Debian: apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    major = out.split('"')[1].split(".")[0] if '"' in out else "0"
    if int(major) < 17:
        raise InfraError(f"Java 17 or newer is needed, found: {out.splitlines()[0]}")
    return java


def fetch_jars(settings: Settings) -> Path:
    """Make sure the pinned jars are in the cache; download them with Maven only if not."""
    jars = jar_dir(settings)
    if jars.is_dir() and not _verify(jars):
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(
            "mvn (Apache Maven) not found on PATH: it downloads Kafka and QuestDB "
            "from Maven Central (Debian: apt-get install maven)"
        )
    jars.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "--strict-checksums",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={jars}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"Maven could not fetch the jars ({' '.join(cmd)}):\n{result.stdout}{result.stderr}")
    bad = _verify(jars)
    if bad:
        raise InfraError(
            f"checksum mismatch or missing after download: {', '.join(bad)} (expected digests in {CHECKSUMS})"
        )
    return jars


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.var_dir / f"{name}.pid"


def _running_pid(settings: Settings, name: str) -> int | None:
    path = _pid_file(settings, name)
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        exited = os.waitpid(pid, os.WNOHANG)[0] == pid  # our own child: reap it if it has exited
    except ChildProcessError:  # started by another process: ask the kernel instead
        exited = False
    if not exited:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            exited = True
    if exited:
        path.unlink()
        return None
    return pid


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _spawn(settings: Settings, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    log = (settings.var_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(env or {}),
        start_new_session=True,
    )
    _pid_file(settings, name).write_text(str(proc.pid))


# Passwords go unquoted into --add-scram 'SCRAM-SHA-512=[name=..,password=..]' and quoted into JAAS lines.
PASSWORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class KafkaLogins:
    """The passwords of a SASL broker: `admin` (super user: topics, ACLs, the broker's own login), the
    controller listener's PLAIN login, and one SCRAM user per service of flashes/kafka_acl.py's plan."""

    admin_password: str
    controller_password: str
    service_passwords: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = sorted(set(PLAN) - set(self.service_passwords))
        if missing:
            raise InfraError(f"no Kafka password for the service users {', '.join(missing)}")
        for user, password in self.passwords().items():
            if len(password) < 16 or not set(password) <= PASSWORD_CHARS:
                raise InfraError(
                    f"the Kafka password of {user!r} must be at least 16 characters of A-Z a-z 0-9 _ - "
                    f"(make one: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
                )

    def passwords(self) -> dict[str, str]:
        return {ADMIN: self.admin_password, "controller": self.controller_password, **self.service_passwords}

    def env(self) -> dict[str, str]:
        """The broker's environment: every password under its PASSWORD_ENV name."""
        return {PASSWORD_ENV[user]: password for user, password in self.passwords().items()}


def _start_kafka(settings: Settings, java: str, jars: Path, logins: KafkaLogins | None = None) -> None:
    """Format (once) and start the broker; with `logins` SASL-only, its users created at format time."""
    home = settings.var_dir / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(
        kafka_properties(
            settings.kafka_host, settings.kafka_port, settings.kafka_controller_port, data, sasl=logins is not None
        )
    )
    env = logins.env() if logins else {}
    users = scram_users(logins.passwords().__getitem__) if logins else []
    classpath = ":".join(str(p) for p in checksummed_jars(jars) if not p.name.startswith("questdb-"))
    base = [java, "-Xmx512m", "-cp", classpath, f"-Dkafka.logs.dir={home}"]
    if not (data / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the storage tool would take a leading '-' for an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [*base, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *users],
            capture_output=True,
            text=True,
            env=child_env(env),
        )
        if fmt.returncode != 0:
            raise InfraError(f"formatting Kafka storage in {data} failed:\n{fmt.stdout}{fmt.stderr}")
    _spawn(settings, "kafka", [*base, "kafka.Kafka", str(props)], env)


def _start_questdb(settings: Settings, java: str, jars: Path) -> None:
    data = settings.var_dir / "questdb"
    data.mkdir(parents=True, exist_ok=True)
    jar = next(p for p in checksummed_jars(jars) if p.name.startswith("questdb-"))
    h = settings.questdb_host
    env = {
        "QDB_HTTP_BIND_TO": f"{h}:{settings.questdb_http_port}",
        "QDB_HTTP_MIN_NET_BIND_TO": f"{h}:{settings.questdb_min_http_port}",
        "QDB_PG_NET_BIND_TO": f"{h}:{settings.questdb_pg_port}",
        # ILP over TCP has no password login in QuestDB OSS: the sink writes ILP over HTTP, which has (below).
        "QDB_LINE_TCP_ENABLED": "false",
        "QDB_LINE_UDP_ENABLED": "false",
        "QDB_TELEMETRY_ENABLED": "false",
        "QDB_PG_READONLY_USER_ENABLED": "true",
        "QDB_PG_READONLY_USER": settings.questdb_reader_user,
        "QDB_PG_READONLY_PASSWORD": settings.questdb_reader_password.get_secret_value(),
        # The same logins as in compose, so every test writes and queries as the writer, with its password.
        "QDB_HTTP_USER": settings.questdb_writer_user,
        "QDB_HTTP_PASSWORD": settings.questdb_writer_password.get_secret_value(),
        "QDB_PG_USER": settings.questdb_writer_user,
        "QDB_PG_PASSWORD": settings.questdb_writer_password.get_secret_value(),
    }
    _spawn(
        settings,
        "questdb",
        [java, "-Xmx1g", "-p", str(jar), "-m", "io.questdb/io.questdb.ServerMain", "-d", str(data)],
        env,
    )


def kafka_healthy(settings: Settings) -> bool:
    """Kafka answers a metadata request: its port opens before the broker serves, and a client that
    bootstraps then is dropped ("Unable to bootstrap", seen once in a fresh clone's test run)."""
    return _port_open(settings.kafka_host, settings.kafka_port) and asyncio.run(_kafka_answers(settings))


async def _kafka_answers(settings: Settings) -> bool:
    client = kafka.client(settings, request_timeout_ms=2000)
    try:
        await client.bootstrap()
        return True
    except KafkaError:
        return False
    finally:
        await client.close()


def _wait(settings: Settings, name: str, healthy: Callable[[Settings], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy(settings):
            return
        if _running_pid(settings, name) is None:
            raise InfraError(f"{name} exited during start-up; see {settings.var_dir / (name + '.log')}")
        time.sleep(0.3)
    raise InfraError(
        f"{name} did not become healthy within {timeout_s:.0f} s; see {settings.var_dir / (name + '.log')}"
    )


class _Plan(NamedTuple):
    """How to start one server and tell that it is up."""

    host: str
    port: int
    port_setting: str
    launch: Callable[[Settings, str, Path], None]
    healthy: Callable[[Settings], bool]


def start(
    settings: Settings,
    timeout_s: float = 90.0,
    servers: tuple[str, ...] = SERVERS,
    kafka_logins: KafkaLogins | None = None,
) -> None:
    """Start whichever of the servers (Kafka, QuestDB) is not running yet and wait until all are healthy.

    With `kafka_logins`, Kafka listens with SASL only (as compose's broker does); `settings` must then log in
    as `admin` (the health check does), and `flashes.kafka_acl.apply` creates the topics and ACLs."""
    if kafka_logins is not None and (settings.kafka_security_protocol, settings.kafka_user) != (
        "SASL_PLAINTEXT",
        ADMIN,
    ):
        raise InfraError(
            f"a SASL Kafka is started with settings that log in as {ADMIN!r}: "
            f"FLASHES_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, FLASHES_KAFKA_USER={ADMIN}"
        )
    java = require_java()
    jars = fetch_jars(settings)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    plans = {
        "kafka": _Plan(
            settings.kafka_host, settings.kafka_port, "PORT", partial(_start_kafka, logins=kafka_logins), kafka_healthy
        ),
        "questdb": _Plan(
            settings.questdb_host, settings.questdb_http_port, "HTTP_PORT", _start_questdb, questdb.healthy
        ),
    }
    for name in servers:
        plan = plans[name]
        if _running_pid(settings, name) is None and _port_open(plan.host, plan.port):
            raise InfraError(
                f"port {plan.host}:{plan.port} is taken by another program; "
                f"choose another with FLASHES_{name.upper()}_{plan.port_setting}"
            )
    for name in servers:
        if _running_pid(settings, name) is None:
            plans[name].launch(settings, java, jars)
    for name in servers:
        _wait(settings, name, plans[name].healthy, timeout_s)


def stop(settings: Settings, timeout_s: float = 30.0, servers: tuple[str, ...] = SERVERS) -> None:
    """SIGTERM each server, wait for it to exit, SIGKILL only if it will not."""
    for name in servers:
        pid = _running_pid(settings, name)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _running_pid(settings, name) is not None:
            time.sleep(0.2)
        if _running_pid(settings, name) is not None:
            os.killpg(pid, signal.SIGKILL)
        _pid_file(settings, name).unlink(missing_ok=True)


def status(settings: Settings) -> dict[str, bool]:
    return {"kafka": kafka_healthy(settings), "questdb": questdb.healthy(settings)}
