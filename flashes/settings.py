"""All settings, read from the environment with the FLASHES_ prefix (e.g. FLASHES_KAFKA_PORT)."""
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POLL_EVERY_S = {"maxi": 3600.0, "swift": 3600.0, "fermi": 3600.0}  # BAT publishes about every 6 h, MAXI 4-hourly


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLASHES_")

    # Infrastructure: loopback servers started by `flashes infra start`, or other hosts (docker compose).
    kafka_host: str = "127.0.0.1"
    questdb_host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    questdb_http_port: int = 9000
    questdb_pg_port: int = 8812
    questdb_reader_user: str = Field(default="reader", description="QuestDB's read-only PG-wire user: the API and "
                                                                   "Grafana read as it")
    questdb_reader_password: str = "quest"
    questdb_ilp_tcp_port: int = 9009
    questdb_min_http_port: int = 9003
    var_dir: Path = PROJECT_ROOT / "var"
    cache_dir: Path = PROJECT_ROOT / ".cache"

    # Data and providers.
    master_table: Path = PROJECT_ROOT / "data" / "master_table.csv"
    heasarc_classes: Path = PROJECT_ROOT / "data" / "heasarc_classes.csv"
    maxi_base_url: str = "http://maxi.riken.jp/"
    swift_base_url: str = "https://swift.gsfc.nasa.gov/"
    fermi_base_url: str = "https://gammaray.nsstc.nasa.gov/gbm/science/pulsars/lightcurves/"
    fetch_sources: list[str] = Field(default_factory=list, description="limit fetching to these source ids")
    fetch_every_s: dict[str, float] = Field(
        default_factory=lambda: dict(POLL_EVERY_S),
        description="poll interval of each provider (conditional requests make an unchanged file a 304); "
                    "providers not given keep the default")
    fetch_jitter_s: float = Field(default=300.0, description="random delay added to each poll, up to this")
    max_download_bytes: int = Field(default=64 * 1024 * 1024, description="a larger provider file is refused")
    max_decompressed_bytes: int = Field(default=256 * 1024 * 1024, description="a gzip that inflates beyond is refused")
    http_per_host: int = 4
    http_timeout_s: float = 30.0
    http_retries: int = 4
    http_backoff_s: float = 1.0

    # Storage.
    sink_batch_s: float = 2.0
    sink_batch_messages: int = 400  # chunks of up to 4,096 points each

    # Scoring and alerts.
    relevance_threshold: float = 0.7
    relevance_history_wait_s: float = Field(default=600.0, description="how long in all a relevance worker waits "
                                                                       "for QuestDB to answer and hold what old states "
                                                                       "had scored, before it rebuilds from what is stored")
    clock_offset_days: float = Field(default=0.0, description="simulations only: every service's clock "
                                                                "(flashes.clock.now) runs this many days off UTC")
    live_days: float = Field(default=3.0, description="an alert whose triggering point is at most this old when it "
                                                      "is raised is news (pushed); older is history (stored, shown)")
    episode_end_points: int = Field(default=5, description="points below the threshold, per series, that end an episode")
    api_port: int = 8000
    api_cache_s: float = Field(default=10.0, description="how long the API serves a series from memory")
    api_db_connections: int = Field(default=8, description="the API's PostgreSQL-wire connections to QuestDB")
    public_api_url: str = ""
    grafana_url: str = "http://127.0.0.1:3000"

    # Subscriptions and delivery.
    secret_key: str = Field(default="Zmxhc2hlcy1kZXYta2V5LW5vdC1mb3ItcHJvZCEhISE=",
                            description="Fernet key (urlsafe base64 of 32 bytes) that encrypts e-mail addresses "
                                        "and webhook secrets and signs confirmation links; the default is for "
                                        "development only")
    webhook_allow_loopback: bool = Field(default=False, description="tests only: accept http://127.0.0.1 webhooks")
    webhook_timeout_s: float = 5.0
    delivery_backoff_s: float = Field(default=30.0, description="first retry delay; doubles at each attempt")
    delivery_max_attempts: int = Field(default=12, description="then the dead-letter topic (12: about 17 h)")
    delivery_concurrency: int = 256
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "FLASHES stream <flashes@localhost>"
    email_daily_cap: int = Field(default=10, description="alert mails per subscription and UTC day; then a digest")
    subscriptions_per_hour: int = Field(default=20, description="subscriptions one client address may create per hour")
    secret_keys: list[str] = Field(default_factory=list,
                                   description="Fernet keys, newest first: the first encrypts and signs, every one "
                                               "decrypts and verifies (key rotation); empty: [secret_key]")
    heartbeat_s: float = 3.0
    metrics_port: int = Field(default=9400, description="Prometheus metrics: service i of flashes.services.SERVICES "
                                                        "listens on metrics_port + i (the API on its own port, /metrics)")
    metrics_host: str = Field(default="127.0.0.1", description="where the services' metrics listen (compose: 0.0.0.0, "
                                                               "inside its network only)")
    freshness_days: dict[str, float] = Field(
        default_factory=lambda: {"maxi": 2.0, "swift": 2.0, "fermi": 7.0},
        description="GET /health/freshness: an instrument whose newest point is older is stale (503); "
                    "an instrument not listed is not judged")

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
    def catalogue_path(self) -> Path:
        return self.var_dir / "catalogue.json"


@lru_cache
def get_settings() -> Settings:
    return Settings()
