"""The one clock every service reads: UTC now, shifted by `clock_offset_days` (0 in operation).

The offset exists for simulations of days of operation (bench/operation.py): the services then
judge news, future-dated rows, data freshness and the e-mail day against the simulated date, by
the same code that runs in production.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flashes.settings import Settings


def now(settings: Settings) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=settings.clock_offset_days)
