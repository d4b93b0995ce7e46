"""Every setting in one frozen object, built once from FLASHES_* variables and passed to whatever needs it.

The entry point (`flashes` in services/cli.py) calls `Settings.from_env(os.environ)`; a test builds one from a
dict or with keywords, a child process is given its variables explicitly. Secrets are `SecretStr`: they print
as stars and are read with `.get_secret_value()` where they are used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from flashes.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "FLASHES_"
POLL_EVERY_S = {"maxi": 3600.0, "swift": 3600.0, "fermi": 3600.0}  # BAT publishes about every 6 h, MAXI 4-hourly
# The development key, public in the source: flashes/safety.py refuses it beyond loopback.
DEVELOPMENT_KEY = SecretStr("Zmxhc2hlcy1kZXYta2V5LW5vdC1mb3ItcHJvZCEhISE=")


class Settings(BaseModel):
    """Setting `name` is read from the variable FLASHES_{NAME}; an unknown keyword is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Infrastructure: loopback servers started by `python -m devtools infra start`, or other hosts (docker compose).
    kafka_host: str = "127.0.0.1"
    questdb_host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT"] = Field(
        default="PLAINTEXT",
        description="SASL_PLAINTEXT: log in with SCRAM-SHA-512 as kafka_user (compose); "
        "PLAINTEXT: no login, for a broker on loopback only (make run, tests)",
    )
    kafka_user: str = Field(
        default="", description="this service's Kafka user; what it may read and write: flashes/kafka_acl.py"
    )
    kafka_password: SecretStr = SecretStr("")
    questdb_http_port: int = 9000
    questdb_pg_port: int = 8812
    questdb_reader_user: str = Field(
        default="reader", description="QuestDB's read-only PG-wire user: the API and Grafana read as it"
    )
    questdb_reader_password: SecretStr = SecretStr("quest")
    questdb_writer_user: str = Field(
        default="admin",
        description="QuestDB's HTTP (REST, ILP) and PG-wire user that "
        "may write: the sink, table creation, the queries "
        "of flashes.questdb.query",
    )
    questdb_writer_password: SecretStr = SecretStr("quest")
    questdb_min_http_port: int = 9003
    var_dir: Path = PROJECT_ROOT / "var"
    cache_dir: Path = PROJECT_ROOT / ".cache"

    # Data and providers.
    master_table: Path = PROJECT_ROOT / "data" / "master_table.csv"
    heasarc_classes: Path = PROJECT_ROOT / "data" / "heasarc_classes.csv"
    heasarc_vo_url: str = Field(
        default="https://heasarc.gsfc.nasa.gov/xamin/vo",
        description="HEASARC's VO services (astroquery's Heasarc VO_URL): `flashes catalogue build --online` "
        "reads the class names from its TAP table `class`",
    )
    maxi_base_url: str = "https://maxi.riken.jp/"
    swift_base_url: str = "https://swift.gsfc.nasa.gov/"
    fermi_base_url: str = "https://gammaray.nsstc.nasa.gov/gbm/science/pulsars/lightcurves/"
    fetch_sources: list[str] = Field(default_factory=list, description="limit fetching to these source ids")
    fetch_every_s: dict[str, float] = Field(
        default_factory=lambda: dict(POLL_EVERY_S),
        description="poll interval of each provider (conditional requests make an unchanged file a 304); "
        "providers not given keep the default",
    )
    fetch_jitter_s: float = Field(default=300.0, description="random delay added to each poll, up to this")
    max_download_bytes: int = Field(default=64 * 1024 * 1024, description="a larger provider file is refused")
    max_decompressed_bytes: int = Field(default=256 * 1024 * 1024, description="a gzip that inflates beyond is refused")
    http_per_host: int = 4
    http_timeout_s: float = 30.0
    http_retries: int = 4
    http_backoff_s: float = 1.0
    http_ca_file: Path | None = Field(
        default=None,
        description="a PEM file of certificate authorities the provider "
        "client trusts besides the default ones (a mirror "
        "with a private CA)",
    )

    # Storage.
    sink_batch_s: float = 2.0
    sink_batch_messages: int = 400  # chunks of up to 4,096 points each

    # Scoring and alerts.
    relevance_threshold: float = 0.7
    relevance_history_wait_s: float = Field(
        default=600.0,
        description="how long in all a relevance worker waits "
        "for QuestDB to answer and hold what old states "
        "had scored, before it rebuilds from what is stored",
    )
    clock_offset_days: float = Field(
        default=0.0,
        description="simulations only: every service's clock (flashes.clock.now) runs this many days off UTC",
    )
    live_days: float = Field(
        default=3.0,
        description="an alert whose triggering point is at most this old when it "
        "is raised is news (pushed); older is history (stored, shown)",
    )
    episode_end_points: int = Field(
        default=5, description="points below the threshold, per series, that end an episode"
    )
    api_port: int = 8000
    api_cache_s: float = Field(default=10.0, description="how long the API serves a series from memory")
    api_db_connections: int = Field(default=8, description="the API's PostgreSQL-wire connections to QuestDB")
    public_api_url: str = ""
    grafana_url: str = "http://127.0.0.1:3000"

    # Subscriptions and delivery.
    secret_key: SecretStr = Field(
        default=DEVELOPMENT_KEY,
        description="Fernet key (urlsafe base64 of 32 bytes) that encrypts e-mail addresses "
        "and webhook secrets and signs confirmation links; the default is for "
        "development only",
    )
    webhook_allow_loopback: bool = Field(default=False, description="tests only: accept http://127.0.0.1 webhooks")
    webhook_timeout_s: float = 5.0
    delivery_backoff_s: float = Field(default=30.0, description="first retry delay; doubles at each attempt")
    delivery_max_attempts: int = Field(default=12, description="then the dead-letter topic (12: about 17 h)")
    delivery_concurrency: int = Field(default=256, description="attempts in flight in all")
    webhook_per_subscription: int = Field(default=4, description="webhook attempts in flight per subscription")
    webhook_per_host: int = Field(
        default=16, description="webhook attempts in flight per receiving network (the /24 or /48 its host resolves to)"
    )
    webhook_suspect_after: int = Field(
        default=2,
        description="connection-level webhook failures in a row (no HTTP answer) that make a subscription suspect",
    )
    webhook_suspect_slots: int = Field(
        default=16,
        description="webhook attempts in flight, in all, of suspect subscriptions (in place of the global slots)",
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls: STARTTLS required (port 587 or 25); tls: implicit TLS (port 465); "
        "none: cleartext, refused unless smtp_host is loopback or "
        "smtp_allow_cleartext is set",
    )
    smtp_allow_cleartext: bool = Field(
        default=False,
        description="allow smtp_security none to a relay that is not loopback (a relay on the local network)",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="a PEM file of certificate authorities the SMTP "
        "client trusts besides the system's (a relay with "
        "a private CA)",
    )
    mail_from: str = "FLASHES stream <flashes@localhost>"
    email_daily_cap: int = Field(default=10, description="alert mails per subscription and UTC day; then a digest")
    subscriptions_per_hour: int = Field(
        default=20, description="subscriptions one client network (IPv4 address, IPv6 /64) may create per hour"
    )
    writes_per_hour: int = Field(
        default=120, description="changes (PATCH, DELETE, test, confirm) one client network may make per hour"
    )
    rate_limit_networks: int = Field(
        default=50_000,
        description="client networks the rate limits remember (about "
        "200 bytes each); the least recently seen is forgotten",
    )
    confirmation_mails_per_day: int = Field(
        default=3, description="confirmation mails per subscription, and per address, in any 24 h (beyond: 429)"
    )
    confirm_link_hours: float = Field(default=48.0, description="a confirmation link expires after this")
    unconfirmed_days: float = Field(
        default=7.0,
        description="an e-mail address not confirmed within this is "
        "removed with its subscription; so is a "
        "subscription left on channel none",
    )
    max_body_bytes: int = Field(default=64 * 1024, description="a larger request body is refused (413)")
    secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet keys, newest first: the first encrypts and signs, every one "
        "decrypts and verifies (key rotation); empty: [secret_key]",
    )
    heartbeat_s: float = 3.0
    metrics_port: int = Field(
        default=9400,
        description="Prometheus metrics: service i of services.registry.SERVICES "
        "listens on metrics_port + i (the API on its own port, /metrics)",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="where the services' metrics listen (compose: 0.0.0.0, inside its network only)",
    )
    freshness_days: dict[str, float] = Field(
        default_factory=lambda: {"maxi": 2.0, "swift": 2.0, "fermi": 7.0},
        description="GET /health/freshness: an instrument whose newest point is older is stale (503); "
        "an instrument not listed is not judged",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings the FLASHES_* variables of `env` give, every other setting at its default; variables of
        no setting are ignored (the broker's own passwords share the prefix). Lists and maps are JSON
        (FLASHES_FETCH_SOURCES='["gx339-4"]'). Raises SettingsError naming each variable that does not read."""
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            variable = PREFIX + name.upper()
            if variable not in env or (env[variable] == "" and _optional(field.annotation)):
                continue  # an empty optional setting is unset (compose writes ${X:-}), not the path "."
            values[name] = env[variable]
            if get_origin(field.annotation) in (list, dict):
                try:
                    values[name] = json.loads(env[variable])
                except ValueError:
                    raise SettingsError(f"{variable} is not JSON (e.g. {_example(field.annotation)})") from None
        try:
            return cls(**values)
        except ValidationError as exc:
            # The messages without the input: a value that does not read may be a password.
            raise SettingsError("; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors())) from None

    @field_validator("fetch_every_s")
    @classmethod
    def _every_provider_polled(cls, given: dict[str, float]) -> dict[str, float]:
        """`{"maxi": 600}` changes MAXI's interval only."""
        return {**POLL_EVERY_S, **given}

    @property
    def base_urls(self) -> dict[str, str]:
        """Provider base URL per instrument."""
        return {"maxi": self.maxi_base_url, "swift": self.swift_base_url, "fermi": self.fermi_base_url}

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def questdb_http_url(self) -> str:
        return f"http://{self.questdb_host}:{self.questdb_http_port}"

    @property
    def api_url(self) -> str:
        return self.public_api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def keys_in_use(self) -> list[SecretStr]:
        """The Fernet keys in use, newest first: `secret_keys`, or `[secret_key]` when none is listed."""
        return self.secret_keys or [self.secret_key]

    @property
    def catalogue_path(self) -> Path:
        return self.var_dir / "catalogue.json"


def _variable(loc: tuple[int | str, ...]) -> str:
    """The variable of a validation error's location: FLASHES_FETCH_EVERY_S, or FLASHES_SECRET_KEYS item 1."""
    name, *inner = loc
    return PREFIX + str(name).upper() + "".join(f" item {part}" for part in inner)


def _optional(annotation: object) -> bool:
    """Whether a setting may be None (`Path | None`)."""
    return type(None) in get_args(annotation)


def _example(annotation: object) -> str:
    return '{"maxi": 600}' if get_origin(annotation) is dict else '["a", "b"]'
