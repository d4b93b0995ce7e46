"""Reads from QuestDB for the API: latest points, one series' time series, its relevance, and the alerts."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

import schemas
from flashes import questdb
from flashes.settings import Settings
from flashes.units import MAIN_BAND

DERIVED = ("hardness", "combined")
SERIES_FIELD = {"maxi": "maxi", "swift": "swift", "fermi": "fermi", "hardness": "hardness_ratio", "combined": "combined"}


def latest(settings: Settings) -> dict[str, dict[str, Any]]:
    """series -> {last_timestamp, last_flux, last_error} (main band, provider units; derived in mCrab)."""
    bands = ", ".join(f"'{b}'" for b in MAIN_BAND.values())
    rows = questdb.query(settings, f"SELECT series, ts, flux, error FROM lightcurve WHERE band IN ({bands}) "
                                   "LATEST ON ts PARTITION BY series")
    rows += questdb.query(settings, "SELECT series, ts, value flux, error FROM derived LATEST ON ts PARTITION BY series")
    return {r["series"]: {"last_timestamp": r["ts"], "last_flux": r["flux"], "last_error": r["error"]} for r in rows}


def timeseries(settings: Settings, series: str, kind: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Grafana-style rows: time, mjd and for each band `flux {band}`, `flux {band} max`, `flux {band} min`.

    Instrument fluxes are in mCrab; a derived series has one column named after it (`flux hardness`
    is the plain ratio, `flux combined` is mCrab). max/min are value ± 1σ.
    """
    window = f"ts >= '{questdb.sql_time(start)}' AND ts < '{questdb.sql_time(end)}'"
    if kind in DERIVED:
        sql = (f"SELECT ts, mjd, '{kind}' band, value flux, error FROM derived "
               f"WHERE series = '{series}' AND {window} ORDER BY ts")
    else:
        sql = (f"SELECT ts, mjd, band, flux_mcrab flux, error_mcrab error FROM lightcurve "
               f"WHERE series = '{series}' AND {window} ORDER BY ts")
    rows: dict[str, dict[str, Any]] = {}
    for r in questdb.query(settings, sql):
        row = rows.setdefault(r["ts"], {"time": r["ts"], "mjd": r["mjd"]})
        row[f"flux {r['band']}"] = r["flux"]
        row[f"flux {r['band']} max"] = r["flux"] + r["error"]
        row[f"flux {r['band']} min"] = r["flux"] - r["error"]
    return list(rows.values())


TERMS = tuple(schemas.RelevanceTerms.model_fields)


def _with_terms(row: dict[str, Any]) -> dict[str, Any]:
    """Gathers the `{name}_term` columns of a row into its `terms` object, as in the contracts."""
    out = {k: v for k, v in row.items() if not k.endswith("_term")}
    out["terms"] = {name: row.get(f"{name}_term") for name in TERMS}
    return out


def relevance(settings: Settings, series: str, start: datetime, end: datetime,
              min_relevance: float) -> list[dict[str, Any]]:
    """Scores of one series with the terms behind each and the model version, oldest first."""
    terms = ", ".join(f"{name}_term" for name in TERMS)
    sql = (f"SELECT ts time, mjd, value, error, relevance, {terms}, model_version FROM relevance "
           f"WHERE series = '{series}' AND ts >= '{questdb.sql_time(start)}' AND ts < '{questdb.sql_time(end)}' "
           f"AND relevance >= {min_relevance} ORDER BY ts")
    return [_with_terms(r) for r in questdb.query(settings, sql)]


def alerts(settings: Settings, source_id: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest alert records (as on flashes.alerts.v2), optionally of one known source."""
    where = f"WHERE source_id = '{source_id}' " if source_id else ""
    sql = f"SELECT payload FROM alerts {where}ORDER BY ts DESC, record_number DESC LIMIT {limit}"
    return [orjson.loads(r["payload"]) for r in questdb.query(settings, sql)]


def deliveries(settings: Settings, subscription_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest delivery attempts of one subscription (its id is a SHA-256 in hex, checked by the caller)."""
    sql = ("SELECT ts time, alert_id, record_number, test, channel, attempt, status, detail FROM deliveries "
           f"WHERE subscription_id = '{subscription_id}' ORDER BY ts DESC LIMIT {limit}")
    return questdb.query(settings, sql)
