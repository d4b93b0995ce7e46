"""How alerts are judged against labelled events: latency, recall, false-alert episodes, level selection.

Per event (`source_id,kind,onset_mjd,reference`) the first alert of that source in the event
window (onset − 2 d … onset + 60 d) gives the latency. Alerts outside every window of their
source are false; false alerts of a source less than `EPISODE_GAP_D` days after its previous
false alert belong to the same episode, and `false_alerts_per_source_year` counts episodes
(one unlisted outburst is one false alarm for an astronomer, however many terms fire in it).
Recall within 2 d is also given per kind of event (`event_kind`: onsets, state transitions, flares).

With an `Explain`, the false-alert episodes are also counted by what the data show at their first
alert (evaluation/causes.py): the source's own brightening, a field neighbour's, a colour change, or none.

A method's level (methods.py) is selected by `select_level`: the least strict level whose
false-alert episodes per source-year are at most the target, else the strictest.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

WINDOW_BEFORE_D, WINDOW_AFTER_D = 2.0, 60.0
EPISODE_GAP_D = 10.0
DAYS_PER_YEAR = 365.25
TARGET_FALSE_RATE = 0.5  # false-alert episodes per source-year that --cv's level selection aims at
EVENT_KINDS = ("onset", "state transition", "flare")
AlertsByLevel = Mapping[float, Mapping[str, list[float]]]  # level -> source -> alert MJDs
# What the data show at a false-alert episode's first alert (evaluation/causes.py judges it).
CAUSES = ("brightening", "neighbour", "colour", "unexplained")
Explain = Callable[[str, float], str]  # (source, MJD of a false episode's first alert) -> one of CAUSES


class EventRow(TypedDict):
    """How one labelled event was found: a row of the metrics' `events`."""

    source_id: str
    kind: str
    onset_mjd: float
    first_alert_mjd: float | None
    latency_d: float | None


@dataclass(frozen=True)
class Event:
    source_id: str
    kind: str
    onset_mjd: float


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


def false_starts(alerts: Mapping[str, list[float]], events: list[Event]) -> dict[str, tuple[list[float], int]]:
    """source -> (the first alert of each false-alert episode, the number of false alerts)."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        windows.setdefault(ev.source_id, []).append((ev.onset_mjd - WINDOW_BEFORE_D, ev.onset_mjd + WINDOW_AFTER_D))
    out = {}
    for sid, times in alerts.items():
        false = [t for t in sorted(times) if not any(lo <= t <= hi for lo, hi in windows.get(sid, []))]
        out[sid] = ([t for i, t in enumerate(false) if i == 0 or t - false[i - 1] >= EPISODE_GAP_D], len(false))
    return out


def false_episodes(alerts: Mapping[str, list[float]], events: list[Event]) -> dict[str, tuple[int, int]]:
    """source -> (false-alert episodes, false alerts)."""
    return {sid: (len(starts), count) for sid, (starts, count) in false_starts(alerts, events).items()}


def recall_by_kind(rows: list[EventRow], within_d: float = 2.0) -> dict[str, float | None]:
    """Recall within `within_d` days per `event_kind` group (None for a group without events)."""
    groups: dict[str, list[EventRow]] = {kind: [] for kind in EVENT_KINDS}
    for row in rows:
        groups.setdefault(event_kind(row["kind"]), []).append(row)
    return {
        kind: sum(1 for r in group if r["latency_d"] is not None and r["latency_d"] <= within_d) / len(group)
        if group
        else None
        for kind, group in groups.items()
    }


def score_method(
    alerts: dict[str, list[float]], spans: dict[str, float], events: list[Event], explain: Explain | None = None
) -> tuple[dict, dict]:
    """The metrics of one method (the documented JSON) and its details; with `explain`, its false-alert episodes
    by cause (evaluation/causes.py) too."""
    rows: list[EventRow] = []
    for ev in events:
        hits = [
            t
            for t in alerts.get(ev.source_id, [])
            if ev.onset_mjd - WINDOW_BEFORE_D <= t <= ev.onset_mjd + WINDOW_AFTER_D
        ]
        first = min(hits) if hits else None
        rows.append(
            {
                "source_id": ev.source_id,
                "kind": ev.kind,
                "onset_mjd": ev.onset_mjd,
                "first_alert_mjd": first,
                "latency_d": None if first is None else round(first - ev.onset_mjd, 3),
            }
        )
    starts = false_starts(alerts, events)
    false = {sid: (len(first), count) for sid, (first, count) in starts.items()}
    episodes = sum(e for e, _ in false.values())
    years = sum(spans.values()) / DAYS_PER_YEAR
    latencies = [r["latency_d"] for r in rows if r["latency_d"] is not None]
    n = len(rows) or 1
    metrics = {
        "recall_2d": sum(1 for x in latencies if x <= 2) / n,
        "recall_7d": sum(1 for x in latencies if x <= 7) / n,
        "median_latency_d": statistics.median(latencies) if latencies else None,
        "false_alerts_per_source_year": episodes / years if years else None,
        "recall_2d_by_kind": recall_by_kind(rows),
        "events": rows,
    }
    details = {
        "false_alert_episodes": episodes,
        "source_years": years,
        "false_alerts_raw_per_source_year": sum(a for _, a in false.values()) / years if years else None,
        "false_alert_episodes_per_year_by_source": {
            sid: round(false.get(sid, (0, 0))[0] / (spans[sid] / DAYS_PER_YEAR), 3) for sid in sorted(spans)
        },
    }
    if explain is not None:
        causes = Counter(explain(sid, t) for sid, (first, _) in sorted(starts.items()) for t in first)
        details["false_alert_episodes_by_cause"] = {cause: causes[cause] for cause in CAUSES}
        details["unexplained_false_alerts_per_source_year"] = causes["unexplained"] / years if years else None
    return metrics, details


def false_rate(alerts: Mapping[str, list[float]], spans: Mapping[str, float], events: list[Event]) -> float | None:
    """False-alert episodes per source-year over the sources in `spans` only (others' alerts and events ignored)."""
    years = sum(spans.values()) / DAYS_PER_YEAR
    if not years:
        return None
    false = false_episodes(
        {sid: list(alerts.get(sid, [])) for sid in spans}, [ev for ev in events if ev.source_id in spans]
    )
    return sum(e for e, _ in false.values()) / years


def least_strict_level(
    alerts_by_level: AlertsByLevel, spans: Mapping[str, float], events: list[Event], rate: float | None
) -> float | None:
    """The least strict level whose false-alert rate over the sources in `spans` is at most `rate`; None if none is."""
    if rate is None:
        return None
    for level in sorted(alerts_by_level):
        found = false_rate(alerts_by_level[level], spans, events)
        if found is not None and found <= rate:
            return level
    return None


def select_level(
    alerts_by_level: AlertsByLevel, spans: Mapping[str, float], events: list[Event], target: float = TARGET_FALSE_RATE
) -> float:
    """The selection rule of every method, judged on the sources in `spans` only: the least strict level
    whose false-alert episodes per source-year are at most `target`; if none reaches it, the strictest."""
    level = least_strict_level(alerts_by_level, spans, events, target)
    return max(alerts_by_level) if level is None else level


def at_false_rate(
    alerts_by_level: AlertsByLevel, spans: dict[str, float], events: list[Event], rate: float | None
) -> dict:
    """A method's figures at its least strict level that raises no more false-alert episodes than `rate`."""
    level = least_strict_level(alerts_by_level, spans, events, rate)
    if level is None:
        return {"level": None, "recall_2d": 0.0, "recall_7d": 0.0, "false_alerts_per_source_year": None}
    metrics, _ = score_method(dict(alerts_by_level[level]), spans, events)
    return {
        "level": float(level),
        "recall_2d": metrics["recall_2d"],
        "recall_7d": metrics["recall_7d"],
        "false_alerts_per_source_year": metrics["false_alerts_per_source_year"],
    }
