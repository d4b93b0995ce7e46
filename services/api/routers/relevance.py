"""How unusual each point is: the relevance of one series with its terms, and the most unusual sources now."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query

import schemas
from flashes import clock
from services.api.deps import IndexDep, ReaderDep, SettingsDep
from services.api.models import RelevanceRow, TopRow
from services.api.params import End, Start, window

router = APIRouter(tags=["relevance"])


@router.get(
    "/relevance",
    summary="Relevance of each point of one series, with the terms that explain it",
    response_model=list[RelevanceRow],
)
async def get_relevance(
    settings: SettingsDep,
    index: IndexDep,
    reader: ReaderDep,
    source: str = Query(examples=["maxij1535-571"]),
    series: schemas.SeriesKind = "maxi",
    start: Start = None,
    end: End = None,
    min_relevance: float = Query(0.0, ge=0.0, le=1.0),
) -> list[RelevanceRow]:
    entry = index.series_entry(source, series)
    t0, t1 = window(start, end, timedelta(days=365), clock.now(settings))
    return [RelevanceRow.model_validate(r) for r in await reader.relevance(entry.series, t0, t1, min_relevance)]


@router.get(
    "/relevance/top",
    summary="The most unusual sources now: each source's series with the highest relevance at its newest point",
    response_model=list[TopRow],
)
async def relevance_top(index: IndexDep, reader: ReaderDep, limit: int = Query(20, ge=1, le=1000)) -> list[TopRow]:
    return [TopRow.model_validate(r) for r in index.named(await reader.top(limit))]
