"""The FastAPI gateway: `create_app(settings)` builds the objects every request shares, puts them on `app.state`
(services/api/deps.py hands them to the routes), and mounts one router per concern (services/api/routers/):
health and metrics, catalogue, data, relevance, alerts, subscriptions, and the web pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from flashes import catalogue
from flashes.heartbeat import beat
from flashes.settings import Settings
from flashes.tags import TAGS
from services.api import accesslog, problems
from services.api.bodylimit import BodyLimit
from services.api.render import Site
from services.api.routers import alerts, data, health, pages, relevance, subscriptions
from services.api.routers import catalogue as catalogue_routes
from services.api.sources import SourceIndex
from services.api.store import Labels, Reader
from services.api.subscribing import Subscriptions
from services.api.subscription_store import Store

STATIC = Path(__file__).resolve().parent / "static"
DESCRIPTION = (
    "Catalogue, tags, lightcurves, relevance and alerts of the X-ray sources FLASHES watches (MAXI/GSC, "
    "Swift/BAT, Fermi/GBM). Fluxes in mCrab unless stated; times UTC. Every error answers with the same "
    "shape (Problem). Fermi/GBM pulsar amplitudes often come with an error of 0 in the provider's files; "
    "they are served as they are."
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app serves: its heartbeat and the sweep of expired subscriptions; then every connection closed."""
    state = app.state
    heartbeat = asyncio.ensure_future(beat(state.settings, "api"))
    cleaner = asyncio.ensure_future(state.subscriptions.store.keep_clean())
    try:
        yield
    finally:
        heartbeat.cancel()
        cleaner.cancel()
        await state.subscriptions.store.close()
        await state.reader.close()


async def docs(request: Request) -> HTMLResponse:
    """Swagger UI from the package (static/vendor/swagger-ui), not from a CDN: the origin that shows subscription
    codes runs no script another host serves. No validator badge (it calls validator.swagger.io); no ReDoc."""
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - docs",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},
    )


def create_app(settings: Settings) -> FastAPI:
    """The API on these settings. Nothing connects here: the reader and the Kafka store start at their first use,
    so the app starts (and refuses bad requests) while QuestDB or Kafka is down."""
    app = FastAPI(
        title="FLASHES stream API",
        version="2",
        lifespan=lifespan,
        responses=problems.RESPONSES,
        docs_url=None,
        redoc_url=None,
        description=DESCRIPTION,
    )
    index = SourceIndex(catalogue.load(settings))
    reader = Reader(settings)
    app.state.settings = settings
    app.state.index = index
    app.state.reader = reader
    app.state.labels = Labels(reader)
    app.state.subscriptions = Subscriptions(settings, index.records, set(TAGS), Store(settings), reader)
    app.state.site = Site(settings, index)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for concern in (health, catalogue_routes, data, relevance, alerts, subscriptions):
        app.include_router(concern.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/docs", docs, include_in_schema=False)
    app.include_router(pages.router)
    accesslog.install()
    return app
