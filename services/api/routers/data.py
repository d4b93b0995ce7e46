"""The stored lightcurves: Grafana-style rows of one series, and whole series as files (CSV, JSON, VOTable)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

import schemas
from flashes import clock
from flashes.units import BANDS, MCRAB_PER_UNIT
from services.api import downloads
from services.api.deps import IndexDep, ReaderDep, SettingsDep
from services.api.models import TimeseriesRow
from services.api.params import End, Start, window
from services.api.problems import Invalid

router = APIRouter(tags=["data"])
FILES: dict[int | str, dict[str, Any]] = {200: {"content": {m: {} for m in downloads.MEDIA.values()}}}


@router.get(
    "/timeseries",
    summary="Grafana-style rows of one series: flux {band}, flux {band} max/min (±1σ)",
    response_model=list[TimeseriesRow],
    description="Give `source` and `series`, or the seed's Grafana parameters `influx_key` "
    "(the series key) and `channel` (a band). Default window: the last year.",
)
async def get_timeseries(
    settings: SettingsDep,
    index: IndexDep,
    reader: ReaderDep,
    source: str | None = Query(None, examples=["maxij1535-571"]),
    series: schemas.SeriesKind = "maxi",
    influx_key: str | None = Query(None, description="series key, as in the seed", examples=["maxi_gx339-4"]),
    channel: str | None = Query(None, description="band in keV, e.g. 2-20", examples=["2-20"]),
    start: Start = None,
    end: End = None,
) -> Response:
    # The rows as the reader encoded them, once per series (store.Series), cut to the window: not validated again.
    if influx_key is not None:
        source, series = index.series_of(influx_key)
    elif source is None:
        raise Invalid("give source (and series) or influx_key")
    entry = index.series_entry(source, series)
    if channel is not None and (series, channel) not in MCRAB_PER_UNIT:
        bands = sorted(BANDS.get(series, ()))
        raise Invalid(
            f"channel {channel!r} is not a band of the {series} series; "
            f"its bands: {', '.join(bands) or 'none (a derived series has no channel)'}"
        )
    t0, t1 = window(start, end, timedelta(days=365), clock.now(settings))
    return Response(await reader.timeseries(entry.series, series, t0, t1, channel), media_type="application/json")


@router.get(
    "/download/{series_key}",
    summary="One series as a file: provider units and mCrab per band",
    response_class=Response,
    responses=FILES,
)
async def download(
    settings: SettingsDep,
    index: IndexDep,
    reader: ReaderDep,
    series_key: str = Path(examples=["maxi_maxij1535-571"]),
    start: Start = None,
    end: End = None,
    format: downloads.Format = "csv",
) -> Response:  # noqa: A002 - the public parameter name
    source, kind = index.series_of(series_key)
    t0, t1 = window(start, end, None, clock.now(settings))
    rows = await reader.download(series_key, kind, t0, t1)
    title = f"{series_key} ({index.get(source).integral_name}, {kind})"
    return downloads.file(rows, format, series_key, downloads.header(title, t0.isoformat(), t1.isoformat()))


@router.get(
    "/download/hid/{hardness_key}/{combined_key}",
    response_class=Response,
    responses=FILES,
    summary="Hardness ratio and combined flux on the days both exist (hardness–intensity diagram)",
)
async def download_hid(
    settings: SettingsDep,
    index: IndexDep,
    reader: ReaderDep,
    hardness_key: str = Path(examples=["hardness_maxij1535-571"]),
    combined_key: str = Path(examples=["combined_maxij1535-571"]),
    start: Start = None,
    end: End = None,
    format: downloads.Format = "csv",
) -> Response:  # noqa: A002 - the public parameter name
    (h_source, h_kind), (c_source, c_kind) = index.series_of(hardness_key), index.series_of(combined_key)
    if (h_kind, c_kind) != ("hardness", "combined") or h_source != c_source:
        raise Invalid(
            "give the hardness key and then the combined key of one source, "
            f"e.g. /download/hid/hardness_{h_source}/combined_{h_source}"
        )
    t0, t1 = window(start, end, None, clock.now(settings))
    rows = await reader.hid(hardness_key, combined_key, t0, t1)
    title = f"hardness-intensity of {index.get(h_source).integral_name}"
    return downloads.file(rows, format, f"hid_{h_source}", downloads.header(title, t0.isoformat(), t1.isoformat()))
