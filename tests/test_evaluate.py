"""`flashes evaluate` on real MAXI files: both folder layouts, per-event latency, JSON shape."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flashes.cli import main
from flashes.settings import Settings
from services.relevance.evaluate import evaluate

DATA = Path(__file__).resolve().parent / "data" / "maxi"


@pytest.fixture()
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text("source_id,kind,onset_mjd,reference\n"
                    "maxij1535-571,outburst onset,57998,ATel #10700\n"
                    "cirx-1,not in the mirror,58000,none\n")
    return path


def shared_layout(root: Path) -> Path:
    (root / "maxi").mkdir(parents=True)
    shutil.copy(DATA / "J1535-572_g_lc_1day_all.dat", root / "maxi")
    shutil.copy(DATA / "J1520-571_00055058g_lc_1day_all.dat", root / "maxi")  # older naming: not the standard product
    return root


def provider_layout(root: Path) -> Path:
    (root / "maxi" / "star_data" / "J1535-572").mkdir(parents=True)
    shutil.copy(DATA / "J1535-572_g_lc_1day_all.dat", root / "maxi" / "star_data" / "J1535-572")
    return root


@pytest.mark.parametrize("layout", [shared_layout, provider_layout])
def test_the_maxi_j1535_outburst_is_found_in_either_layout(layout, tmp_path: Path, events: Path) -> None:
    result = evaluate(Settings(), layout(tmp_path / "mirror"), events)
    for name in ("model", "formula", "median_5sigma"):
        method = result["methods"][name]
        assert [e["source_id"] for e in method["events"]] == ["maxij1535-571"]  # Cir X-1 has no file here
        event = method["events"][0]
        assert event["first_alert_mjd"] is not None and -2 <= event["latency_d"] <= 7
        assert method["recall_7d"] == 1.0
        assert method["false_alerts_per_source_year"] >= 0


def test_json_output_has_the_documented_shape(tmp_path: Path, events: Path, capsys: pytest.CaptureFixture) -> None:
    main(["evaluate", "--mirror", str(shared_layout(tmp_path / "mirror")), "--events", str(events), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"threshold", "methods"} and set(result["methods"]) == {"model", "formula", "median_5sigma"}
    method = result["methods"]["median_5sigma"]
    assert set(method) == {"recall_2d", "recall_7d", "median_latency_d", "false_alerts_per_source_year", "events"}
    assert set(method["events"][0]) == {"source_id", "onset_mjd", "first_alert_mjd", "latency_d"}
