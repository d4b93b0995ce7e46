"""QuestDB: the table definitions, a query helper over the HTTP /exec endpoint, and an ILP writer.

Every table fed from a topic is a WAL table with DEDUP UPSERT KEYS on its natural key, so a
replayed topic rewrites the same rows instead of adding new ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from questdb import Protocol, Sender

from flashes.errors import QuestDBError
from flashes.settings import Settings

TABLES: dict[str, str] = {
    "lightcurve": """CREATE TABLE IF NOT EXISTS lightcurve (
        ts TIMESTAMP, series SYMBOL, source_id SYMBOL, instrument SYMBOL, band SYMBOL,
        mjd DOUBLE, flux DOUBLE, error DOUBLE, flux_mcrab DOUBLE, error_mcrab DOUBLE,
        data_flag INT, url SYMBOL, fetched_at TIMESTAMP
    ) TIMESTAMP(ts) PARTITION BY YEAR WAL DEDUP UPSERT KEYS(ts, series, band)""",
    "derived": """CREATE TABLE IF NOT EXISTS derived (
        ts TIMESTAMP, series SYMBOL, source_id SYMBOL, kind SYMBOL, mjd DOUBLE, value DOUBLE, error DOUBLE
    ) TIMESTAMP(ts) PARTITION BY YEAR WAL DEDUP UPSERT KEYS(ts, series)""",
    "relevance": """CREATE TABLE IF NOT EXISTS relevance (
        ts TIMESTAMP, series SYMBOL, source_id SYMBOL, kind SYMBOL, mjd DOUBLE, value DOUBLE, error DOUBLE,
        relevance DOUBLE, model_term DOUBLE, hardness_term DOUBLE, flux_term DOUBLE, trend_term DOUBLE,
        model_version SYMBOL
    ) TIMESTAMP(ts) PARTITION BY YEAR WAL DEDUP UPSERT KEYS(ts, series)""",
    "alerts": """CREATE TABLE IF NOT EXISTS alerts (
        ts TIMESTAMP, alert_id VARCHAR, record_number INT, alert_type SYMBOL, source_id SYMBOL,
        trigger_series SYMBOL, mjd DOUBLE, relevance DOUBLE, peak_relevance DOUBLE, model_term DOUBLE,
        hardness_term DOUBLE, flux_term DOUBLE, trend_term DOUBLE, model_version SYMBOL, reasons VARCHAR,
        explanation VARCHAR, payload VARCHAR, live BOOLEAN, raised_at TIMESTAMP
    ) TIMESTAMP(ts) PARTITION BY YEAR WAL DEDUP UPSERT KEYS(ts, alert_id, record_number)""",
    "deliveries": """CREATE TABLE IF NOT EXISTS deliveries (
        ts TIMESTAMP, subscription_id SYMBOL, channel SYMBOL, status SYMBOL, alert_id VARCHAR,
        record_number INT, test BOOLEAN, attempt INT, detail VARCHAR
    ) TIMESTAMP(ts) PARTITION BY MONTH WAL
    DEDUP UPSERT KEYS(ts, subscription_id, alert_id, record_number, attempt, status)""",
    "deadletter": """CREATE TABLE IF NOT EXISTS deadletter (
        ts TIMESTAMP, origin SYMBOL, reason VARCHAR, payload VARCHAR, url VARCHAR
    ) TIMESTAMP(ts) PARTITION BY MONTH WAL DEDUP UPSERT KEYS(ts, origin, payload)""",
}


# The newest lightcurve row per instrument, at most `bound` (the latest credible time: a typo dated in
# the future says nothing of freshness); LATEST ON reads one row per instrument, not the table.
NEWEST_PER_INSTRUMENT = "SELECT {columns} FROM lightcurve WHERE ts <= {bound} LATEST ON ts PARTITION BY instrument"


def naive_utc(t: datetime) -> datetime:
    """A bind parameter for a TIMESTAMP column (PG wire): naive, in UTC."""
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def sql_time(t: datetime) -> str:
    """A time as QuestDB writes a timestamp (UTC; a time without a zone is UTC, as asyncpg returns them)."""
    return (t.astimezone(UTC) if t.tzinfo else t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def query(settings: Settings, sql: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Run SQL over HTTP /exec and return the rows as dicts."""
    try:
        r = httpx.get(
            f"{settings.questdb_http_url}/exec",
            params={"query": sql},
            timeout=timeout_s,
            auth=(settings.questdb_writer_user, settings.questdb_writer_password.get_secret_value()),
        )
    except httpx.HTTPError as exc:
        raise QuestDBError(f"QuestDB at {settings.questdb_http_url} unreachable: {exc!r}") from exc
    try:
        body = r.json()
    except ValueError as exc:  # a proxy's error page, a cut-off answer
        raise QuestDBError(f"QuestDB answered HTTP {r.status_code} with something that is not JSON: {exc}") from exc
    if r.status_code != 200 or "error" in body:
        raise QuestDBError(f"QuestDB rejected {sql!r}: {body.get('error', r.text)}")
    names = [c["name"] for c in body.get("columns", [])]
    return [dict(zip(names, row)) for row in body.get("dataset", [])]


def ensure_tables(settings: Settings) -> None:
    for ddl in TABLES.values():
        query(settings, ddl)


def healthy(settings: Settings) -> bool:
    """QuestDB answers a query of the writer's: up, and the login holds (the sink waits for this)."""
    try:
        r = httpx.get(
            f"{settings.questdb_http_url}/exec",
            params={"query": "SELECT 1"},
            timeout=2,
            auth=(settings.questdb_writer_user, settings.questdb_writer_password.get_secret_value()),
        )
        return r.status_code == 200
    except httpx.HTTPError:
        return False


def wal_applied(settings: Settings) -> bool:
    """True when every WAL transaction has been applied (rows visible to queries)."""
    rows = query(settings, "SELECT name, suspended, writerTxn, sequencerTxn FROM wal_tables()")
    return all(r["writerTxn"] == r["sequencerTxn"] and not r["suspended"] for r in rows)


def sender(settings: Settings) -> Sender:
    """ILP over HTTP as the writer (HTTP basic auth); each flush is one transaction per table."""
    return Sender(
        Protocol.Http,
        settings.questdb_host,
        settings.questdb_http_port,
        username=settings.questdb_writer_user,
        password=settings.questdb_writer_password.get_secret_value(),
        auto_flush=False,
        retry_timeout=60000,
        request_timeout=60000,
    )
