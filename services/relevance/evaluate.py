"""`flashes evaluate`: the real scoring code over a mirror folder, in time order, against labelled events.

For every source with files in the mirror, each series is scored in time order (no look-ahead).
Methods:
- `model`: the relevance service's scorer (`SeriesModel.score_chunk`, services/relevance/model.py),
  over the whole file as one chunk; its alerts are the crossings the alerts service sees in one
  series (flashes/trigger.py); the service's episodes and fusion across a source's instruments
  (services/alerts/episodes.py) are not applied: each provider file is scored on its own;
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
Recall within 2 d is also given per kind of event (`event_kind`: onsets, state transitions, flares).

Cross-validation (`--cv`, `cross_validate`): leave one source out. Every setting chosen from data
is a level per method, stricter as it grows: the model's `Params.alert_sigma` (MODEL_LEVELS), the
formula threshold and the median σ level (BASELINE_LEVELS). For each source S with files, each
method's level is chosen on the other sources only (`select_level`: the least strict level whose
false-alert episodes per source-year are at most the target, else the strictest), then S is
scored at that level; the held-out results of all folds are pooled (false episodes summed over
sources, divided by the summed source-years). Every (source, level) is scored once
(`score_mirror`); the folds only re-aggregate those alert times. Nothing a series' model learns
depends on alert_sigma, only the calibration of its evidence (`model.calibrated`), so the model
scores each series once and its evidence is calibrated per level; the baselines' scores do not
depend on the level either, and only their crossings are taken per level.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import re
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashes import catalogue
from flashes.settings import Settings
from flashes.units import MAIN_BAND, mcrab_factor
from flashes import trigger
from flashes.progress import progress_bar
from flashes.parsers import ParsedLightcurve, parse
from services.relevance import formula
from services.relevance.model import PARAMS, ChunkScores, Params, SeriesModel, calibrated
from services.relevance.series import band_colour, maxi_bands

WINDOW_BEFORE_D, WINDOW_AFTER_D = 2.0, 60.0
EPISODE_GAP_D = 10.0
DAYS_PER_YEAR = 365.25
MEDIAN_HISTORY, MEDIAN_SIGMA = 30, 5.0
REGULAR_SOURCES = ("scox-1", "cirx-1")
FILE_PATTERNS = {"maxi": re.compile(r"^(J\d{4}[+-]\d{3})_g_lc_1day_all\.dat$"),  # the standard product only
                 "swift": re.compile(r"^(.+)\.lc\.txt$")}
# How strict each baseline can be made: formula threshold, median sigma.
BASELINE_LEVELS = {"formula": np.round(np.arange(0.70, 1.0001, 0.01), 2), "median_5sigma": np.round(5.0 * 1.1 ** np.arange(60), 1)}
# How strict the model can be made: the evidence (σ) at which relevance reaches the alert threshold.
MODEL_LEVELS = np.round(np.arange(4.0, 14.0001, 0.25), 2)
TARGET_FALSE_RATE = 0.5  # false-alert episodes per source-year that --cv's level selection aims at
METHODS = ("model", "formula", "median_5sigma")
EVENT_KINDS = ("onset", "state transition", "flare")


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
    bands: tuple[np.ndarray, np.ndarray] | None = None  # MAXI: each point's bands in mCrab (series.maxi_bands)


def series_arrays(parsed: ParsedLightcurve, instrument: str) -> Series:
    flux, error = parsed.bands[MAIN_BAND[instrument]]
    bands = None
    if instrument == "maxi":
        fluxes, errors = ({b: column[i] for b, column in parsed.bands.items()} for i in (0, 1))
        bands = maxi_bands(fluxes, errors)
        colour, colour_error = band_colour(bands)
    else:
        colour, colour_error = np.full(len(parsed), math.nan), np.full(len(parsed), math.nan)
    return Series(instrument, parsed.mjd, flux, error, colour, colour_error, bands)


def model_scores(series: Series, params: Params = PARAMS) -> ChunkScores:
    return SeriesModel(params=params).score_chunk(series.kind, series.mjd, series.value, series.error,
                                                  series.colour, series.colour_error, bands=series.bands)


def model_alerts(series: Series, threshold: float, params: Params = PARAMS,
                 scores: ChunkScores | None = None) -> list[float]:
    """Alert times of the model on a series, its scores calibrated at `params.alert_sigma`: from `scores` if given
    (the same series scored with any alert_sigma: the evidence does not depend on it), else scored here."""
    scores = scores or model_scores(series, params)
    models, hardnesses, relevances = calibrated(scores.evidence["model"].tolist(), scores.evidence["hardness"].tolist(),
                                                params)
    terms = {**{name: column.tolist() for name, column in scores.terms.items()}, "model": models, "hardness": hardnesses}
    alerts, previous = [], None
    for i, (mjd, relevance) in enumerate(zip(series.mjd[scores.keep].tolist(), relevances)):
        current = trigger.snapshot(relevance, {name: column[i] for name, column in terms.items()})
        if trigger.reasons(previous, current, threshold):
            alerts.append(mjd)
        previous = current
    return alerts


def flag_latency(params: Params, flux_mcrab: np.ndarray, start: int, error_mcrab: float = 5.0,
                 threshold: float = Settings.model_fields["relevance_threshold"].default) -> int | None:
    """Days from day `start` to the first relevance at or above `threshold` of a synthetic daily MAXI series
    given in mCrab (None: never): how soon the model flags a lightcurve (tests and bench/slow_rise.py)."""
    n = len(flux_mcrab)
    factor = mcrab_factor("maxi")
    scores = SeriesModel(params).score_chunk("maxi", 55000.5 + np.arange(n), flux_mcrab / factor,
                                             np.full(n, error_mcrab / factor), np.full(n, np.nan), np.full(n, np.nan))
    above = np.flatnonzero((np.arange(n) >= start) & (scores.relevance >= threshold))
    return int(above[0]) - start if len(above) else None


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


def event_kind(kind: str) -> str:
    """The group of an event kind for per-kind recall: "onset", "state transition", "flare" or "other"."""
    kind = kind.strip().lower()
    if kind in ("outburst onset", "giant outburst"):
        return "onset"
    if kind.startswith("state transition"):
        return "state transition"
    if kind == "flare":
        return "flare"
    return "other"


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


def recall_by_kind(rows: list[dict], within_d: float = 2.0) -> dict[str, float | None]:
    """Recall within `within_d` days per `event_kind` group (None for a group without events)."""
    groups: dict[str, list[dict]] = {kind: [] for kind in EVENT_KINDS}
    for row in rows:
        groups.setdefault(event_kind(row["kind"]), []).append(row)
    return {kind: sum(1 for r in group if r["latency_d"] is not None and r["latency_d"] <= within_d) / len(group)
            if group else None for kind, group in groups.items()}


def score_method(alerts: dict[str, list[float]], spans: dict[str, float], events: list[Event]) -> tuple[dict, dict]:
    """The metrics of one method (the documented JSON) and its details."""
    rows = []
    for ev in events:
        hits = [t for t in alerts.get(ev.source_id, [])
                if ev.onset_mjd - WINDOW_BEFORE_D <= t <= ev.onset_mjd + WINDOW_AFTER_D]
        first = min(hits) if hits else None
        rows.append({"source_id": ev.source_id, "kind": ev.kind, "onset_mjd": ev.onset_mjd, "first_alert_mjd": first,
                     "latency_d": None if first is None else round(first - ev.onset_mjd, 3)})
    false = false_episodes(alerts, events)
    episodes = sum(e for e, _ in false.values())
    years = sum(spans.values()) / DAYS_PER_YEAR
    latencies = [r["latency_d"] for r in rows if r["latency_d"] is not None]
    n = len(rows) or 1
    metrics = {"recall_2d": sum(1 for x in latencies if x <= 2) / n, "recall_7d": sum(1 for x in latencies if x <= 7) / n,
               "median_latency_d": statistics.median(latencies) if latencies else None,
               "false_alerts_per_source_year": episodes / years if years else None,
               "recall_2d_by_kind": recall_by_kind(rows), "events": rows}
    details = {"false_alert_episodes": episodes, "source_years": years,
               "false_alerts_raw_per_source_year": sum(a for _, a in false.values()) / years if years else None,
               "false_alert_episodes_per_year_by_source": {
                   sid: round(false.get(sid, (0, 0))[0] / (spans[sid] / DAYS_PER_YEAR), 3) for sid in sorted(spans)}}
    return metrics, details


# Levels: every method's setting chosen from data is one number, stricter as it grows.
AlertsByLevel = Mapping[float, Mapping[str, list[float]]]  # level -> source -> alert MJDs


def false_rate(alerts: Mapping[str, list[float]], spans: Mapping[str, float], events: list[Event]) -> float | None:
    """False-alert episodes per source-year over the sources in `spans` only (others' alerts and events ignored)."""
    years = sum(spans.values()) / DAYS_PER_YEAR
    if not years:
        return None
    false = false_episodes({sid: list(alerts.get(sid, [])) for sid in spans}, [ev for ev in events if ev.source_id in spans])
    return sum(e for e, _ in false.values()) / years


def least_strict_level(alerts_by_level: AlertsByLevel, spans: Mapping[str, float], events: list[Event],
                       rate: float | None) -> float | None:
    """The least strict level whose false-alert rate over the sources in `spans` is at most `rate`; None if none is."""
    if rate is None:
        return None
    for level in sorted(alerts_by_level):
        found = false_rate(alerts_by_level[level], spans, events)
        if found is not None and found <= rate:
            return level
    return None


def select_level(alerts_by_level: AlertsByLevel, spans: Mapping[str, float], events: list[Event],
                 target: float = TARGET_FALSE_RATE) -> float:
    """The selection rule of every method, judged on the sources in `spans` only: the least strict level
    whose false-alert episodes per source-year are at most `target`; if none reaches it, the strictest."""
    level = least_strict_level(alerts_by_level, spans, events, target)
    return max(alerts_by_level) if level is None else level


def _at_false_rate(alerts_by_level: AlertsByLevel, spans: dict[str, float], events: list[Event], rate: float | None) -> dict:
    level = least_strict_level(alerts_by_level, spans, events, rate)
    if level is None:
        return {"level": None, "recall_2d": 0.0, "recall_7d": 0.0, "false_alerts_per_source_year": None}
    metrics, _ = score_method(dict(alerts_by_level[level]), spans, events)
    return {"level": float(level), "recall_2d": metrics["recall_2d"], "recall_7d": metrics["recall_7d"],
            "false_alerts_per_source_year": metrics["false_alerts_per_source_year"]}


def default_levels(threshold: float) -> dict[str, float]:
    """The levels in service, which give the in-sample figures."""
    return {"model": float(PARAMS.alert_sigma), "formula": float(threshold), "median_5sigma": MEDIAN_SIGMA}


def level_grids(threshold: float) -> dict[str, list[float]]:
    """Each method's levels, least strict first, the one in service included."""
    grids = {"model": MODEL_LEVELS, **BASELINE_LEVELS}
    defaults = default_levels(threshold)
    return {name: sorted({round(float(x), 6) for x in grids[name]} | {defaults[name]}) for name in METHODS}


@dataclass(frozen=True)
class Scored:
    """The alert times of every method at every level scored, per source: what in-sample figures and folds aggregate."""

    threshold: float
    spans: dict[str, float]  # source -> days covered by its longest file
    events: list[Event]  # of the sources in `spans`, in the order of the events file
    defaults: dict[str, float]  # method -> level in service
    alerts: dict[str, dict[float, dict[str, list[float]]]]  # method -> level -> source -> alert MJDs


def score_mirror(settings: Settings, mirror: Path, events_csv: Path, model_grid: bool = False,
                 progress: bool = False) -> Scored:
    """Score every series once and take its alerts per level: the baselines at every level of their grids
    (crossings of one score series), the model at every alert_sigma of its grid (`model_grid`; its evidence
    calibrated per value) or at the one in service only."""
    threshold = settings.relevance_threshold
    defaults = default_levels(threshold)
    levels = level_grids(threshold)
    if not model_grid:
        levels["model"] = [defaults["model"]]
    series: list[tuple[str, Series]] = []
    spans: dict[str, float] = {}
    for source_id, instrument, path in find_series(settings, mirror):
        parsed = parse(instrument, path.name, path.read_bytes())
        if not len(parsed):
            continue
        spans[source_id] = max(spans.get(source_id, 0.0), float(parsed.mjd[-1] - parsed.mjd[0]))
        series.append((source_id, series_arrays(parsed, instrument)))
    alerts = {name: {level: {sid: [] for sid in spans} for level in levels[name]} for name in METHODS}
    for sid, ser in series:
        for name, score in (("formula", formula_scores(ser)), ("median_5sigma", median_sigma_scores(ser))):
            for level in levels[name]:
                alerts[name][level][sid].extend(crossings(ser.mjd, score, level))
    with progress_bar(len(series), "model", progress) as advance:
        for sid, ser in series:
            scores = model_scores(ser)  # once: the levels only calibrate its evidence
            for level in levels["model"]:
                alerts["model"][level][sid].extend(
                    model_alerts(ser, threshold, dataclasses.replace(PARAMS, alert_sigma=level), scores))
            advance()
    events = [ev for ev in read_events(events_csv) if ev.source_id in spans]
    return Scored(threshold, spans, events, defaults, alerts)


def in_sample(scored: Scored) -> dict:
    """Every method at its level in service, on every source (the figures without --cv)."""
    methods, details = {}, {}
    for name in METHODS:
        methods[name], details[name] = score_method(scored.alerts[name][scored.defaults[name]], scored.spans, scored.events)
    for name in ("formula", "median_5sigma"):
        details[name]["at_model_false_alert_rate"] = _at_false_rate(
            scored.alerts[name], scored.spans, scored.events, methods["model"]["false_alerts_per_source_year"])
    return {"threshold": scored.threshold, "methods": methods,
            "details": {"episode_gap_d": EPISODE_GAP_D, "source_years": round(sum(scored.spans.values()) / DAYS_PER_YEAR, 2),
                        "levels": scored.defaults, "methods": details}}


def cross_validate(scored: Scored, target: float = TARGET_FALSE_RATE) -> dict:
    """Leave one source out: per source, each method's level is chosen by `select_level` on the other sources,
    and the source is scored at it; the held-out alerts of all folds are then scored together."""
    if len(scored.spans) < 2:
        raise ValueError(f"cross-validation needs files of at least 2 sources, found {len(scored.spans)}")
    held: dict[str, dict[str, list[float]]] = {name: {} for name in scored.alerts}
    folds = []
    for sid in sorted(scored.spans):
        train = {s: days for s, days in scored.spans.items() if s != sid}
        own = [ev for ev in scored.events if ev.source_id == sid]
        fold = {"held_out": sid, "source_years": scored.spans[sid] / DAYS_PER_YEAR, "events": len(own), "methods": {}}
        for name, by_level in scored.alerts.items():
            level = select_level(by_level, train, scored.events, target)
            held[name][sid] = list(by_level[level].get(sid, []))
            metrics, details = score_method({sid: held[name][sid]}, {sid: scored.spans[sid]}, own)
            fold["methods"][name] = {
                "level": level, "train_false_alerts_per_source_year": false_rate(by_level[level], train, scored.events),
                "false_alert_episodes": details["false_alert_episodes"],
                "found_2d": sum(1 for r in metrics["events"] if r["latency_d"] is not None and r["latency_d"] <= 2)}
        folds.append(fold)
    methods, details = {}, {}
    for name in scored.alerts:
        methods[name], details[name] = score_method(held[name], scored.spans, scored.events)
    return {"target_false_rate": target, "grids": {name: sorted(by_level) for name, by_level in scored.alerts.items()},
            "selected_on_all_sources": {name: select_level(by_level, scored.spans, scored.events, target)
                                        for name, by_level in scored.alerts.items()},
            "methods": methods, "details": details, "folds": folds}


def evaluate(settings: Settings, mirror: Path, events_csv: Path, cv: bool = False,
             target_false_rate: float = TARGET_FALSE_RATE, progress: bool = False) -> dict:
    """In-sample figures; with `cv`, also the leave-one-source-out ones under "cv"."""
    scored = score_mirror(settings, mirror, events_csv, model_grid=cv, progress=progress)
    result = in_sample(scored)
    if cv:
        result["cv"] = cross_validate(scored, target_false_rate)
    return result


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _figures(m: dict, by_source: dict[str, float]) -> str:
    kinds = m.get("recall_2d_by_kind", {})
    return (f"{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{_fmt(m['median_latency_d'], '.1f'):>15}"
            f"{_fmt(m['false_alerts_per_source_year'], '.2f'):>14}"
            + "".join(f"{_fmt(by_source.get(sid), '.2f'):>12}" for sid in REGULAR_SOURCES)
            + "".join(f"{_fmt(kinds.get(kind), '.2f'):>10}" for kind in EVENT_KINDS))


def table(result: dict) -> str:
    details = result["details"]["methods"]
    cv = result.get("cv")
    levels = result["details"].get("levels", {})
    lines = [f"threshold {result['threshold']}; false alerts are episodes "
             f"(alerts < {result['details']['episode_gap_d']:g} d apart count once) per source-year; "
             f"{result['details']['source_years']:g} source-years"]
    if cv:
        lines.append(f"in-sample: levels in service on every source; cv: leave one source out, each level chosen on "
                     f"the other sources (least strict with ≤ {cv['target_false_rate']:g} false episodes per "
                     f"source-year there, else the strictest)")
    lines.append(f"{'method':<15}{'figures':<11}{'level':>11}{'recall 2d':>10}{'recall 7d':>10}{'median lat. d':>15}"
                 f"{'false/src-yr':>14}" + "".join(f"{sid + ' /yr':>12}" for sid in REGULAR_SOURCES)
                 + "".join(f"{kind.split()[0] + ' 2d':>10}" for kind in EVENT_KINDS))
    for name, m in result["methods"].items():
        by_source = details[name]["false_alert_episodes_per_year_by_source"]
        lines.append(f"{name:<15}{'in-sample':<11}{_fmt(levels.get(name), 'g'):>11}{_figures(m, by_source)}")
        if cv:
            chosen = [fold["methods"][name]["level"] for fold in cv["folds"]]
            span = f"{min(chosen):g}" if min(chosen) == max(chosen) else f"{min(chosen):g}-{max(chosen):g}"
            lines.append(f"{'':<15}{'cv':<11}{span:>11}"
                         f"{_figures(cv['methods'][name], cv['details'][name]['false_alert_episodes_per_year_by_source'])}")
    lines.append("baselines (in-sample) made as strict as needed to raise no more false alerts than the model in service:")
    for name in ("formula", "median_5sigma"):
        m = details[name]["at_model_false_alert_rate"]
        level = "no level reaches it" if m["level"] is None else f"level {m['level']:g}"
        lines.append(f"{name:<15}{'':<22}{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{'':>15}"
                     f"{_fmt(m['false_alerts_per_source_year'], '.2f'):>14}   ({level})")
    if cv:
        lines.append("cv: level chosen per fold on the other sources (model alert_sigma / formula threshold / median σ); "
                     "held-out source's false episodes and events found within 2 d")
        for fold in cv["folds"]:
            per = [fold["methods"][name] for name in METHODS]
            lines.append(f"  {fold['held_out']:<20}{' / '.join(format(p['level'], 'g') for p in per):<22}"
                         f"false {' / '.join(str(p['false_alert_episodes']) for p in per):<14}"
                         f"found {' / '.join(str(p['found_2d']) for p in per)} of {fold['events']}")
        chosen = cv["selected_on_all_sources"]
        lines.append(f"  {'(all sources)':<20}{' / '.join(format(chosen[name], 'g') for name in METHODS)}")
    lines.append("per event: latency in days (model / formula / median_5sigma)" + (", in-sample | cv" if cv else ""))
    columns = [m["events"] for m in result["methods"].values()]
    if cv:
        columns += [cv["methods"][name]["events"] for name in result["methods"]]
    for rows in zip(*columns):
        lat = [_fmt(r["latency_d"], ".1f") for r in rows]
        text = f"{' / '.join(lat[:3]):<22}|  {' / '.join(lat[3:])}" if cv else " / ".join(lat)
        lines.append(f"  {rows[0]['source_id']:<20}{rows[0]['onset_mjd']:>10.1f}  {rows[0]['kind'][:30]:<31}{text}")
    return "\n".join(lines)
