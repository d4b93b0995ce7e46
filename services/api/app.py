"""The FastAPI gateway: catalogue, tags, time series, downloads, relevance, alerts, subscriptions, the
Grafana redirect, the health of Kafka, QuestDB and Grafana, the web pages (services/api/pages.py), and for
operators its metrics and the data's freshness (services/api/ops.py)."""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel

import schemas
from flashes import catalogue, grafana, kafka
from flashes.heartbeat import beat
from flashes.settings import Settings, get_settings
from flashes.tags import TAGS
from flashes.units import BANDS, MCRAB_PER_UNIT
from services.api import downloads, ops, pages, problems
from services.api.bodylimit import BodyLimit
from services.api.sources import SortKey, SourceIndex
from services.api.store import AlertQuery, Labels, Reader
from services.api.subscriptions import Store, router

SeriesKind = Literal["maxi", "swift", "fermi", "hardness", "combined"]
AlertType = Literal["onset", "update", "end"]
Reason = Literal["brightening", "state_change", "unusual"]
class Page(BaseModel):
    """One page of a list: `total` matches the filters; `items` are those from `offset`, at most `limit`."""

    total: int
    offset: int
    limit: int
    items: list[dict[str, Any]]


EARLIEST, LATEST = datetime(1950, 1, 1, tzinfo=timezone.utc), datetime(2200, 1, 1, tzinfo=timezone.utc)


def utc_time(t: datetime | None) -> datetime | None:
    """A query time in UTC (no zone: UTC), between 1950 and 2200."""
    if t is None:
        return None
    try:
        t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("time out of range") from None
    if not EARLIEST <= t <= LATEST:
        raise ValueError("time must be between 1950 and 2200")
    return t


def window(start: datetime | None, end: datetime | None, default: timedelta | None) -> tuple[datetime, datetime]:
    """The UTC window asked for: `end` defaults to now, `start` to `default` before it (None: the beginning)."""
    end = end or datetime.now(timezone.utc)
    start = start or (end - default if default else EARLIEST)
    if start >= end:
        raise HTTPException(422, f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    return start, end


Start = Annotated[datetime | None, AfterValidator(utc_time),
                  Query(description="UTC (ISO 8601); a time without a zone is UTC", examples=["2017-09-01T00:00:00Z"])]
End = Annotated[datetime | None, AfterValidator(utc_time),
                Query(description="UTC, exclusive (default: now)", examples=["2017-12-01T00:00:00Z"])]


class RedactCodes(logging.Filter):
    """Access logs show /subscriptions/<code> and link tokens as '…': no code or token reaches a log."""

    SECRET = re.compile(r"(/subscriptions/)(?!confirm\b|unsubscribe\b)[^/?\s\"]+|(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):  # str() also for URL objects (httpx logs them, e.g. the pages' calls)
            record.args = tuple(a if isinstance(a, int | float) else
                                self.SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "…", str(a))
                                for a in record.args)
        return True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    index = SourceIndex(catalogue.load(settings))
    reader = Reader(settings)
    labels = Labels(reader)
    subscriptions = Store(settings)
    for logger in ("uvicorn.access", "httpx"):
        logging.getLogger(logger).addFilter(RedactCodes())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        heartbeat = asyncio.ensure_future(beat(settings, "api"))
        cleaner = asyncio.ensure_future(subscriptions.keep_clean())
        try:
            yield
        finally:
            heartbeat.cancel()
            cleaner.cancel()
            await subscriptions.close()
            await reader.close()

    app = FastAPI(title="FLASHES stream API", version="2", lifespan=lifespan,
                  responses=problems.RESPONSES, docs_url=None, redoc_url=None,
                  description="Catalogue, tags, lightcurves, relevance and alerts of the X-ray sources FLASHES "
                              "watches (MAXI/GSC, Swift/BAT, Fermi/GBM). Fluxes in mCrab unless stated; times UTC. "
                              "Every error answers with the same shape (Problem). Fermi/GBM pulsar amplitudes often "
                              "come with an error of 0 in the provider's files; they are served as they are.")
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def series_entry(source: str, kind: str) -> dict[str, Any]:
        entry = index.get(source)[catalogue.SERIES_FIELD[kind]]
        if entry is None:
            raise problems.NotFound(f"source '{source}' has no {kind} series", f"/sources/{source}")
        return entry

    @app.get("/health/kafka", summary="Is the Kafka broker reachable?", tags=["health"])
    async def health_kafka() -> JSONResponse:
        admin = kafka.admin(settings, request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 6)
            names = await asyncio.wait_for(admin.list_topics(), 6)
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", reported as such
            return JSONResponse(status_code=503, content={"status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"})
        finally:
            await admin.close()
        return JSONResponse({"status": "ok", "topics": sorted(n for n in names if n.startswith("flashes."))})

    @app.get("/health/questdb", summary="Is QuestDB reachable?", tags=["health"])
    async def health_questdb() -> JSONResponse:
        try:
            tables = await reader.tables()
        except Exception as exc:  # noqa: BLE001 - reported as unhealthy
            return JSONResponse(status_code=503, content={"status": "unavailable", "detail": str(exc)})
        return JSONResponse({"status": "ok", "tables": tables})

    @app.get("/health/grafana", summary="Grafana's own health endpoint, when a Grafana is configured", tags=["health"])
    async def health_grafana() -> JSONResponse:
        if not settings.grafana_url:
            return JSONResponse({"status": "not configured", "detail": "set FLASHES_GRAFANA_URL"})
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                r = await client.get(f"{settings.grafana_url.rstrip('/')}/api/health")
            r.raise_for_status()
            return JSONResponse({"status": "ok", "url": settings.grafana_url, "grafana": r.json()})
        except (httpx.HTTPError, ValueError) as exc:
            return JSONResponse(status_code=503, content={"status": "unavailable", "url": settings.grafana_url,
                                                          "detail": f"{type(exc).__name__}: {exc}"})

    @app.get("/sources", summary="Search the catalogue; each source with the newest point of each series",
             tags=["catalogue"], response_model=Page)
    async def list_sources(
            q: str | None = Query(None, max_length=100, description="part of a name or alternative name",
                                  examples=["gx 339"]),
            tag: str | None = Query(None, examples=["BLACK HOLE"]),
            instrument: SeriesKind | None = None,
            ra: float | None = Query(None, ge=0, lt=360, description="cone centre, degrees (J2000)"),
            dec: float | None = Query(None, ge=-90, le=90, description="cone centre, degrees (J2000)"),
            radius: float | None = Query(None, gt=0, le=180, description="cone radius, degrees"),
            sort: SortKey = "name", order: Literal["asc", "desc"] = "asc",
            limit: int = Query(100, ge=1, le=3000), offset: int = Query(0, ge=0, le=1_000_000)) -> dict[str, Any]:
        cone_given = [x is not None for x in (ra, dec, radius)]
        if any(cone_given) and not all(cone_given):
            raise HTTPException(422, "a cone search needs all of ra, dec and radius")
        if sort == "distance" and not all(cone_given):
            raise HTTPException(422, "sort=distance needs a cone (ra, dec, radius)")
        if tag is not None:
            index.check_tag(tag)
        dynamic = await labels.get()
        cone = schemas.Cone(ra=ra, dec=dec, radius=radius) if all(cone_given) else None
        hits = index.search(q, tag, instrument, cone, dynamic, sort, order == "desc")
        latest = await reader.latest()
        items = [index.view(sid, latest, dynamic, d) for sid, d in hits[offset:offset + limit]]
        return {"total": len(hits), "offset": offset, "limit": limit, "items": items}

    @app.get("/sources/{source_id}", summary="One source", tags=["catalogue"])
    async def get_source(source_id: str = Path(examples=["maxij1535-571"])) -> dict[str, Any]:
        index.get(source_id)
        return index.view(source_id, await reader.latest(), await labels.get())

    @app.get("/tags", summary="Every tag (constant, and the temporary labels of open episodes) with its number "
                              "of sources", tags=["catalogue"])
    async def list_tags() -> list[dict[str, Any]]:
        counts = index.tag_counts(await labels.get())
        return [{"tag": t, "sources": n, "temporary": t not in TAGS} for t, n in sorted(counts.items())]

    @app.get("/tags/{tag}", summary="The ids of the sources with a tag", tags=["catalogue"])
    async def get_tag(tag: str = Path(examples=["BLACK HOLE"])) -> dict[str, Any]:
        dynamic = await labels.get()
        return {"tag": tag, "sources": index.tagged(tag, dynamic)}

    @app.get("/timeseries", summary="Grafana-style rows of one series: flux {band}, flux {band} max/min (±1σ)",
             tags=["data"], response_model=list[dict[str, Any]],
             description="Give `source` and `series`, or the seed's Grafana parameters `influx_key` "
                         "(the series key) and `channel` (a band). Default window: the last year.")
    async def get_timeseries(
            source: str | None = Query(None, examples=["maxij1535-571"]), series: SeriesKind = "maxi",
            influx_key: str | None = Query(None, description="series key, as in the seed", examples=["maxi_gx339-4"]),
            channel: str | None = Query(None, description="band in keV, e.g. 2-20", examples=["2-20"]),
            start: Start = None, end: End = None) -> Response:
        if influx_key is not None:
            source, series = index.series_of(influx_key)
        elif source is None:
            raise HTTPException(422, "give source (and series) or influx_key")
        entry = series_entry(source, series)
        if channel is not None and (series, channel) not in MCRAB_PER_UNIT:
            bands = sorted(BANDS.get(series, ()))
            raise HTTPException(422, f"channel {channel!r} is not a band of the {series} series; "
                                     f"its bands: {', '.join(bands) or 'none (a derived series has no channel)'}")
        t0, t1 = window(start, end, timedelta(days=365))
        return Response(await reader.timeseries(entry["series"], series, t0, t1, channel),
                        media_type="application/json")

    @app.get("/download/{series_key}", summary="One series as a file: provider units and mCrab per band",
             tags=["data"], response_class=Response,
             responses={200: {"content": {m: {} for m in downloads.MEDIA.values()}}})
    async def download(series_key: str = Path(examples=["maxi_maxij1535-571"]), start: Start = None, end: End = None,
                       format: downloads.Format = "csv") -> Response:  # noqa: A002 - the public parameter name
        source, kind = index.series_of(series_key)
        t0, t1 = window(start, end, None)
        rows = await reader.download(series_key, kind, t0, t1)
        title = f"{series_key} ({index.get(source)['integral_name']}, {kind})"
        return downloads.file(rows, format, series_key, downloads.header(title, t0.isoformat(), t1.isoformat()))

    @app.get("/download/hid/{hardness_key}/{combined_key}", tags=["data"], response_class=Response,
             summary="Hardness ratio and combined flux on the days both exist (hardness–intensity diagram)",
             responses={200: {"content": {m: {} for m in downloads.MEDIA.values()}}})
    async def download_hid(hardness_key: str = Path(examples=["hardness_maxij1535-571"]),
                           combined_key: str = Path(examples=["combined_maxij1535-571"]),
                           start: Start = None, end: End = None, format: downloads.Format = "csv") -> Response:  # noqa: A002
        (h_source, h_kind), (c_source, c_kind) = index.series_of(hardness_key), index.series_of(combined_key)
        if (h_kind, c_kind) != ("hardness", "combined") or h_source != c_source:
            raise HTTPException(422, "give the hardness key and then the combined key of one source, "
                                     f"e.g. /download/hid/hardness_{h_source}/combined_{h_source}")
        t0, t1 = window(start, end, None)
        rows = await reader.hid(hardness_key, combined_key, t0, t1)
        title = f"hardness-intensity of {index.get(h_source)['integral_name']}"
        return downloads.file(rows, format, f"hid_{h_source}", downloads.header(title, t0.isoformat(), t1.isoformat()))

    @app.get("/plots/{source_id}", summary="Redirect to the Grafana dashboard of the source's instruments",
             tags=["catalogue"], status_code=307, response_class=RedirectResponse)
    async def plots(source_id: str = Path(examples=["maxij1535-571"]), start: Start = None,
                    end: End = None) -> RedirectResponse:
        if not settings.grafana_url:
            raise HTTPException(503, "no Grafana is configured (FLASHES_GRAFANA_URL)")
        record = index.get(source_id)
        if source_id not in index.with_lightcurve:
            raise problems.NotFound(f"source '{source_id}' has no lightcurve, so no dashboard", f"/sources/{source_id}")
        return RedirectResponse(grafana.dashboard_url(settings, record, start, end), status_code=307)

    @app.get("/relevance", summary="Relevance of each point of one series, with the terms that explain it",
             tags=["relevance"])
    async def get_relevance(source: str = Query(examples=["maxij1535-571"]), series: SeriesKind = "maxi",
                            start: Start = None, end: End = None,
                            min_relevance: float = Query(0.0, ge=0.0, le=1.0)) -> list[dict[str, Any]]:
        entry = series_entry(source, series)
        t0, t1 = window(start, end, timedelta(days=365))
        return await reader.relevance(entry["series"], t0, t1, min_relevance)

    @app.get("/relevance/top", summary="The most unusual sources now: each source's series with the highest "
                                       "relevance at its newest point", tags=["relevance"])
    async def relevance_top(limit: int = Query(20, ge=1, le=1000)) -> list[dict[str, Any]]:
        return index.named(await reader.top(limit))

    app.include_router(router(settings, index.records, set(TAGS), subscriptions, reader))

    @app.get("/alerts", summary="Alert records (flashes.alerts.v3), newest first, each with why it was raised",
             tags=["alerts"], response_model=Page)
    async def list_alerts(source: list[str] = Query([], examples=[["maxij1535-571"]]),
                          tag: str | None = Query(None, description="alerts of sources with this tag"),
                          alert_type: list[AlertType] = Query([]), reason: list[Reason] = Query([]),
                          min_relevance: float = Query(0.0, ge=0.0, le=1.0), start: Start = None, end: End = None,
                          live: bool | None = Query(None, description="true: news only; false: history only "
                                                                       "(alerts about old data, never pushed)"),
                          limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=1_000_000)) -> dict[str, Any]:
        for sid in source:
            index.get(sid)
        if tag is not None:
            tagged = index.tagged(tag, await labels.get())
            source = [s for s in source if s in tagged] if source else tagged
            if not source:
                return {"total": 0, "offset": offset, "limit": limit, "items": []}
        if start and end:
            window(start, end, None)
        query = AlertQuery(sources=source, alert_types=alert_type, reasons=reason, min_relevance=min_relevance,
                           start=start, end=end, live=live)
        items, total = await reader.alerts(query, limit, offset)
        return {"total": total, "offset": offset, "limit": limit, "items": items}

    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")

    # Swagger UI from the package (static/vendor/swagger-ui), not from a CDN: the origin that shows subscription
    # codes runs no script another host serves. No validator badge (it calls validator.swagger.io); no ReDoc.
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - docs",
                                   swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg", swagger_ui_parameters={"validatorUrl": None})
    app.include_router(pages.router(settings, index, reader, labels))
    app.include_router(ops.router(settings, reader))
    return app
