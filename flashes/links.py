"""The public addresses of a source's page and of its alerts, written once for pages, alerts and mails."""
from __future__ import annotations

from urllib.parse import quote

from flashes.settings import Settings


def source_page(settings: Settings, source_id: str) -> str:
    return f"{settings.api_url}/web/sources/{quote(source_id)}"


def source_alerts(settings: Settings, source_id: str) -> str:
    return f"{settings.api_url}/alerts?source={quote(source_id)}"
