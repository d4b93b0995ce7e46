"""Derive's join on whole chunks, its bounded state and its state round trip, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

import schemas
from flashes import chunks
from services.derive.app import REVISION_DAYS, Derive

SOURCE = "gx339-4"
FETCHED = datetime(2026, 1, 1, tzinfo=UTC)


def chunk(instrument: str, mjd: list[float], flux: list[float], error: list[float]) -> schemas.LightcurveChunk:
    band = {"maxi": "2-20", "swift": "15-50"}[instrument]
    [one] = chunks.build(
        schemas.LightcurveChunk,
        mjd,
        {"flux": {band: flux}, "error": {band: error}},
        source_id=SOURCE,
        instrument=instrument,
        bands=[band],
        units="u",
        provenance=schemas.Provenance(url="file://x", fetched_at=FETCHED),
    )
    return one


def by_kind(outputs: list) -> dict[str, schemas.DerivedChunk]:
    return {o.value.kind: o.value for o in outputs}


def test_maxi_day_centres_join_bat_day_starts_by_hand() -> None:
    derive = Derive({SOURCE})
    assert derive.apply(chunk("maxi", [58000.5, 58001.5, 58002.5], [0.64, 0.32, 0.0], [0.032, 0.016, 0.01])) == []
    out = by_kind(
        derive.apply(chunk("swift", [58000.0, 58002.0, 58003.0], [0.022, 0.011, 0.011], [0.0011, 0.0011, 0.0011]))
    )
    combined, hardness = out["combined"], out["hardness"]
    # Day 58000: BAT 100 ± 5 mCrab, MAXI 200 ± 10 mCrab. Day 58002: BAT 50 ± 5, MAXI 0 ± 3.125.
    assert combined.mjd == [58000.5, 58002.5]
    assert combined.value == pytest.approx([300.0, 50.0], rel=1e-6)
    assert combined.error == pytest.approx([np.hypot(5, 10), np.hypot(5, 3.125)], rel=1e-6)
    assert hardness.mjd == [58000.5]  # MAXI 0 on day 58002: no ratio
    assert hardness.value == pytest.approx([0.5], rel=1e-6)
    assert hardness.error == pytest.approx([0.5 * np.hypot(0.05, 0.05)], rel=1e-6)
    assert combined.swift_flux == pytest.approx([100.0, 50.0], rel=1e-6)


def test_a_revised_day_is_emitted_again_with_the_new_value() -> None:
    derive = Derive({SOURCE})
    derive.apply(chunk("swift", [58000.0], [0.022], [0.0011]))
    derive.apply(chunk("maxi", [58000.5], [0.64], [0.032]))
    revised = by_kind(derive.apply(chunk("maxi", [58000.5], [0.32], [0.016])))
    assert revised["combined"].value == pytest.approx([200.0], rel=1e-6)


def test_state_stays_bounded_and_sources_without_both_instruments_are_ignored() -> None:
    derive = Derive({SOURCE})
    days = np.arange(55000, 58000, dtype=float)
    derive.apply(chunk("maxi", (days + 0.5).tolist(), [0.3] * len(days), [0.01] * len(days)))
    assert len(derive.days[SOURCE]["maxi"].day) == len(days)  # waits for BAT
    out = [o.value for o in derive.apply(chunk("swift", days.tolist(), [0.01] * len(days), [0.001] * len(days)))]
    assert sum(c.count for c in out if c.kind == "combined") == len(days)  # in bounded chunks
    assert all(c.count <= schemas.MAX_CHUNK_POINTS and len(c.model_dump_json()) <= schemas.MAX_CHUNK_BYTES for c in out)
    state = derive.snapshot(SOURCE, "t", 0, 1)
    assert len(state.maxi.day) == len(state.swift.day) == REVISION_DAYS + 1
    other = chunk("maxi", [58000.5], [0.3], [0.01]).model_copy(update={"source_id": "scox-1"})
    assert derive.apply(other) == [] and "scox-1" not in derive.days


def test_restored_state_gives_the_outputs_of_an_uninterrupted_run() -> None:
    first, restored = Derive({SOURCE}), Derive({SOURCE})
    first.apply(chunk("maxi", [58000.5, 58001.5], [0.64, 0.32], [0.032, 0.016]))
    restored.restore(schemas.DeriveState.model_validate_json(first.snapshot(SOURCE, "t", 0, 5).model_dump_json()))
    bat = chunk("swift", [58000.0, 58001.0], [0.022, 0.011], [0.0011, 0.0011])
    assert [o.value for o in restored.apply(bat)] == [o.value for o in first.apply(bat)]
