"""The FastAPI gateway: catalogue, tags, time series, relevance, alerts, subscriptions and the health of
Kafka and QuestDB."""
from __future__ import annotations

import asyncio
import copy
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flashes import catalogue, questdb
from flashes.errors import QuestDBError
from flashes.settings import Settings, get_settings
from flashes.heartbeat import beat
from services.api import store
from services.api.subscriptions import Store, router

SeriesKind = Literal["maxi", "swift", "fermi", "hardness", "combined"]


def _utc(t: datetime) -> datetime:
    """Query times without a zone are UTC."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


class RedactCodes(logging.Filter):
    """Access logs show /subscriptions/<code> and link tokens as '…': no code or token reaches a log."""

    SECRET = re.compile(r"(/subscriptions/)(?!confirm\b|unsubscribe\b)[^/?\s\"]+|(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "…", a) if isinstance(a, str)
                                else a for a in record.args)
        return True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    records = {rec["_id"]: rec for rec in catalogue.load(settings)}
    tag_counts = Counter(tag for rec in records.values() for tag in rec["labels_constant"] + rec["labels_dynamic"])
    subscriptions = Store(settings)
    logging.getLogger("uvicorn.access").addFilter(RedactCodes())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        heartbeat = asyncio.ensure_future(beat(settings, "api"))
        try:
            yield
        finally:
            heartbeat.cancel()
            await subscriptions.close()

    app = FastAPI(title="FLASHES stream API", version="1", lifespan=lifespan,
                  description="Catalogue, tags and lightcurves of the X-ray sources FLASHES watches. "
                              "Fluxes in mCrab unless stated; times UTC. Fermi/GBM pulsar amplitudes often "
                              "come with an error of 0 in the provider's files; they are served as they are.")

    @app.exception_handler(QuestDBError)
    async def questdb_down(request: Request, exc: QuestDBError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"the time-series store is unavailable: {exc}"})

    def source_or_404(source_id: str) -> dict[str, Any]:
        if source_id not in records:
            raise HTTPException(404, f"unknown source '{source_id}'; list the known ones at /sources")
        return records[source_id]

    def series_window(source: str, series: str, start: datetime | None,
                      end: datetime | None) -> tuple[dict[str, Any], datetime, datetime]:
        """The catalogue entry of a source's series and the UTC window asked for (default: the last year)."""
        entry = source_or_404(source)[store.SERIES_FIELD[series]]
        if entry is None:
            raise HTTPException(404, f"source '{source}' has no {series} series")
        end = _utc(end) if end else datetime.now(timezone.utc)
        start = _utc(start) if start else end - timedelta(days=365)
        if start >= end:
            raise HTTPException(422, f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
        return entry, start, end

    async def with_latest(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        latest = await run_in_threadpool(store.latest, settings)
        out = []
        for rec in recs:
            rec = copy.deepcopy(rec)
            for field in store.SERIES_FIELD.values():
                if rec[field] and rec[field]["series"] in latest:
                    rec[field].update(latest[rec[field]["series"]])
            out.append(rec)
        return out

    @app.get("/health/kafka", summary="Is the Kafka broker reachable?")
    async def health_kafka() -> JSONResponse:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 6)
            names = await asyncio.wait_for(admin.list_topics(), 6)
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", reported as such
            return JSONResponse(status_code=503, content={"status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"})
        finally:
            await admin.close()
        return JSONResponse({"status": "ok", "topics": sorted(n for n in names if n.startswith("flashes."))})

    @app.get("/health/questdb", summary="Is QuestDB reachable?")
    async def health_questdb() -> JSONResponse:
        try:
            tables = await run_in_threadpool(questdb.query, settings, "SELECT table_name FROM tables()", 5.0)
        except QuestDBError as exc:
            return JSONResponse(status_code=503, content={"status": "unavailable", "detail": str(exc)})
        return JSONResponse({"status": "ok", "tables": sorted(t["table_name"] for t in tables)})

    @app.get("/sources", summary="Catalogue sources, with the latest point of each series")
    async def list_sources(tag: str | None = None, instrument: SeriesKind | None = None,
                           limit: int = Query(3000, ge=1, le=3000), offset: int = Query(0, ge=0)) -> list[dict]:
        selected = [r for r in records.values()
                    if (tag is None or tag in r["labels_constant"] + r["labels_dynamic"])
                    and (instrument is None or r[store.SERIES_FIELD[instrument]] is not None)]
        return await with_latest(selected[offset:offset + limit])

    @app.get("/sources/{source_id}", summary="One source")
    async def get_source(source_id: str) -> dict:
        return (await with_latest([source_or_404(source_id)]))[0]

    @app.get("/tags", summary="Every tag with its number of sources")
    async def list_tags() -> list[dict]:
        return [{"tag": t, "sources": n} for t, n in sorted(tag_counts.items())]

    @app.get("/tags/{tag}", summary="The ids of the sources with a tag")
    async def get_tag(tag: str) -> dict:
        if tag not in tag_counts:
            raise HTTPException(404, f"unknown tag '{tag}'; list the known ones at /tags")
        return {"tag": tag, "sources": sorted(i for i, r in records.items()
                                              if tag in r["labels_constant"] + r["labels_dynamic"])}

    @app.get("/timeseries", summary="Grafana-style rows of one series: flux {band}, flux {band} max/min")
    async def get_timeseries(source: str, series: SeriesKind = "maxi", start: datetime | None = None,
                             end: datetime | None = None) -> list[dict]:
        entry, start, end = series_window(source, series, start, end)
        return await run_in_threadpool(store.timeseries, settings, entry["series"], series, start, end)

    @app.get("/relevance", summary="Relevance of each point of one series, with the terms that explain it")
    async def get_relevance(source: str, series: SeriesKind = "maxi", start: datetime | None = None,
                            end: datetime | None = None,
                            min_relevance: float = Query(0.0, ge=0.0, le=1.0)) -> list[dict]:
        entry, start, end = series_window(source, series, start, end)
        return await run_in_threadpool(store.relevance, settings, entry["series"], start, end, min_relevance)

    app.include_router(router(settings, records, set(tag_counts), subscriptions))

    @app.get("/alerts", summary="The newest alert records (flashes.alerts.v2), each with why it was raised")
    async def list_alerts(source: str | None = None, limit: int = Query(100, ge=1, le=10000)) -> list[dict]:
        if source is not None:
            source_or_404(source)
        return await run_in_threadpool(store.alerts, settings, source, limit)

    return app
