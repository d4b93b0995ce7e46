"""The alert records, newest first, filtered by source, tag, type, reason, relevance, time and news/history."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

import schemas
from services.api.deps import IndexDep, LabelsDep, ReaderDep
from services.api.models import AlertRecord, Page
from services.api.params import End, Offset, Start, ordered
from services.api.store import AlertQuery

router = APIRouter(tags=["alerts"])


def page(total: int, offset: int, limit: int, items: list[dict]) -> Response:
    """A page of alert records as the sink stored them (the topic's JSON), not validated again: records stored
    before flashes.alerts.v3 are served as they were written."""
    return Response(
        orjson.dumps({"total": total, "offset": offset, "limit": limit, "items": items}), media_type="application/json"
    )


@router.get(
    "/alerts",
    summary="Alert records (flashes.alerts.v3), newest first, each with why it was raised",
    response_model=Page[AlertRecord],
)
async def list_alerts(
    index: IndexDep,
    reader: ReaderDep,
    labels: LabelsDep,
    source: list[str] = Query([], examples=[["maxij1535-571"]]),
    tag: str | None = Query(None, description="alerts of sources with this tag"),
    alert_type: list[schemas.AlertType] = Query([]),
    reason: list[schemas.Reason] = Query([]),
    min_relevance: float = Query(0.0, ge=0.0, le=1.0),
    start: Start = None,
    end: End = None,
    live: bool | None = Query(
        None, description="true: news only; false: history only (alerts about old data, never pushed)"
    ),
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
) -> Response:
    for sid in source:
        index.get(sid)
    if tag is not None:
        tagged = index.tagged(tag, await labels.get())
        source = [s for s in source if s in tagged] if source else tagged
        if not source:
            return page(0, offset, limit, [])
    if start and end:
        ordered(start, end)
    query = AlertQuery(
        sources=source,
        alert_types=alert_type,
        reasons=reason,
        min_relevance=min_relevance,
        start=start,
        end=end,
        live=live,
    )
    items, total = await reader.alerts(query, limit, offset)
    return page(total, offset, limit, items)
