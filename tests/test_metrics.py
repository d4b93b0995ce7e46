"""Operators can see it: every service's Prometheus metrics and GET /health/freshness, on a private stack whose
services run as `make run` runs them (a devtools private stack of every service of services.registry.SERVICES) on one
sample source served from a provider mirror.

Prometheus and Grafana cannot run on these machines. So the test scrapes each running service itself (httpx,
parsed by prometheus_client's own parser), checks that every metric the operations dashboard's PromQL uses is
exported by a service and that the counters equal what reached QuestDB; deploy/prometheus/prometheus.yml, the
Grafana provisioning and the dashboard JSON are checked structurally.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devtools.observe import PIPELINE_GROUPS, produce, receiver, up, wait_drained, wait_until
from devtools.stack import private_stack
from flashes import kafka, metrics, ops_dashboard, questdb, topics
from flashes.kafka import create_topics
from flashes.settings import PROJECT_ROOT, Settings
from flashes.timeconv import datetime_to_mjd
from services.registry import SERVICES, metrics_port
from tests.conftest import copy_mirror

SOURCE, MAXI_ID = "maxij1535-571", "J1535-572"
BAT = "swift/results/transients/weak/MAXIJ1535-571.lc.txt"
ROWS = 120  # of each file: the source's first months (2009), years old
BAD_LINES = ["this is not a number line", "55100.5 1 0.1 1 0.1 1 0.1 1 -0.5"]
PROMETHEUS_OWN = {"up"}  # written by Prometheus for each scrape, exported by nobody


@dataclass
class Ops:
    settings: Settings
    mirror: Path
    webhook_url: str
    webhooks: list[dict]


def scrape(url: str) -> list[Sample]:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), (url, r.status_code)
    return [s for family in text_string_to_metric_families(r.text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def metrics_url(settings: Settings, service: str) -> str:
    return f"http://127.0.0.1:{metrics_port(settings, service)}/metrics"


def scrape_all(settings: Settings) -> dict[str, list[Sample]]:
    return {name: scrape(metrics_url(settings, name)) for name in SERVICES}


def stored(settings: Settings, sql: str) -> int:
    return questdb.query(settings, sql)[0]["n"]


def truncate(path: Path, rows: int, extra: list[str] = ()) -> None:
    """Keep the header lines and the first `rows` data lines of a provider file (CRLF kept), `extra` lines among
    them."""
    lines = path.read_bytes().decode().splitlines(keepends=True)
    end = "\r\n" if lines[0].endswith("\r\n") else "\n"
    head = [line for line in lines if line.startswith("#") or line[0].isalpha()]
    data = [line for line in lines if line not in head][:rows]
    path.write_text("".join(head + data[: rows // 2] + [x + end for x in extra] + data[rows // 2 :]), newline="")


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    var = tmp_path_factory.mktemp("ops")
    folder = copy_mirror({MAXI_ID: BAT}, var / "mirror")
    truncate(folder / "maxi" / "star_data" / MAXI_ID / f"{MAXI_ID}_g_lc_1day_all.dat", ROWS, BAD_LINES)
    truncate(folder / BAT, ROWS)
    hook_server, hook_url, webhooks = receiver(204)
    env = {
        "FLASHES_FETCH_SOURCES": json.dumps([SOURCE]),
        "FLASHES_FETCH_EVERY_S": json.dumps({i: 1.0 for i in topics.INSTRUMENTS}),
        "FLASHES_FETCH_JITTER_S": "0",
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
    }
    try:
        with private_stack(SERVICES, env=env, mirror=folder, var=var) as stack:
            settings, processes = stack.settings, stack.processes
            wait_until(
                lambda: up(f"{settings.api_url}/health/kafka") or processes["api"].poll() is not None, "the API", 120
            )
            assert processes["api"].poll() is None, f"the API exited: see {stack.logs / 'api.log'}"
            wait_until(
                lambda: stored(settings, "SELECT count() n FROM relevance WHERE kind IN ('maxi', 'swift')") >= 2 * ROWS,
                "the sample scored and stored",
                180,
            )
            wait_drained(settings, PIPELINE_GROUPS)
            yield Ops(settings, folder, hook_url, webhooks)
        dead = stack.crashed()
        assert not dead, f"{dead} crashed: see {stack.logs}"
    finally:
        hook_server.stop()


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers once label matchers, ranges, grouping
    clauses and function calls are taken out."""
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"\b[a-zA-Z_:][\w:]*\b(?!\s*\()", expr))


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, channel) (rate(a_bucket{x="y"}[5m])))') == {"a_bucket"}
    assert metric_names("(time() - max by (instrument) (b_seconds)) / 86400") == {"b_seconds"}
    assert metric_names('up{job="flashes"}') == {"up"}


def test_every_service_exports_what_the_operations_dashboard_reads_and_the_counters_match_the_data(ops: Ops) -> None:
    s = ops.settings
    # A test alert through a webhook subscription (deliveries), an undecodable chunk (dead letters in three stages).
    made = httpx.post(
        f"{s.api_url}/subscriptions",
        timeout=30,
        json={"channel": "webhook", "webhook_url": f"{ops.webhook_url}/ops", "filters": {"sources": [SOURCE]}},
    )
    assert made.status_code == 201, made.text
    assert httpx.post(f"{s.api_url}/subscriptions/{made.json()['code']}/test", timeout=30).status_code == 202
    wait_until(lambda: any(h["path"] == "/ops" for h in ops.webhooks), "the test alert at the webhook", 60)

    asyncio.run(produce(s, [(topics.LIGHTCURVE.name, SOURCE.encode(), b"{not json")]))
    consumers = ("derive", "relevance", "sink")  # the lightcurve topic's consumers

    def refused_everywhere() -> bool:
        return all(
            value(scrape(metrics_url(s, n)), "flashes_dead_letters_total", service=n, reason="undecodable") == 1
            for n in consumers
        )

    wait_until(refused_everywhere, "derive, relevance and the sink to count the undecodable chunk", 60)
    wait_until(
        lambda: value(scrape(metrics_url(s, "delivery")), "flashes_deliveries_total") >= 1, "the delivery counted", 30
    )
    wait_drained(s, PIPELINE_GROUPS)

    scraped = scrape_all(s)
    exported = {sample.name for samples in scraped.values() for sample in samples}
    for name, samples in scraped.items():  # each answer is that service's own process
        assert value(samples, "process_cpu_seconds_total") > 0, name
    board = ops_dashboard.build()
    used = set().union(*map(metric_names, ops_dashboard.expressions(board)))
    assert used - PROMETHEUS_OWN <= exported, f"read by the dashboard, exported by no service: {used - exported}"

    # The counters equal what reached QuestDB (one uninterrupted run, so nothing was written twice).
    maxi = stored(s, f"SELECT count() n FROM lightcurve WHERE series = 'maxi_{SOURCE}' AND band = '2-20'")
    swift = stored(s, f"SELECT count() n FROM lightcurve WHERE series = 'swift_{SOURCE}'")
    derived = stored(s, "SELECT count() n FROM derived")
    scores = stored(s, "SELECT count() n FROM relevance")
    assert maxi >= ROWS and swift >= ROWS
    lc, dv, rl = topics.LIGHTCURVE.name, topics.DERIVED.name, topics.RELEVANCE.name
    assert value(scraped["derive"], "flashes_points_in_total", topic=lc) == maxi + swift
    assert value(scraped["derive"], "flashes_points_out_total", output=dv) == derived > 0
    assert value(scraped["relevance"], "flashes_points_in_total", topic=lc) == maxi + swift
    assert value(scraped["relevance"], "flashes_points_in_total", topic=dv) == derived
    assert value(scraped["relevance"], "flashes_points_out_total", output=rl) == scores
    assert value(scraped["alerts"], "flashes_points_in_total", topic=rl) == scores
    assert value(scraped["sink"], "flashes_points_out_total", output="questdb:lightcurve") == maxi + swift
    assert value(scraped["sink"], "flashes_points_out_total", output="questdb:relevance") == scores
    assert value(scraped["fetcher"], "flashes_points_out_total", output=lc) == maxi + swift
    fetched_letters = stored(s, "SELECT count() n FROM deadletter WHERE origin LIKE 'fetcher:%'")
    assert (
        value(scraped["fetcher"], "flashes_dead_letters_total", service="fetcher") == fetched_letters >= len(BAD_LINES)
    )
    assert value(scraped["fetcher"], "flashes_fetches_total", provider="maxi") >= 1
    assert value(scraped["fetcher"], "flashes_fetches_total", provider="swift") >= 1
    newest = questdb.query(s, "SELECT max(ts) t FROM lightcurve WHERE instrument = 'maxi'")[0]["t"]
    assert value(scraped["sink"], "flashes_newest_point_seconds", instrument="maxi") == pytest.approx(
        datetime.fromisoformat(newest).timestamp()
    )
    assert (
        value(scraped["delivery"], "flashes_points_in_total", topic=topics.DELIVERY_RETRY.name) >= 1
    )  # the test alert
    assert value(scraped["delivery"], "flashes_deliveries_total", channel="webhook") >= 1
    assert value(scraped["delivery"], "flashes_delivery_latency_seconds_count", channel="webhook") >= 1

    # Lag: every group's gauge is there, and once the groups have caught up it reads 0.
    groups = {
        sample.labels["group"]
        for samples in scraped.values()
        for sample in samples
        if sample.name == "flashes_consumer_lag"
    }
    assert set(PIPELINE_GROUPS) <= groups

    def caught_up() -> bool:
        return all(
            sample.value == 0
            for samples in scrape_all(s).values()
            for sample in samples
            if sample.name == "flashes_consumer_lag" and sample.labels["group"] in PIPELINE_GROUPS
        )

    wait_until(caught_up, "every pipeline group's lag gauge at 0", 30)


def test_freshness_names_the_stale_instruments_until_fresh_points_arrive(ops: Ops) -> None:
    s = ops.settings
    r = httpx.get(f"{s.api_url}/health/freshness", timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "stale" and {i: v["status"] for i, v in body["instruments"].items()} == {
        "maxi": "stale",
        "swift": "stale",
        "fermi": "no data",
    }
    for instrument in ("maxi", "swift"):
        newest = questdb.query(s, f"SELECT max(ts) t FROM lightcurve WHERE instrument = '{instrument}'")[0]["t"]
        assert body["instruments"][instrument]["newest"] == newest and newest < "2011"
        assert f"{instrument}: newest point {newest[:10]}, " in body["detail"]
    assert "fermi" not in body["detail"]  # no data at all is not stale

    # Today's points, appended to the provider files: the fetcher's next poll brings them.
    now = datetime.now(UTC)
    today = math.floor(datetime_to_mjd(now))
    maxi_file = ops.mirror / "maxi" / "star_data" / MAXI_ID / f"{MAXI_ID}_g_lc_1day_all.dat"
    with maxi_file.open("a", newline="") as f:
        f.write(f"{today - 0.5:.6f} 0.05 0.01 0.02 0.005 0.02 0.005 0.01 0.004\r\n")
    with (ops.mirror / BAT).open("a") as f:
        f.write(f"{today:.1f} 0.002 0.001 {now:%Y %j} 0.001 0.0001 0 1500 1400 1450\n")

    def fresh() -> bool:
        return httpx.get(f"{s.api_url}/health/freshness", timeout=10).status_code == 200

    wait_until(fresh, "both instruments fresh", 120)
    body = httpx.get(f"{s.api_url}/health/freshness", timeout=10).json()
    assert {i: v["status"] for i, v in body["instruments"].items()} == {
        "maxi": "fresh",
        "swift": "fresh",
        "fermi": "no data",
    }
    assert body["instruments"]["maxi"]["age_days"] <= 2
    newest = datetime.fromisoformat(body["instruments"]["maxi"]["newest"]).timestamp()
    wait_until(
        lambda: value(scrape(metrics_url(s, "sink")), "flashes_newest_point_seconds", instrument="maxi") == newest,
        "the sink's newest MAXI point",
        30,
    )


def test_lag_is_highwater_minus_position_of_the_owned_partitions(ops: Ops) -> None:
    s, topic = ops.settings, "ops.lag.test"

    async def run() -> float:
        await create_topics(s, {topic: (1, False)})
        await produce(s, [(topic, None, str(i).encode()) for i in range(10)])
        consumer = kafka.consumer(s, topic, group_id="ops-lag", auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            read = 0
            while read < 3:
                read += sum(len(r) for r in (await consumer.getmany(timeout_ms=1000, max_records=3 - read)).values())
            await metrics.observe_lag(consumer, "ops-lag", [topic])
        finally:
            await consumer.stop()
        return REGISTRY.get_sample_value("flashes_consumer_lag", {"group": "ops-lag", "topic": topic})

    assert asyncio.run(run()) == 7


def test_a_second_worker_runs_without_metrics_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert not metrics.serve(Settings(), taken.getsockname()[1])


def test_prometheus_scrapes_every_service_and_grafana_provisions_the_operations_dashboard() -> None:
    defaults = Settings(
        metrics_port=Settings.model_fields["metrics_port"].default, api_port=Settings.model_fields["api_port"].default
    )
    config = yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "flashes" and job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert sorted(targets) == sorted(f"{name}:{metrics_port(defaults, name)}" for name in SERVICES)
    assert all(f'job="{job["job_name"]}"' in e for e in ops_dashboard.expressions(ops_dashboard.build()) if "up{" in e)

    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    mounts = dict(
        v.removesuffix(":ro").split(":", 1)[::-1] for v in compose["prometheus"]["volumes"] if v.startswith("./")
    )
    assert mounts == {"/etc/prometheus/prometheus.yml": "./deploy/prometheus/prometheus.yml"}
    assert (
        set(SERVICES) <= set(compose["prometheus"]["depends_on"]) and "prometheus" in compose["grafana"]["depends_on"]
    )
    for name in SERVICES:  # reachable by Prometheus inside the compose network; the API on its own port
        assert compose[name]["environment"]["FLASHES_METRICS_HOST"] == "0.0.0.0"
    assert compose["api"]["environment"]["FLASHES_API_HOST"] == "0.0.0.0"

    grafana = PROJECT_ROOT / "deploy" / "grafana"
    (source,) = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert {k: source[k] for k in ("uid", "type", "url")} == {
        **ops_dashboard.DATASOURCE,
        "url": "http://prometheus:9090",
    }
    (provider,) = yaml.safe_load((grafana / "provisioning" / "dashboards" / "flashes.yaml").read_text())["providers"]
    grafana_mounts = dict(
        v.removesuffix(":ro").split(":", 1)[::-1] for v in compose["grafana"]["volumes"] if v.startswith("./")
    )
    assert ops_dashboard.PATH.is_relative_to(
        PROJECT_ROOT / grafana_mounts[provider["options"]["path"]].removeprefix("./")
    )
    assert json.loads(ops_dashboard.PATH.read_text()) == json.loads(ops_dashboard.rendered()), (
        "stale: run `python -m flashes.ops_dashboard`"
    )
    board = ops_dashboard.build()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"]) and len(panels) == 11
    assert all(t["datasource"] == ops_dashboard.DATASOURCE and t["expr"] for p in panels for t in p["targets"])
