"""Reads from QuestDB for the API over the PostgreSQL wire (asyncpg, one pool).

Every value that comes from a request is a bind parameter ($1, $2, …); the SQL text holds only
names written here. Times are UTC; a row's time is written as QuestDB writes it over HTTP
(`2017-09-20T12:00:00.000000Z`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, overload

import asyncpg
import numpy as np
import orjson

import schemas
from flashes.errors import QuestDBError
from flashes.questdb import naive_utc, sql_time
from flashes.settings import Settings
from flashes.topics import DERIVED_KINDS
from flashes.units import MAIN_BAND, UNITS, value_units

EPOCH, ONE_US = datetime(1970, 1, 1), timedelta(microseconds=1)
TERMS = tuple(schemas.RelevanceTerms.model_fields)
TERM_COLUMNS = ", ".join(f"{name}_term" for name in TERMS)
log = logging.getLogger(__name__)
LABELS_TTL_S = 5.0
TOP_RECENT_D = 30.0
# The temporary label a source carries while an alert episode of it is open, by the episode's reasons.
EPISODE_LABELS = {"brightening": "OUTBURST", "state_change": "STATE CHANGE", "unusual": "UNUSUAL"}
OPEN_LABEL = "ALERT"  # an open episode none of whose reasons has a label of its own
TEMPORARY_LABELS = (*EPISODE_LABELS.values(), OPEN_LABEL)


def micros(t: datetime) -> int:
    """Microseconds since 1970 of a time (naive: UTC)."""
    return (naive_utc(t) - EPOCH) // ONE_US


@dataclass(frozen=True)
class AlertQuery:
    """Filters of /alerts; every one optional."""

    sources: Sequence[str] = ()
    alert_types: Sequence[str] = ()
    reasons: Sequence[str] = ()
    min_relevance: float = 0.0
    start: datetime | None = None
    end: datetime | None = None
    live: bool | None = None  # news only (True), history only (False), or both


@dataclass(frozen=True)
class Encoded:
    """Rows encoded as JSON once, joined by commas in one buffer; row i is buf[start[i]:start[i + 1] - 1]."""

    ts: np.ndarray  # microseconds since 1970, one per row
    start: np.ndarray  # where each row begins in buf, and len(buf) + 1 at the end
    buf: bytes

    @classmethod
    def of(cls, ts: np.ndarray, rows: list[dict[str, Any]]) -> Encoded:
        encoded = [orjson.dumps(r) for r in rows]
        start = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) + 1 for e in encoded], out=start[1:])
        return cls(ts, start, b",".join(encoded))

    def json(self, start: datetime, end: datetime) -> bytes:
        """The rows in [start, end) as a JSON array."""
        lo, hi = np.searchsorted(self.ts, [micros(start), micros(end)])
        return b"[" + self.buf[self.start[lo] : max(self.start[lo], self.start[hi] - 1)] + b"]"


@dataclass(frozen=True)
class Series:
    """One series in memory, oldest first, as Grafana-style rows (time, mjd, "flux {band}", "flux {band} max",
    "flux {band} min"), encoded for every band together and for each band alone."""

    views: dict[str | None, Encoded]

    @classmethod
    def of(cls, records: list[asyncpg.Record]) -> Series:
        """From (ts, mjd, band, flux, error) rows ordered by time (one row per band and time)."""
        out: dict[datetime, dict[str, Any]] = {}
        for ts, mjd, band, flux, error in records:
            row = out.get(ts)
            if row is None:
                row = out[ts] = {"time": sql_time(ts), "mjd": mjd}
            row[f"flux {band}"] = flux
            row[f"flux {band} max"] = flux + error
            row[f"flux {band} min"] = flux - error
        ts, rows = np.array([micros(t) for t in out], dtype=np.int64), list(out.values())
        views: dict[str | None, Encoded] = {None: Encoded.of(ts, rows)}
        bands = list(dict.fromkeys(r[2] for r in records))
        if len(bands) == 1:  # BAT, GBM and derived series: the band alone is the whole series
            views[bands[0]] = views[None]
            return cls(views)
        for band in bands:
            names = ("time", "mjd", f"flux {band}", f"flux {band} max", f"flux {band} min")
            keep = [i for i, row in enumerate(rows) if names[2] in row]
            views[band] = Encoded.of(ts[keep], [{n: rows[i][n] for n in names} for i in keep])
        return cls(views)

    def json(self, start: datetime, end: datetime, band: str | None) -> bytes:
        view = self.views.get(band)
        return view.json(start, end) if view else b"[]"


class TTLCache:
    """Values by key (at most `size`), loaded again in the background once older than `ttl_s`: until the
    new value is in, the old one is served, so a reload never holds a request, and a failed reload
    (QuestDB down) keeps it. Concurrent first requests for a key load it once. `refreshing` holds the
    reloads under way, by key."""

    def __init__(self, ttl_s: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.size, self.clock = ttl_s, size, clock
        self.entries: OrderedDict[str, tuple[float, asyncio.Future]] = OrderedDict()
        self.refreshing: dict[str, asyncio.Task] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        now = self.clock()
        entry = self.entries.get(key)
        if entry is None or (entry[1].done() and (entry[1].cancelled() or entry[1].exception())):
            entry = self._put(key, now, asyncio.ensure_future(load()))
        elif now - entry[0] > self.ttl_s and entry[1].done() and key not in self.refreshing:
            self.refreshing[key] = asyncio.ensure_future(self._refresh(key, load))
        self.entries.move_to_end(key)
        return await asyncio.shield(entry[1])

    async def _refresh(self, key: str, load: Callable[[], Awaitable[Any]]) -> None:
        try:
            value = await load()
        except Exception as exc:  # noqa: BLE001 - the old value stays; the next request tries again
            log.warning("reloading %s failed (%s: %s); serving the previous value", key, type(exc).__name__, exc)
            return
        finally:
            self.refreshing.pop(key, None)
        done = asyncio.get_running_loop().create_future()
        done.set_result(value)
        self._put(key, self.clock(), done)

    def _put(self, key: str, at: float, value: asyncio.Future) -> tuple[float, asyncio.Future]:
        entry = self.entries[key] = (at, value)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return entry


@dataclass
class Reader:
    """The API's reads. The pool is made at the first query, so the API starts while QuestDB is down."""

    settings: Settings
    pool: asyncpg.Pool | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cache: TTLCache = field(init=False)
    newest: TTLCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = TTLCache(self.settings.api_cache_s, 64)  # a whole-history MAXI series holds 4.4 MB
        self.newest = TTLCache(self.settings.api_cache_s, 2)  # "latest": every series' newest point; "top"

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        s = self.settings
        try:
            if self.pool is None:
                async with self._lock:
                    if self.pool is None:
                        self.pool = await asyncpg.create_pool(
                            host=s.questdb_host,
                            port=s.questdb_pg_port,
                            user=s.questdb_reader_user,
                            password=s.questdb_reader_password.get_secret_value(),
                            database="qdb",
                            min_size=1,
                            max_size=s.api_db_connections,
                            timeout=10,
                        )
            return await self.pool.fetch(sql, *args, timeout=30)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise QuestDBError(f"QuestDB at {s.questdb_host}:{s.questdb_pg_port}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def tables(self) -> list[str]:
        return sorted(r["table_name"] for r in await self.fetch("SELECT table_name FROM tables()"))

    async def latest(self) -> dict[str, dict[str, Any]]:
        """series -> {last_timestamp, last_flux, last_error} (main band, provider units; derived in mCrab); read
        at most every `api_cache_s`, as the series are."""
        return await self.newest.get("latest", self._latest)

    async def _latest(self) -> dict[str, dict[str, Any]]:
        rows = await self.fetch(
            "SELECT series, ts, flux, error FROM lightcurve WHERE band IN ($1, $2, $3) "
            "LATEST ON ts PARTITION BY series",
            *MAIN_BAND.values(),
        )
        rows += await self.fetch("SELECT series, ts, value flux, error FROM derived LATEST ON ts PARTITION BY series")
        return {
            r["series"]: {"last_timestamp": sql_time(r["ts"]), "last_flux": r["flux"], "last_error": r["error"]}
            for r in rows
        }

    async def timeseries(
        self, series: str, kind: str, start: datetime, end: datetime, band: str | None = None
    ) -> bytes:
        """Grafana-style rows as JSON: time, mjd and for each band `flux {band}`, `flux {band} max`, `flux {band} min`.

        Instrument fluxes are in mCrab; a derived series has one column named after it (`flux hardness`
        is the plain ratio, `flux combined` is mCrab). max/min are value ± 1σ. Served from the series
        held in memory for `api_cache_s` (the data change once a day).
        """
        return (await self.cache.get(series, lambda: self._series(series, kind))).json(start, end, band)

    async def _series(self, series: str, kind: str) -> Series:
        if kind in DERIVED_KINDS:
            sql = "SELECT ts, mjd, kind band, value flux, error FROM derived WHERE series = $1 ORDER BY ts"
        else:
            sql = (
                "SELECT ts, mjd, band, flux_mcrab flux, error_mcrab error FROM lightcurve WHERE series = $1 ORDER BY ts"
            )
        # In a thread: a whole-history MAXI series takes 84 ms to build, which would hold every other request.
        return await asyncio.to_thread(Series.of, await self.fetch(sql, series))

    async def download(self, series: str, kind: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """One row per time with, per band, the provider's flux and error (with units) and both in mCrab.

        A derived series has its value and error (hardness: a ratio of mCrab; combined: mCrab).
        """
        window = (series, naive_utc(start), naive_utc(end))
        if kind in DERIVED_KINDS:
            unit = value_units(kind)
            return [
                {
                    "time": sql_time(r["ts"]),
                    "mjd": r["mjd"],
                    f"{kind} [{unit}]": r["value"],
                    f"{kind} error [{unit}]": r["error"],
                }
                for r in await self.fetch(
                    "SELECT ts, mjd, value, error FROM derived WHERE series = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
                    *window,
                )
            ]
        unit = UNITS[kind]
        rows: dict[datetime, dict[str, Any]] = {}
        for r in await self.fetch(
            "SELECT ts, mjd, band, flux, error, flux_mcrab, error_mcrab, data_flag FROM lightcurve "
            "WHERE series = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, band",
            *window,
        ):
            row = rows.get(r["ts"])
            if row is None:
                row = rows[r["ts"]] = {"time": sql_time(r["ts"]), "mjd": r["mjd"]}
            b = r["band"]
            row.update(
                {
                    f"flux {b} keV [{unit}]": r["flux"],
                    f"error {b} keV [{unit}]": r["error"],
                    f"flux {b} keV [mCrab]": r["flux_mcrab"],
                    f"error {b} keV [mCrab]": r["error_mcrab"],
                }
            )
            if r["data_flag"] is not None:
                row["data_flag"] = r["data_flag"]
        return list(rows.values())

    async def hid(self, hardness: str, combined: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Hardness and combined flux on the days both exist, for a hardness–intensity diagram."""
        window = (naive_utc(start), naive_utc(end))
        rows = await self.fetch(
            "SELECT ts, mjd, series, value, error FROM derived WHERE series IN ($1, $2) "
            "AND ts >= $3 AND ts < $4 ORDER BY ts",
            hardness,
            combined,
            *window,
        )
        columns = {hardness: ("hardness", "hardness error"), combined: ("combined [mCrab]", "combined error [mCrab]")}
        by_time: dict[datetime, dict[str, Any]] = {}
        for r in rows:
            value, error = columns[r["series"]]
            row = by_time.setdefault(r["ts"], {"time": sql_time(r["ts"]), "mjd": r["mjd"]})
            row[value], row[error] = r["value"], r["error"]
        return [r for r in by_time.values() if "hardness" in r and "combined [mCrab]" in r]

    async def relevance(
        self, series: str, start: datetime, end: datetime, min_relevance: float
    ) -> list[dict[str, Any]]:
        """Scores of one series with the terms behind each and the model version, oldest first."""
        rows = await self.fetch(
            f"SELECT ts, mjd, value, error, relevance, {TERM_COLUMNS}, model_version FROM relevance "
            "WHERE series = $1 AND ts >= $2 AND ts < $3 AND relevance >= $4 ORDER BY ts",
            series,
            naive_utc(start),
            naive_utc(end),
            min_relevance,
        )
        return [
            {
                "time": sql_time(r["ts"]),
                "mjd": r["mjd"],
                "value": r["value"],
                "error": r["error"],
                "relevance": r["relevance"],
                "terms": {name: r[f"{name}_term"] for name in TERMS},
                "model_version": r["model_version"],
            }
            for r in rows
        ]

    async def top(self, limit: int) -> list[dict[str, Any]]:
        """The sources whose newest point is the most unusual: per source its series with the highest
        relevance at its newest point, highest first. Only series with a point in the last `TOP_RECENT_D`
        days of the data count (a series that stopped years ago is not news). Read and ranked at most every
        `api_cache_s`, once for every `limit`: a key per limit would push the newest points out of the cache."""
        return (await self.newest.get("top", self._top))[:limit]

    async def _top(self) -> list[dict[str, Any]]:
        rows = await self.fetch(
            f"SELECT ts, series, source_id, kind, mjd, value, relevance, {TERM_COLUMNS} "
            "FROM relevance LATEST ON ts PARTITION BY series"
        )
        newest = max((r["mjd"] for r in rows), default=0.0)
        best: dict[str, asyncpg.Record] = {}
        for r in rows:
            if r["mjd"] < newest - TOP_RECENT_D:
                continue
            if r["source_id"] not in best or r["relevance"] > best[r["source_id"]]["relevance"]:
                best[r["source_id"]] = r
        ranked = sorted(best.values(), key=lambda r: (-r["relevance"], r["source_id"]))
        return [
            {
                "source_id": r["source_id"],
                "series": r["series"],
                "kind": r["kind"],
                "time": sql_time(r["ts"]),
                "mjd": r["mjd"],
                "value": r["value"],
                "relevance": r["relevance"],
                "terms": {name: r[f"{name}_term"] for name in TERMS},
            }
            for r in ranked
        ]

    @overload
    async def alerts(
        self, q: AlertQuery, limit: int, offset: int, with_total: Literal[True] = True
    ) -> tuple[list[dict[str, Any]], int]: ...

    @overload
    async def alerts(
        self, q: AlertQuery, limit: int, offset: int, with_total: Literal[False]
    ) -> tuple[list[dict[str, Any]], None]: ...

    async def alerts(
        self, q: AlertQuery, limit: int, offset: int, with_total: bool = True
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The alert records (as on flashes.alerts.v3) that pass the filters, newest first, and their total
        (None without `with_total`: a page that shows no total need not count them)."""
        where, args = ["relevance >= $1"], [q.min_relevance]

        def bind(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if q.sources:
            where.append(f"source_id IN ({', '.join(bind(s) for s in q.sources)})")
        if q.alert_types:
            where.append(f"alert_type IN ({', '.join(bind(t) for t in q.alert_types)})")
        if q.reasons:  # the column holds the reasons joined by commas
            where.append("(" + " OR ".join(f"reasons LIKE {bind(f'%{r}%')}" for r in q.reasons) + ")")
        if q.start:
            where.append(f"ts >= {bind(naive_utc(q.start))}")
        if q.end:
            where.append(f"ts < {bind(naive_utc(q.end))}")
        if q.live is not None:  # QuestDB booleans have no null: records stored before v3 read as history
            where.append(f"live = {bind(q.live)}")
        clause = " AND ".join(where)
        total = (
            (await self.fetch(f"SELECT count() n FROM alerts WHERE {clause}", *args))[0]["n"] if with_total else None
        )
        page = await self.fetch(
            f"SELECT payload FROM alerts WHERE {clause} "
            f"ORDER BY ts DESC, alert_id, record_number DESC LIMIT {bind(offset)}, {bind(offset + limit)}",
            *args,
        )
        return [orjson.loads(r["payload"]) for r in page], total

    async def open_episodes(self) -> dict[str, list[str]]:
        """source_id -> the labels of its open alert episode (its newest record is not an `end`)."""
        rows = await self.fetch("SELECT source_id, alert_type, reasons FROM alerts LATEST ON ts PARTITION BY source_id")
        return {
            r["source_id"]: sorted({EPISODE_LABELS[x] for x in r["reasons"].split(",") if x in EPISODE_LABELS})
            or [OPEN_LABEL]
            for r in rows
            if r["alert_type"] != "end"
        }

    async def deliveries(self, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest delivery attempts of one subscription."""
        rows = await self.fetch(
            "SELECT ts, alert_id, record_number, test, channel, attempt, status, detail "
            "FROM deliveries WHERE subscription_id = $1 ORDER BY ts DESC LIMIT $2",
            subscription_id,
            limit,
        )
        # r.keys(), not r: an asyncpg Record iterates its values
        return [{"time": sql_time(r["ts"]), **{k: r[k] for k in r.keys() if k != "ts"}} for r in rows]  # noqa: SIM118


class Labels:
    """The temporary labels of sources with an open alert episode, read at most every few seconds (a
    `TTLCache`: concurrent requests read them once, and a failed read keeps the labels read before)."""

    def __init__(self, reader: Reader) -> None:
        self.reader, self.cache = reader, TTLCache(LABELS_TTL_S, 1)

    async def get(self) -> dict[str, list[str]]:
        return await self.cache.get("labels", self.reader.open_episodes)
