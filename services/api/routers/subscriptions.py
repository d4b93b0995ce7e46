"""The subscriptions' JSON routes and the pages of the links in mails (confirm, unsubscribe); the work is the
subscription service's (services/api/subscribing.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response

from flashes.subscriptions import CONFIRM_TOKEN, SUBSCRIPTION_ID
from services.api.deps import NetworkDep, SiteDep, SubscriptionsDep
from services.api.models import (
    Delivery,
    QueuedTest,
    SelectedSources,
    SubscriptionChange,
    SubscriptionChanged,
    SubscriptionCreated,
    SubscriptionRead,
    SubscriptionRequest,
)

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])
LinkId = Annotated[str, Query(max_length=64)]
LinkToken = Annotated[str, Query(max_length=100)]


@router.post(
    "",
    status_code=201,
    summary="Subscribe; the answer holds the code, shown this once",
    response_model=SubscriptionCreated,
)
async def create(body: SubscriptionRequest, subs: SubscriptionsDep, network: NetworkDep) -> SubscriptionCreated:
    return await subs.create(body, network)


@router.get("/confirm", response_class=HTMLResponse, summary="The e-mail confirmation page")
async def confirm_page(
    site: SiteDep,
    id: LinkId,  # noqa: A002 - the link's parameter
    token: LinkToken,
) -> HTMLResponse:
    # Only well-formed values are put in the form: the link is the mail's, but anyone can write one.
    return site.page(
        "confirm.html.j2",
        private=True,
        title="Confirm your address",
        id=id if SUBSCRIPTION_ID.fullmatch(id.encode()) else "",
        token=token if CONFIRM_TOKEN.match(token) else "",
    )


@router.post("/confirm", response_class=HTMLResponse, summary="Confirm an e-mail address (double opt-in)")
async def confirm(
    subs: SubscriptionsDep,
    site: SiteDep,
    network: NetworkDep,
    id: str = Form(max_length=64),  # noqa: A002 - the link's parameter
    token: str = Form(max_length=100),
) -> HTMLResponse:
    await subs.confirm(id, token, network)
    return site.page(
        "message.html.j2", title="Confirmed", message="Confirmed: alerts will now be mailed to this address."
    )


@router.get("/unsubscribe", response_class=HTMLResponse, summary="The unsubscribe page of a mail's link")
async def unsubscribe_page(site: SiteDep) -> HTMLResponse:
    return site.page("unsubscribe.html.j2", title="Unsubscribe")


@router.post(
    "/unsubscribe",
    response_class=HTMLResponse,
    summary="One-click unsubscribe (RFC 8058), the link in every alert mail",
)
async def unsubscribe(
    subs: SubscriptionsDep,
    site: SiteDep,
    id: LinkId,  # noqa: A002 - the link's parameter
    token: LinkToken,
) -> HTMLResponse:
    await subs.unsubscribe(id, token)
    return site.page("message.html.j2", title="Unsubscribed", message="Unsubscribed: no more mails.")


@router.get("/{code}", summary="A subscription, read with its code", response_model=SubscriptionRead)
async def read(code: str, subs: SubscriptionsDep) -> SubscriptionRead:
    return await subs.read(code)


@router.patch(
    "/{code}",
    summary="Change filters or channel; a new e-mail address is confirmed again",
    response_model=SubscriptionChanged,
)
async def change(
    code: str, body: SubscriptionChange, subs: SubscriptionsDep, network: NetworkDep
) -> SubscriptionChanged:
    return await subs.update(code, body, network)


@router.delete("/{code}", status_code=204, response_class=Response, summary="Revoke: delivery stops at once")
async def revoke(code: str, subs: SubscriptionsDep, network: NetworkDep) -> Response:
    await subs.delete(code, network)
    return Response(status_code=204)


@router.get(
    "/{code}/sources", summary="The catalogue sources the subscription's filters select", response_model=SelectedSources
)
async def sources(code: str, subs: SubscriptionsDep) -> SelectedSources:
    return SelectedSources(sources=await subs.sources(code))


@router.get(
    "/{code}/deliveries", summary="The delivery log: every attempt, newest first", response_model=list[Delivery]
)
async def deliveries(code: str, subs: SubscriptionsDep, limit: int = Query(100, ge=1, le=10000)) -> list[Delivery]:
    return await subs.deliveries(code, limit)


@router.post(
    "/{code}/test",
    status_code=202,
    summary="Send a test alert (marked test) through the channel",
    response_model=QueuedTest,
)
async def test(code: str, subs: SubscriptionsDep, network: NetworkDep) -> QueuedTest:
    return await subs.test(code, network)
