"""What operators look at on the API: its Prometheus metrics and the freshness of the stored data.

An instrument is stale when its newest stored point is older than `freshness_days` allows by the
service clock (flashes.clock): the provider or the fetcher stopped. An instrument without any stored
point is "no data", not stale: a deployment may not fetch that provider, and a stack that has just
started has nothing yet (the fetch metrics show whether fetching works at all).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flashes import clock
from flashes.questdb import NEWEST_PER_INSTRUMENT, sql_time
from flashes.settings import Settings
from services.api.store import Reader, naive_utc

DAY_S = 86_400.0


def judge(newest: dict[str, datetime], expected_days: dict[str, float], now: datetime) -> dict[str, dict[str, Any]]:
    """Per judged instrument: its newest point, age (days), the age allowed and "fresh", "stale" or "no data"."""
    out = {}
    for instrument, allowed in sorted(expected_days.items()):
        t = newest.get(instrument)
        age = (now - t).total_seconds() / DAY_S if t else None
        out[instrument] = {"newest": sql_time(t) if t else None, "age_days": round(age, 3) if age is not None else None,
                           "expected_within_days": allowed,
                           "status": "no data" if age is None else "stale" if age > allowed else "fresh"}
    return out


def router(settings: Settings, reader: Reader) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/metrics", summary="Prometheus metrics of the API process (text exposition format)",
             response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @api.get("/health/freshness", summary="Is every instrument's newest stored point within its expected cadence? "
                                          "503 names the stale ones", responses={503: {"description": "stale data"}})
    async def freshness() -> JSONResponse:
        now = clock.now(settings)  # a row dated beyond the credible (a typo) says nothing of freshness
        rows = await reader.fetch(NEWEST_PER_INSTRUMENT.format(columns="instrument, ts", bound="$1"),
                                  naive_utc(clock.latest_credible(settings)))
        newest = {r["instrument"]: r["ts"].replace(tzinfo=timezone.utc) for r in rows}
        instruments = judge(newest, settings.freshness_days, now)
        stale = {i: v for i, v in instruments.items() if v["status"] == "stale"}
        if not stale:
            return JSONResponse({"status": "ok", "instruments": instruments})
        detail = "; ".join(f"{i}: newest point {v['newest'][:10]}, {v['age_days']:.1f} days old "
                           f"(expected within {v['expected_within_days']:g})" for i, v in stale.items())
        return JSONResponse(status_code=503, content={"status": "stale", "detail": detail, "instruments": instruments})

    return api
