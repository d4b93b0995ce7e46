"""Decoded messages -> the QuestDB rows they become, as one pandas DataFrame per table (columns, no row loop).

Every frame has a `ts` column (the designated timestamp, UTC); SYMBOLS names its symbol columns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

import schemas
from flashes import topics
from flashes.topics import catalogue_series
from flashes.units import MCRAB_PER_UNIT

SYMBOLS = {
    "lightcurve": ["series", "source_id", "instrument", "band", "url"],
    "derived": ["series", "source_id", "kind"],
    "relevance": ["series", "source_id", "kind", "model_version"],
    "alerts": ["alert_type", "source_id", "trigger_series", "model_version"],
    "deliveries": ["subscription_id", "channel", "status"],
    "deadletter": ["origin"],
}
TERMS = tuple(schemas.RelevanceTermColumns.model_fields)


def _ts(micros: np.ndarray | list[int]) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(micros, dtype=np.int64), unit="us", utc=True)


def _at(t: datetime) -> pd.Timestamp:
    return pd.Timestamp(t).tz_convert("UTC") if t.tzinfo else pd.Timestamp(t, tz="UTC")


def lightcurve_frame(c: schemas.LightcurveChunk) -> pd.DataFrame:
    """One row per point and band (flux also in mCrab where the band has a Crab factor)."""
    n, bands = c.count, c.bands
    flux = np.concatenate([np.asarray(c.flux[b]) for b in bands])
    error = np.concatenate([np.asarray(c.error[b]) for b in bands])
    factor = np.repeat([MCRAB_PER_UNIT.get((c.instrument, b), np.nan) for b in bands], n)
    return pd.DataFrame(
        {
            "ts": _ts(np.tile(c.time, len(bands))),
            "series": catalogue_series(c.instrument, c.source_id),
            "source_id": c.source_id,
            "instrument": c.instrument,
            "band": np.repeat(bands, n).astype(object),
            "mjd": np.tile(c.mjd, len(bands)),
            "flux": flux,
            "error": error,
            "flux_mcrab": flux * factor,
            "error_mcrab": error * factor,
            "data_flag": np.tile(c.flags.get("data_flag", np.zeros(n, np.int64)), len(bands)).astype(np.int64),
            "url": c.provenance.url,
            "fetched_at": _at(c.provenance.fetched_at),
        }
    )


def derived_frame(c: schemas.DerivedChunk) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": _ts(c.time),
            "series": catalogue_series(c.kind, c.source_id),
            "source_id": c.source_id,
            "kind": c.kind,
            "mjd": c.mjd,
            "value": c.value,
            "error": c.error,
        }
    )


def relevance_frame(c: schemas.RelevanceChunk) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": _ts(c.time),
            "series": c.series,
            "source_id": c.source_id,
            "kind": c.kind,
            "model_version": c.model_version,
            "mjd": c.mjd,
            "value": c.value,
            "error": c.error,
            "relevance": c.relevance,
            **{f"{name}_term": getattr(c.terms, name) for name in TERMS},
        }
    )


def alert_frame(a: schemas.Alert) -> pd.DataFrame:
    """One row per alert record, with the whole message in `payload` (what the API serves)."""
    return pd.DataFrame(
        {
            "ts": [_at(a.time)],
            "alert_id": a.alert_id,
            "record_number": a.record_number,
            "alert_type": a.alert_type,
            "source_id": a.source_id,
            "trigger_series": a.trigger_series,
            "model_version": a.model_version,
            "mjd": a.mjd,
            "relevance": a.relevance,
            "peak_relevance": a.peak_relevance,
            **{f"{name}_term": getattr(a.terms, name) for name in TERMS},
            "reasons": ",".join(a.reasons),
            "explanation": a.explanation,
            "live": a.live,
            "raised_at": [_at(a.raised_at)],
            "payload": topics.ALERTS.encode(a).decode(),
        }
    )


def delivery_frame(d: schemas.DeliveryRecord) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": [_at(d.at)],
            "subscription_id": d.subscription_id,
            "channel": d.channel,
            "status": d.status,
            "alert_id": d.alert_id,
            "record_number": d.record_number,
            "test": d.test,
            "attempt": d.attempt,
            "detail": d.detail,
        }
    )


def deadletter_frame(d: schemas.DeadLetter) -> pd.DataFrame:
    return pd.DataFrame(
        {"ts": [_at(d.received_at)], "origin": d.origin, "reason": d.reason, "payload": d.payload, "url": d.url or ""}
    )


FRAMES: dict[str, tuple[str, Callable[..., pd.DataFrame]]] = {
    topics.LIGHTCURVE.name: ("lightcurve", lightcurve_frame),
    topics.DERIVED.name: ("derived", derived_frame),
    topics.RELEVANCE.name: ("relevance", relevance_frame),
    topics.ALERTS.name: ("alerts", alert_frame),
    topics.DELIVERIES.name: ("deliveries", delivery_frame),
    topics.DEADLETTER.name: ("deadletter", deadletter_frame),
}
