"""The routes' dependencies as Annotated aliases, each read from `app.state`, where create_app put the objects
every request shares. A test replaces one through `app.dependency_overrides[deps.<function>]`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from flashes.settings import Settings
from services.api.ratelimit import client_network
from services.api.render import Site
from services.api.sources import SourceIndex
from services.api.store import Labels, Reader
from services.api.subscribing import Subscriptions


def settings(request: Request) -> Settings:
    return request.app.state.settings


def index(request: Request) -> SourceIndex:
    return request.app.state.index


def reader(request: Request) -> Reader:
    return request.app.state.reader


def labels(request: Request) -> Labels:
    return request.app.state.labels


def subscriptions(request: Request) -> Subscriptions:
    return request.app.state.subscriptions


def site(request: Request) -> Site:
    return request.app.state.site


SettingsDep = Annotated[Settings, Depends(settings)]
IndexDep = Annotated[SourceIndex, Depends(index)]
ReaderDep = Annotated[Reader, Depends(reader)]
LabelsDep = Annotated[Labels, Depends(labels)]
SubscriptionsDep = Annotated[Subscriptions, Depends(subscriptions)]
SiteDep = Annotated[Site, Depends(site)]
NetworkDep = Annotated[str, Depends(client_network)]  # the client's network, the key of the rate limits
