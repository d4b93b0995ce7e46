"""`flashes evaluate`: the real scoring code over a mirror folder, in time order, against labelled events.

For every source with files in the mirror, each series is scored in time order (no look-ahead).
Methods:
- `model`: the relevance service's scorer (`SeriesModel.score_chunk`, services/relevance/model.py),
  over the whole file as one chunk; its alerts are raised exactly as the alerts service raises
  them (flashes/trigger.py);
- `formula`: the original FLASHES formula, an alert when it crosses the threshold from below;
- `median_5sigma`: an alert when the flux crosses 5σ above the median of the previous 30 points,
  σ combining the point's error and the scatter (MAD) of those points.

Per event (`source_id,kind,onset_mjd,reference`) the first alert of that source in the event
window (onset − 2 d … onset + 60 d) gives the latency. Alerts outside every window of their
source are false; false alerts of a source less than `EPISODE_GAP_D` days after its previous
false alert belong to the same episode, and `false_alerts_per_source_year` counts episodes
(one unlisted outburst is one false alarm for an astronomer, however many terms fire in it).
`details` adds, per method, the raw false alerts, the false-alert episodes per year of every
source (Sco X-1 and Cir X-1 behave regularly, so every alert there is false), and for each
baseline the recall it reaches when made strict enough to raise no more false alerts than the model.
"""
from __future__ import annotations

import csv
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashes import catalogue
from flashes.settings import Settings
from flashes.units import MAIN_BAND
from flashes import trigger
from flashes.parsers import ParsedLightcurve, parse
from services.relevance import formula
from services.relevance.model import SeriesModel
from services.relevance.series import maxi_colour

WINDOW_BEFORE_D, WINDOW_AFTER_D = 2.0, 60.0
EPISODE_GAP_D = 10.0
DAYS_PER_YEAR = 365.25
MEDIAN_HISTORY, MEDIAN_SIGMA = 30, 5.0
REGULAR_SOURCES = ("scox-1", "cirx-1")
FILE_PATTERNS = {"maxi": re.compile(r"^(J\d{4}[+-]\d{3})_g_lc_1day_all\.dat$"),  # the standard product only
                 "swift": re.compile(r"^(.+)\.lc\.txt$")}
# How strict each baseline can be made: formula threshold, median sigma.
BASELINE_LEVELS = {"formula": np.round(np.arange(0.70, 1.0001, 0.01), 2), "median_5sigma": np.round(5.0 * 1.1 ** np.arange(60), 1)}


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


@dataclass(frozen=True)
class Series:
    """The points of one provider file as the relevance service sees them, in time order."""

    kind: str
    mjd: np.ndarray
    value: np.ndarray
    error: np.ndarray
    colour: np.ndarray  # the hardness term's ratio, NaN where a point has none
    colour_error: np.ndarray


def series_arrays(parsed: ParsedLightcurve, instrument: str) -> Series:
    flux, error = parsed.bands[MAIN_BAND[instrument]]
    if instrument == "maxi":
        colour, colour_error = maxi_colour({b: f for b, (f, _) in parsed.bands.items()},
                                           {b: e for b, (_, e) in parsed.bands.items()})
    else:
        colour, colour_error = np.full(len(parsed), math.nan), np.full(len(parsed), math.nan)
    return Series(instrument, parsed.mjd, flux, error, colour, colour_error)


def model_alerts(series: Series, threshold: float) -> list[float]:
    scores = SeriesModel().score_chunk(series.kind, series.mjd, series.value, series.error,
                                       series.colour, series.colour_error)
    terms = {name: column.tolist() for name, column in scores.terms.items()}
    alerts, previous = [], None
    for i, (mjd, relevance) in enumerate(zip(series.mjd[scores.keep].tolist(), scores.relevance.tolist())):
        current = trigger.snapshot(relevance, {name: column[i] for name, column in terms.items()})
        if trigger.reasons(previous, current, threshold):
            alerts.append(mjd)
        previous = current
    return alerts


def formula_scores(series: Series) -> np.ndarray:
    return formula.scores(series.mjd, series.value, series.error, series.colour, series.colour_error)


def median_sigma_scores(series: Series) -> np.ndarray:
    """(flux − median of the previous MEDIAN_HISTORY points) / σ, σ² = error² + (1.4826·MAD of those points)².

    The scatter term makes it a fair baseline for bright variable sources, whose error bars are
    far smaller than their day-to-day changes. −inf before MEDIAN_HISTORY points or without σ.
    """
    flux, error = series.value, series.error
    out = np.full(len(flux), -np.inf)
    if len(flux) > MEDIAN_HISTORY:
        windows = np.lib.stride_tricks.sliding_window_view(flux[:-1], MEDIAN_HISTORY)
        median = np.median(windows, axis=1)
        mad = 1.4826 * np.median(np.abs(windows - median[:, None]), axis=1)
        sigma = np.sqrt(error[MEDIAN_HISTORY:] ** 2 + mad ** 2)
        good = np.isfinite(sigma) & (sigma > 0)
        out[MEDIAN_HISTORY:][good] = (flux[MEDIAN_HISTORY:][good] - median[good]) / sigma[good]
    return out


def crossings(mjd: np.ndarray, score: np.ndarray, level: float) -> list[float]:
    """Times where score reaches level after being below it (the first point counts if it does)."""
    above = score >= level
    rising = above & ~np.concatenate(([False], above[:-1]))
    return mjd[rising].tolist()


def read_events(path: Path) -> list[Event]:
    with path.open(newline="") as fh:
        return [Event(r["source_id"], r["kind"], float(r["onset_mjd"])) for r in csv.DictReader(fh)]


def false_episodes(alerts: dict[str, list[float]], events: list[Event]) -> dict[str, tuple[int, int]]:
    """source -> (false-alert episodes, false alerts)."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        windows.setdefault(ev.source_id, []).append((ev.onset_mjd - WINDOW_BEFORE_D, ev.onset_mjd + WINDOW_AFTER_D))
    out = {}
    for sid, times in alerts.items():
        false = [t for t in sorted(times) if not any(lo <= t <= hi for lo, hi in windows.get(sid, []))]
        starts = sum(1 for i, t in enumerate(false) if i == 0 or t - false[i - 1] >= EPISODE_GAP_D)
        out[sid] = (starts, len(false))
    return out


def score_method(alerts: dict[str, list[float]], spans: dict[str, float], events: list[Event]) -> tuple[dict, dict]:
    """The metrics of one method (the documented JSON) and its details."""
    rows = []
    for ev in events:
        hits = [t for t in alerts.get(ev.source_id, [])
                if ev.onset_mjd - WINDOW_BEFORE_D <= t <= ev.onset_mjd + WINDOW_AFTER_D]
        first = min(hits) if hits else None
        rows.append({"source_id": ev.source_id, "onset_mjd": ev.onset_mjd, "first_alert_mjd": first,
                     "latency_d": None if first is None else round(first - ev.onset_mjd, 3)})
    false = false_episodes(alerts, events)
    years = sum(spans.values()) / DAYS_PER_YEAR
    latencies = [r["latency_d"] for r in rows if r["latency_d"] is not None]
    n = len(rows) or 1
    metrics = {"recall_2d": sum(1 for x in latencies if x <= 2) / n, "recall_7d": sum(1 for x in latencies if x <= 7) / n,
               "median_latency_d": statistics.median(latencies) if latencies else None,
               "false_alerts_per_source_year": sum(e for e, _ in false.values()) / years if years else None,
               "events": rows}
    details = {"false_alerts_raw_per_source_year": sum(a for _, a in false.values()) / years if years else None,
               "false_alert_episodes_per_year_by_source": {
                   sid: round(false.get(sid, (0, 0))[0] / (spans[sid] / DAYS_PER_YEAR), 3) for sid in sorted(spans)}}
    return metrics, details


def matched_baseline(scores: dict[str, list[tuple[np.ndarray, np.ndarray]]], levels: np.ndarray, spans: dict[str, float],
                     events: list[Event], false_rate: float) -> dict:
    """The least strict level of a baseline whose false-alert rate is at most `false_rate`, and its recall."""
    for level in levels:
        alerts = {sid: [t for mjd, s in per for t in crossings(mjd, s, level)] for sid, per in scores.items()}
        metrics, _ = score_method(alerts, spans, events)
        if metrics["false_alerts_per_source_year"] <= false_rate:
            return {"level": float(level), "recall_2d": metrics["recall_2d"], "recall_7d": metrics["recall_7d"],
                    "false_alerts_per_source_year": metrics["false_alerts_per_source_year"]}
    return {"level": None, "recall_2d": 0.0, "recall_7d": 0.0, "false_alerts_per_source_year": None}


def evaluate(settings: Settings, mirror: Path, events_csv: Path) -> dict:
    threshold = settings.relevance_threshold
    model: dict[str, list[float]] = {}
    scores: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {"formula": {}, "median_5sigma": {}}
    spans: dict[str, float] = {}
    for source_id, instrument, path in find_series(settings, mirror):
        parsed = parse(instrument, path.name, path.read_bytes())
        if not len(parsed):
            continue
        spans[source_id] = max(spans.get(source_id, 0.0), float(parsed.mjd[-1] - parsed.mjd[0]))
        series = series_arrays(parsed, instrument)
        model.setdefault(source_id, []).extend(model_alerts(series, threshold))
        scores["formula"].setdefault(source_id, []).append((parsed.mjd, formula_scores(series)))
        scores["median_5sigma"].setdefault(source_id, []).append((parsed.mjd, median_sigma_scores(series)))
    events = [ev for ev in read_events(events_csv) if ev.source_id in spans]
    default_level = {"formula": threshold, "median_5sigma": MEDIAN_SIGMA}
    alerts = {"model": model, **{name: {sid: [t for mjd, s in per for t in crossings(mjd, s, default_level[name])]
                                        for sid, per in by_source.items()}
                                 for name, by_source in scores.items()}}
    methods, details = {}, {}
    for name, per_source in alerts.items():
        methods[name], details[name] = score_method(per_source, spans, events)
    for name, by_source in scores.items():
        details[name]["at_model_false_alert_rate"] = matched_baseline(
            by_source, BASELINE_LEVELS[name], spans, events, methods["model"]["false_alerts_per_source_year"])
    return {"threshold": threshold, "methods": methods,
            "details": {"episode_gap_d": EPISODE_GAP_D, "source_years": round(sum(spans.values()) / DAYS_PER_YEAR, 2),
                        "methods": details}}


def table(result: dict) -> str:
    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    details = result["details"]["methods"]
    lines = [f"threshold {result['threshold']}; false alerts are episodes "
             f"(alerts < {result['details']['episode_gap_d']:g} d apart count once) per source-year",
             f"{'method':<15}{'recall 2d':>10}{'recall 7d':>10}{'median lat. d':>15}{'false/src-yr':>14}"
             + "".join(f"{sid + ' /yr':>14}" for sid in REGULAR_SOURCES)]
    for name, m in result["methods"].items():
        by_source = details[name]["false_alert_episodes_per_year_by_source"]
        lines.append(f"{name:<15}{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{fmt(m['median_latency_d'], '.1f'):>15}"
                     f"{fmt(m['false_alerts_per_source_year'], '.2f'):>14}"
                     + "".join(f"{fmt(by_source.get(sid), '.2f'):>14}" for sid in REGULAR_SOURCES))
    lines.append("baselines made as strict as needed to raise no more false alerts than the model:")
    for name in ("formula", "median_5sigma"):
        m = details[name]["at_model_false_alert_rate"]
        level = "no level reaches it" if m["level"] is None else f"level {m['level']:g}"
        lines.append(f"{name:<15}{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{'':>15}"
                     f"{fmt(m['false_alerts_per_source_year'], '.2f'):>14}   ({level})")
    lines.append("per event: latency in days (model / formula / median_5sigma)")
    for rows in zip(*(m["events"] for m in result["methods"].values())):
        lat = " / ".join(fmt(r["latency_d"], ".1f") for r in rows)
        lines.append(f"  {rows[0]['source_id']:<20}{rows[0]['onset_mjd']:>10.1f}   {lat}")
    return "\n".join(lines)
