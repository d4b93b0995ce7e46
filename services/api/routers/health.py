"""Is each part reachable (Kafka, QuestDB, Grafana), is the stored data fresh, and the API's Prometheus metrics.

An instrument is stale when its newest stored point is older than `freshness_days` allows by the
service clock (flashes.clock): the provider or the fetcher stopped. An instrument without any stored
point is "no data", not stale: a deployment may not fetch that provider, and a stack that has just
started has nothing yet (the fetch metrics show whether fetching works at all).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from flashes import clock, kafka
from flashes.questdb import NEWEST_PER_INSTRUMENT, naive_utc, sql_time
from services.api.deps import ReaderDep, SettingsDep
from services.api.models import Freshness, GrafanaHealth, InstrumentFreshness, KafkaHealth, QuestDBHealth

router = APIRouter(tags=["health"])
DAY_S = 86_400.0


def unhealthy(answer: BaseModel) -> JSONResponse:
    return JSONResponse(answer.model_dump(mode="json"), status_code=503)


@router.get(
    "/health/kafka",
    summary="Is the Kafka broker reachable?",
    response_model=KafkaHealth,
    responses={503: {"model": KafkaHealth, "description": "unreachable"}},
)
async def health_kafka(settings: SettingsDep) -> KafkaHealth | JSONResponse:
    admin = kafka.admin(settings, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 6)
        names = await asyncio.wait_for(admin.list_topics(), 6)
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", reported as such
        return unhealthy(KafkaHealth(status="unavailable", detail=f"{type(exc).__name__}: {exc}"))
    finally:
        await admin.close()
    return KafkaHealth(status="ok", topics=sorted(n for n in names if n.startswith("flashes.")))


@router.get(
    "/health/questdb",
    summary="Is QuestDB reachable?",
    response_model=QuestDBHealth,
    responses={503: {"model": QuestDBHealth, "description": "unreachable"}},
)
async def health_questdb(reader: ReaderDep) -> QuestDBHealth | JSONResponse:
    try:
        tables = await reader.tables()
    except Exception as exc:  # noqa: BLE001 - reported as unhealthy
        return unhealthy(QuestDBHealth(status="unavailable", detail=str(exc)))
    return QuestDBHealth(status="ok", tables=tables)


@router.get(
    "/health/grafana",
    summary="Grafana's own health endpoint, when a Grafana is configured",
    response_model=GrafanaHealth,
    responses={503: {"model": GrafanaHealth, "description": "unreachable"}},
)
async def health_grafana(settings: SettingsDep) -> GrafanaHealth | JSONResponse:
    url = settings.grafana_url
    if not url:
        return GrafanaHealth(status="not configured", detail="set FLASHES_GRAFANA_URL")
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(f"{url.rstrip('/')}/api/health")
        r.raise_for_status()
        return GrafanaHealth(status="ok", url=url, grafana=r.json())
    except (httpx.HTTPError, ValueError) as exc:
        return unhealthy(GrafanaHealth(status="unavailable", url=url, detail=f"{type(exc).__name__}: {exc}"))


@router.get(
    "/metrics",
    summary="Prometheus metrics of the API process (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def judge(
    newest: dict[str, datetime], expected_days: dict[str, float], now: datetime
) -> dict[str, InstrumentFreshness]:
    """Per judged instrument: its newest point, age (days), the age allowed and "fresh", "stale" or "no data"."""
    out = {}
    for instrument, allowed in sorted(expected_days.items()):
        t = newest.get(instrument)
        age = (now - t).total_seconds() / DAY_S if t else None
        out[instrument] = InstrumentFreshness(
            newest=sql_time(t) if t else None,
            age_days=round(age, 3) if age is not None else None,
            expected_within_days=allowed,
            status="no data" if age is None else "stale" if age > allowed else "fresh",
        )
    return out


@router.get(
    "/health/freshness",
    summary="Is every instrument's newest stored point within its expected cadence? 503 names the stale ones",
    response_model=Freshness,
    responses={503: {"model": Freshness, "description": "stale data"}},
)
async def freshness(settings: SettingsDep, reader: ReaderDep) -> Freshness | JSONResponse:
    now = clock.now(settings)  # a row dated beyond the credible (a typo) says nothing of freshness
    rows = await reader.fetch(
        NEWEST_PER_INSTRUMENT.format(columns="instrument, ts", bound="$1"), naive_utc(clock.latest_credible(settings))
    )
    newest = {r["instrument"]: r["ts"].replace(tzinfo=UTC) for r in rows}
    instruments = judge(newest, settings.freshness_days, now)
    stale = {i: v for i, v in instruments.items() if v.status == "stale"}
    if not stale:
        return Freshness(status="ok", instruments=instruments)
    detail = "; ".join(
        f"{i}: newest point {(v.newest or '')[:10]}, {v.age_days:.1f} days old "
        f"(expected within {v.expected_within_days:g})"
        for i, v in stale.items()
    )
    return unhealthy(Freshness(status="stale", detail=detail, instruments=instruments))
