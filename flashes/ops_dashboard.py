"""The Grafana "operations" dashboard: the services' Prometheus metrics (flashes/metrics.py), generated.

Prometheus (deploy/prometheus/prometheus.yml) scrapes every service as job `flashes`; Grafana reads it
through the data source provisioned with uid `flashes-prometheus`. `python -m flashes.ops_dashboard`
rewrites deploy/grafana/dashboards/operations/flashes-operations.json (a subfolder, which Grafana's file
provider reads too, so the five source dashboards keep their folder to themselves);
tests/test_metrics.py checks the file is this output and that every metric its queries use is exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flashes.grafana import GRAFANA_VERSION, layout
from flashes.settings import PROJECT_ROOT, Settings

UID = "flashes-operations"
DATASOURCE = {"type": "prometheus", "uid": "flashes-prometheus"}
PATH = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "operations" / f"{UID}.json"
JOB = 'job="flashes"'
FRESHNESS_DAYS: dict[str, float] = Settings.model_fields["freshness_days"].get_default(call_default_factory=True)
Json = dict[str, Any]


def panel(title: str, queries: list[tuple[str, str]], unit: str = "short", **defaults: Any) -> Json:
    """A time series panel of PromQL queries (expression, legend)."""
    return {
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "pluginVersion": GRAFANA_VERSION,
        "targets": [
            {"refId": chr(65 + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True}
            for i, (expr, legend) in enumerate(queries)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never"},
                **defaults,
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def ages() -> Json:
    """Age of each instrument's newest point, red beyond its expected cadence (the freshness_days default,
    what GET /health/freshness judges by)."""
    board = panel(
        "Age of the newest stored point per instrument (days)",
        [("(time() - max by (instrument) (flashes_newest_point_seconds)) / 86400", "{{instrument}}")],
    )
    board["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "line"}
    board["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byName", "options": instrument},
            "properties": [
                {
                    "id": "thresholds",
                    "value": {
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": "red", "value": days}],
                    },
                }
            ],
        }
        for instrument, days in sorted(FRESHNESS_DAYS.items())
    ]
    return board


def build() -> Json:
    """The dashboard JSON model."""
    latency = [
        (
            f"histogram_quantile({q}, sum by (le, channel) (rate(flashes_delivery_latency_seconds_bucket[15m])))",
            f"{{{{channel}}}} p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    ]
    rows = [
        (
            "Flow",
            [
                (
                    panel(
                        "Points in per stage (per second)",
                        [("sum by (service, topic) (rate(flashes_points_in_total[5m]))", "{{service}} ← {{topic}}")],
                    ),
                    8,
                    8,
                ),
                (
                    panel(
                        "Points out per stage (per second)",
                        [("sum by (service, output) (rate(flashes_points_out_total[5m]))", "{{service}} → {{output}}")],
                    ),
                    8,
                    8,
                ),
                (
                    panel("Consumer lag per group (records)", [("sum by (group) (flashes_consumer_lag)", "{{group}}")]),
                    8,
                    8,
                ),
            ],
        ),
        (
            "Data",
            [
                (ages(), 8, 8),
                (
                    panel(
                        "Provider fetches by outcome (per hour)",
                        [
                            (
                                "sum by (provider, outcome) (increase(flashes_fetches_total[1h]))",
                                "{{provider}} {{outcome}}",
                            )
                        ],
                    ),
                    8,
                    8,
                ),
                (
                    panel(
                        "Dead letters by reason (per hour)",
                        [
                            (
                                "sum by (service, reason) (increase(flashes_dead_letters_total[1h]))",
                                "{{service}}: {{reason}}",
                            )
                        ],
                    ),
                    8,
                    8,
                ),
            ],
        ),
        (
            "Delivery",
            [
                (
                    panel(
                        "Deliveries by channel and status (per hour)",
                        [
                            (
                                "sum by (channel, status) (increase(flashes_deliveries_total[1h]))",
                                "{{channel}} {{status}}",
                            )
                        ],
                    ),
                    12,
                    8,
                ),
                (panel("Delivery latency, alert raised to delivered", latency, unit="s"), 12, 8),
            ],
        ),
        (
            "Services",
            [
                (panel("Up (1) or not scraped (0)", [(f"up{{{JOB}}}", "{{instance}}")], min=0, max=1), 8, 8),
                (panel("CPU (cores)", [(f"rate(process_cpu_seconds_total{{{JOB}}}[5m])", "{{instance}}")]), 8, 8),
                (
                    panel(
                        "Resident memory", [(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")], unit="bytes"
                    ),
                    8,
                    8,
                ),
            ],
        ),
    ]
    return {
        "uid": UID,
        "title": "FLASHES: operations",
        "tags": ["flashes", "operations"],
        "description": "Points per stage, consumer lag, data freshness, fetches, dead letters and deliveries "
        "from the services' Prometheus metrics; generated by flashes/ops_dashboard.py.",
        "editable": False,
        "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": 41,
        "version": 1,
        "links": [],
        "panels": layout(rows),
        "annotations": {"list": []},
        "templating": {"list": []},
    }


def expressions(board: Json) -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def rendered() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def export(path: Path = PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered())
    return path


if __name__ == "__main__":
    print(export().relative_to(PROJECT_ROOT))
