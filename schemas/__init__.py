"""Event contracts: one versioned pydantic model per Kafka topic (the shared DESIGN.md fixes them).

Values travel as JSON (encoded and decoded once, in flashes/topics.py). The data topics carry
chunks: consecutive points of one series as columns under a small header. Fluxes on
`flashes.lightcurve.v2` are in the provider's units (counts/cm²/s or photons/cm²/s); derived
values are in mCrab (hardness is a plain ratio). The processors' state records (compacted
topics) are contracts too: numbers and arrays with the input offset they cover, never pickle.
So is the catalogue's source record (var/catalogue.json), which every service reads and the API serves.
The exported JSON Schemas beside this file are checked for drift by tests/test_contracts.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, StringConstraints, model_validator

# The contracts import nothing of the project: flashes.timeconv takes these two from here.
UNIX_EPOCH_MJD = 40587.0  # 1970-01-01T00:00:00 UTC
SECONDS_PER_DAY = 86400.0

EXAMPLE_ALERT = Path(__file__).parent / "examples" / "flashes.alerts.v3.update.json"  # validated by the tests

Instrument = Literal["maxi", "swift", "fermi"]
DerivedKind = Literal["hardness", "combined"]
SeriesKind = Literal["maxi", "swift", "fermi", "hardness", "combined"]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_CHUNK_POINTS = 4096
LAST_TIME_US = 253_402_300_800_000_000  # 10000-01-01: QuestDB's last timestamp
MAX_CHUNK_BYTES = 512 * 1024


class Provenance(Contract):
    url: str
    fetched_at: datetime


class Chunk(Contract):
    """Consecutive points of one series as columns: the header every data topic shares.

    `time` is the bin time in microseconds since 1970-01-01 UTC, `mjd` the same instant as in
    the provider's file (MJD, UTC). A chunk holds at most MAX_CHUNK_POINTS points and is kept
    under MAX_CHUNK_BYTES encoded; a daily update is a chunk of one.
    """

    source_id: str
    first_mjd: float
    last_mjd: float
    count: int = Field(ge=1, le=MAX_CHUNK_POINTS)
    time: list[int] = Field(description="bin times, microseconds since 1970-01-01T00:00:00 UTC (until 9999)")
    mjd: list[float] = Field(description="bin times as MJD (UTC), strictly increasing")

    def _columns(self) -> dict[str, list]:
        return {"time": self.time, "mjd": self.mjd}

    @model_validator(mode="after")
    def _consistent(self) -> Chunk:
        for name, column in self._columns().items():
            if len(column) != self.count:
                raise ValueError(f"column {name} has {len(column)} values, the header says count={self.count}")
        if self.mjd[0] != self.first_mjd or self.mjd[-1] != self.last_mjd:
            raise ValueError(
                f"first_mjd/last_mjd {self.first_mjd}/{self.last_mjd} do not match the mjd column "
                f"({self.mjd[0]}..{self.mjd[-1]})"
            )
        if any(b <= a for a, b in zip(self.mjd, self.mjd[1:])):
            raise ValueError("mjd is not strictly increasing")
        for t, mjd in zip(self.time, self.mjd):
            if not (0 <= t < LAST_TIME_US and abs(t - (mjd - UNIX_EPOCH_MJD) * SECONDS_PER_DAY * 1e6) <= 1e6):
                raise ValueError(f"time {t} is not the mjd {mjd} (µs since 1970, before 9999) or out of range")
        return self


class LightcurveChunk(Chunk):
    """Points of one instrument's lightcurve of one source (topic flashes.lightcurve.v2, key source_id)."""

    version: Literal[2] = 2
    instrument: Instrument
    bands: list[str] = Field(min_length=1, description="bands in keV, e.g. '2-20'")
    units: str = Field(description="unit of flux and error, the provider's (e.g. 'photons/cm2/s')")
    provenance: Provenance
    flux: dict[str, list[float]] = Field(description="band -> flux per point, provider units")
    error: dict[str, list[float]] = Field(description="band -> 1-sigma error per point, provider units")
    flags: dict[str, list[int]] = Field(default_factory=dict, description="provider quality flags, e.g. BAT data_flag")

    def _columns(self) -> dict[str, list]:
        return {
            **super()._columns(),
            **{f"flux {b}": v for b, v in self.flux.items()},
            **{f"error {b}": v for b, v in self.error.items()},
            **{f"flag {f}": v for f, v in self.flags.items()},
        }

    @model_validator(mode="after")
    def _bands(self) -> LightcurveChunk:
        if set(self.flux) != set(self.bands) or set(self.error) != set(self.bands):
            raise ValueError(
                f"flux/error bands {sorted(self.flux)}/{sorted(self.error)} differ from bands {self.bands}"
            )
        return self


class DerivedChunk(Chunk):
    """Hardness ratio or combined flux of one source per UTC day (topic flashes.derived.v2, key source_id).

    Both inputs are in mCrab: Swift/BAT 15-50 keV and MAXI 2-20 keV of the same UTC day.
    """

    version: Literal[2] = 2
    kind: DerivedKind
    units: Literal["ratio", "mCrab"] = Field(description="hardness: BAT/MAXI ratio; combined: mCrab")
    value: list[float] = Field(description="hardness: BAT 15-50 / MAXI 2-20 (both mCrab); combined: their sum")
    error: list[float]
    swift_flux: list[float] = Field(description="BAT 15-50 keV input, mCrab")
    swift_error: list[float]
    maxi_flux: list[float] = Field(description="MAXI 2-20 keV input, mCrab")
    maxi_error: list[float]

    def _columns(self) -> dict[str, list]:
        return {
            **super()._columns(),
            "value": self.value,
            "error": self.error,
            "swift_flux": self.swift_flux,
            "swift_error": self.swift_error,
            "maxi_flux": self.maxi_flux,
            "maxi_error": self.maxi_error,
        }


class RelevanceTerms(Contract):
    """Why a point scored as it did, each in 0..1 (services/relevance/model.py documents them)."""

    model: float = Field(description="how far the flux lies above this source's learned usual level (River)")
    hardness: float = Field(description="how far the colour moved from this source's learned recent colour (River)")
    flux: float = Field(description="original FLASHES flux term: signal-to-noise of the point; context only")
    trend: float = Field(description="original FLASHES trend term: rise over the last 5 points; context only")


class RelevanceTermColumns(Contract):
    """The terms of RelevanceTerms as columns, one value per point."""

    model: list[float]
    hardness: list[float]
    flux: list[float]
    trend: list[float]


class RelevanceChunk(Chunk):
    """How unusual each new point of one series is, 0..1, with its terms (flashes.relevance.v2, key source_id).

    One score per input point that is newer than the series' last scored point.
    """

    version: Literal[2] = 2
    series: str = Field(description="series key as in the catalogue, e.g. 'maxi_gx339-4'")
    kind: SeriesKind
    model_version: str
    value: list[float] = Field(
        description="the scored value: main-band flux (provider units), hardness ratio or combined mCrab"
    )
    error: list[float]
    relevance: list[float]
    terms: RelevanceTermColumns

    def _columns(self) -> dict[str, list]:
        return {
            **super()._columns(),
            "value": self.value,
            "error": self.error,
            "relevance": self.relevance,
            **{f"terms.{name}": v for name, v in self.terms},
        }

    @model_validator(mode="after")
    def _unit_interval(self) -> RelevanceChunk:
        for name, column in (("relevance", self.relevance), *((f"terms.{n}", v) for n, v in self.terms)):
            if any(not 0.0 <= x <= 1.0 for x in column):
                raise ValueError(f"{name} outside 0..1")
        return self


AlertType = Literal["onset", "update", "end"]
Reason = Literal["brightening", "state_change", "unusual"]
REASON_OF_TERM: dict[str, Reason] = {"model": "brightening", "hardness": "state_change", "relevance": "unusual"}


class AlertPoint(Contract):
    """One recent point of a series in an alert: value in mCrab (hardness: the plain ratio)."""

    series: str
    time: datetime
    mjd: float
    value: float
    error: float
    units: Literal["mCrab", "ratio"]


class Alert(Contract):
    """One record of an alert episode of a source (topic flashes.alerts.v3, key source_id).

    An episode opens (`onset`) when a source becomes unusual, is updated when it escalates (its
    flux doubles since the last record, or another series or reason joins) and closes (`end`) when
    every series in it is back to usual (services/alerts/episodes.py). `alert_id` names the episode
    and stays the same in every record of it; (`alert_id`, `record_number`) names one record.
    `live` tells news from history: only news is pushed to webhooks and e-mail (v3 added it).
    """

    model_config = ConfigDict(json_schema_extra={"$id": "https://flashes.esa.int/schemas/flashes.alerts.v3.json"})

    version: Literal[3] = 3
    alert_id: str = Field(description="the episode: '{source_id}@{onset MJD:.5f}', the same in all its records")
    record_number: int = Field(ge=1, description="1 for the onset, then 2, 3, ... for updates and the end")
    alert_type: AlertType
    test: bool = Field(default=False, description="true for the test alert of POST /subscriptions/{code}/test")
    live: bool = Field(
        description="news: the triggering point was at most FLASHES_LIVE_DAYS old (wall clock) when "
        "this record was raised; false: history (a backfill, an added source, a "
        "re-published archive, a rebuilt model), stored and shown but not pushed"
    )
    raised_at: datetime = Field(description="UTC wall-clock time at which the alerts service raised this record")
    source_id: str
    source_name: str
    tags: list[str]
    ra: float = Field(ge=0.0, lt=360.0, description="right ascension, degrees (ICRS)")
    dec: float = Field(ge=-90.0, le=90.0, description="declination, degrees (ICRS)")
    series: list[str] = Field(description="the series that agree: each was unusual during the episode")
    trigger_series: str = Field(description="the series whose point made this record")
    time: datetime = Field(description="UTC time of that point")
    mjd: float = Field(description="the same instant as MJD (UTC)")
    onset_time: datetime
    onset_mjd: float
    relevance: float = Field(ge=0.0, le=1.0, description="relevance of that point")
    peak_relevance: float = Field(ge=0.0, le=1.0, description="highest relevance in the episode so far")
    terms: RelevanceTerms
    reasons: list[Reason] = Field(description="why the source is unusual, over the episode so far")
    change: str = Field(description="what this record reports: the onset, what escalated, or the end")
    explanation: str
    model_version: str
    last_points: list[AlertPoint] = Field(description="the last points of each series in the episode, oldest first")
    freshness: dict[Instrument, datetime] = Field(
        description="time of the last good point of this source per instrument"
    )
    links: dict[str, str] = Field(description="api, source page, grafana")

    @property
    def message_id(self) -> str:
        """One per alert record, the same on every retry: the Standard Webhooks `webhook-id` and the mail's id."""
        return f"{self.alert_id}#{self.record_number}"


class Cone(Contract):
    ra: float = Field(ge=0.0, lt=360.0, description="degrees")
    dec: float = Field(ge=-90.0, le=90.0, description="degrees")
    radius: float = Field(gt=0.0, le=180.0, description="degrees")


# The record field of each series kind (the seed's names).
SERIES_FIELD: dict[str, str] = {
    "maxi": "maxi",
    "swift": "swift",
    "fermi": "fermi",
    "hardness": "hardness_ratio",
    "combined": "combined",
}


class CatalogueSeries(Contract):
    """One series of a catalogue source: the provider's file and id of the source (instruments only), the series
    key, and its newest stored point (none in the stored catalogue; the API fills it in from the store)."""

    data_url: str | None
    provider_id: str | None
    series: str = Field(examples=["maxi_maxij1535-571"])
    last_timestamp: str | None = None
    last_flux: float | None = Field(default=None, description="provider units; derived series: mCrab, hardness a ratio")
    last_error: float | None = None


class CatalogueSource(Contract):
    """A source of the catalogue (var/catalogue.json, built by flashes/catalogue.py) with the seed's fields.

    Its id is `_id` in JSON, as in the seed, and `id` in Python (pydantic keeps leading underscores private).
    The derived series (hardness_ratio, combined) are there when the source has both MAXI and BAT.
    """

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    id: str = Field(alias="_id", description="INTEGRAL name without spaces, lower case", examples=["maxij1535-571"])
    integral_name: str
    class_code: int = Field(description="HEASARC class code, 0 when the table has none")
    coord_ra: float = Field(description="degrees (J2000)")
    coord_dec: float = Field(description="degrees (J2000)")
    coord_glon: float = Field(description="degrees")
    coord_glat: float = Field(description="degrees")
    alternative_names: list[str]
    class_name: str
    labels_constant: list[str] = Field(description="the tags of the class name")
    labels_dynamic: list[str] = Field(default_factory=list, description="temporary labels of an open alert episode")
    maxi: CatalogueSeries | None
    swift: CatalogueSeries | None
    fermi: CatalogueSeries | None
    hardness_ratio: CatalogueSeries | None
    combined: CatalogueSeries | None

    def entry(self, kind: str) -> CatalogueSeries | None:
        """The series of one kind (a SeriesKind; KeyError for others), if the source has it."""
        series: CatalogueSeries | None = getattr(self, SERIES_FIELD[kind])
        return series

    @property
    def instruments(self) -> list[str]:
        """The instruments the source has a lightcurve of."""
        return [i for i in get_args(Instrument) if getattr(self, i) is not None]


# Bounds of a subscription: every list and string has a maximum, so no request or record can make matching
# or validation costly. The catalogue has about 2,400 sources (ids up to 19 characters) and 23 tags.
MAX_FILTER_SOURCES = 1000
MAX_FILTER_TAGS = 100
Name = Annotated[str, StringConstraints(max_length=100)]
URL_LENGTH = 2048


class SubscriptionFilters(Contract):
    """What a subscriber wants; an empty list means any. An alert must pass every filter given."""

    sources: list[Name] = Field(default_factory=list, max_length=MAX_FILTER_SOURCES, description="source ids")
    tags: list[Name] = Field(default_factory=list, max_length=MAX_FILTER_TAGS, description="any of these tags")
    instruments: list[Instrument] = Field(
        default_factory=list, max_length=3, description="alerts with a series of any of these"
    )
    reasons: list[Reason] = Field(default_factory=list, max_length=3, description="alerts with any of these reasons")
    alert_types: list[AlertType] = Field(default_factory=list, max_length=3, description="onset, update, end")
    min_relevance: float = Field(default=0.0, ge=0.0, le=1.0, description="peak relevance of the episode")
    cone: Cone | None = Field(default=None, description="sources within this radius of a sky position")
    history: bool = Field(default=False, description="also push history (alerts about old data); news only if false")


Channel = Literal["webhook", "email", "none"]


class Subscription(Contract):
    """A subscription (compacted topic flashes.subscriptions.v1, key subscription_id; a tombstone revokes it).

    `subscription_id` is the SHA-256 of the code the subscriber holds; the code itself is never
    stored. The e-mail address and the webhook secret are encrypted (Fernet, key from the settings).
    """

    version: Literal[1] = 1
    subscription_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    filters: SubscriptionFilters
    channel: Channel
    webhook_url: str | None = Field(default=None, max_length=URL_LENGTH)
    webhook_secret: str | None = Field(default=None, max_length=1024, description="encrypted")
    email: str | None = Field(default=None, max_length=1024, description="encrypted")
    email_confirmed: bool = False
    alerts_from: list[int] = Field(
        default_factory=list,
        max_length=1024,
        description="end offset of each partition of flashes.alerts.v3 when the subscription "
        "was made: alerts from there on are delivered (Kafka's order, no clock); "
        "empty in records written before it existed: every alert",
    )
    confirm_by: datetime | None = Field(
        default=None,
        description="an e-mail address not confirmed, or a channel "
        "none not changed, by then is removed (a tombstone); "
        "None once confirmed, or for a webhook",
    )
    confirmations: list[datetime] = Field(
        default_factory=list, max_length=100, description="when confirmation mails were sent in the last day (the cap)"
    )


class DeliveryTask(Contract):
    """One (alert, subscription) pair to deliver at `due` (topic flashes.delivery.retry.v1, key subscription_id)."""

    version: Literal[1] = 1
    subscription_id: str
    alert: Alert
    attempt: int = Field(ge=1)
    due: datetime
    digest: bool = Field(default=False, description="held back by the daily e-mail cap, for the next digest")


DeliveryStatus = Literal["delivered", "retrying", "dead", "held", "digested", "unconfirmed"]


class DeliveryRecord(Contract):
    """What happened to one delivery attempt (topic flashes.deliveries.v1, key subscription_id)."""

    version: Literal[1] = 1
    subscription_id: str
    alert_id: str
    record_number: int
    test: bool
    channel: Channel
    attempt: int
    status: DeliveryStatus
    detail: str
    at: datetime


class Freshness(Contract):
    time: datetime = Field(description="time of the newest point of the instrument")
    received_at: datetime = Field(description="when that point was stored")


class Heartbeat(Contract):
    """A service saying it is alive (topic flashes.heartbeat.v1, key service), every few seconds."""

    version: Literal[1] = 1
    service: str
    instance: str = Field(description="host:pid")
    started_at: datetime
    at: datetime
    status: Literal["ok", "degraded"]
    detail: str = ""
    freshness: dict[Instrument, Freshness] = Field(default_factory=dict, description="sent by the sink")


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
    digests: str = Field(
        default="", description="base64 of zlib-compressed published times (float64) then row digests (uint64)"
    )


class DeadLetter(Contract):
    """Rejected input with the reason (topic flashes.deadletter.v1); nothing is dropped silently."""

    version: Literal[1] = 1
    origin: str = Field(description="which stage rejected it, e.g. 'fetcher:maxi:gx339-4'")
    reason: str
    payload: str = Field(description="the rejected input as received (a file line, a message value)")
    url: str | None = None
    received_at: datetime


class ProcessorState(Contract):
    """A stream processor's state for one key, with the input position it covers.

    `offset` is the offset of the next message of (`topic`, `partition`) not yet applied to this
    key: on a restart, messages below it are skipped for this key, so nothing is applied twice.
    """

    key: str
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class Columns(Contract):
    """A few columns of one small table, as lists: every field is a column, all of one length."""

    @model_validator(mode="after")
    def _aligned(self) -> Columns:
        lengths = {name: len(getattr(self, name)) for name in type(self).model_fields}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns {', '.join(lengths)} differ in length")
        return self


class DayColumns(Columns):
    """One instrument's main-band values per UTC day (floor of MJD), in mCrab, days increasing."""

    day: list[int] = Field(default_factory=list)
    flux: list[float] = Field(default_factory=list)
    error: list[float] = Field(default_factory=list)


class DeriveState(ProcessorState):
    """derive's state of one source (compacted topic flashes.state.derive.v1, key source_id):
    the recent days of BAT 15-50 keV and MAXI 2-20 keV still waiting for, or open to revision by,
    the other instrument."""

    version: Literal[1] = 1
    swift: DayColumns = Field(default_factory=DayColumns)
    maxi: DayColumns = Field(default_factory=DayColumns)


class DetectorState(Contract):
    """One detector of the relevance model (services/relevance/model.py, `Novelty`): its statistics' own
    fields (services/relevance/stats.py). None: a statistic never updated."""

    n: int = Field(ge=0, le=2**53, description="points learned")
    level: list[float] = Field(max_length=64, description="the level's window, oldest first")
    error: float | None = Field(description="typical error (exponentially weighted mean)")
    excess: float | None = Field(description="usual spread beyond the errors, relative (flux) or absolute (colour)")
    quiet_excess: float | None = Field(description="flux: the same, learned in quiescence")
    correlation: float | None = Field(description="mean product of consecutive deviations")
    tail: float | None = Field(ge=0, description="95 % quantile of |deviation| (σ)")
    high: float | None = Field(description="flux: 99 % quantile of the flux")
    last_u: float
    last_mjd: float | None
    rise: list[float] = Field(max_length=16, description="flux: the CUSUMs, one per drift")
    excursions: list[tuple[float, float, float, float]] = Field(
        max_length=32, description="flux: [start MJD, MJD of the last point above, peak, threshold], oldest first"
    )


class RecentPoints(Columns):
    """The last points of a series, for the original formula's trend term; None: not a usable number."""

    mjd: list[float] = Field(max_length=5)
    value: list[float | None] = Field(max_length=5)
    error: list[float | None] = Field(max_length=5)


# The relevance model this code writes (services/relevance/model.py takes both from here); the Literals of
# RelevanceModel name the same two, as typing needs literal values there.
RELEVANCE_MODEL_VERSION = "river-4"
RELEVANCE_STATE_VERSION = 4


class RelevanceModel(Contract):
    """A series' relevance model (`river-4`, services/relevance/model.py, SeriesModel.to_state)."""

    model_version: Literal["river-4"]  # RELEVANCE_MODEL_VERSION
    state_version: Literal[4]  # RELEVANCE_STATE_VERSION
    recent: RecentPoints
    bands: list[PositiveFloat | None] | None = Field(
        max_length=3, description="MAXI: typical variance of each band (mCrab²)"
    )
    flux: DetectorState
    colour: DetectorState


class SupersededRecent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    mjd: list[float] = Field(default_factory=list, max_length=64)


class SupersededModel(BaseModel):
    """A state another model version wrote. Only its version and the newest time it scored are read (the
    series is then rebuilt from its stored history); the rest is that version's and is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    model_version: str
    state_version: int
    recent: SupersededRecent | None = None

    @model_validator(mode="after")
    def _superseded(self) -> SupersededModel:
        if (self.model_version, self.state_version) == (RELEVANCE_MODEL_VERSION, RELEVANCE_STATE_VERSION):
            raise ValueError("a river-4 state that is not a valid RelevanceModel")
        return self


class RelevanceState(ProcessorState):
    """relevance's state of one series (compacted topic flashes.state.relevance.v1, key series): its model,
    or what is read of a state an earlier model version wrote (the series is then rebuilt)."""

    version: Literal[1] = 1
    model: RelevanceModel | SupersededModel


class SeriesTrack(Contract):
    """What alerts keeps of one series: its last score's trigger snapshot and its last points."""

    last_mjd: float
    last: dict[str, float]
    points: list[tuple[float, float, float]] = Field(description="(mjd, value, error) of the last points, oldest first")
    held: bool = Field(
        False,
        description="its last point was a lone instrument's crossing, waiting for the next one "
        "(services/alerts/episodes.py); absent in states written before it existed",
    )


class Episode(Contract):
    """An open alert episode of a source."""

    alert_id: str
    record_number: int
    onset_mjd: float
    series: list[str]
    reasons: list[Reason]
    peak_relevance: float
    reported: dict[str, float] = Field(
        description="per series, the value reported in the last record (doubling = update)"
    )
    quiet: dict[str, int] = Field(description="per series, points below the threshold since its last unusual one")


class EpisodeState(Contract):
    """What alerts keeps of one source: each series' track and the open episode, if any. The episode logic
    (services/alerts/episodes.py) turns a state and a point into the next state."""

    series: dict[str, SeriesTrack]
    episode: Episode | None = None


class AlertState(EpisodeState, ProcessorState):
    """alerts' state of one source (compacted topic flashes.state.alerts.v2, key source_id): its EpisodeState
    and the input offset it covers."""

    version: Literal[2] = 2
