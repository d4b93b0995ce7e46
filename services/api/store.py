"""Reads from QuestDB for the API: the latest point of every series and one series' time series."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flashes import questdb
from flashes.settings import Settings
from flashes.units import MAIN_BAND

DERIVED = ("hardness", "combined")
SERIES_FIELD = {"maxi": "maxi", "swift": "swift", "fermi": "fermi", "hardness": "hardness_ratio", "combined": "combined"}


def _sql_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    window = f"ts >= '{_sql_time(start)}' AND ts < '{_sql_time(end)}'"
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
