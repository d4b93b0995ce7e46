"""When a score raises an alert: shared by the alerts service and `flashes evaluate`.

An alert fires when the relevance reaches the threshold after being below it, or when, while
it stays high, another of the alerting terms reaches the threshold (a state switch during an
outburst is news of its own). It names the terms that crossed: the reason for the alert.
"""

from __future__ import annotations

from collections.abc import Mapping

ALERTING_TERMS = ("model", "hardness")


def snapshot(relevance: float, terms: Mapping[str, float]) -> dict[str, float]:
    """What the trigger keeps of one score: its terms and its relevance."""
    return {**terms, "relevance": relevance}


def above(current: Mapping[str, float], threshold: float) -> list[str]:
    """Terms of `current` at or above `threshold` (["relevance"] if only the relevance is): why it is high."""
    names = [name for name in ALERTING_TERMS if current[name] >= threshold]
    return names or (["relevance"] if current["relevance"] >= threshold else [])


def reasons(previous: Mapping[str, float] | None, current: Mapping[str, float], threshold: float) -> list[str]:
    """Terms of `current` (with its "relevance") that crossed `threshold` since `previous`; [] if none: why it
    is high now and was not before. (The relevance is at least each term, so "relevance" stands alone.)"""
    return [name for name in above(current, threshold) if previous is None or previous[name] < threshold]
