"""Grafana dashboards (flashes/grafana.py): their structure, the committed files, the provisioning, and
every panel's, annotation's and variable's SQL run on the real QuestDB of the `pipeline` fixture.

Grafana itself cannot run here. The SQL is run as Grafana and the QuestDB plugin would send it: over
the PostgreSQL wire as the read-only user of the provisioned data source, `${source}` replaced by a
sample source and `$__timeFilter(col)` expanded as the plugin does
(questdb/grafana-questdb-datasource, pkg/macros/macros.go: col >= cast(<µs> as timestamp) AND ...).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime

import asyncpg
import pytest
import yaml
from fastapi.testclient import TestClient

import schemas
from flashes import grafana
from flashes.settings import PROJECT_ROOT, Settings
from services.api.app import create_app

BOARDS = {uid: grafana.build(uid) for uid in grafana.DASHBOARDS}
SAMPLE = "maxij1535-571"  # MAXI and BAT in the pipeline's sample (so hardness and combined too); no sample has GBM
SAMPLE_KINDS = {"maxi", "swift", "hardness", "combined"}
START, END = datetime(2017, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)
DAYS_3_MS = 3 * 86_400_000
SERIES_KEY = re.compile(r"(\w+)_\$\{source\}|concat\('(\w+)_', \$\{source:sqlstring\}\)")


def as_reader(settings: Settings, sql: str) -> list[dict]:
    """Rows of SQL run over the PostgreSQL wire as the read-only user Grafana's data source uses."""

    async def run() -> list[dict]:
        conn = await asyncpg.connect(
            host=settings.questdb_host,
            port=settings.questdb_pg_port,
            database="qdb",
            user=settings.questdb_reader_user,
            password=settings.questdb_reader_password.get_secret_value(),
        )
        try:
            return [dict(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(run())


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def variable(board: dict, name: str) -> dict:
    return next(v for v in board["templating"]["list"] if v["name"] == name)


def field(panel: dict, name: str) -> dict:
    """A field's config as Grafana resolves it: the panel defaults with the byName overrides applied."""
    defaults = panel["fieldConfig"]["defaults"]
    config = {**defaults, "custom": dict(defaults.get("custom", {}))}
    for o in panel["fieldConfig"]["overrides"]:
        if o["matcher"] == {"id": "byName", "options": name}:
            for prop in o["properties"]:
                head, _, tail = prop["id"].partition(".")
                if tail:
                    config.setdefault(head, {})[tail] = prop["value"]
                else:
                    config[head] = prop["value"]
    return config


def expected_fields(panel: dict) -> set[str]:
    """The field names a panel's config refers to (overrides, fill-below targets, xychart x and y)."""
    names = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}
    names |= {
        p["value"]
        for o in panel["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "custom.fillBelowTo"
    }
    for s in panel.get("options", {}).get("series", []):
        names |= {s["x"]["matcher"]["options"], s["y"]["matcher"]["options"]}
    return names


def kinds(sql: str) -> set[str]:
    """The series kinds (maxi, swift, fermi, hardness, combined) a query or link reads."""
    return {a or b for a, b in SERIES_KEY.findall(sql)}


def interpolate(sql: str, source: str = SAMPLE) -> str:
    """The SQL that reaches QuestDB: Grafana's variables, then the plugin's time macro."""
    micros = {"from": int(START.timestamp() * 1e6), "to": int(END.timestamp() * 1e6)}
    sql = sql.replace("${source:sqlstring}", "'" + source.replace("'", "''") + "'")  # Grafana's sqlstring format
    sql = re.sub(
        r"\$__timeFilter\(([\w.]+)\)",
        lambda m: f"{m[1]} >= cast({micros['from']} as timestamp) AND {m[1]} <= cast({micros['to']} as timestamp)",
        sql,
    )
    assert "$" not in sql, sql
    return sql


def test_five_dashboards_with_fixed_uids_variables_and_the_questdb_datasource() -> None:
    assert tuple(BOARDS) == (
        "flashes-maxi",
        "flashes-swift",
        "flashes-swift-maxi",
        "flashes-swift-fermi",
        "flashes-swift-maxi-fermi",
    )
    for uid, board in BOARDS.items():
        assert board["uid"] == uid
        source = variable(board, "source")
        assert source["type"] == "query" and source["datasource"] == grafana.DATASOURCE and source["refresh"] == 1
        assert variable(board, "api")["query"] == "http://localhost:8000"
        assert board["annotations"]["list"][0]["datasource"]["uid"] == "flashes-questdb"
        for panel in panels(board):
            assert panel["datasource"] == {"type": "questdb-questdb-datasource", "uid": "flashes-questdb"}, panel[
                "title"
            ]
            assert panel["targets"] and all(
                t["datasource"]["uid"] == "flashes-questdb" and t["queryType"] == "sql" for t in panel["targets"]
            )
            assert all(
                "${source:sqlstring}" in t["rawSql"] and "'${source}'" not in t["rawSql"] for t in panel["targets"]
            ), panel["title"]
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_each_dashboard_shows_only_its_instruments_and_the_hid_when_it_has_bat_and_maxi() -> None:
    for uid, board in BOARDS.items():
        inst = set(grafana.instruments(uid))
        joined = {"swift", "maxi"} <= inst
        read = set().union(*(kinds(t["rawSql"]) for p in panels(board) for t in p["targets"]))
        assert read == inst | ({"hardness", "combined"} if joined else set()), uid
        titles = " | ".join(p["title"] for p in panels(board))
        assert ("Swift/BAT" in titles) == ("swift" in inst) and ("Fermi/GBM" in titles) == ("fermi" in inst)
        assert ("MAXI 4-10 keV" in titles) == ("maxi" in inst), titles
        xy = [p for p in panels(board) if p["type"] == "xychart"]
        assert len(xy) == joined, uid
        overview = panels(board)[0]
        assert overview["gridPos"]["y"] == 1 and {k for t in overview["targets"] for k in kinds(t["rawSql"])} == inst
    assert "BAT" not in json.dumps(panels(BOARDS["flashes-maxi"])) and "xychart" not in json.dumps(
        BOARDS["flashes-maxi"]
    )
    hid = next(p for p in panels(BOARDS["flashes-swift-maxi"]) if p["type"] == "xychart")
    series = hid["options"]["series"][0]
    assert hid["options"]["mapping"] == "manual" and hid["pluginVersion"]  # else Grafana migrates it as xychart v1
    assert (series["x"]["matcher"]["options"], series["y"]["matcher"]["options"]) == ("hardness", "combined")
    for axis in ("hardness", "combined"):
        assert field(hid, axis)["custom"]["scaleDistribution"] == {"type": "log", "log": 10}
    assert hid["targets"][0]["rawSql"].count("value > 0") == 2  # hardness and combined drop non-positive rows
    ratio = next(p for p in panels(BOARDS["flashes-swift-maxi"]) if p["title"].startswith("Hardness ratio"))
    assert ratio["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"
    assert "value > 0" in ratio["targets"][0]["rawSql"]


def test_errors_are_shaded_bands_and_lines_break_across_gaps_longer_than_3_days() -> None:
    for uid, board in BOARDS.items():
        banded = 0
        for panel in panels(board):
            if panel["type"] != "timeseries":
                continue
            custom = panel["fieldConfig"]["defaults"]["custom"]
            assert custom["insertNulls"] == DAYS_3_MS and custom["spanNulls"] == DAYS_3_MS, panel["title"]
            for name in expected_fields(panel):
                if f"{name} upper" in expected_fields(panel):
                    upper, lower = field(panel, f"{name} upper"), field(panel, f"{name} lower")
                    assert upper["custom"]["fillBelowTo"] == f"{name} lower" and upper["custom"]["lineWidth"] == 0
                    assert upper["custom"]["hideFrom"]["legend"] and lower["custom"]["hideFrom"]["legend"]
                    assert upper["color"] == lower["color"] == field(panel, name)["color"]
                    banded += 1
        inst = set(grafana.instruments(uid))
        # main bands in the overview, BAT and GBM in their rows, MAXI's three sub-bands, the combined flux
        assert banded == len(inst) + len(inst & {"swift", "fermi"}) + 3 * ("maxi" in inst) + ({"swift", "maxi"} <= inst)


def test_alerts_are_annotations_and_panels_link_to_csv_downloads_of_the_shown_range() -> None:
    for board in BOARDS.values():
        (alerts,) = board["annotations"]["list"]
        sql = alerts["target"]["rawSql"]
        assert "FROM alerts" in sql and "source_id = ${source:sqlstring}" in sql and "$__timeFilter(ts)" in sql
        assert " AS time" in sql and " AS text" in sql and "alert_type" in sql and "explanation" in sql
        for panel in panels(board):
            urls = [link["url"] for link in panel["links"]]
            if panel["type"] == "xychart":
                assert urls == [
                    "${api}/download/hid/hardness_${source}/combined_${source}"
                    "?start=${__from:date:iso}&end=${__to:date:iso}"
                ]
            elif not panel["title"].startswith("Relevance"):
                assert {
                    re.match(
                        r"\$\{api\}/download/(\w+)_\$\{source\}\?start=\$\{__from:date:iso\}"
                        r"&end=\$\{__to:date:iso\}$",
                        u,
                    )[1]
                    for u in urls
                } == set().union(*(kinds(t["rawSql"]) for t in panel["targets"])), panel["title"]


def test_committed_dashboards_are_the_generator_output() -> None:
    for path, text in grafana.rendered().items():
        assert path.exists(), f"{path.name} missing: run `python -m flashes.grafana`"
        assert json.loads(path.read_text()) == json.loads(text), (
            f"{path.name} is stale: run `python -m flashes.grafana`"
        )
    on_disk = {p.name for p in grafana.FOLDER.glob("*.json")}
    assert on_disk == {f"{uid}.json" for uid in grafana.DASHBOARDS}, "a dashboard file the generator does not make"


def test_provisioning_parses_and_docker_compose_mounts_it_where_grafana_reads_it() -> None:
    deploy = PROJECT_ROOT / "deploy" / "grafana"
    (ds,) = yaml.safe_load((deploy / "provisioning" / "datasources" / "questdb.yaml").read_text())["datasources"]
    assert (ds["uid"], ds["type"]) == ("flashes-questdb", "questdb-questdb-datasource")
    assert {k: ds["jsonData"][k] for k in ("server", "port", "username", "tlsMode")} == {
        "server": "questdb",
        "port": 8812,
        "username": "reader",
        "tlsMode": "disable",
    }
    assert ds["secureJsonData"] == {"password": "$FLASHES_QUESTDB_READER_PASSWORD"}
    questdb_env = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["questdb"][
        "environment"
    ]
    assert questdb_env["QDB_PG_READONLY_USER_ENABLED"] == "true" and questdb_env["QDB_PG_READONLY_USER"] == "reader"
    (provider,) = yaml.safe_load((deploy / "provisioning" / "dashboards" / "flashes.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"

    service = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.removesuffix(":ro").split(":", 1)[::-1] for v in service["volumes"] if v.startswith("./"))
    assert mounts == {
        "/etc/grafana/provisioning/datasources": "./deploy/grafana/provisioning/datasources",
        "/etc/grafana/provisioning/dashboards": "./deploy/grafana/provisioning/dashboards",
        provider["options"]["path"]: "./deploy/grafana/dashboards",
    }
    assert all((PROJECT_ROOT / host).is_dir() for host in mounts.values())
    env = service["environment"]
    assert any(p.startswith("questdb-questdb-datasource@") for p in env["GF_PLUGINS_PREINSTALL_SYNC"].split(","))
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"  # tests/test_security_deploy.py says why
    assert service["image"].removeprefix("grafana/grafana:") == grafana.GRAFANA_VERSION


@pytest.mark.parametrize(
    ("has", "uid"),
    [
        ({"maxi"}, "flashes-maxi"),
        ({"swift"}, "flashes-swift"),
        ({"swift", "maxi"}, "flashes-swift-maxi"),
        ({"swift", "fermi"}, "flashes-swift-fermi"),
        ({"swift", "maxi", "fermi"}, "flashes-swift-maxi-fermi"),
        ({"maxi", "fermi"}, "flashes-swift-maxi-fermi"),
        ({"fermi"}, "flashes-swift-maxi-fermi"),
    ],
)
def test_a_source_gets_the_dashboard_of_its_instruments(has: set[str], uid: str) -> None:
    series = schemas.CatalogueSeries(data_url="x", provider_id="x", series="x")
    record = schemas.CatalogueSource(
        id="maxij1820+070",
        integral_name="MAXI J1820+070",
        class_code=0,
        coord_ra=0,
        coord_dec=0,
        coord_glon=0,
        coord_glat=0,
        alternative_names=[],
        class_name="",
        labels_constant=[],
        hardness_ratio=None,
        combined=None,
        **{i: (series if i in has else None) for i in grafana.ORDER},
    )
    assert grafana.dashboard_uid(record.instruments) == uid
    settings = Settings(grafana_url="https://grafana.example.org")
    assert grafana.dashboard_url(settings, record) == f"https://grafana.example.org/d/{uid}?var-source=maxij1820%2B070"
    assert grafana.dashboard_url(settings, record, START, END).endswith("&from=1483228800000&to=1609459200000")


def test_every_panel_annotation_and_variable_query_runs_on_questdb(pipeline: Settings) -> None:
    """Rows come back for every query of a series the sample source has; queries of GBM series can only be
    checked to run and to have their columns, since no sample source has Fermi/GBM data."""
    for uid, board in BOARDS.items():
        for panel in panels(board):
            expected = expected_fields(panel)
            returned: set[str] = set()
            for t in panel["targets"]:
                sql = interpolate(t["rawSql"])
                rows = as_reader(pipeline, sql)
                aliases = set(re.findall(r'AS "([^"]+)"', t["rawSql"])) | set(re.findall(r"AS (\w+)", t["rawSql"]))
                columns = ["time", *sorted(expected & aliases)]
                # Projecting them fails ("Invalid column") unless the query returns them, rows or not.
                as_reader(pipeline, f"SELECT {', '.join(map(json.dumps, columns))} FROM ({sql}) LIMIT 1")
                returned |= set(columns)
                if kinds(t["rawSql"]) <= SAMPLE_KINDS:
                    assert rows and set(columns) <= set(rows[0]), f"{uid} / {panel['title']} / {t['refId']}: {sql}"
                    assert all(r["time"] for r in rows)
                else:
                    assert kinds(t["rawSql"]) == {"fermi"} and not rows
            assert expected <= returned, f"{uid} / {panel['title']}: {expected - returned} not returned"
            if panel["type"] == "xychart":
                assert all(
                    r["hardness"] > 0 and r["combined"] > 0
                    for r in as_reader(pipeline, interpolate(panel["targets"][0]["rawSql"]))
                )
        annotations = as_reader(pipeline, interpolate(board["annotations"]["list"][0]["target"]["rawSql"]))
        assert annotations and all(r["text"].startswith(r["tags"] + ": ") for r in annotations)
        assert {r["tags"] for r in annotations} >= {"onset"}
        listed = {r["source_id"] for r in as_reader(pipeline, variable(board, "source")["query"])}
        assert (SAMPLE in listed) == (set(grafana.instruments(uid)) <= {"maxi", "swift"}), (uid, listed)


def test_a_quote_in_the_source_variable_stays_inside_the_string(pipeline: Settings) -> None:
    board = BOARDS["flashes-swift-maxi"]
    sql = board["annotations"]["list"][0]["target"]["rawSql"]
    assert as_reader(pipeline, interpolate(sql)), "the sample source has alerts"
    assert as_reader(pipeline, interpolate(sql, "x' OR '1'='1")) == []  # compared as one odd name: no rows
    assert not variable(board, "source")["allowCustomValue"]


def test_the_grafana_user_cannot_change_the_data(pipeline: Settings) -> None:
    with pytest.raises(asyncpg.PostgresError, match="(?i)read.?only|permission"):
        as_reader(pipeline, "DROP TABLE alerts")
    assert "alerts" in {r["table_name"] for r in as_reader(pipeline, "SELECT table_name FROM tables()")}


def test_panel_links_download_the_shown_range_from_the_api(pipeline: Settings) -> None:
    """Each download link, on the API over the pipeline's QuestDB and the shown range 2017-2021, answers a CSV with
    rows (links to GBM series are left out: no sample source has Fermi/GBM data)."""
    shown = {
        "${api}": "",
        "${source}": SAMPLE,
        "${__from:date:iso}": "2017-01-01T00:00:00.000Z",
        "${__to:date:iso}": "2021-01-01T00:00:00.000Z",
    }
    urls = {
        link["url"]
        for board in BOARDS.values()
        for p in panels(board)
        for link in p["links"]
        if not kinds(link["url"]) - SAMPLE_KINDS
    }
    assert len(urls) == 5  # maxi, swift, hardness, combined and the HID
    with TestClient(create_app(pipeline)) as client:
        for url in urls:
            for name, value in shown.items():
                url = url.replace(name, value)
            r = client.get(url)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), (url, r.text[:300])
            data = [line for line in r.text.splitlines() if line and not line.startswith("#")]
            assert len(data) > 1, (url, r.text[:300])  # a header and rows
