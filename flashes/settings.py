"""All settings, read from the environment with the FLASHES_ prefix (e.g. FLASHES_KAFKA_PORT)."""
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    fetch_cron: str = Field(default="30 2 * * *", description="UTC schedule of the fetcher service (cron syntax)")
    http_per_host: int = 4
    http_timeout_s: float = 30.0
    http_retries: int = 4
    http_backoff_s: float = 1.0

    # Storage.
    sink_batch_s: float = 2.0
    sink_batch_messages: int = 400  # chunks of up to 4,096 points each

    # Scoring and alerts.
    relevance_threshold: float = 0.7
    webhooks: list[str] = Field(default_factory=list)
    webhook_secret: str = "change-me"
    api_port: int = 8000
    public_api_url: str = ""

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
