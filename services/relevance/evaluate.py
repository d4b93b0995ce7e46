"""`flashes evaluate`: the real scoring code over a mirror folder, in time order, against labelled events.

For every source with files in the mirror, each series is scored point by point (no look-ahead)
by each method; an alert is a threshold crossing from below, as in the alerts service. Per event
(`source_id,kind,onset_mjd,reference`) the first alert of that source in the event window
(onset − 2 d … onset + 60 d) gives the latency; alerts outside every window of their source are
false. Methods: `model` (the relevance service's scorer), `formula` (the original FLASHES
formula) and `median_5sigma` (flux ≥ 5σ above the running median of the previous 30 points).
"""
from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashes import catalogue
from flashes.settings import Settings
from flashes.units import MAIN_BAND
from services.fetcher.parsers import ParsedLightcurve, parse
from services.relevance import formula
from services.relevance.series import maxi_colour
import schemas

WINDOW_BEFORE_D, WINDOW_AFTER_D = 2.0, 60.0
DAYS_PER_YEAR = 365.25
FILE_PATTERNS = {"maxi": re.compile(r"^(J\d{4}[+-]\d{3})_g_lc_1day_all\.dat$"),  # the standard product only
                 "swift": re.compile(r"^(.+)\.lc\.txt$")}


@dataclass(frozen=True)
class Event:
    source_id: str
    kind: str
    onset_mjd: float


def find_series(settings: Settings, mirror: Path) -> Iterator[tuple[str, str, Path]]:
    """(source_id, instrument, file) for every provider file in the mirror that the catalogue knows.

    Works for a folder per instrument (like ../shared/data/lightcurves/) and for the providers'
    own site layout, since files are found by name anywhere below `mirror/{instrument}/`.
    """
    records = catalogue.load(settings)
    by_id = {inst: {r[inst]["provider_id"]: r["_id"] for r in records if r[inst]} for inst in FILE_PATTERNS}
    for inst, pattern in FILE_PATTERNS.items():
        for path in sorted((mirror / inst).rglob("*")):
            match = pattern.match(path.name)
            if match and match.group(1) in by_id[inst]:
                yield by_id[inst][match.group(1)], inst, path


def formula_alerts(parsed: ParsedLightcurve, instrument: str, threshold: float) -> list[float]:
    state, alerts, above = formula.SeriesState(), [], False
    flux, error = parsed.bands[MAIN_BAND[instrument]]
    for i, mjd in enumerate(parsed.mjd.tolist()):
        colour = None
        if instrument == "maxi":
            colour = maxi_colour({b: schemas.Measurement(flux=f[i], error=e[i]) for b, (f, e) in parsed.bands.items()})
        relevance, _ = formula.score(state, mjd, float(flux[i]), float(error[i]), colour)
        if relevance >= threshold and not above:
            alerts.append(mjd)
        above = relevance >= threshold
    return alerts


def median_5sigma_alerts(parsed: ParsedLightcurve, instrument: str, threshold: float, history: int = 30) -> list[float]:
    flux, error = parsed.bands[MAIN_BAND[instrument]]
    alerts, above = [], False
    for i in range(history, len(flux)):
        median = float(np.median(flux[i - history:i]))
        hot = error[i] > 0 and (flux[i] - median) / error[i] >= 5.0
        if hot and not above:
            alerts.append(float(parsed.mjd[i]))
        above = hot
    return alerts


METHODS: dict[str, Callable[[ParsedLightcurve, str, float], list[float]]] = {
    "model": formula_alerts,  # the relevance service's scorer today (formula-1); issue 5 replaces it
    "formula": formula_alerts,
    "median_5sigma": median_5sigma_alerts,
}


def read_events(path: Path) -> list[Event]:
    with path.open(newline="") as fh:
        return [Event(r["source_id"], r["kind"], float(r["onset_mjd"])) for r in csv.DictReader(fh)]


def score_method(alerts: dict[str, list[float]], spans: dict[str, float], events: list[Event]) -> dict:
    """Metrics of one method from its alert times per source and the data span (days) per source."""
    rows = []
    for ev in events:
        hits = [t for t in alerts.get(ev.source_id, [])
                if ev.onset_mjd - WINDOW_BEFORE_D <= t <= ev.onset_mjd + WINDOW_AFTER_D]
        first = min(hits) if hits else None
        rows.append({"source_id": ev.source_id, "onset_mjd": ev.onset_mjd, "first_alert_mjd": first,
                     "latency_d": None if first is None else round(first - ev.onset_mjd, 3)})
    windows: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        windows.setdefault(ev.source_id, []).append((ev.onset_mjd - WINDOW_BEFORE_D, ev.onset_mjd + WINDOW_AFTER_D))
    false = sum(1 for sid, times in alerts.items() for t in times
                if not any(lo <= t <= hi for lo, hi in windows.get(sid, [])))
    years = sum(spans.values()) / DAYS_PER_YEAR
    latencies = [r["latency_d"] for r in rows if r["latency_d"] is not None]
    n = len(rows) or 1
    return {"recall_2d": sum(1 for x in latencies if x <= 2) / n, "recall_7d": sum(1 for x in latencies if x <= 7) / n,
            "median_latency_d": statistics.median(latencies) if latencies else None,
            "false_alerts_per_source_year": false / years if years else None, "events": rows}


def evaluate(settings: Settings, mirror: Path, events_csv: Path) -> dict:
    events = read_events(events_csv)
    threshold = settings.relevance_threshold
    alerts: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    spans: dict[str, float] = {}
    for source_id, instrument, path in find_series(settings, mirror):
        parsed = parse(instrument, path.name, path.read_bytes())
        if not len(parsed):
            continue
        spans[source_id] = max(spans.get(source_id, 0.0), float(parsed.mjd[-1] - parsed.mjd[0]))
        for method, run in METHODS.items():
            alerts[method].setdefault(source_id, []).extend(run(parsed, instrument, threshold))
    for per_source in alerts.values():
        for times in per_source.values():
            times.sort()
    known = [ev for ev in events if ev.source_id in spans]
    return {"threshold": threshold, "methods": {m: score_method(a, spans, known) for m, a in alerts.items()}}


def table(result: dict) -> str:
    lines = [f"threshold {result['threshold']}",
             f"{'method':<15}{'recall 2d':>10}{'recall 7d':>10}{'median lat. d':>15}{'false/src-yr':>14}"]
    for name, m in result["methods"].items():
        latency = "-" if m["median_latency_d"] is None else f"{m['median_latency_d']:.1f}"
        false = "-" if m["false_alerts_per_source_year"] is None else f"{m['false_alerts_per_source_year']:.2f}"
        lines.append(f"{name:<15}{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{latency:>15}{false:>14}")
    return "\n".join(lines)
