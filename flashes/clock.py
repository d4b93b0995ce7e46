"""The one clock every service reads: UTC now, shifted by `clock_offset_days` (0 in operation).

The offset exists for simulations of days of operation (bench/operation.py): the services then
judge news, future-dated rows, data freshness and the e-mail day against the simulated date, by
the same code that runs in production.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashes.settings import Settings

# A point may be dated at most this long after the clock (days): a provider publishes a day's bin during
# that day, and MAXI dates it at the day's centre, half a day after its start. Later is a typo, refused
# by the fetcher and the relevance model and ignored by the freshness checks.
FUTURE_DAYS = 1.0


def now(settings: Settings) -> datetime:
    return datetime.now(UTC) + timedelta(days=settings.clock_offset_days)


def latest_credible(settings: Settings) -> datetime:
    """The latest time a stored point can credibly carry now."""
    return now(settings) + timedelta(days=FUTURE_DAYS)
