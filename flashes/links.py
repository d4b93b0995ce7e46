"""The public addresses of a source's page and of its alerts, written once for pages, alerts and mails, and
the fields every alert record takes from the source's catalogue record."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import schemas
from flashes.grafana import dashboard_url
from flashes.settings import Settings


def source_page(settings: Settings, source_id: str) -> str:
    return f"{settings.api_url}/web/sources/{quote(source_id)}"


def source_alerts(settings: Settings, source_id: str) -> str:
    return f"{settings.api_url}/alerts?source={quote(source_id)}"


def alert_source(settings: Settings, record: schemas.CatalogueSource) -> dict[str, Any]:
    """The source fields of an alert record (schemas.Alert): id, name, tags, position and links."""
    source = record.id
    return {
        "source_id": source,
        "source_name": record.integral_name,
        "tags": record.labels_constant,
        "ra": record.coord_ra % 360.0,
        "dec": record.coord_dec,
        "links": {
            "api": source_alerts(settings, source),
            "source": source_page(settings, source),
            "grafana": dashboard_url(settings, record),
        },
    }
