"""Topic contracts: exported JSON Schemas are current, and docker-compose.yml wires the stack."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

import schemas
from flashes import topics
from flashes.schema_export import rendered
from flashes.settings import PROJECT_ROOT
from services.registry import SERVICES


def test_exported_json_schemas_match_the_models() -> None:
    for path, text in rendered().items():
        assert path.exists(), f"{path.name} missing: run `make schemas`"
        assert json.loads(path.read_text()) == json.loads(text), f"{path.name} is stale: run `make schemas`"
    exported = {p.name for p in (PROJECT_ROOT / "schemas").glob("*.schema.json")}
    assert exported == {p.name for p in rendered()}, "a schema without a topic (remove it) or a topic without one"


def test_a_chunk_with_infinities_or_times_that_are_not_its_mjds_does_not_decode() -> None:
    import orjson

    from flashes.errors import DecodeError

    good = {
        "version": 2,
        "source_id": "gx339-4",
        "instrument": "maxi",
        "bands": ["2-20"],
        "units": "u",
        "provenance": {"url": "x", "fetched_at": "2026-01-01T00:00:00Z"},
        "first_mjd": 58000.5,
        "last_mjd": 58000.5,
        "count": 1,
        "time": [1504526400000000],
        "mjd": [58000.5],
        "flux": {"2-20": [1.0]},
        "error": {"2-20": [0.1]},
    }
    assert topics.LIGHTCURVE.decode(orjson.dumps(good)).time == [
        1504526400000000
    ]  # MJD 58000.5 = 2017-09-04T12:00Z: (58000.5 − 40587) d × 86,400 s
    for change, reason in (
        ({"flux": {"2-20": ["inf"]}}, "finite number"),
        ({"time": [1504526400000000 + 86_400_000_000]}, "is not the mjd"),
        ({"time": [-1]}, "is not the mjd"),
        ({"mjd": [58000.5], "count": 2}, "the header says count=2"),
    ):
        with pytest.raises(DecodeError, match=reason):
            topics.LIGHTCURVE.decode(orjson.dumps({**good, **change}))


def test_the_sink_stores_every_topic_it_is_said_to_store() -> None:
    from services.sink.rows import FRAMES

    assert set(FRAMES) == {t.name for t in topics.STORED}


def test_every_topic_is_versioned_and_declared_once() -> None:
    names = [t.name for t in topics.ALL]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"flashes\.[a-z.]+\.v\d+", n) for n in names)
    assert topics.SUBSCRIPTIONS.compacted


def test_compose_file_runs_every_service_on_kafka_questdb_grafana() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["questdb"]["image"].startswith("questdb/questdb")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["flashes", "run", name]
        assert (
            svc["environment"]["FLASHES_KAFKA_HOST"] == "kafka"
            and svc["environment"]["FLASHES_QUESTDB_HOST"] == "questdb"
        )
        assert svc["build"]["dockerfile"] == "Dockerfile"
    assert (PROJECT_ROOT / "Dockerfile").exists()


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker CLI with compose is not installed",
)
def test_docker_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(schemas.EXAMPLE_ALERT.parent.glob("*.json")), ids=lambda p: p.name)
def test_example_messages_validate_and_round_trip(path) -> None:
    spec = topics.BY_NAME[path.name.rsplit(".", 2)[0]]
    raw = path.read_bytes()
    message = spec.decode(raw)
    assert json.loads(spec.encode(message)) == json.loads(raw)


def test_the_alert_schema_id_carries_its_version() -> None:
    schema = json.loads((PROJECT_ROOT / "schemas" / "flashes.alerts.v3.schema.json").read_text())
    assert schema["$id"].endswith("/flashes.alerts.v3.json")
    assert schema["properties"]["version"]["const"] == 3


def test_the_contracts_import_nothing_of_the_project() -> None:
    """schemas/ is a leaf: importing it loads no module of flashes or services (a fresh interpreter)."""
    code = "import sys, schemas; print(sorted(m for m in sys.modules if m.split('.')[0] in ('flashes', 'services')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert loaded.stdout.strip() == "[]"
