"""Kafka with SASL/SCRAM and ACLs (issue #21): a local broker (a private stack of devtools) with the listener, users
and authorizer compose runs (deploy/kafka/, generated from the same code), the ACLs of flashes/kafka_acl.py.

A service works with its own login; a wrong writer, a wrong reader, a stranger's consumer group, a wrong
password and a client without SASL are refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, TopicAuthorizationFailedError
from cryptography.fernet import Fernet

import schemas
from devtools import mirror
from devtools.infra import KafkaLogins
from devtools.observe import positioned, produce, receiver, up, wait_until
from devtools.stack import Stack, private_stack
from flashes import chunks, kafka, kafka_acl, kafka_deploy, questdb, topics
from flashes.errors import InfraError
from flashes.kafka import read_to_end
from flashes.kafka_acl import ADMIN, PLAN, Access
from flashes.safety import SECRETS, env_name
from flashes.settings import Settings
from services.registry import PIPELINE, PROCESSORS, SERVICES
from tests.conftest import SOURCES, copy_mirror, subscribe

pytestmark = pytest.mark.integration  # starts its own Kafka with logins

SOURCE = "gx339-4"  # MAXI and BAT both in the catalogue: derive joins them


# A new value for every secret but the Kafka logins: what the end-to-end test gives each service that reads it.
RIGHT = {
    "questdb_writer_password": secrets.token_urlsafe(24),
    "questdb_reader_password": secrets.token_urlsafe(24),
    "secret_key": Fernet.generate_key().decode(),
    "smtp_password": "",
}


class Broker:
    """The SASL broker of this module (a private stack that starts Kafka alone): its variables, each user's settings."""

    def __init__(self, stack: Stack, logins: KafkaLogins) -> None:
        self.stack, self.env, self.logins = stack, stack.env, logins

    def login_env(self, user: str, password: str | None = None) -> dict[str, str]:
        """FLASHES_* of a process that logs in as `user`."""
        return {
            **self.env,
            "FLASHES_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FLASHES_KAFKA_USER": user,
            "FLASHES_KAFKA_PASSWORD": password or self.logins.passwords()[user],
        }

    def as_user(self, user: str, password: str | None = None) -> Settings:
        return Settings.from_env(self.login_env(user, password))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    logins = KafkaLogins(
        secrets.token_urlsafe(24), secrets.token_urlsafe(24), {service: secrets.token_urlsafe(24) for service in PLAN}
    )
    admin = {
        "FLASHES_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "FLASHES_KAFKA_USER": ADMIN,
        "FLASHES_KAFKA_PASSWORD": logins.admin_password,
        **{env_name(f): v for f, v in RIGHT.items()},
    }
    with private_stack(
        env=admin, var=tmp_path_factory.mktemp("sasl"), servers=("kafka",), kafka_logins=logins
    ) as stack:
        b = Broker(stack, logins)
        assert asyncio.run(kafka_acl.apply(b.as_user(ADMIN))) == len(kafka_acl.acls())
        yield b


def lightcurve(instrument: str, mjd: list[float], flux: float) -> schemas.LightcurveChunk:
    band = {"maxi": "2-20", "swift": "15-50"}[instrument]
    [one] = chunks.build(
        schemas.LightcurveChunk,
        mjd,
        {"flux": {band: [flux] * len(mjd)}, "error": {band: [flux / 20] * len(mjd)}},
        source_id=SOURCE,
        instrument=instrument,
        bands=[band],
        units="u",
        provenance=schemas.Provenance(url="file://x", fetched_at="2026-01-01T00:00:00Z"),
    )
    return one


async def send(settings: Settings, topic: str, value: bytes, key: bytes = b"k") -> None:
    """One record as `settings`' user: raises what the broker refuses."""
    await produce(settings, [(topic, key, value)])


async def derived_kinds(settings: Settings, group: str, want: set[str]) -> set[str]:
    """Consume flashes.derived.v2 as `settings`' user in `group` until every kind in `want` has come."""
    consumer = kafka.consumer(
        settings, topics.DERIVED.name, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    seen: set[str] = set()
    await consumer.start()
    try:
        while not want <= seen:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen |= {topics.DERIVED.decode(r.value).kind for r in records}
    finally:
        await consumer.stop()
    return seen


def test_derive_works_with_its_own_login_between_the_fetcher_and_the_sink(broker: Broker) -> None:
    """The fetcher's user publishes MAXI and BAT chunks, derive (a process logged in as `derive`) joins them,
    and the sink's user reads the hardness and combined chunks in the sink's group."""
    stack = broker.stack
    stack.start("derive", env=broker.login_env("derive"))
    try:
        fetcher = broker.as_user("fetcher")
        for instrument, mjd, flux in (("maxi", [58000.5, 58001.5], 0.64), ("swift", [58000.0, 58001.0], 0.022)):
            asyncio.run(
                send(
                    fetcher,
                    topics.LIGHTCURVE.name,
                    topics.LIGHTCURVE.encode(lightcurve(instrument, mjd, flux)),
                    SOURCE.encode(),
                )
            )
        kinds = asyncio.run(
            asyncio.wait_for(derived_kinds(broker.as_user("sink"), "flashes-sink", {"hardness", "combined"}), 120)
        )
        assert kinds == {"hardness", "combined"}
        assert stack.processes["derive"].poll() is None
    finally:
        stack.stop("derive")
    assert not stack.crashed(["derive"])


def refused(log_dir: Path, names: Iterable[str]) -> list[str]:
    """The services whose log shows the broker refusing them something (a missing ACL)."""
    return [name for name in names if "AuthorizationFailed" in (log_dir / f"{name}.log").read_text(errors="replace")]


def test_every_service_with_its_own_login_and_only_its_secrets_carries_an_alert_end_to_end(
    broker: Broker, tmp_path: Path
) -> None:
    """The seven services, each logged in as its own Kafka user and given a wrong value for every secret it does not
    declare (flashes.safety.SECRETS): MAXI J1535-571 fetched from a mirror becomes alerts that the sink stores in
    QuestDB and delivery posts to a webhook subscribed through the API; the broker refuses no one anything."""
    assert set(RIGHT) == {name for used in SECRETS.values() for name in used} - {"kafka_password"}
    stack, admin = broker.stack, broker.as_user(ADMIN)  # the stack's variables hold the right secrets
    stack.start("questdb")
    questdb.ensure_tables(admin)
    hooks, hook_url, received = receiver(204)
    providers, base = mirror.serve(copy_mirror({"J1535-572": SOURCES["J1535-572"][1]}, tmp_path / "mirror"))
    common = {
        **mirror.provider_env(base),
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
        "FLASHES_FETCH_JITTER_S": "0",
        "FLASHES_FETCH_SOURCES": '["maxij1535-571"]',
    }

    def env_of(name: str) -> dict[str, str]:
        told = {env_name(f): value if f in SECRETS[name] else f"undeclared-{f}" for f, value in RIGHT.items()}
        return {**broker.login_env(name), **common, **told}

    logs = stack.logs
    slots = {name: f"{name}#e2e" for name in SERVICES}  # logs of their own: logs/NAME#e2e.log
    processes: dict = {}

    def start(name: str) -> None:
        stack.start(slots[name], env=env_of(name))
        processes[slots[name]] = stack.processes[slots[name]]

    def until(condition: Callable[[], bool], what: str) -> None:
        """Wait for `what`; a service the broker refused something ends the wait and the test, naming it."""
        wait_until(lambda: condition() or bool(refused(logs, processes)), what, 120)
        assert refused(logs, processes) == []

    try:
        for name in PIPELINE:
            start(name)
        api = f"http://127.0.0.1:{broker.env['FLASHES_API_PORT']}"
        until(lambda: up(f"{api}/health/kafka") or processes[slots["api"]].poll() is not None, "the API")
        code = subscribe(
            api,
            {
                "channel": "webhook",
                "webhook_url": f"{hook_url}/all",
                "filters": {"sources": ["maxij1535-571"], "history": True},
            },
        )["code"]
        # A test alert: the API queues it on the retry topic, delivery's retry group sends it.
        assert httpx.post(f"{api}/subscriptions/{code}/test", timeout=30).status_code == 202
        until(lambda: bool(received), "the test alert at the webhook")
        assert schemas.Alert.model_validate_json(received[0]["body"]).test
        until(
            lambda: asyncio.run(positioned(admin, "flashes-delivery", topics.ALERTS.name)),
            "delivery to join at the end of the alerts",
        )
        start("fetcher")
        until(lambda: len(received) > 1, "an alert at the webhook")
        alert = schemas.Alert.model_validate_json(received[1]["body"])
        assert alert.source_id == "maxij1535-571" and not alert.test
        stored = "SELECT count() n FROM alerts WHERE source_id = 'maxij1535-571'"
        until(lambda: questdb.query(admin, stored)[0]["n"] > 0, "the sink to store the alert")

        def listed() -> set[bool]:
            """Which deliveries (test or not) the subscriber's list shows: the API reads them as QuestDB's reader."""
            answer = httpx.get(f"{api}/subscriptions/{code}/deliveries", timeout=30)
            return {d["test"] for d in answer.json()} if answer.status_code == 200 else set()

        until(lambda: listed() == {True, False}, "the test and the alert in the subscriber's delivery list")
        assert {slot: proc.poll() for slot, proc in processes.items()} == dict.fromkeys(slots.values())
    finally:
        stack.stop(*processes)
        hooks.stop()
        providers.shutdown()
        stack.stop("questdb")
    assert not stack.crashed(processes) and refused(logs, processes) == []


# For every service, a topic it must not write: only the fetcher writes lightcurves, only relevance scores,
# only alerts alerts, only the API subscriptions (a forged or null-keyed subscription), only delivery its log.
WRONG_WRITERS = [
    ("fetcher", topics.ALERTS),
    ("derive", topics.LIGHTCURVE),
    ("relevance", topics.ALERTS),
    ("alerts", topics.RELEVANCE),
    ("delivery", topics.SUBSCRIPTIONS),
    ("sink", topics.DERIVED),
    ("api", topics.ALERTS),
    ("api", topics.DELIVERIES),
]


@pytest.mark.parametrize(("user", "spec"), WRONG_WRITERS, ids=[f"{u}->{s.name}" for u, s in WRONG_WRITERS])
def test_a_wrong_writer_is_refused(broker: Broker, user: str, spec: topics.TopicSpec) -> None:
    assert spec not in PLAN[user].writes
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(asyncio.wait_for(send(broker.as_user(user), spec.name, b"{}"), 60))


def test_a_wrong_reader_and_a_strangers_group_are_refused(broker: Broker) -> None:
    """The API may not read the delivery log that delivery writes; derive may not join the sink's group."""
    log = [TopicPartition(topics.DELIVERIES.name, 0)]
    before = len(asyncio.run(read_to_end(broker.as_user("delivery"), log)))  # the end-to-end test's deliveries
    asyncio.run(send(broker.as_user("delivery"), topics.DELIVERIES.name, b"{}"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(asyncio.wait_for(read_to_end(broker.as_user("api"), log), 60))
    assert len(asyncio.run(read_to_end(broker.as_user("delivery"), log))) == before + 1
    with pytest.raises(GroupAuthorizationFailedError):
        asyncio.run(asyncio.wait_for(derived_kinds(broker.as_user("derive"), "flashes-sink", {"hardness"}), 60))


def test_a_wrong_password_and_a_client_without_sasl_are_refused(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(
            asyncio.wait_for(
                send(broker.as_user("fetcher", secrets.token_urlsafe(24)), topics.LIGHTCURVE.name, b"{}"), 60
            )
        )
    assert "SaslAuthenticationFailed" in caplog.text
    anonymous = broker.as_user("fetcher").model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    with pytest.raises(KafkaConnectionError):
        asyncio.run(asyncio.wait_for(send(anonymous, topics.LIGHTCURVE.name, b"{}"), 60))


def test_a_service_cannot_grant_itself_more(broker: Broker) -> None:
    """Only the super user creates ACLs: the fetcher asking to write alerts is refused, and still cannot."""
    more = {"fetcher": Access(reads=(), writes=(topics.ALERTS,))}
    with pytest.raises(InfraError, match="ClusterAuthorizationFailedError"):
        asyncio.run(asyncio.wait_for(kafka_acl.apply(broker.as_user("fetcher"), more), 60))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(asyncio.wait_for(send(broker.as_user("fetcher"), topics.ALERTS.name, b"{}"), 60))


def test_the_plan_is_the_code() -> None:
    """One user per service; a processor reads its inputs and its state, writes its state, joins flashes-{name};
    the sink reads every stored topic in its group."""
    from importlib import import_module

    from services.sink.service import GROUP as SINK_GROUP

    assert tuple(PLAN) == SERVICES
    logic = {"derive": "Derive", "relevance": "Relevance", "alerts": "Alerts"}
    for name in PROCESSORS:
        cls = getattr(import_module(f"services.{name}.app"), logic[name])
        assert set(cls.inputs) | {cls.state} == set(PLAN[name].reads)
        assert cls.state in PLAN[name].writes
        assert PLAN[name].groups == (f"flashes-{name}",)
    assert set(PLAN["sink"].reads) == set(topics.STORED) and PLAN["sink"].groups == (SINK_GROUP,)
    writers = {spec: {u for u, a in PLAN.items() if spec in a.writes} for spec in topics.ALL}
    assert writers[topics.LIGHTCURVE] == {"fetcher"} and writers[topics.RELEVANCE] == {"relevance"}
    assert writers[topics.ALERTS] == {"alerts"} and writers[topics.SUBSCRIPTIONS] == {"api"}


def test_compose_runs_the_tested_broker(broker: Broker) -> None:
    """deploy/kafka/ is what the generator makes, and differs from the broker attacked above only in where it
    listens and keeps its data."""
    assert (kafka_deploy.DEPLOY / "server.properties").read_text() == kafka_deploy.server_properties()
    assert (kafka_deploy.DEPLOY / "start.sh").read_text() == kafka_deploy.start_script()
    local = Path(broker.env["FLASHES_VAR_DIR"], "kafka", "server.properties").read_text().splitlines()
    compose = kafka_deploy.server_properties().splitlines()[1:]
    assert {line.split("=")[0] for line in set(local) ^ set(compose)} == {
        "controller.quorum.voters",
        "listeners",
        "advertised.listeners",
        "log.dirs",
    }
    assert "super.users=User:admin;User:controller" in compose and "allow.everyone.if.no.acl.found=false" in compose
    assert not any(
        p in (kafka_deploy.DEPLOY / "server.properties").read_text() for p in broker.logins.passwords().values()
    )


@pytest.mark.parametrize("password", [None, "short", 'has"a-quote-and-is-long-enough'])
def test_compose_broker_refuses_a_missing_or_unusable_password(password: str | None) -> None:
    """start.sh checks every password before it formats anything (a quote would break the broker's JAAS line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHES_KAFKA_")}
    env.update({name: secrets.token_urlsafe(24) for name in kafka_deploy.PASSWORD_ENV.values()})
    env.pop("FLASHES_KAFKA_SINK_PASSWORD")
    if password is not None:
        env["FLASHES_KAFKA_SINK_PASSWORD"] = password
    env["KAFKA_HOME"] = "/nonexistent"  # reached only after the checks
    run = subprocess.run(["bash", str(kafka_deploy.DEPLOY / "start.sh")], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.startswith("FLASHES_KAFKA_SINK_PASSWORD must be at least 16 characters")
