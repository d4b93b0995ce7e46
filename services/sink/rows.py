"""One Kafka message value -> the QuestDB rows it becomes: (table, symbols, columns, timestamp µs)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from flashes import topics
from flashes.topics import catalogue_series
from flashes.units import MCRAB_PER_UNIT

Row = tuple[str, dict[str, str], dict[str, Any], int]


def _micros(iso: str) -> int:
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def lightcurve_rows(v: dict) -> Iterator[Row]:
    ts = _micros(v["time"])
    series = catalogue_series(v["instrument"], v["source_id"])
    fetched = _micros(v["provenance"]["fetched_at"])
    for band, m in v["bands"].items():
        factor = MCRAB_PER_UNIT.get((v["instrument"], band), float("nan"))
        yield ("lightcurve",
               {"series": series, "source_id": v["source_id"], "instrument": v["instrument"], "band": band},
               {"mjd": v["mjd"], "flux": m["flux"], "error": m["error"], "flux_mcrab": m["flux"] * factor,
                "error_mcrab": m["error"] * factor, "data_flag": v["flags"].get("data_flag", 0),
                "url": v["provenance"]["url"], "fetched_at": fetched}, ts)


def derived_rows(v: dict) -> Iterator[Row]:
    yield ("derived", {"series": catalogue_series(v["kind"], v["source_id"]), "source_id": v["source_id"],
                       "kind": v["kind"]},
           {"mjd": v["mjd"], "value": v["value"], "error": v["error"]}, _micros(v["time"]))


def term_columns(terms: dict) -> dict[str, float]:
    return {f"{name}_term": value for name, value in terms.items()}


def relevance_rows(v: dict) -> Iterator[Row]:
    t = v["terms"]
    yield ("relevance", {"series": v["series"], "source_id": v["source_id"], "kind": v["kind"],
                         "model_version": v["model_version"]},
           {"mjd": v["mjd"], "value": v["value"], "error": v["error"], "relevance": v["relevance"],
            **term_columns(t)}, _micros(v["time"]))


def alert_rows(v: dict) -> Iterator[Row]:
    t = v["terms"]
    yield ("alerts", {"series": v["series"], "source_id": v["source_id"], "kind": v["kind"],
                      "model_version": v["model_version"]},
           {"alert_id": v["alert_id"], "mjd": v["mjd"], "relevance": v["relevance"], **term_columns(t),
            "reasons": ",".join(v["reasons"]), "explanation": v["explanation"]},
           _micros(v["time"]))


def deadletter_rows(v: dict) -> Iterator[Row]:
    yield ("deadletter", {"origin": v["origin"]},
           {"reason": v["reason"], "payload": v["payload"], "url": v["url"]}, _micros(v["received_at"]))


ROWS: dict[str, Callable[[dict], Iterator[Row]]] = {
    topics.LIGHTCURVE.name: lightcurve_rows,
    topics.DERIVED.name: derived_rows,
    topics.RELEVANCE.name: relevance_rows,
    topics.ALERTS.name: alert_rows,
    topics.DEADLETTER.name: deadletter_rows,
}
