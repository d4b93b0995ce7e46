"""MJD (UTC) <-> UTC datetimes, vectorised. MJD 40587.0 is 1970-01-01T00:00:00 UTC.

Provider files give MJD in UTC; days are treated as 86400 s long (leap seconds are not
represented in MJD(UTC) day fractions), which is what astropy's Time(..., scale='utc') does too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from schemas import SECONDS_PER_DAY, UNIX_EPOCH_MJD

__all__ = [
    "EPOCH",
    "SECONDS_PER_DAY",
    "UNIX_EPOCH_MJD",
    "datetime_to_mjd",
    "mjd_to_datetime",
    "mjd_to_unix_us",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mjd_to_unix_us(mjd: np.ndarray) -> np.ndarray:
    """Microseconds since 1970-01-01 UTC, rounded to the microsecond (QuestDB's timestamp unit)."""
    return np.round((np.asarray(mjd, dtype=np.float64) - UNIX_EPOCH_MJD) * SECONDS_PER_DAY * 1e6).astype(np.int64)


def mjd_to_datetime(mjd: float) -> datetime:
    return EPOCH + timedelta(microseconds=int(mjd_to_unix_us(np.array([mjd]))[0]))


def datetime_to_mjd(time: datetime) -> float:
    return time.timestamp() / SECONDS_PER_DAY + UNIX_EPOCH_MJD
