"""Event contracts: one versioned pydantic model per Kafka topic (see DESIGN.md).

Values travel as JSON. Fluxes on `flashes.lightcurve.v1` are in the provider's units
(counts/cm²/s or photons/cm²/s); derived values are in mCrab (hardness is a plain ratio).
The exported JSON Schemas beside this file are checked for drift by tests/test_schemas.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Instrument = Literal["maxi", "swift", "fermi"]
DerivedKind = Literal["hardness", "combined"]
SeriesKind = Literal["maxi", "swift", "fermi", "hardness", "combined"]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measurement(Contract):
    flux: float
    error: float


class Provenance(Contract):
    url: str
    fetched_at: datetime


class LightcurvePoint(Contract):
    """One observation bin of one instrument for one source (topic flashes.lightcurve.v1)."""

    version: Literal[1] = 1
    source_id: str
    instrument: Instrument
    time: datetime = Field(description="bin time, UTC")
    mjd: float = Field(description="bin time as in the provider's file (MJD, UTC)")
    bands: dict[str, Measurement] = Field(description="band in keV (e.g. '2-20') -> flux and 1-sigma error, provider units")
    flags: dict[str, int] = Field(default_factory=dict, description="provider quality flags, e.g. BAT DATA_FLAG")
    provenance: Provenance


class DerivedPoint(Contract):
    """Hardness ratio or combined flux of one source for one UTC day (topic flashes.derived.v1)."""

    version: Literal[1] = 1
    source_id: str
    kind: DerivedKind
    time: datetime = Field(description="centre of the UTC day")
    mjd: float
    value: float = Field(description="hardness: BAT 15-50 / MAXI 2-20 (both mCrab); combined: their sum in mCrab")
    error: float
    inputs: dict[str, Measurement] = Field(description="the two inputs in mCrab, keyed 'swift' and 'maxi'")


class RelevanceTerms(Contract):
    """Why a point scored as it did, each in 0..1 (services/relevance/model.py documents them)."""

    model: float = Field(description="how far the flux lies above this source's learned usual level (River)")
    hardness: float = Field(description="how far the colour moved from this source's learned recent colour (River)")
    flux: float = Field(description="original FLASHES flux term: signal-to-noise of the point; context only")
    trend: float = Field(description="original FLASHES trend term: rise over the last 5 points; context only")


class RelevanceScore(Contract):
    """How unusual one new point is for its series, 0..1, with the terms behind it (flashes.relevance.v1)."""

    version: Literal[1] = 1
    series: str = Field(description="series key as in the catalogue, e.g. 'maxi_gx339-4'")
    source_id: str
    kind: SeriesKind
    time: datetime
    mjd: float
    value: float = Field(description="the scored value: main-band flux (provider units), hardness ratio or combined mCrab")
    error: float
    relevance: float = Field(ge=0.0, le=1.0)
    terms: RelevanceTerms
    model_version: str


class Alert(Contract):
    """What subscribers receive (topic flashes.alerts.v1)."""

    version: Literal[1] = 1
    alert_id: str = Field(description="stable id: series and point time, so a replay repeats the same id")
    source_id: str
    series: str
    time: datetime
    mjd: float
    relevance: float
    kind: Literal["relevance_threshold"] = "relevance_threshold"
    reasons: list[str] = Field(description="the terms that crossed the threshold: 'model', 'hardness' or 'relevance'")
    explanation: str
    terms: RelevanceTerms
    model_version: str
    links: dict[str, str]


class Subscription(Contract):
    """A subscriber's wish (compacted topic flashes.subscriptions.v1; a null value revokes it)."""

    version: Literal[1] = 1
    subscription_id: str
    webhook_url: str | None = None
    email: str | None = None
    source_ids: list[str] = Field(default_factory=list, description="empty = every source")
    tags: list[str] = Field(default_factory=list)
    min_relevance: float = Field(default=0.7, ge=0.0, le=1.0)


class FetchState(Contract):
    """What the fetcher has published of one series (compacted topic flashes.fetchstate.v1).

    Kept in Kafka, not on the fetcher's disk, so a restarted fetcher on a new machine still
    publishes only new or revised points and sends conditional requests.
    """

    version: Literal[1] = 1
    series: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_mjd: float | None = Field(default=None, description="newest published bin time")
    points: int = 0
    digests: str = Field(default="", description="base64 of zlib-compressed published times (float64) then row digests (uint64)")


class DeadLetter(Contract):
    """Rejected input with the reason (topic flashes.deadletter.v1); nothing is dropped silently."""

    version: Literal[1] = 1
    origin: str = Field(description="which stage rejected it, e.g. 'fetcher:maxi:gx339-4'")
    reason: str
    payload: str = Field(description="the rejected input as received (a file line, a message value)")
    url: str | None = None
    received_at: datetime
