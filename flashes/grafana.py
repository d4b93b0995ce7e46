"""Grafana dashboards on QuestDB: one generator for the five instrument combinations, and links to them.

The dashboards query QuestDB through the official QuestDB data source plugin
(`questdb-questdb-datasource`, PostgreSQL wire) provisioned with uid `flashes-questdb`
(deploy/grafana/provisioning). `python -m flashes.grafana` rewrites deploy/grafana/dashboards/*.json;
tests/test_grafana.py checks that those files are this generator's output.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any
from urllib.parse import quote

import schemas
from flashes.settings import PROJECT_ROOT, Settings
from flashes.units import BANDS, MAIN_BAND, SERIES_TITLES, series_label

DASHBOARDS = ("flashes-maxi", "flashes-swift", "flashes-swift-maxi", "flashes-swift-fermi", "flashes-swift-maxi-fermi")
ORDER = ("swift", "maxi", "fermi")  # instrument order in a dashboard uid
DATASOURCE = {"type": "questdb-questdb-datasource", "uid": "flashes-questdb"}
FOLDER = PROJECT_ROOT / "deploy" / "grafana" / "dashboards"
GRAFANA_VERSION = "12.2.0"  # the image in docker-compose.yml (an xychart without pluginVersion is migrated as v1)
GAP_MS = 3 * 86_400_000  # lines break across gaps longer than 3 days
TIME_RANGE = {"from": "now-1y", "to": "now"}  # a source's last year; the time picker or from/to in the URL widen it
API = "http://localhost:8000"  # default of the `api` textbox: the FLASHES API that serves the CSV downloads
RELEVANCE_THRESHOLD = Settings.model_fields["relevance_threshold"].default
COLOURS = {"maxi": "blue", "swift": "orange", "fermi": "green", "hardness": "purple", "combined": "red"}
HIDDEN = {"legend": True, "tooltip": True, "viz": False}
Json = dict[str, Any]


def instruments(uid: str) -> tuple[str, ...]:
    """The instruments of a dashboard uid, in uid order."""
    return tuple(uid.removeprefix("flashes-").split("-"))


def dashboard_uid(have: Collection[str]) -> str:
    """The dashboard for the instruments a source has; other combinations get the one with all three."""
    uid = "flashes-" + "-".join(i for i in ORDER if i in have)
    return uid if uid in DASHBOARDS else "flashes-swift-maxi-fermi"


def _epoch_ms(t: datetime) -> int:
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)


def dashboard_url(
    settings: Settings, record: schemas.CatalogueSource, start: datetime | None = None, end: datetime | None = None
) -> str:
    """The source's dashboard, optionally on the time range [start, end]."""
    url = f"{settings.grafana_url}/d/{dashboard_uid(record.instruments)}?var-source={quote(record.id, safe='')}"
    return url + "".join(f"&{k}={_epoch_ms(t)}" for k, t in (("from", start), ("to", end)) if t is not None)


def target(ref: str, sql: str) -> Json:
    """A raw-SQL query of the QuestDB plugin, as a table (format 1): one column per field, `time` first."""
    return {"refId": ref, "datasource": DATASOURCE, "queryType": "sql", "rawSql": sql, "format": 1}


def override(name: str, *props: tuple[str, Any]) -> Json:
    return {"matcher": {"id": "byName", "options": name}, "properties": [{"id": k, "value": v} for k, v in props]}


def download(*kinds: str, title: str = "Download shown range (CSV)") -> Json:
    """A panel link to the API's CSV of one series (two: hardness and combined, the HID) over the shown range."""
    path = "hid/" * (len(kinds) > 1) + "/".join(f"{k}_${{source}}" for k in kinds)
    return {
        "title": title,
        "targetBlank": True,
        "url": f"${{api}}/download/{path}?start=${{__from:date:iso}}&end=${{__to:date:iso}}",
    }


def curve(ref: str, kind: str, band: str | None = None) -> tuple[Json, list[Json]]:
    """One series in mCrab with its error band: the query (value, value ± error) and the overrides that shade it."""
    name = series_label(kind, band)
    table, value, error, where = (
        ("lightcurve", "flux_mcrab", "error_mcrab", f" AND band = '{band or MAIN_BAND[kind]}'")
        if kind in MAIN_BAND
        else ("derived", "value", "error", "")
    )
    sql = (
        f'SELECT ts AS time, {value} AS "{name}", {value} + {error} AS "{name} upper", '
        f'{value} - {error} AS "{name} lower" FROM {table} '
        f"WHERE series = concat('{kind}_', ${{source:sqlstring}}){where} "
        f"AND $__timeFilter(ts) ORDER BY ts"
    )
    colour = ("color", {"mode": "fixed", "fixedColor": COLOURS[kind]})
    return target(ref, sql), [
        override(name, colour),
        override(
            f"{name} upper",
            colour,
            ("custom.fillBelowTo", f"{name} lower"),
            ("custom.lineWidth", 0),
            ("custom.fillOpacity", 20),
            ("custom.hideFrom", HIDDEN),
        ),
        override(f"{name} lower", colour, ("custom.lineWidth", 0), ("custom.hideFrom", HIDDEN)),
    ]


def timeseries(
    title: str,
    queries: list[tuple[Json, list[Json]]],
    links: list[Json],
    unit: str = "suffix: mCrab",
    axis: str = "mCrab",
    log: bool = False,
    **defaults: Any,
) -> Json:
    """A time series panel; lines break where points are more than 3 days apart (insertNulls, spanNulls)."""
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "showPoints": "auto",
        "pointSize": 3,
        "fillOpacity": 0,
        "insertNulls": GAP_MS,
        "spanNulls": GAP_MS,
        "axisLabel": axis,
        "scaleDistribution": {"type": "log", "log": 10} if log else {"type": "linear"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "pluginVersion": GRAFANA_VERSION,
        "targets": [t for t, _ in queries],
        "links": links,
        "fieldConfig": {
            "defaults": {"unit": unit, "color": {"mode": "palette-classic"}, "custom": custom, **defaults},
            "overrides": [o for _, os in queries for o in os],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def hid() -> Json:
    """The hardness-intensity diagram: combined flux against hardness, both log, non-positive rows dropped."""
    sql = (
        "WITH h AS (SELECT ts, value FROM derived "
        "WHERE series = concat('hardness_', ${source:sqlstring}) AND value > 0 "
        "AND $__timeFilter(ts)), c AS (SELECT ts, value FROM derived "
        "WHERE series = concat('combined_', ${source:sqlstring}) "
        "AND value > 0 AND $__timeFilter(ts)) "
        "SELECT h.ts AS time, h.value AS hardness, c.value AS combined FROM h JOIN c ON h.ts = c.ts ORDER BY time"
    )
    log = ("custom.scaleDistribution", {"type": "log", "log": 10})
    return {
        "type": "xychart",
        "title": "Hardness-intensity diagram",
        "datasource": DATASOURCE,
        "pluginVersion": GRAFANA_VERSION,
        "targets": [target("A", sql)],
        "links": [download("hardness", "combined")],
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "fixed", "fixedColor": COLOURS["hardness"]},
                "custom": {"show": "points", "pointSize": {"fixed": 4}},
            },
            "overrides": [
                override("hardness", log, ("custom.axisLabel", "hardness ratio BAT/MAXI")),
                override("combined", log, ("custom.axisLabel", "combined flux (mCrab)"), ("unit", "suffix: mCrab")),
            ],
        },
        "options": {
            "mapping": "manual",
            "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "single", "sort": "none"},
            "series": [
                {
                    "frame": {"matcher": {"id": "byIndex", "options": 0}},
                    "x": {"matcher": {"id": "byName", "options": "hardness"}},
                    "y": {"matcher": {"id": "byName", "options": "combined"}},
                }
            ],
        },
    }


def hardness() -> Json:
    """The hardness ratio over time on a log axis (non-positive values dropped, so no error band)."""
    name = series_label("hardness")
    sql = (
        f'SELECT ts AS time, value AS "{name}" FROM derived '
        f"WHERE series = concat('hardness_', ${{source:sqlstring}}) "
        "AND value > 0 AND $__timeFilter(ts) ORDER BY ts"
    )
    colour = ("color", {"mode": "fixed", "fixedColor": COLOURS["hardness"]})
    return timeseries(
        "Hardness ratio BAT/MAXI (log; non-positive values dropped)",
        [(target("A", sql), [override(name, colour)])],
        [download("hardness")],
        unit="none",
        axis="hardness ratio",
        log=True,
    )


def relevance(kinds: list[str]) -> Json:
    """Relevance (0..1) of every scored series, with the alert threshold as a dashed line."""
    queries = [
        (
            target(
                chr(65 + i),
                f'SELECT ts AS time, relevance AS "{series_label(k)}" FROM relevance '
                f"WHERE series = concat('{k}_', ${{source:sqlstring}}) AND $__timeFilter(ts) ORDER BY ts",
            ),
            [override(series_label(k), ("color", {"mode": "fixed", "fixedColor": COLOURS[k]}))],
        )
        for i, k in enumerate(kinds)
    ]
    panel = timeseries(
        f"Relevance (alert threshold {RELEVANCE_THRESHOLD:g})",
        queries,
        [],
        unit="none",
        axis="relevance",
        min=0,
        max=1,
        thresholds={
            "mode": "absolute",
            "steps": [{"color": "transparent", "value": None}, {"color": "red", "value": RELEVANCE_THRESHOLD}],
        },
    )
    panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "dashed"}
    return panel


def source_variable(uid: str) -> Json:
    """The `source` variable: sources with all of the dashboard's instruments, and those that fall back to it."""
    have = set(instruments(uid))
    combos = [set(c) for n in (1, 2, 3) for c in combinations(ORDER, n)]
    exact = [c for c in combos if dashboard_uid(c) == uid and not have <= c]
    when = " OR ".join(
        ["(" + " AND ".join(f"{i} > 0" for i in ORDER if i in have) + ")"]
        + ["(" + " AND ".join(f"{i} {'>' if i in c else '='} 0" for i in ORDER) + ")" for c in exact]
    )
    counts = ", ".join(f"sum(CASE WHEN instrument = '{i}' THEN 1 ELSE 0 END) AS {i}" for i in ORDER)
    bands = ", ".join(f"'{MAIN_BAND[i]}'" for i in ORDER)
    sql = (
        f"SELECT source_id FROM (SELECT source_id, {counts} FROM lightcurve WHERE band IN ({bands}) "
        f"GROUP BY source_id) WHERE {when} ORDER BY source_id"
    )
    return {
        "type": "query",
        "name": "source",
        "label": "Source",
        "datasource": DATASOURCE,
        "query": sql,
        "definition": sql,
        "refresh": 1,
        "sort": 1,
        "multi": False,
        "includeAll": False,
        "allowCustomValue": False,
        "current": {},
        "options": [],
    }


def layout(rows: list[tuple[str, list[tuple[Json, int, int]]]]) -> list[Json]:
    """Rows of (panel, width, height) placed on Grafana's 24-column grid, with ids."""
    panels, y = [], 0
    for title, row in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            }
        )
        x, y, height = 0, y + 1, 0
        for panel, w, h in row:
            if x + w > 24:
                x, y, height = 0, y + height, 0
            panels.append({**panel, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
            x, height = x + w, max(height, h)
        y += height
    return [{**p, "id": i} for i, p in enumerate(panels, 1)]


def build(uid: str) -> Json:
    """The dashboard JSON model for one instrument combination."""
    inst = instruments(uid)
    joined = {"swift", "maxi"} <= set(inst)
    derived = ["hardness", "combined"] if joined else []
    overview = [
        (
            timeseries(
                "Lightcurves (main bands, mCrab)",
                [curve(chr(65 + n), k) for n, k in enumerate(inst)],
                [download(k, title=f"Download shown range (CSV): {series_label(k)}") for k in inst],
            ),
            24,
            9,
        )
    ]
    if joined:
        overview += [
            (hid(), 12, 10),
            (timeseries("Combined flux BAT+MAXI (mCrab)", [curve("A", "combined")], [download("combined")]), 12, 10),
        ]
    rows = [("Overview", overview)]
    if "maxi" in inst:
        rows.append(
            (
                "MAXI",
                [
                    (timeseries(f"MAXI {b} keV (mCrab)", [curve("A", "maxi", b)], [download("maxi")]), 8, 8)
                    for b in BANDS["maxi"]
                    if b != MAIN_BAND["maxi"]
                ],
            )
        )
    rows += [
        (SERIES_TITLES[k], [(timeseries(f"{series_label(k)} (mCrab)", [curve("A", k)], [download(k)]), 24, 8)])
        for k in ("swift", "fermi")
        if k in inst
    ]
    if joined:
        rows.append(("Hardness", [(hardness(), 24, 8)]))
    rows.append(("Relevance", [(relevance([*inst, *derived]), 24, 8)]))
    alerts = (
        "SELECT ts AS time, concat(alert_type, ': ', explanation) AS text, alert_type AS tags FROM alerts "
        "WHERE source_id = ${source:sqlstring} AND $__timeFilter(ts) ORDER BY ts"
    )
    return {
        "uid": uid,
        "title": "FLASHES: " + " + ".join(SERIES_TITLES[i] for i in inst),
        "tags": ["flashes"],
        "description": "Lightcurves, hardness and relevance of one source (variable `source`); "
        "generated by flashes/grafana.py, do not edit by hand.",
        "editable": False,
        "graphTooltip": 1,
        "timezone": "utc",
        "time": TIME_RANGE,
        "refresh": "",
        "schemaVersion": 41,
        "version": 1,
        "links": [],
        "panels": layout(rows),
        "annotations": {
            "list": [
                {
                    "name": "Alerts",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "red",
                    "target": target("Anno", alerts),
                }
            ]
        },
        "templating": {
            "list": [
                source_variable(uid),
                {
                    "type": "textbox",
                    "name": "api",
                    "label": "FLASHES API",
                    "query": API,
                    "current": {"text": API, "value": API},
                    "options": [{"selected": True, "text": API, "value": API}],
                },
            ]
        },
    }


def rendered(folder: Path = FOLDER) -> dict[Path, str]:
    """Each dashboard's file and text (sorted keys, indent 2)."""
    return {folder / f"{uid}.json": json.dumps(build(uid), indent=2, sort_keys=True) + "\n" for uid in DASHBOARDS}


def export(folder: Path = FOLDER) -> list[Path]:
    """Write deploy/grafana/dashboards/{uid}.json for the five dashboards."""
    folder.mkdir(parents=True, exist_ok=True)
    files = rendered(folder)
    for path, text in files.items():
        path.write_text(text)
    return list(files)


if __name__ == "__main__":
    for written in export():
        print(written.relative_to(PROJECT_ROOT))
