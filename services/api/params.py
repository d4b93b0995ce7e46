"""Query parameters several routers share: times in UTC, bounded, and the window they make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

from services.api.problems import Invalid

EARLIEST, LATEST = datetime(1950, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def utc_time(t: datetime | None) -> datetime | None:
    """A query time in UTC (no zone: UTC), between 1950 and 2200."""
    if t is None:
        return None
    try:
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None
    if not EARLIEST <= t <= LATEST:
        raise ValueError("time must be between 1950 and 2200")
    return t


def window(
    start: datetime | None, end: datetime | None, default: timedelta | None, now: datetime
) -> tuple[datetime, datetime]:
    """The UTC window asked for: `end` defaults to `now` (the services' clock, `flashes.clock`), `start` to `default`
    before it (None: the beginning)."""
    end = end or now
    start = start or (end - default if default else EARLIEST)
    return ordered(start, end)


def ordered(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if start >= end:
        raise Invalid(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    return start, end


Start = Annotated[
    datetime | None,
    AfterValidator(utc_time),
    Query(description="UTC (ISO 8601); a time without a zone is UTC", examples=["2017-09-01T00:00:00Z"]),
]
End = Annotated[
    datetime | None,
    AfterValidator(utc_time),
    Query(description="UTC, exclusive (default: now)", examples=["2017-12-01T00:00:00Z"]),
]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]  # QuestDB takes it as a 64-bit bind parameter
