"""Alert episodes per source (services/alerts/episodes.py): the pure step, and the alerts processor on synthetic
scores of a real catalogue source."""

from __future__ import annotations

import pytest

import schemas
from flashes import chunks
from flashes.settings import Settings
from flashes.timeconv import mjd_to_datetime
from services.alerts.app import Alerts
from services.alerts.episodes import NOTHING, Decision, Point, Rules, step

SOURCE = "maxij1535-571"
T = 58000.0  # MJD offset of the synthetic days
MAXI = 312.5  # mCrab per photon/cm2/s, MAXI 2-20 keV


def chunk(
    kind: str,
    mjd: list[float],
    relevance: list[float],
    value: list[float] | None = None,
    hardness: list[float] | None = None,
) -> schemas.RelevanceChunk:
    n = len(mjd)
    model = [r if h is None else 0.1 for r, h in zip(relevance, hardness or [None] * n)]
    terms = {"model": model, "hardness": hardness or [0.0] * n, "flux": [0.5] * n, "trend": [0.5] * n}
    [one] = chunks.build(
        schemas.RelevanceChunk,
        mjd,
        {"value": value or [0.1] * n, "error": [0.01] * n, "relevance": relevance, "terms": terms},
        source_id=SOURCE,
        series=f"{kind}_{SOURCE}",
        kind=kind,
        model_version="test",
    )
    return one


@pytest.fixture(scope="module")
def logic() -> Alerts:
    raised = mjd_to_datetime(T + 1000.0)  # one clock, so that two runs raise equal records
    return Alerts(Settings(relevance_threshold=0.7, episode_end_points=3), now=lambda: raised)


def records(logic: Alerts, *chunks: schemas.RelevanceChunk) -> list[schemas.Alert]:
    return [o.value for c in chunks for o in logic.apply(c)]


def test_an_outburst_in_two_series_is_one_episode_onset_updates_end(logic: Alerts) -> None:
    logic.forget([SOURCE])
    out = records(
        logic,
        chunk("maxi", [T + 100.5, T + 101.5, T + 102.5], [0.1, 0.9, 0.95], [0.1, 0.4, 0.5]),  # onset at 101.5
        chunk("swift", [T + 101.5, T + 102.5], [0.2, 0.8]),  # joins
        chunk("maxi", [T + 103.5], [0.96], [0.9]),  # 0.4 -> 0.9 photons: more than doubled
        chunk("hardness", [T + 103.5], [0.9], [2.0], hardness=[0.9]),  # a state change joins
        chunk("maxi", [T + 104.5, T + 105.5, T + 106.5], [0.2, 0.1, 0.1]),
        chunk("swift", [T + 103.5, T + 104.5], [0.1, 0.1]),
    )
    assert [(a.alert_type, a.record_number) for a in out] == [("onset", 1), ("update", 2), ("update", 3), ("update", 4)]
    assert {a.alert_id for a in out} == {f"{SOURCE}@{T + 101.5:.5f}"}
    onset, joined, doubled, state = out
    assert onset.reasons == ["brightening"] and onset.series == [f"maxi_{SOURCE}"]
    assert onset.last_points[-1].value == pytest.approx(0.4 * MAXI) and onset.last_points[-1].units == "mCrab"
    assert "brighter than its usual level" in onset.explanation and "MAXI J1535-571" in onset.explanation
    assert joined.series == [f"maxi_{SOURCE}", f"swift_{SOURCE}"] and "joined" in joined.change
    assert "doubled" in doubled.change and "125.0 -> 281.2 mCrab" in doubled.change
    assert state.reasons == ["brightening", "state_change"] and state.last_points[-1].units == "ratio"
    # hardness has had no quiet point yet: one more (the third for the others already) ends it.
    end = records(
        logic,
        chunk("hardness", [T + 104.5, T + 105.5, T + 106.5], [0.1, 0.1, 0.1], [1.0] * 3, hardness=[0.1] * 3),
        chunk("swift", [T + 105.5], [0.1]),
    )
    assert [(a.alert_type, a.record_number) for a in end] == [("end", 5)]
    assert "back to its usual behaviour" in end[0].explanation
    assert end[0].freshness == {"maxi": mjd_to_datetime(T + 106.5), "swift": mjd_to_datetime(T + 105.5)}
    # a new crossing opens a new episode
    again = records(logic, chunk("maxi", [T + 110.5], [0.8]))
    assert [(a.alert_type, a.alert_id) for a in again] == [("onset", f"{SOURCE}@{T + 110.5:.5f}")]


def test_replayed_scores_raise_nothing_and_state_round_trips(logic: Alerts) -> None:
    logic.forget([SOURCE])
    first = chunk("maxi", [T + 200.5, T + 201.5], [0.1, 0.9])
    assert len(records(logic, first)) == 1
    assert records(logic, first) == []
    snapshot = logic.snapshot(SOURCE, "t", 0, 7)
    restored = Alerts(logic.settings, logic.now)
    restored.restore(schemas.AlertState.model_validate_json(snapshot.model_dump_json()))
    nxt = chunk("swift", [T + 201.5], [0.9])
    assert records(restored, nxt) == records(logic, nxt)


def test_a_lagging_series_history_does_not_join_the_open_episode(logic: Alerts) -> None:
    logic.forget([SOURCE])
    assert len(records(logic, chunk("maxi", [T + 300.5, T + 301.5], [0.1, 0.9]))) == 1
    assert records(logic, chunk("swift", [T + 250.5, T + 251.5], [0.1, 0.9])) == []  # BAT history caught up later


def test_an_unknown_source_is_refused() -> None:
    logic = Alerts(Settings())
    bad = chunk("maxi", [T + 1.5], [0.9]).model_copy(update={"source_id": "no-such-source"})
    with pytest.raises(ValueError, match="unknown source 'no-such-source'"):
        logic.apply(bad)


def test_one_instruments_glitch_alone_opens_nothing(logic: Alerts) -> None:
    """BAT jumps for one day while MAXI, a day away, sees nothing: no alert; the next BAT point is usual."""
    logic.forget([SOURCE])
    out = records(
        logic,
        chunk("maxi", [T + 600.5, T + 601.5, T + 602.5], [0.1, 0.1, 0.1]),
        chunk("swift", [T + 600.0, T + 601.0, T + 602.0], [0.1, 0.8, 0.1]),
    )
    assert out == []


def test_a_lone_crossing_that_persists_opens_on_its_second_point_also_after_a_restart(logic: Alerts) -> None:
    logic.forget([SOURCE])
    assert (
        records(
            logic,
            chunk("maxi", [T + 700.5, T + 701.5, T + 702.5], [0.1, 0.1, 0.1]),
            chunk("swift", [T + 700.0, T + 701.0], [0.1, 0.8]),
        )
        == []
    )
    restored = Alerts(logic.settings, logic.now)  # the hold is in the state: a restart between the two points keeps it
    restored.restore(schemas.AlertState.model_validate_json(logic.snapshot(SOURCE, "t", 0, 9).model_dump_json()))
    for alerts in (logic, restored):
        out = records(alerts, chunk("swift", [T + 702.0], [0.85]))
        assert [(a.alert_type, a.mjd, a.trigger_series) for a in out] == [("onset", T + 702.0, f"swift_{SOURCE}")]
        assert "two points in a row" in out[0].change and out[0].reasons == ["brightening"]
    # After the episode ended, a new lone crossing is held again, and its next high point opens the next episode.
    quiet = chunk("maxi", [T + 703.5, T + 704.5, T + 705.5], [0.1, 0.1, 0.1])
    assert [
        a.alert_type for a in records(logic, chunk("swift", [T + 703.0, T + 704.0, T + 705.0], [0.1] * 3), quiet)
    ] == ["end"]
    out = records(
        logic, chunk("swift", [T + 706.0, T + 707.0, T + 708.0], [0.1, 0.8, 0.9]), chunk("maxi", [T + 708.5], [0.1])
    )
    assert [(a.alert_type, a.mjd) for a in out] == [("onset", T + 708.0)]


@pytest.mark.parametrize("derived", ["combined", "hardness"])
def test_a_lone_instruments_glitch_does_not_agree_with_the_derived_series_made_of_it(
    logic: Alerts, derived: str
) -> None:
    """MAXI jumps for one day while BAT sees nothing: the combined flux or hardness of that day jumps with it, but
    a held MAXI crossing is no agreement for them; both stay held and the next, usual points end it."""
    logic.forget([SOURCE])
    out = records(
        logic,
        chunk("swift", [T + 1000.0, T + 1001.0, T + 1002.0], [0.1, 0.1, 0.1]),
        chunk("maxi", [T + 1000.5, T + 1001.5], [0.1, 0.8]),
        chunk(derived, [T + 1000.5, T + 1001.5], [0.1, 0.8]),
        chunk("maxi", [T + 1002.5], [0.1]),
        chunk(derived, [T + 1002.5], [0.1]),
    )
    assert out == []


def test_a_hold_is_answered_by_the_next_point_only_within_two_days(logic: Alerts) -> None:
    """A held BAT crossing whose next point comes 60 days later, or is a late catch-up point, opens nothing."""
    logic.forget([SOURCE])
    assert (
        records(
            logic,
            chunk("maxi", [T + 1100.5, T + 1101.5], [0.1, 0.1]),
            chunk("swift", [T + 1101.0], [0.8]),
            chunk("swift", [T + 1161.0], [0.8]),
        )
        == []
    )
    logic.forget([SOURCE])
    assert (
        records(
            logic,
            chunk("maxi", [T + 1200.5, T + 1201.5], [0.1, 0.1]),
            chunk("swift", [T + 1201.0], [0.8]),
            chunk("maxi", [T + 1230.5], [0.1]),  # MAXI ahead: BAT's next points are catch-up history
            chunk("swift", [T + 1202.0, T + 1203.0, T + 1219.0, T + 1221.0], [0.1, 0.1, 0.8, 0.8]),
        )
        == []
    )


def test_a_held_series_whose_next_point_is_high_opens_even_if_another_term_crosses_there(logic: Alerts) -> None:
    logic.forget([SOURCE])
    maxi = chunk("maxi", [T + 1300.5, T + 1301.5, T + 1302.5], [0.1, 0.1, 0.1])
    swift = schemas.RelevanceChunk(
        **{
            **chunk("swift", [T + 1301.0, T + 1302.0], [0.75, 0.8]).model_dump(),
            "terms": schemas.RelevanceTermColumns(
                model=[0.75, 0.1], hardness=[0.1, 0.78], flux=[0.5] * 2, trend=[0.5] * 2
            ),
        }
    )
    out = records(logic, maxi, swift)
    assert [(a.alert_type, a.mjd, a.reasons) for a in out] == [("onset", T + 1302.0, ["state_change"])]


@pytest.mark.parametrize(
    "maxi, swift",
    [
        ([0.1, 0.1, 0.6], [0.1, 0.8, 0.1]),  # MAXI agrees (0.6 ≥ 0.5) before the BAT point arrives
        ([0.1, 0.1, 0.1], [0.1, 0.97, 0.1]),  # BAT alone but decisive
    ],
)
def test_agreement_or_a_decisive_score_opens_at_once(logic: Alerts, maxi: list[float], swift: list[float]) -> None:
    logic.forget([SOURCE])
    out = records(
        logic,
        chunk("maxi", [T + 800.5, T + 801.5, T + 801.9], maxi),
        chunk("swift", [T + 800.0, T + 801.0, T + 802.0], swift),
    )
    assert [(a.alert_type, a.mjd) for a in out][:1] == [("onset", T + 801.0)]


def test_a_source_seen_by_one_instrument_needs_no_agreement(logic: Alerts) -> None:
    logic.forget([SOURCE])
    out = records(logic, chunk("maxi", [T + 900.5, T + 901.5, T + 902.5], [0.1, 0.8, 0.1]))
    assert [(a.alert_type, a.mjd) for a in out] == [("onset", T + 901.5)]


@pytest.mark.parametrize(("age_days", "live"), [(0.5, True), (2.99, True), (3.01, False), (4000.0, False)])
def test_an_alert_is_news_only_while_its_triggering_point_is_at_most_live_days_old(age_days: float, live: bool) -> None:
    onset_mjd = T + 101.5
    raised = mjd_to_datetime(onset_mjd + age_days)
    logic = Alerts(Settings(relevance_threshold=0.7, live_days=3.0), now=lambda: raised)
    (onset,) = records(logic, chunk("maxi", [T + 100.5, onset_mjd], [0.1, 0.9], [0.1, 0.4]))
    assert onset.live is live and onset.raised_at == raised
    assert onset.time == mjd_to_datetime(onset_mjd)


def test_news_and_history_of_one_episode_follow_each_records_own_point() -> None:
    """A backfill opens an episode as history; the same episode's record about today's point is news."""
    now = mjd_to_datetime(T + 200.0)
    logic = Alerts(Settings(relevance_threshold=0.7), now=lambda: now)
    onset, update = records(
        logic, chunk("maxi", [T + 190.5, T + 191.5], [0.1, 0.9], [0.1, 0.4]), chunk("maxi", [T + 199.5], [0.95], [1.0])
    )  # more than doubled, half a day old
    assert (onset.alert_type, onset.live) == ("onset", False)
    assert (update.alert_type, update.live, update.alert_id) == ("update", True, onset.alert_id)


def point(kind: str, mjd: float, relevance: float, value: float = 10.0) -> Point:
    return Point(
        SOURCE,
        f"{kind}_{SOURCE}",
        kind,
        mjd,
        value,
        1.0,
        relevance,
        {"model": relevance, "hardness": 0.0, "flux": 0.5, "trend": 0.5},
    )


def test_a_step_changes_nothing_it_is_given_and_returns_the_next_state_with_the_record() -> None:
    rules = Rules(threshold=0.7, end_points=1)
    state, raised = NOTHING, []
    for p in (
        point("maxi", T + 1.5, 0.1),
        point("maxi", T + 2.5, 0.9),
        point("maxi", T + 3.5, 0.95, value=25.0),
        point("swift", T + 3.0, 0.1),
        point("maxi", T + 4.5, 0.1),
        point("swift", T + 4.0, 0.8),
        point("maxi", T + 5.5, 0.1),
    ):
        before = state.model_dump()
        decision = step(state, p, rules)
        assert state.model_dump() == before  # nothing changed in place
        assert step(state, p, rules) == decision  # the same state and point, the same decision
        raised.append(decision.record and (decision.record.alert_type, decision.record.episode.record_number))
        state = decision.state
    # onset, doubled (10 -> 25 mCrab), end; then BAT's lone crossing is held (MAXI, a day away, sees nothing).
    assert raised == [None, ("onset", 1), ("update", 2), None, ("end", 3), None, None]
    assert state.episode is None and state.series[f"swift_{SOURCE}"].held
    assert [m for m, _, _ in state.series[f"maxi_{SOURCE}"].points] == [T + 1.5, T + 2.5, T + 3.5, T + 4.5, T + 5.5]
    assert step(state, point("maxi", T + 5.5, 0.99), rules) == Decision(state)  # a replayed score: nothing
