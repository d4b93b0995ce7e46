"""The catalogue: search it, one source, the tags with their sources, and the Grafana dashboard of a source."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import RedirectResponse

import schemas
from flashes import grafana
from flashes.tags import TAGS
from services.api.deps import IndexDep, LabelsDep, ReaderDep, SettingsDep
from services.api.models import Page, Source, TagCount, Tagged
from services.api.params import End, Offset, Start
from services.api.problems import Invalid, NotFound, Unavailable
from services.api.sources import SortKey

router = APIRouter(tags=["catalogue"])


@router.get(
    "/sources",
    summary="Search the catalogue; each source with the newest point of each series",
    response_model=Page[Source],
)
async def list_sources(
    index: IndexDep,
    reader: ReaderDep,
    labels: LabelsDep,
    q: str | None = Query(None, max_length=100, description="part of a name or alternative name", examples=["gx 339"]),
    tag: str | None = Query(None, examples=["BLACK HOLE"]),
    instrument: schemas.SeriesKind | None = None,
    ra: float | None = Query(None, ge=0, lt=360, description="cone centre, degrees (J2000)"),
    dec: float | None = Query(None, ge=-90, le=90, description="cone centre, degrees (J2000)"),
    radius: float | None = Query(None, gt=0, le=180, description="cone radius, degrees"),
    sort: SortKey = "name",
    order: Literal["asc", "desc"] = "asc",
    limit: int = Query(100, ge=1, le=3000),
    offset: Offset = 0,
) -> Page[Source]:
    given = [x is not None for x in (ra, dec, radius)]
    if any(given) and not all(given):
        raise Invalid("a cone search needs all of ra, dec and radius")
    if sort == "distance" and not all(given):
        raise Invalid("sort=distance needs a cone (ra, dec, radius)")
    if tag is not None:
        index.check_tag(tag)
    dynamic = await labels.get()
    cone = schemas.Cone(ra=ra, dec=dec, radius=radius) if all(given) else None
    hits = index.search(q, tag, instrument, cone, dynamic, sort, order == "desc")
    latest = await reader.latest()
    items = [index.view(sid, latest, dynamic, d) for sid, d in hits[offset : offset + limit]]
    return Page[Source](total=len(hits), offset=offset, limit=limit, items=items)


@router.get("/sources/{source_id}", summary="One source", response_model=Source)
async def get_source(
    index: IndexDep, reader: ReaderDep, labels: LabelsDep, source_id: str = Path(examples=["maxij1535-571"])
) -> Source:
    index.get(source_id)
    return index.view(source_id, await reader.latest(), await labels.get())


@router.get(
    "/tags",
    summary="Every tag (constant, and the temporary labels of open episodes) with its number of sources",
    response_model=list[TagCount],
)
async def list_tags(index: IndexDep, labels: LabelsDep) -> list[TagCount]:
    counts = index.tag_counts(await labels.get())
    return [TagCount(tag=t, sources=n, temporary=t not in TAGS) for t, n in sorted(counts.items())]


@router.get("/tags/{tag}", summary="The ids of the sources with a tag", response_model=Tagged)
async def get_tag(index: IndexDep, labels: LabelsDep, tag: str = Path(examples=["BLACK HOLE"])) -> Tagged:
    index.check_tag(tag)  # before the labels are read: an unknown tag needs no store
    return Tagged(tag=tag, sources=index.tagged(tag, await labels.get()))


@router.get(
    "/plots/{source_id}",
    summary="Redirect to the Grafana dashboard of the source's instruments",
    status_code=307,
    response_class=RedirectResponse,
)
async def plots(
    settings: SettingsDep,
    index: IndexDep,
    source_id: str = Path(examples=["maxij1535-571"]),
    start: Start = None,
    end: End = None,
) -> RedirectResponse:
    if not settings.grafana_url:
        raise Unavailable("no Grafana is configured (FLASHES_GRAFANA_URL)")
    record = index.get(source_id)
    if source_id not in index.with_lightcurve:
        raise NotFound(f"source '{source_id}' has no lightcurve, so no dashboard", f"/sources/{source_id}")
    return RedirectResponse(grafana.dashboard_url(settings, record, start, end), status_code=307)
