"""Issue 21, unsafe settings, SMTP transport security, the chart query: each test provokes the failure and
asserts it is refused (a service that will not start, a mail not sent in clear, SQL that stays SQL)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from pydantic import SecretStr

import schemas
from devtools.infra import free_port
from devtools.observe import Mailbox
from flashes import questdb
from flashes.errors import DeliveryError
from flashes.safety import KEY_FIELDS, SECRET_FIELD, SECRETS, env_name, unsafe_settings
from flashes.settings import Settings
from flashes.smtp import confirmation_message, send
from services.delivery.messages import recent_points
from services.registry import SERVICES
from tests.certs import self_signed, server_context
from tests.test_mail import TO, lightcurve_rows, renamed

FLASHES = Path(sys.executable).parent / "flashes"
EXPOSED = {"api_host": "0.0.0.0"}


def fresh_secrets() -> dict[str, str]:
    """A new value for every secret text setting (whoever declared it), a Fernet key for the secret key."""
    values = {
        name: secrets.token_urlsafe(24)
        for name, field in Settings.model_fields.items()
        if SECRET_FIELD.search(name) and field.annotation in (str, SecretStr)
    }
    return {**values, "secret_key": Fernet.generate_key().decode()}


def run_cli(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`flashes ARGS` with only the given FLASHES_* settings (none inherited from the shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHES_")}
    env.update({env_name(name): value for name, value in settings.items()})
    return subprocess.run([str(FLASHES), *args], env=env, capture_output=True, text=True, timeout=120)


def test_loopback_development_starts_with_every_default() -> None:
    assert all(unsafe_settings(Settings(), service) == [] for service in SERVICES)


def test_every_secret_setting_is_declared_by_the_services_that_read_it() -> None:
    """A password added later is judged only once a service declares it: every secret field is some service's."""
    assert tuple(SECRETS) == SERVICES
    declared = {name for used in SECRETS.values() for name in used}
    assert declared <= set(Settings.model_fields)
    assert {name for name in Settings.model_fields if SECRET_FIELD.search(name)} - {"secret_keys"} == declared


@pytest.mark.parametrize("service", SERVICES)
def test_every_default_secret_a_service_reads_is_refused_beyond_loopback(service: str) -> None:
    """Each secret the service reads, left at its non-empty default, is named; the others are not its business."""
    used = SECRETS[service]
    defaults = [
        env_name(name)
        for name in used
        if name not in KEY_FIELDS and Settings.model_fields[name].get_default(call_default_factory=True)
    ]
    problems = unsafe_settings(Settings(**EXPOSED), service)
    assert all(p.startswith("beyond loopback (FLASHES_API_HOST): ") for p in problems)
    if "secret_key" in used:
        key, *problems = problems
        assert "FLASHES_SECRET_KEY holds the development key" in key and "Fernet.generate_key()" in key
    assert len(problems) == len(defaults)
    for name, problem in zip(defaults, problems):
        assert f"{name} is its public default" in problem and "openssl rand" in problem
    assert unsafe_settings(Settings(**EXPOSED, **fresh_secrets()), service) == []


def test_a_service_is_not_asked_for_secrets_it_never_reads() -> None:
    """The fetcher opens neither QuestDB nor a link; the sink writes QuestDB and holds no key; derive neither."""
    assert unsafe_settings(Settings(**EXPOSED), "fetcher") == []
    assert unsafe_settings(Settings(**EXPOSED), "derive") == []
    [writer] = unsafe_settings(Settings(**EXPOSED), "sink")
    assert "FLASHES_QUESTDB_WRITER_PASSWORD is its public default" in writer
    api = " ".join(unsafe_settings(Settings(**EXPOSED), "api"))
    assert "FLASHES_QUESTDB_READER_PASSWORD" in api and "FLASHES_QUESTDB_WRITER_PASSWORD" not in api


KAFKA_LOGIN = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_user": "derive"}


@pytest.mark.parametrize(
    "exposure",
    [
        {"kafka_host": "kafka"},
        {"questdb_host": "10.0.0.5"},
        {"metrics_host": "::"},
        {"smtp_host": "smtp"},
        {"public_api_url": "https://flashes.example.org"},
    ],
)
def test_any_host_beyond_loopback_exposes(exposure: dict[str, str]) -> None:
    [problem, *_] = unsafe_settings(Settings(**exposure), "api")
    assert "FLASHES_SECRET_KEY holds the development key" in problem
    assert unsafe_settings(Settings(**exposure, **fresh_secrets(), **KAFKA_LOGIN), "api") == []


def test_webhooks_to_loopback_are_refused_beyond_loopback() -> None:
    """The tests' switch would let a subscriber aim webhooks at QuestDB, Kafka and the metrics on the host."""
    allowed = Settings(**EXPOSED, **fresh_secrets(), webhook_allow_loopback=True)
    for service in ("api", "delivery"):
        assert unsafe_settings(allowed, service) == [
            "beyond loopback (FLASHES_API_HOST): FLASHES_WEBHOOK_ALLOW_LOOPBACK is true: a subscriber could aim "
            "webhooks at the servers on this host's loopback (QuestDB, Kafka, the metrics); "
            "it is for tests, set it false"
        ]
    assert unsafe_settings(allowed, "sink") == []  # it sends no webhook
    assert unsafe_settings(Settings(webhook_allow_loopback=True), "delivery") == []  # the tests, on loopback


@pytest.mark.parametrize("service", SERVICES)
def test_anonymous_kafka_beyond_loopback_and_sasl_without_a_user_are_refused(service: str) -> None:
    """Whoever reached a PLAINTEXT broker could publish alerts that delivery signs; SASL with no user cannot log in."""
    new = fresh_secrets()
    problems = unsafe_settings(Settings(**new, kafka_host="kafka"), service)
    assert [p for p in problems if "FLASHES_KAFKA_SECURITY_PROTOCOL" in p] == [
        "FLASHES_KAFKA_SECURITY_PROTOCOL is PLAINTEXT and FLASHES_KAFKA_HOST is not loopback: whoever reaches the "
        "broker could publish alerts that delivery signs and sends; use SASL_PLAINTEXT, set FLASHES_KAFKA_USER to "
        "this service's user (its name: flashes/kafka_acl.py) and FLASHES_KAFKA_PASSWORD"
    ]
    assert unsafe_settings(Settings(**new, kafka_host="10.1.2.3", **KAFKA_LOGIN), service) == []
    nobody = Settings(**new, kafka_security_protocol="SASL_PLAINTEXT")
    assert unsafe_settings(nobody, service) == [
        "FLASHES_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT and FLASHES_KAFKA_USER is empty: set FLASHES_KAFKA_USER "
        "to this service's user (its name: flashes/kafka_acl.py) and FLASHES_KAFKA_PASSWORD"
    ]


def test_a_service_refuses_to_start_on_an_anonymous_remote_broker() -> None:
    done = run_cli("run", "derive", kafka_host="kafka", **fresh_secrets())
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(
        "flashes run derive: refusing to start with unsafe settings:\n  - "
        "FLASHES_KAFKA_SECURITY_PROTOCOL is PLAINTEXT and FLASHES_KAFKA_HOST is not loopback"
    )


def test_development_key_among_the_rotation_keys_and_a_user_without_password_are_refused() -> None:
    new = fresh_secrets()
    development = Settings.model_fields["secret_key"].default
    rotated = Settings(**EXPOSED, **new, secret_keys=[new["secret_key"], development])
    [problem] = unsafe_settings(rotated, "api")
    assert "FLASHES_SECRET_KEYS holds the development key" in problem
    # The keys in use are secret_keys when given: secret_key is then not used and may keep its default.
    assert (
        unsafe_settings(
            Settings(**EXPOSED, **{**new, "secret_key": development}, secret_keys=[new["secret_key"]]), "api"
        )
        == []
    )
    users = {name.removesuffix("_password") + "_user" for name in Settings.model_fields if name.endswith("_password")}
    users &= set(Settings.model_fields)
    assert {"smtp_user", "kafka_user"} <= users
    for user in users:
        password = user.removesuffix("_user") + "_password"
        user_only = Settings(**EXPOSED, **{**new, user: "flashes", password: ""})
        for service in (s for s, used in SECRETS.items() if password in used):
            assert [p.split(": ", 1)[1] for p in unsafe_settings(user_only, service)] == [
                f"{env_name(user)} is set and {env_name(password)} is empty: set the account's password"
            ]


def test_service_refuses_to_start_with_the_development_key_beyond_loopback() -> None:
    """The command exits non-zero before serving anything, with the reasons and no traceback."""
    done = run_cli("run", "api", api_host="0.0.0.0", api_port=str(free_port()))
    assert done.returncode == 1
    assert done.stderr.startswith("flashes run api: refusing to start with unsafe settings:\n  - ")
    assert "FLASHES_SECRET_KEY holds the development key" in done.stderr
    assert "FLASHES_QUESTDB_READER_PASSWORD is its public default" in done.stderr
    assert "Traceback" not in done.stderr


def test_cleartext_smtp_beyond_loopback_is_refused_at_startup() -> None:
    done = run_cli("run", "delivery", smtp_host="mail.example.org", smtp_security="none", **fresh_secrets())
    assert (done.returncode, done.stderr) == (
        1,
        (
            "flashes run delivery: refusing to start with unsafe settings:\n  - FLASHES_SMTP_SECURITY is none "
            "(cleartext) and FLASHES_SMTP_HOST is not loopback: use starttls or tls, or set "
            "FLASHES_SMTP_ALLOW_CLEARTEXT=true for a relay on the local network\n"
        ),
    )
    relay = Settings(smtp_host="relay.lan", smtp_security="none", smtp_allow_cleartext=True, **fresh_secrets())
    assert unsafe_settings(relay, "delivery") == []


def test_plain_http_provider_is_refused_unless_a_mirror_on_loopback() -> None:
    assert Settings.model_fields["maxi_base_url"].default == "https://maxi.riken.jp/"
    assert unsafe_settings(Settings(maxi_base_url="http://127.0.0.1:8080/maxi/"), "fetcher") == []
    done = run_cli("fetch", "--once", maxi_base_url="http://maxi.riken.jp/")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == (
        "flashes fetch: refusing to start with unsafe settings:\n  - FLASHES_MAXI_BASE_URL is "
        "not https: a man in the middle could inject points that become alerts; use the "
        "provider's https:// address (http is for a mirror on loopback)\n"
    )


@pytest.fixture
def plain_smtp() -> Iterator[tuple[int, Mailbox]]:
    """aiosmtpd on loopback offering no STARTTLS."""
    recorder = Mailbox()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, recorder
    controller.stop()


async def test_starttls_refuses_a_server_without_it_and_cleartext_goes_to_loopback_only(plain_smtp) -> None:
    port, recorder = plain_smtp
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port)
    assert settings.smtp_security == "starttls"
    with pytest.raises(DeliveryError, match="^mail not sent: TLS error$"):
        await send(settings, confirmation_message(settings, TO, "https://x/confirm", "everything"))
    assert recorder.received == []
    cleartext = settings.model_copy(update={"smtp_security": "none"})
    await send(cleartext, confirmation_message(cleartext, TO, "https://x/confirm", "everything"))
    assert [to for to, _ in recorder.received] == [[TO]]
    # Not through a service's startup check either: send itself refuses cleartext beyond loopback.
    far = cleartext.model_copy(update={"smtp_host": "mail.example.org"})
    with pytest.raises(DeliveryError, match="FLASHES_SMTP_SECURITY is none"):
        await send(far, confirmation_message(far, TO, "https://x/confirm", "everything"))


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_starttls_and_implicit_tls_deliver_with_a_verified_certificate(security: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    recorder = Mailbox()
    tls = (
        {"tls_context": server_context(cert, key), "require_starttls": True}
        if security == "starttls"
        else {"ssl_context": server_context(cert, key)}
    )
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **tls)
    controller.start()
    try:
        # The client trusts this certificate, and only through smtp_ca_file.
        trusting = Settings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_security=security, smtp_ca_file=cert)
        await send(trusting, confirmation_message(trusting, TO, "https://x/confirm", "everything"))
        assert [to for to, _ in recorder.received] == [[TO]]
        settings = trusting.model_copy(update={"smtp_ca_file": None})  # an untrusted certificate: nothing is sent
        with pytest.raises(DeliveryError, match="^mail not sent: TLS error$"):
            await send(settings, confirmation_message(settings, TO, "https://x/confirm", "everything"))
        assert len(recorder.received) == 1
    finally:
        controller.stop()


HOSTILE = ["x' OR '1'='1", "x'); DROP TABLE alerts; --", "x' UNION SELECT series, mjd, flux, error FROM lightcurve --"]


@pytest.mark.parametrize("source_id", HOSTILE)
async def test_chart_query_keeps_a_hostile_source_name_a_value(
    settings: Settings, source_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows of the hostile series itself come back (the query ran, the name matched as a value), no other
    series' rows do, and the alerts table is still there."""
    alert = renamed(schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_text()), source_id)
    lightcurve_rows(
        settings, [(f"maxi_{source_id}", "2-20", 57960.5, 11.0, 1.0), ("maxi_chart-victim", "2-20", 57961.5, 99.0, 1.0)]
    )
    points = await recent_points(settings, alert)
    assert "not read" not in caplog.text
    assert set(points) == {f"maxi_{source_id}", f"swift_{source_id}"}
    assert points[f"maxi_{source_id}"][0].tolist() == [57960.5, 57997.5, 57998.5, 57999.5]
    assert "alerts" in {r["table_name"] for r in questdb.query(settings, "SELECT table_name FROM tables()")}
