"""The web pages: HTML rendered on the server (Jinja2) from the catalogue, the store and the temporary
labels the JSON API uses.

Lists, tags, alerts, subscribing and managing a subscription work without JavaScript. The source
page's plots fetch the JSON endpoints and draw with uPlot (static/plots.js). Subscribing and
managing call the subscriptions API in-process, so the code takes exactly the API's path and never
appears in a URL or an access log.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote, urlencode, urlsplit

import astropy.units as u
import httpx
import numpy as np
from astropy.coordinates import Angle
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from markupsafe import Markup

import schemas
from flashes import catalogue, mail
from flashes.errors import QuestDBError
from flashes.settings import Settings
from flashes.tags import TAGS
from flashes.topics import DERIVED_KINDS
from flashes.units import BANDS, INSTRUMENTS, MAIN_BAND, MCRAB_PER_UNIT, SERIES_TITLES, UNITS
from services.api.sources import SORT_FIELD, SourceIndex
from services.api.store import EPISODE_LABELS, OPEN_LABEL, AlertQuery, Labels, Reader
from services.api.subscriptions import CODE

STATIC = Path(__file__).resolve().parent / "static"
PER_PAGE = 50
MANAGE_ROWS = 500
HISTORY_START = "2009-01-01"  # MAXI's first light; the plots show a source's whole history by default
IMPORTANT_TAGS = ("BINARY", "BLACK HOLE", "BURSTER", "PULSAR")
SORTS = {"name": "name", "ra": "RA", "dec": "Dec", "glon": "galactic l", "glat": "galactic b"}
REASONS = {reason: reason.replace("_", " ") for reason in get_args(schemas.Reason)}
ALERT_TYPES = get_args(schemas.AlertType)
# The seed README's tag table, in its words.
TAG_TEXT = {
    "LMXRB": "Low-Mass X-Ray Binary: a black hole or neutron star accretes matter from a low-mass companion; "
             "the hot matter shines in X-rays.",
    "SEYFERT GALAXY": "A subclass of AGN with a luminous nucleus; emits X-rays through hot gas in the accretion disk.",
    "GLOBULAR CLUSTER": "A spherical group of typically very old stars, frequently hosting X-ray sources "
                        "(Pooley 2010).",
    "GAMMA RAY SOURCE": "An object with conditions extreme enough to emit gamma rays.",
    "BE STAR": "A B-type star with a circumstellar disk; a common donor in Be/X-ray binaries.",
    "BL LAC": "A subclass of AGN whose jet points along the line of sight; emits X-rays from hot matter in the jet.",
    "BLACK HOLE": "Extreme gravity, often surrounded by disks of hot gas that emit X-rays.",
    "GALAXY CLUSTER": "Galaxies bound together by gravity; X-rays from bremsstrahlung, recombination and "
                      "de-excitation in the hot gas (Böhringer 2010).",
    "CLUSTER": "A bound group of stars or galaxies; X-rays typically from bremsstrahlung.",
    "PULSAR": "A rapidly rotating neutron star emitting periodic pulses across the spectrum.",
    "TRANSIENT": "A source that brightens or appears only temporarily, for a variety of reasons.",
    "HMXRB": "High-Mass X-Ray Binary: a black hole or neutron star accretes matter from a high-mass companion; "
             "the hot matter shines in X-rays.",
    "AGN": "Active Galactic Nucleus: a galaxy's bright centre powered by accretion onto a supermassive black hole.",
    "SUPERGIANT": "A massive star; strong X-rays when its wind is accreted by a companion.",
    "PULSATOR": "An object with strong brightness variations, connected to neutron stars and/or accretion.",
    "BURSTER": "An object showing very sudden brightenings, often thermonuclear.",
    "REPEATER": "An object with recurrent bursts or flares.",
    "HARD": "Hard X-rays dominate: the emission is rich in high-energy photons.",
    "BINARY": "Two objects bound by gravity; X-rays when one accretes matter from the other.",
    "QSO": "Quasi-stellar object (quasar): an AGN of extreme luminosity.",
    "QPO": "Quasi-periodic oscillations: nearly periodic modulations of the X-ray flux.",
    "UNIDENTIFIED": "An X-ray source whose nature is not identified.",
    "UNCLASSIFIED": "Classification not done or not possible; the default tag.",
}
LABEL_TEXT = {label: f"Temporary: the source is in an open alert episode ({reason.replace('_', ' ')})."
              for reason, label in EPISODE_LABELS.items()} | {OPEN_LABEL: "Temporary: an open alert episode."}
# Sky-map colours: each source takes the first of these tags it has.
MAP_CLASSES = (("BLACK HOLE", "#d62728"), ("PULSAR", "#9467bd"), ("LMXRB", "#1f77b4"), ("HMXRB", "#17becf"),
               ("BINARY", "#2ca02c"), ("AGN", "#ff7f0e"), ("CLUSTER", "#8c564b"), ("GAMMA RAY SOURCE", "#e377c2"),
               ("other", "#7f7f7f"))


# ---------------------------------------------------------------------------------------------- sky map
MAX_PAGE = 20_000  # an offset QuestDB takes (a larger page number is the last one asked for)


def hammer(glon: np.ndarray, glat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hammer-Aitoff projection in units of the map's half width: x in [-1, 1] (l = 0 at the centre,
    l increasing to the left), y in [-0.5, 0.5] (b = +90 at the top)."""
    lon = np.radians((np.asarray(glon, dtype=float) + 180.0) % 360.0 - 180.0)
    lat = np.radians(np.asarray(glat, dtype=float))
    z = np.sqrt(1.0 + np.cos(lat) * np.cos(lon / 2.0))
    x = 2.0 * np.sqrt(2.0) * np.cos(lat) * np.sin(lon / 2.0) / z
    y = np.sqrt(2.0) * np.sin(lat) / z
    return -x / (2.0 * np.sqrt(2.0)), -y / (2.0 * np.sqrt(2.0))


def _path(xs: np.ndarray, ys: np.ndarray, w: float) -> str:
    return "M" + " L".join(f"{(x + 1) * w / 2:.1f},{(y + 0.5) * w / 2:.1f}" for x, y in zip(xs, ys))


def map_class(tags: list[str]) -> int:
    return next((i for i, (tag, _) in enumerate(MAP_CLASSES) if tag in tags), len(MAP_CLASSES) - 1)


def sky_map(records: list[dict[str, Any]], width: float, marked: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the SVG template draws: the outline and grid of the galactic sky (every 60° in l, 30° in b),
    one dot per record and optionally a marked source."""
    b = np.linspace(-90, 90, 61)
    l_ = np.linspace(-179.999, 179.999, 121)
    grid = [_path(*hammer(np.full_like(b, lon), b), width) for lon in (-120, -60, 0, 60, 120)]
    grid += [_path(*hammer(l_, np.full_like(l_, lat)), width) for lat in (-60, -30, 0, 30, 60)]
    outline = _path(*hammer(np.r_[np.full_like(b, -179.999), np.full_like(b, 179.999)], np.r_[b, b[::-1]]), width)
    labels = []
    for lon in (0, 60, 120, 240, 300):
        x, y = hammer(np.array([lon]), np.array([0.0]))
        labels.append({"x": (x[0] + 1) * width / 2, "y": (y[0] + 0.5) * width / 2 - 3, "text": f"{lon}°"})
    dots = []
    if records:
        xs, ys = hammer(np.array([r["coord_glon"] for r in records]), np.array([r["coord_glat"] for r in records]))
        for r, x, y in zip(records, xs, ys):
            has_data = any(r[k] for k in INSTRUMENTS)
            dots.append({"id": r["_id"], "name": r["integral_name"], "x": (x + 1) * width / 2,
                         "y": (y + 0.5) * width / 2, "cls": map_class(r["labels_constant"]),
                         "r": 2.6 if has_data else 1.5, "data": has_data})
    mark = None
    if marked is not None:
        x, y = hammer(np.array([marked["coord_glon"]]), np.array([marked["coord_glat"]]))
        mark = {"x": (x[0] + 1) * width / 2, "y": (y[0] + 0.5) * width / 2, "name": marked["integral_name"]}
    return {"width": width, "height": width / 2, "grid": grid, "outline": outline, "labels": labels, "dots": dots,
            "mark": mark, "classes": MAP_CLASSES}


# ---------------------------------------------------------------------------------------------- formatting
def num(value: float | None, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separated, exponent only for tiny values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 1e-3:
        text = f"{value:.{digits}g}"
        return f"{value:.0f}" if "e" in text else text
    return f"{value:.2e}"


def unit(text: str) -> str:
    return text.replace("cm2", "cm²")


def page_number(text: str) -> int:
    """A page number from a query parameter: 1 unless it is a plain number, at most MAX_PAGE."""
    return min(max(1, int(text)), MAX_PAGE) if text.isascii() and text.isdigit() and len(text) <= 6 else 1


def hms(ra: float, dec: float) -> str:
    """RA and Dec as sexagesimal text (J2000), 0.1 s and 0.1″. RA is rounded to 0.1 s of time before astropy
    writes it, so that 23h 59m 59.96s reads 00h 00m 00.0s, not 24h."""
    ra_angle = Angle(round(ra % 360.0 * 2400) / 2400 % 360.0, u.deg)  # 0.1 s of time is 1/2400 degree
    return (f"{ra_angle.to_string(unit=u.hourangle, sep=('h ', 'm ', 's'), precision=1, pad=True)}  "
            f"{Angle(dec, u.deg).to_string(unit=u.deg, sep=('° ', '′ ', '″'), precision=1, pad=True, alwayssign=True)}")


def link(path: str, **params: Any) -> str:
    """A page address with its query; empty parameters left out."""
    query = urlencode([(k, v) for k, v in params.items() if v not in (None, "", [])], doseq=True)
    return f"{path}?{query}" if query else path


def environment(settings: Settings) -> Environment:
    """The pages' templates (services/api/templates), with the mails' filters: `mjd` is the bare number here."""
    env = mail.environment("services.api", num=num, mjd=mail.mjd_number, unit=unit, q=lambda s: quote(str(s), safe=""),
                           pairs=lambda xs: [(x, x) for x in xs])
    base = urlsplit(settings.api_url).path.rstrip("/")
    env.globals.update(base=base, link=lambda path, **p: link(base + path, **p), instruments=INSTRUMENTS,
                       units=UNITS, main_band=MAIN_BAND, series_titles=SERIES_TITLES, tag_text=TAG_TEXT | LABEL_TEXT,
                       api_url=settings.api_url, fields=catalogue.SERIES_FIELD, hms=hms)
    return env


# ---------------------------------------------------------------------------------------------- router
def router(settings: Settings, index: SourceIndex, reader: Reader, labels: Labels) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    env = environment(settings)
    records = list(index.records.values())
    instrument_counts = {k: sum(1 for r in records if r[k]) for k in INSTRUMENTS}
    home_map = sky_map(records, 900)
    home_svg = Markup(env.from_string('{% from "macros.html.j2" import sky_svg %}{{ sky_svg(m) }}').render(m=home_map))

    def page(name: str, status: int = 200, private: bool = False, **context: Any) -> HTMLResponse:
        headers = {"Cache-Control": "no-store"} if private else None
        return HTMLResponse(env.get_template(name).render(**context), status_code=status, headers=headers)

    def not_found(what: str, where: str, title: str) -> HTMLResponse:
        return page("error.html.j2", 404, title="Not found", message=what, see=where, see_title=title)

    async def read(coro: Any, default: Any) -> tuple[Any, str | None]:
        """A store read that degrades to `default` with a notice when QuestDB is down."""
        try:
            return await coro, None
        except QuestDBError as exc:
            return default, f"The time-series store is unavailable ({exc}); values are missing."

    async def views(ids: list[str]) -> tuple[list[dict[str, Any]], str | None]:
        latest, problem = await read(reader.latest(), {})
        dynamic, _ = await read(labels.get(), {})
        return [index.view(sid, latest, dynamic) for sid in ids], problem

    async def source_list(request: Request, path: str, tag: str | None, title: str,
                          intro: str | None = None) -> HTMLResponse:
        p = request.query_params
        q = p.get("q", "").strip()[:100]
        instrument = p.get("instrument", "")
        instrument = instrument if instrument in (*INSTRUMENTS, "any") else ""
        sort = p.get("sort", "name") if p.get("sort") in SORT_FIELD else "name"
        order = "desc" if p.get("order") == "desc" else "asc"
        dynamic, _ = await read(labels.get(), {})
        hits = [sid for sid, _ in index.search(q or None, tag, instrument if instrument in INSTRUMENTS else None,
                                               None, dynamic, sort, order == "desc")]
        if instrument == "any":
            hits = [sid for sid in hits if sid in index.with_lightcurve]
        pages = max(1, math.ceil(len(hits) / PER_PAGE))
        number = min(page_number(p.get("page", "")), pages)
        rows, problem = await views(hits[(number - 1) * PER_PAGE:number * PER_PAGE])
        tags = sorted(index.constant_counts)  # every tag and label, whether a source has it now or not
        form = {"q": q, "tag": tag or "", "instrument": instrument, "sort": sort, "order": order}
        return page("sources.html.j2", title=title, intro=intro, path=path, rows=rows, total=len(hits),
                    page_number=number, pages=pages, form=form, fixed_tag=tag, tags=tags, sorts=SORTS,
                    problem=problem)

    async def call_api(request: Request, method: str, path: str, body: Any = None) -> httpx.Response:
        """The JSON API answered in-process, as if the visitor had called it (their address for rate limits)."""
        client = (request.client.host if request.client else "unknown", 0)
        transport = httpx.ASGITransport(app=request.app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            return await api.request(method, path, json=body)

    @web.get("/", response_class=HTMLResponse)
    async def home() -> HTMLResponse:
        top, problem = await read(reader.top(8), [])
        top = index.named(top)
        newest, _ = await read(reader.alerts(AlertQuery(), 5, 0, with_total=False), ([], None))
        return page("home.html.j2", title="FLASHES stream", skymap=home_map, sky_svg=home_svg, top=top,
                    alerts=newest[0], problem=problem, counts=instrument_counts, total=len(records),
                    with_data=len(index.with_lightcurve), important=IMPORTANT_TAGS)

    @web.get("/web/sources", response_class=HTMLResponse)
    async def sources(request: Request) -> HTMLResponse:
        if request.query_params.get("tag"):
            tag = request.query_params["tag"]
            if tag not in index.constant_counts:
                return not_found(f"There is no tag '{tag}'.", "/web/tags", "the list of tags")
        return await source_list(request, "/web/sources", request.query_params.get("tag") or None, "Sources")

    @web.get("/web/tags", response_class=HTMLResponse)
    async def tags() -> HTMLResponse:
        counts = index.tag_counts((await read(labels.get(), {}))[0])
        names = (*TAGS, *sorted(set(counts) - set(TAGS)))  # the seed's tags, then the temporary labels
        rows = [{"tag": t, "count": counts[t], "temporary": t not in TAGS} for t in names]
        return page("tags.html.j2", title="Tags", rows=rows)

    @web.get("/web/tags/{tag}", response_class=HTMLResponse)
    async def tag_page(tag: str, request: Request) -> HTMLResponse:
        if tag not in index.constant_counts:
            return not_found(f"There is no tag '{tag}'.", "/web/tags", "the list of tags")
        return await source_list(request, f"/web/tags/{quote(tag)}", tag, f"Tag {tag}",
                                 intro=(TAG_TEXT | LABEL_TEXT).get(tag))

    @web.get("/web/sources/{source_id}", response_class=HTMLResponse)
    async def source(source_id: str) -> HTMLResponse:
        if source_id not in index.records:
            return not_found(f"There is no source '{source_id}' in the catalogue.", "/web/sources",
                             "the list of sources")
        kinds = [k for k, f in catalogue.SERIES_FIELD.items() if index.records[source_id][f] is not None]
        if kinds:
            (view,), problem = await views([source_id])
            alerts, _ = await read(reader.alerts(AlertQuery(sources=[source_id]), 20, 0), ([], 0))
        else:  # catalogue only: no series, so no points and no alerts to read
            view, problem, alerts = index.view(source_id, {}, {}), None, ([], 0)
        return page("source.html.j2", title=view["integral_name"], s=view, skymap=sky_map([], 360, view),
                    external=external_links(view),
                    kinds=kinds, bands=BANDS, derived=DERIVED_KINDS, alerts=alerts[0], alert_total=alerts[1],
                    start=HISTORY_START, threshold=settings.relevance_threshold, problem=problem)

    @web.get("/web/alerts", response_class=HTMLResponse)
    async def alerts(request: Request) -> HTMLResponse:
        p = request.query_params
        text = p.get("source", "").strip()[:100]
        sid = catalogue.source_id(text) if text else ""
        alert_type = p.get("alert_type", "") if p.get("alert_type") in ALERT_TYPES else ""
        reason = p.get("reason", "") if p.get("reason") in REASONS else ""
        number = page_number(p.get("page", ""))
        form = {"source": text, "alert_type": alert_type, "reason": reason}
        if sid and sid not in index.records:
            return page("alerts.html.j2", title="Alerts", items=[], total=0, page_number=1, pages=1, form=form,
                        problem=f"There is no source '{text}'; give a name or id as in the list of sources.",
                        reasons=REASONS, alert_types=ALERT_TYPES)
        query = AlertQuery(sources=[sid] if sid else [], alert_types=[alert_type] if alert_type else [],
                           reasons=[reason] if reason else [])
        (items, total), problem = await read(reader.alerts(query, PER_PAGE, (number - 1) * PER_PAGE), ([], 0))
        return page("alerts.html.j2", title="Alerts", items=items, total=total, page_number=number,
                    pages=max(1, math.ceil(total / PER_PAGE)), form=form, problem=problem, reasons=REASONS,
                    alert_types=ALERT_TYPES)

    def subscribe_form(error: str | None = None, values: dict[str, Any] | None = None,
                       status: int = 200) -> HTMLResponse:
        return page("subscribe.html.j2", status, title="Subscribe", error=error, v=values or {}, tags=TAGS,
                    reasons=REASONS, alert_types=ALERT_TYPES)

    @web.get("/web/subscribe", response_class=HTMLResponse)
    async def subscribe_page() -> HTMLResponse:
        return subscribe_form()

    @web.post("/web/subscribe", response_class=HTMLResponse)
    async def subscribe(request: Request) -> HTMLResponse:
        form = await request.form()
        values = {k: form.getlist(k) if k in ("tags", "instruments", "reasons", "alert_types") else str(form.get(k, ""))
                  for k in ("sources", "tags", "instruments", "reasons", "alert_types", "min_relevance", "ra", "dec",
                            "radius", "channel", "webhook_url", "email", "history")}
        body, error = subscription_body(values)
        if error:
            return subscribe_form(error, values, 422)
        answer = await call_api(request, "POST", "/subscriptions", body)
        if answer.status_code != 201:
            return retry_after(subscribe_form(problem_of(answer), values, answer.status_code), answer)
        return page("subscribed.html.j2", title="Subscribed", private=True, sub=answer.json())

    @web.get("/web/manage", response_class=HTMLResponse)
    async def manage_page() -> HTMLResponse:
        return page("manage.html.j2", title="Your subscription", error=None)

    @web.post("/web/manage", response_class=HTMLResponse)
    async def manage(request: Request) -> HTMLResponse:
        code = str((await request.form()).get("code", "")).strip()
        answer = await call_api(request, "GET", f"/subscriptions/{quote(code, safe='')}") if CODE.match(code) else None
        if answer is None or answer.status_code != 200:
            detail = problem_of(answer) if answer is not None else "this is not a subscription code"
            return page("manage.html.j2", 404 if answer is None or answer.status_code == 404 else answer.status_code,
                        title="Your subscription", error=detail)
        sub = answer.json()
        deliveries = await call_api(request, "GET", f"/subscriptions/{quote(code, safe='')}/deliveries?limit=20")
        rows, problem = await views(sub["sources"][:MANAGE_ROWS])
        return page("subscription.html.j2", title="Your subscription", private=True, sub=sub, code=code, rows=rows,
                    total=len(sub["sources"]), shown=MANAGE_ROWS, problem=problem,
                    deliveries=deliveries.json() if deliveries.status_code == 200 else [])

    @web.post("/web/manage/revoke", response_class=HTMLResponse)
    async def revoke(request: Request) -> HTMLResponse:
        form = await request.form()
        code = str(form.get("code", "")).strip()
        if not CODE.match(code) or form.get("confirm") != "yes":
            return page("manage.html.j2", 422, title="Your subscription",
                        error="to revoke, give the code and tick the box")
        answer = await call_api(request, "DELETE", f"/subscriptions/{quote(code, safe='')}")
        if answer.status_code != 204:
            return retry_after(page("manage.html.j2", answer.status_code, title="Your subscription",
                                    error=problem_of(answer)), answer)
        return page("message.html.j2", title="Revoked", message="The subscription is revoked: delivery stopped, "
                                                                 "and its code no longer opens anything.")

    @web.get("/web/about", response_class=HTMLResponse)
    async def about() -> HTMLResponse:
        factors = [{"instrument": INSTRUMENTS[i], "band": b, "factor": f, "unit": UNITS[i], "main": MAIN_BAND[i] == b}
                   for (i, b), f in MCRAB_PER_UNIT.items()]
        return page("about.html.j2", title="About", factors=factors, threshold=settings.relevance_threshold,
                    end_points=settings.episode_end_points, labels=EPISODE_LABELS)

    @web.get("/web/{rest:path}", response_class=HTMLResponse)
    async def unknown(rest: str) -> HTMLResponse:
        return not_found(f"There is no page /web/{rest}.", "/", "the start page")

    return web


def retry_after(response: HTMLResponse, answer: httpx.Response) -> HTMLResponse:
    """A page refusing what the API's rate limits refused tells, as the API did, when to try again."""
    if "retry-after" in answer.headers:
        response.headers["Retry-After"] = answer.headers["retry-after"]
    return response


def problem_of(answer: httpx.Response) -> str:
    """What went wrong, in the words of the API's Problem answer."""
    try:
        return str(answer.json().get("detail", answer.text))
    except ValueError:
        return answer.text or f"HTTP {answer.status_code}"


def external_links(record: dict[str, Any]) -> dict[str, str]:
    """SIMBAD and NED by name; HEASARC Browse (its master table) around the position, which always resolves."""
    name, position = quote(record["integral_name"]), f"{record['coord_ra']:.5f}, {record['coord_dec']:.5f}"
    browse = urlencode({"tablehead": "name=heasarc_master", "Action": "Query", "Coordinates": "Equatorial",
                        "Equinox": 2000, "Entry": position, "Radius": "Default"})
    return {"SIMBAD": f"https://simbad.cds.unistra.fr/simbad/sim-id?Ident={name}",
            "NED": f"https://ned.ipac.caltech.edu/byname?objname={name}",
            "HEASARC": f"https://heasarc.gsfc.nasa.gov/db-perl/W3Browse/w3query.pl?{browse}"}


def subscription_body(v: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The POST /subscriptions body from the subscribe form's fields, or what is wrong with them."""
    filters: dict[str, Any] = {k: v[k] for k in ("tags", "instruments", "reasons", "alert_types") if v[k]}
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
