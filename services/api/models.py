"""What the JSON routes take and answer: the request bodies of subscriptions and every response's model.

The contracts' types (series kinds, alert types, reasons, filters, terms, channels) come from `schemas`;
these models add only what the API itself says about them. Times the store gives are written as QuestDB
writes them (`2017-09-20T12:00:00.000000Z`) and stay text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

import schemas

Item = TypeVar("Item")
WebhookURL = Annotated[str, StringConstraints(max_length=schemas.URL_LENGTH)]  # EmailStr is bounded by itself
# A row of /timeseries: time (text), mjd, and per band "flux {band}", "flux {band} max", "flux {band} min".
TimeseriesRow = dict[str, float | str]


class Page(BaseModel, Generic[Item]):
    """One page of a list: `total` matches the filters; `items` are those from `offset`, at most `limit`."""

    total: int
    offset: int
    limit: int
    items: list[Item]


# ---------------------------------------------------------------------------------------------- catalogue
class SeriesEntry(schemas.CatalogueSeries):
    """A series of a source (the catalogue's record) with its newest stored point, instruments' also in mCrab."""

    last_flux_mcrab: float | None = Field(default=None, description="instruments only, once a point is stored")
    last_error_mcrab: float | None = None


class Source(schemas.CatalogueSource):
    """A catalogue source (its record) with each series' newest point and the temporary labels of its open alert
    episode."""

    maxi: SeriesEntry | None
    swift: SeriesEntry | None
    fermi: SeriesEntry | None
    hardness_ratio: SeriesEntry | None
    combined: SeriesEntry | None
    distance_deg: float | None = Field(default=None, description="from the cone's centre, in a cone search")


class TagCount(BaseModel):
    tag: str
    sources: int
    temporary: bool = Field(description="a label of open alert episodes, not a constant tag")


class Tagged(BaseModel):
    tag: str
    sources: list[str]


# ---------------------------------------------------------------------------------------------- alerts
class AlertRecord(schemas.Alert):
    """One record of an alert episode, as on flashes.alerts.v3 (the contract; see its description)."""

    # Without the contract's `$id`: inside the OpenAPI document it would move the base of every reference in it.
    model_config = ConfigDict(json_schema_extra=None)


# ---------------------------------------------------------------------------------------------- relevance
class RelevanceRow(BaseModel):
    time: str
    mjd: float
    value: float
    error: float
    relevance: float
    terms: schemas.RelevanceTerms
    model_version: str


class TopRow(BaseModel):
    """A source's series with the highest relevance at its newest point."""

    source_id: str
    source_name: str
    series: str
    kind: schemas.SeriesKind
    time: str
    mjd: float
    value: float
    relevance: float
    terms: schemas.RelevanceTerms


# ---------------------------------------------------------------------------------------------- health
class KafkaHealth(BaseModel):
    status: Literal["ok", "unavailable"]
    topics: list[str] = []
    detail: str | None = None


class QuestDBHealth(BaseModel):
    status: Literal["ok", "unavailable"]
    tables: list[str] = []
    detail: str | None = None


class GrafanaHealth(BaseModel):
    status: Literal["ok", "not configured", "unavailable"]
    url: str | None = None
    grafana: dict[str, Any] | None = Field(default=None, description="Grafana's own /api/health answer")
    detail: str | None = None


class InstrumentFreshness(BaseModel):
    newest: str | None
    age_days: float | None
    expected_within_days: float
    status: Literal["fresh", "stale", "no data"]


class Freshness(BaseModel):
    status: Literal["ok", "stale"]
    detail: str | None = Field(default=None, description="the stale instruments, in words")
    instruments: dict[str, InstrumentFreshness]


# ---------------------------------------------------------------------------------------------- subscriptions
class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: schemas.SubscriptionFilters = schemas.SubscriptionFilters()
    channel: schemas.Channel
    webhook_url: WebhookURL | None = None
    email: EmailStr | None = None


class SubscriptionChange(BaseModel):
    """PATCH: the fields to change; the others stay (filters and channel also when given as null)."""

    model_config = ConfigDict(extra="forbid")

    filters: schemas.SubscriptionFilters | None = None
    channel: schemas.Channel | None = None
    webhook_url: WebhookURL | None = None
    email: EmailStr | None = None


class SubscriptionRead(BaseModel):
    """A subscription as its holder reads it: the address masked, the secrets never."""

    subscription_id: str
    created_at: datetime
    filters: schemas.SubscriptionFilters
    channel: schemas.Channel
    webhook_url: str | None
    email: str | None = Field(description="masked: its first letter and its domain")
    email_confirmed: bool
    confirm_by: datetime | None = Field(
        description="removed then unless its address is confirmed, or channel none is changed, by that time"
    )
    sources: list[str] = Field(description="the catalogue sources the filters select")


class SubscriptionChanged(SubscriptionRead):
    webhook_secret: str | None = Field(default=None, description="a new webhook's signing secret, shown this once")


class SubscriptionCreated(SubscriptionRead):
    code: str = Field(description="the only key to the subscription, shown this once")
    webhook_secret: str | None = Field(description="the webhook's signing secret, shown this once")
    note: str


class SelectedSources(BaseModel):
    sources: list[str]


class QueuedTest(BaseModel):
    alert_id: str
    status: str


class Delivery(BaseModel):
    """One delivery attempt, as the delivery log holds it."""

    time: str
    alert_id: str
    record_number: int
    test: bool
    channel: schemas.Channel
    attempt: int
    status: schemas.DeliveryStatus
    detail: str
