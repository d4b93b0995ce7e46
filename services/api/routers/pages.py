"""The web pages: HTML rendered on the server (Jinja2) from the catalogue, the store and the temporary
labels the JSON API uses.

Lists, tags, alerts, subscribing and managing a subscription work without JavaScript. The source
page's plots fetch the JSON endpoints and draw with uPlot (static/plots.js). Subscribing and
managing call the subscription service as the JSON routes do, with the visitor's network for the
rate limits; the code travels in the form's body, never in a URL or an access log.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any, TypeVar, get_args
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

import schemas
from flashes import catalogue
from flashes.errors import QuestDBError
from flashes.tags import TAGS
from flashes.topics import DERIVED_KINDS
from flashes.units import BANDS, INSTRUMENTS, MAIN_BAND, MCRAB_PER_UNIT, UNITS
from services.api.deps import IndexDep, LabelsDep, NetworkDep, ReaderDep, SettingsDep, SiteDep, SubscriptionsDep
from services.api.models import Source, SubscriptionRequest
from services.api.problems import ApiError, invalid_fields
from services.api.render import LABEL_TEXT, TAG_TEXT, Site, external_links
from services.api.skymap import sky_map
from services.api.sources import SORT_FIELD, SortKey, SourceIndex
from services.api.store import EPISODE_LABELS, AlertQuery, Labels, Reader
from services.api.subscription_store import CODE

router = APIRouter(include_in_schema=False)
T = TypeVar("T")
PER_PAGE = 50
MANAGE_ROWS = 500
MAX_PAGE = 20_000  # an offset QuestDB takes (a larger page number is the last one asked for)
HISTORY_START = "2009-01-01"  # MAXI's first light; the plots show a source's whole history by default
IMPORTANT_TAGS = ("BINARY", "BLACK HOLE", "BURSTER", "PULSAR")
SORTS = {"name": "name", "ra": "RA", "dec": "Dec", "glon": "galactic l", "glat": "galactic b"}
REASONS = {reason: reason.replace("_", " ") for reason in get_args(schemas.Reason)}
ALERT_TYPES = get_args(schemas.AlertType)
LISTED = ("tags", "instruments", "reasons", "alert_types")  # the subscribe form's fields of several values


def page_number(text: str) -> int:
    """A page number from a query parameter: 1 unless it is a plain number, at most MAX_PAGE."""
    return min(max(1, int(text)), MAX_PAGE) if text.isascii() and text.isdigit() and len(text) <= 6 else 1


async def read(coro: Awaitable[T], default: T) -> tuple[T, str | None]:
    """A store read that degrades to `default` with a notice when QuestDB is down."""
    try:
        return await coro, None
    except QuestDBError as exc:
        return default, f"The time-series store is unavailable ({exc}); values are missing."


async def views(index: SourceIndex, reader: Reader, labels: Labels, ids: list[str]) -> tuple[list[Source], str | None]:
    latest, problem = await read(reader.latest(), {})
    dynamic, _ = await read(labels.get(), {})
    return [index.view(sid, latest, dynamic) for sid in ids], problem


def refused(response: HTMLResponse, exc: ApiError) -> HTMLResponse:
    """A page refusing what the service refused tells, as the JSON answer does, when to try again."""
    response.headers.update(exc.headers or {})
    return response


# ---------------------------------------------------------------------------------------------- lists
@router.get("/", response_class=HTMLResponse)
async def home(site: SiteDep, index: IndexDep, reader: ReaderDep) -> HTMLResponse:
    top, problem = await read(reader.top(8), [])
    newest, _ = await read(reader.alerts(AlertQuery(), 5, 0, with_total=False), ([], None))
    return site.page(
        "home.html.j2",
        title="FLASHES stream",
        skymap=site.home_map,
        sky_svg=site.home_svg,
        top=index.named(top),
        alerts=newest[0],
        problem=problem,
        counts=site.instrument_counts,
        total=len(index.records),
        with_data=len(index.with_lightcurve),
        important=IMPORTANT_TAGS,
    )


async def source_list(
    request: Request,
    site: Site,
    index: SourceIndex,
    reader: Reader,
    labels: Labels,
    path: str,
    tag: str | None,
    title: str,
    intro: str | None = None,
) -> HTMLResponse:
    p = request.query_params
    q = p.get("q", "").strip()[:100]
    instrument = p.get("instrument", "")
    instrument = instrument if instrument in (*INSTRUMENTS, "any") else ""
    sort: SortKey = next((key for key in SORT_FIELD if key == p.get("sort")), "name")
    order = "desc" if p.get("order") == "desc" else "asc"
    dynamic, _ = await read(labels.get(), {})
    hits = [sid for sid, _ in index.search(q or None, tag, instrument or None, None, dynamic, sort, order == "desc")]
    pages = max(1, math.ceil(len(hits) / PER_PAGE))
    number = min(page_number(p.get("page", "")), pages)
    rows, problem = await views(index, reader, labels, hits[(number - 1) * PER_PAGE : number * PER_PAGE])
    tags = sorted(index.constant_counts)  # every tag and label, whether a source has it now or not
    form = {"q": q, "tag": tag or "", "instrument": instrument, "sort": sort, "order": order}
    return site.page(
        "sources.html.j2",
        title=title,
        intro=intro,
        path=path,
        rows=rows,
        total=len(hits),
        page_number=number,
        pages=pages,
        form=form,
        fixed_tag=tag,
        tags=tags,
        sorts=SORTS,
        problem=problem,
    )


@router.get("/web/sources", response_class=HTMLResponse)
async def sources(
    request: Request, site: SiteDep, index: IndexDep, reader: ReaderDep, labels: LabelsDep
) -> HTMLResponse:
    tag = request.query_params.get("tag") or None
    if tag is not None and tag not in index.constant_counts:
        return site.not_found(f"There is no tag '{tag}'.", "/web/tags", "the list of tags")
    return await source_list(request, site, index, reader, labels, "/web/sources", tag, "Sources")


@router.get("/web/tags", response_class=HTMLResponse)
async def tags(site: SiteDep, index: IndexDep, labels: LabelsDep) -> HTMLResponse:
    counts = index.tag_counts((await read(labels.get(), {}))[0])
    names = (*TAGS, *sorted(set(counts) - set(TAGS)))  # the seed's tags, then the temporary labels
    rows = [{"tag": t, "count": counts[t], "temporary": t not in TAGS} for t in names]
    return site.page("tags.html.j2", title="Tags", rows=rows)


@router.get("/web/tags/{tag}", response_class=HTMLResponse)
async def tag_page(
    tag: str, request: Request, site: SiteDep, index: IndexDep, reader: ReaderDep, labels: LabelsDep
) -> HTMLResponse:
    if tag not in index.constant_counts:
        return site.not_found(f"There is no tag '{tag}'.", "/web/tags", "the list of tags")
    return await source_list(
        request,
        site,
        index,
        reader,
        labels,
        f"/web/tags/{quote(tag)}",
        tag,
        f"Tag {tag}",
        intro=(TAG_TEXT | LABEL_TEXT).get(tag),
    )


@router.get("/web/sources/{source_id}", response_class=HTMLResponse)
async def source(
    source_id: str, settings: SettingsDep, site: SiteDep, index: IndexDep, reader: ReaderDep, labels: LabelsDep
) -> HTMLResponse:
    if source_id not in index.records:
        return site.not_found(
            f"There is no source '{source_id}' in the catalogue.", "/web/sources", "the list of sources"
        )
    kinds = [k for k in schemas.SERIES_FIELD if index.records[source_id].entry(k) is not None]
    if kinds:
        (view,), problem = await views(index, reader, labels, [source_id])
        alerts, _ = await read(reader.alerts(AlertQuery(sources=[source_id]), 20, 0), ([], 0))
    else:  # catalogue only: no series, so no points and no alerts to read
        view, problem, alerts = index.view(source_id, {}, {}), None, ([], 0)
    return site.page(
        "source.html.j2",
        title=view.integral_name,
        s=view,
        skymap=sky_map([], 360, view),
        external=external_links(view),
        kinds=kinds,
        bands=BANDS,
        derived=DERIVED_KINDS,
        alerts=alerts[0],
        alert_total=alerts[1],
        start=HISTORY_START,
        threshold=settings.relevance_threshold,
        problem=problem,
    )


@router.get("/web/alerts", response_class=HTMLResponse)
async def alerts(request: Request, site: SiteDep, index: IndexDep, reader: ReaderDep) -> HTMLResponse:
    p = request.query_params
    text = p.get("source", "").strip()[:100]
    sid = catalogue.source_id(text) if text else ""
    alert_type = p.get("alert_type", "") if p.get("alert_type") in ALERT_TYPES else ""
    reason = p.get("reason", "") if p.get("reason") in REASONS else ""
    number = page_number(p.get("page", ""))
    form = {"source": text, "alert_type": alert_type, "reason": reason}
    common: dict[str, Any] = {"title": "Alerts", "form": form, "reasons": REASONS, "alert_types": ALERT_TYPES}
    if sid and sid not in index.records:
        return site.page(
            "alerts.html.j2",
            items=[],
            total=0,
            page_number=1,
            pages=1,
            **common,
            problem=f"There is no source '{text}'; give a name or id as in the list of sources.",
        )
    query = AlertQuery(
        sources=[sid] if sid else [], alert_types=[alert_type] if alert_type else [], reasons=[reason] if reason else []
    )
    (items, total), problem = await read(reader.alerts(query, PER_PAGE, (number - 1) * PER_PAGE), ([], 0))
    return site.page(
        "alerts.html.j2",
        items=items,
        total=total,
        page_number=number,
        pages=max(1, math.ceil(total / PER_PAGE)),
        problem=problem,
        **common,
    )


@router.get("/web/about", response_class=HTMLResponse)
async def about(settings: SettingsDep, site: SiteDep) -> HTMLResponse:
    factors = [
        {"instrument": INSTRUMENTS[i], "band": b, "factor": f, "unit": UNITS[i], "main": MAIN_BAND[i] == b}
        for (i, b), f in MCRAB_PER_UNIT.items()
    ]
    return site.page(
        "about.html.j2",
        title="About",
        factors=factors,
        threshold=settings.relevance_threshold,
        end_points=settings.episode_end_points,
        labels=EPISODE_LABELS,
    )


# ---------------------------------------------------------------------------------------------- subscriptions
def subscribe_form(
    site: Site, error: str | None = None, values: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    return site.page(
        "subscribe.html.j2",
        status,
        title="Subscribe",
        error=error,
        v=values or {},
        tags=TAGS,
        reasons=REASONS,
        alert_types=ALERT_TYPES,
    )


@router.get("/web/subscribe", response_class=HTMLResponse)
async def subscribe_page(site: SiteDep) -> HTMLResponse:
    return subscribe_form(site)


@router.post("/web/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request, site: SiteDep, subs: SubscriptionsDep, network: NetworkDep) -> HTMLResponse:
    form = await request.form()
    values = {
        k: form.getlist(k) if k in LISTED else str(form.get(k, ""))
        for k in (
            "sources",
            *LISTED,
            "min_relevance",
            "ra",
            "dec",
            "radius",
            "channel",
            "webhook_url",
            "email",
            "history",
        )
    }
    body, error = subscription_body(values)
    if error:
        return subscribe_form(site, error, values, 422)
    try:
        made = await subs.create(SubscriptionRequest.model_validate(body), network)
    except ValidationError as exc:
        return subscribe_form(site, invalid_fields(exc.errors()), values, 422)
    except ApiError as exc:
        return refused(subscribe_form(site, str(exc.detail), values, exc.status_code), exc)
    return site.page("subscribed.html.j2", title="Subscribed", private=True, sub=made)


@router.get("/web/manage", response_class=HTMLResponse)
async def manage_page(site: SiteDep) -> HTMLResponse:
    return site.page("manage.html.j2", title="Your subscription", error=None)


@router.post("/web/manage", response_class=HTMLResponse)
async def manage(
    request: Request, site: SiteDep, index: IndexDep, reader: ReaderDep, labels: LabelsDep, subs: SubscriptionsDep
) -> HTMLResponse:
    code = str((await request.form()).get("code", "")).strip()
    if not CODE.match(code):
        return site.page("manage.html.j2", 404, title="Your subscription", error="this is not a subscription code")
    try:
        sub = await subs.read(code)
    except ApiError as exc:
        return site.page("manage.html.j2", exc.status_code, title="Your subscription", error=str(exc.detail))
    try:
        deliveries = await subs.deliveries(code, 20)
    except (ApiError, QuestDBError):  # the list is left out; the subscription itself is shown
        deliveries = []
    rows, problem = await views(index, reader, labels, sub.sources[:MANAGE_ROWS])
    return site.page(
        "subscription.html.j2",
        title="Your subscription",
        private=True,
        sub=sub,
        code=code,
        rows=rows,
        total=len(sub.sources),
        shown=MANAGE_ROWS,
        problem=problem,
        deliveries=deliveries,
    )


@router.post("/web/manage/revoke", response_class=HTMLResponse)
async def revoke(request: Request, site: SiteDep, subs: SubscriptionsDep, network: NetworkDep) -> HTMLResponse:
    form = await request.form()
    code = str(form.get("code", "")).strip()
    if not CODE.match(code) or form.get("confirm") != "yes":
        return site.page(
            "manage.html.j2", 422, title="Your subscription", error="to revoke, give the code and tick the box"
        )
    try:
        await subs.delete(code, network)
    except ApiError as exc:
        return refused(
            site.page("manage.html.j2", exc.status_code, title="Your subscription", error=str(exc.detail)), exc
        )
    return site.page(
        "message.html.j2",
        title="Revoked",
        message="The subscription is revoked: delivery stopped, and its code no longer opens anything.",
    )


@router.get("/web/{rest:path}", response_class=HTMLResponse)
async def unknown(rest: str, site: SiteDep) -> HTMLResponse:
    return site.not_found(f"There is no page /web/{rest}.", "/", "the start page")


def subscription_body(v: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The POST /subscriptions body from the subscribe form's fields, or what is wrong with them."""
    filters: dict[str, Any] = {k: v[k] for k in LISTED if v[k]}
    if v.get("history"):
        filters["history"] = True
    names = [n.strip() for n in v["sources"].replace(";", ",").split(",") if n.strip()]
    if names:
        filters["sources"] = [catalogue.source_id(n) for n in names]
    try:
        if v["min_relevance"].strip():
            filters["min_relevance"] = float(v["min_relevance"])
        cone = [v[k].strip() for k in ("ra", "dec", "radius")]
        if any(cone):
            if not all(cone):
                return {}, "a cone needs RA, Dec and radius"
            filters["cone"] = dict(zip(("ra", "dec", "radius"), map(float, cone)))
    except ValueError:
        return {}, "relevance, RA, Dec and radius are numbers"
    channel = v["channel"] if v["channel"] in get_args(schemas.Channel) else "none"
    body: dict[str, Any] = {"channel": channel, "filters": filters}
    if channel == "webhook":
        body["webhook_url"] = v["webhook_url"].strip()
    if channel == "email":
        body["email"] = v["email"].strip()
    return body, None
