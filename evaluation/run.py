"""`flashes evaluate`: the real scoring code over a mirror folder, in time order, against labelled events.

For every source with files in the mirror, each series is scored in time order by the three
methods (evaluation/methods.py) and judged by evaluation/metrics.py. `details` adds, per method,
the raw false alerts, the false-alert episodes per year of every source (Sco X-1 and Cir X-1
behave regularly, so every alert there is false), the false-alert episodes by what the files
show at their first alert (evaluation/causes.py), and for each baseline the recall it reaches
when made strict enough to raise no more false alerts than the model.

Cross-validation (`--cv`, `cross_validate`): leave one source out. For each source S with files,
each method's level is chosen on the other sources only (`metrics.select_level`), then S is
scored at that level; the held-out results of all folds are pooled (false episodes summed over
sources, divided by the summed source-years). Every (source, level) is scored once
(`score_mirror`); the folds only re-aggregate those alert times. The model scores each series
once and its evidence is calibrated per level; the baselines' scores do not depend on the level
either, and only their crossings are taken per level.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evaluation.causes import Explainer, FileData, field_neighbours
from evaluation.methods import (
    METHODS,
    crossings,
    default_levels,
    file_series,
    formula_scores,
    level_grids,
    median_sigma_scores,
    model_alerts,
    model_scores,
)
from evaluation.metrics import (
    DAYS_PER_YEAR,
    EPISODE_GAP_D,
    TARGET_FALSE_RATE,
    Event,
    Explain,
    at_false_rate,
    false_rate,
    read_events,
    score_method,
    select_level,
)
from flashes import catalogue
from flashes.parsers import parse
from flashes.progress import progress_bar
from flashes.settings import Settings
from services.relevance.model import PARAMS
from services.relevance.series import SeriesColumns

FILE_PATTERNS = {
    "maxi": re.compile(r"^(J\d{4}[+-]\d{3})_g_lc_1day_all\.dat$"),  # the standard product only
    "swift": re.compile(r"^(.+)\.lc\.txt$"),
}


def find_series(settings: Settings, mirror: Path) -> Iterator[tuple[str, str, Path]]:
    """(source_id, instrument, file) for every provider file in the mirror that the catalogue knows.

    Works for a folder per instrument (like ../shared/data/lightcurves/) and for the providers'
    own site layout, since files are found by name anywhere below `mirror/{instrument}/`.
    """
    records = catalogue.load(settings)
    by_id = {inst: {e.provider_id: r.id for r in records if (e := r.entry(inst))} for inst in FILE_PATTERNS}
    for inst, pattern in FILE_PATTERNS.items():
        for path in sorted((mirror / inst).rglob("*")):
            match = pattern.match(path.name)
            if match and match.group(1) in by_id[inst]:
                yield by_id[inst][match.group(1)], inst, path


@dataclass(frozen=True)
class Scored:
    """The alert times of every method at every level scored, per source: what in-sample figures and folds aggregate."""

    threshold: float
    spans: dict[str, float]  # source -> days covered by its longest file
    events: list[Event]  # of the sources in `spans`, in the order of the events file
    defaults: dict[str, float]  # method -> level in service
    alerts: dict[str, dict[float, dict[str, list[float]]]]  # method -> level -> source -> alert MJDs
    explain: Explain | None = None  # what the data show at a false alert (evaluation/causes.py)


def score_mirror(
    settings: Settings, mirror: Path, events_csv: Path, model_grid: bool = False, progress: bool = False
) -> Scored:
    """Score every series once and take its alerts per level: the baselines at every level of their grids
    (crossings of one score series), the model at every alert_sigma of its grid (`model_grid`; its evidence
    calibrated per value) or at the one in service only."""
    threshold = settings.relevance_threshold
    defaults = default_levels(threshold)
    levels = level_grids(threshold)
    if not model_grid:
        levels["model"] = [defaults["model"]]
    series: list[tuple[str, SeriesColumns]] = []
    spans: dict[str, float] = {}
    files: dict[str, list[FileData]] = {}
    for source_id, instrument, path in find_series(settings, mirror):
        parsed = parse(instrument, path.name, path.read_bytes())
        if not len(parsed):
            continue
        spans[source_id] = max(spans.get(source_id, 0.0), float(parsed.mjd[-1] - parsed.mjd[0]))
        series.append((source_id, file_series(parsed, instrument, source_id)))
        files.setdefault(source_id, []).append(FileData.of(parsed, instrument))
    alerts: dict[str, dict[float, dict[str, list[float]]]] = {
        name: {level: {sid: [] for sid in spans} for level in levels[name]} for name in METHODS
    }
    for sid, ser in series:
        for name, score in (("formula", formula_scores(ser)), ("median_5sigma", median_sigma_scores(ser))):
            for level in levels[name]:
                alerts[name][level][sid].extend(crossings(ser.mjd, score, level))
    with progress_bar(len(series), "model", progress) as advance:
        for sid, ser in series:
            scores = model_scores(ser)  # once: the levels only calibrate its evidence
            for level in levels["model"]:
                alerts["model"][level][sid].extend(
                    model_alerts(ser, threshold, dataclasses.replace(PARAMS, alert_sigma=level), scores)
                )
            advance()
    events = [ev for ev in read_events(events_csv) if ev.source_id in spans]
    explain = Explainer(files, field_neighbours(settings, list(spans)))
    return Scored(threshold, spans, events, defaults, alerts, explain)


def in_sample(scored: Scored) -> dict:
    """Every method at its level in service, on every source (the figures without --cv)."""
    methods, details = {}, {}
    for name in METHODS:
        methods[name], details[name] = score_method(
            scored.alerts[name][scored.defaults[name]], scored.spans, scored.events, scored.explain
        )
    for name in ("formula", "median_5sigma"):
        details[name]["at_model_false_alert_rate"] = at_false_rate(
            scored.alerts[name], scored.spans, scored.events, methods["model"]["false_alerts_per_source_year"]
        )
    return {
        "threshold": scored.threshold,
        "methods": methods,
        "details": {
            "episode_gap_d": EPISODE_GAP_D,
            "source_years": round(sum(scored.spans.values()) / DAYS_PER_YEAR, 2),
            "levels": scored.defaults,
            "methods": details,
        },
    }


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
        by_method: dict[str, dict[str, float | None]] = {}
        fold = {
            "held_out": sid,
            "source_years": scored.spans[sid] / DAYS_PER_YEAR,
            "events": len(own),
            "methods": by_method,
        }
        for name, by_level in scored.alerts.items():
            level = select_level(by_level, train, scored.events, target)
            held[name][sid] = list(by_level[level].get(sid, []))
            metrics, details = score_method({sid: held[name][sid]}, {sid: scored.spans[sid]}, own)
            by_method[name] = {
                "level": level,
                "train_false_alerts_per_source_year": false_rate(by_level[level], train, scored.events),
                "false_alert_episodes": details["false_alert_episodes"],
                "found_2d": sum(1 for r in metrics["events"] if r["latency_d"] is not None and r["latency_d"] <= 2),
            }
        folds.append(fold)
    methods, details = {}, {}
    for name in scored.alerts:
        methods[name], details[name] = score_method(held[name], scored.spans, scored.events, scored.explain)
    return {
        "target_false_rate": target,
        "grids": {name: sorted(by_level) for name, by_level in scored.alerts.items()},
        "selected_on_all_sources": {
            name: select_level(by_level, scored.spans, scored.events, target)
            for name, by_level in scored.alerts.items()
        },
        "methods": methods,
        "details": details,
        "folds": folds,
    }


def evaluate(
    settings: Settings,
    mirror: Path,
    events_csv: Path,
    cv: bool = False,
    target_false_rate: float = TARGET_FALSE_RATE,
    progress: bool = False,
) -> dict:
    """In-sample figures; with `cv`, also the leave-one-source-out ones under "cv"."""
    scored = score_mirror(settings, mirror, events_csv, model_grid=cv, progress=progress)
    result = in_sample(scored)
    if cv:
        result["cv"] = cross_validate(scored, target_false_rate)
    return result
