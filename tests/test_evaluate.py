"""`flashes evaluate` on real MAXI files and on hand-made cases: figures, per-kind recall, --cv.

The model (services/relevance/model.py) is tuned separately, so its figures on real files are
bounded here, not pinned; the baselines' figures do not depend on it and are pinned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evaluation.methods import METHODS, MODEL_LEVELS
from evaluation.metrics import DAYS_PER_YEAR, Event, event_kind, read_events, score_method, select_level
from evaluation.run import Scored, cross_validate, evaluate, score_mirror
from flashes.settings import Settings
from services.cli import main
from services.relevance.model import PARAMS

DATA = Path(__file__).resolve().parent / "data" / "maxi"
YEAR = DAYS_PER_YEAR


@pytest.fixture()
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(
        "source_id,kind,onset_mjd,reference\n"
        "maxij1535-571,outburst onset,57998,ATel #10700\n"
        "cirx-1,not in the mirror,58000,none\n"
    )
    return path


def shared_layout(root: Path) -> Path:
    (root / "maxi").mkdir(parents=True)
    shutil.copy(DATA / "J1535-572_g_lc_1day_all.dat", root / "maxi")
    shutil.copy(DATA / "J1520-571_00055058g_lc_1day_all.dat", root / "maxi")  # older naming: not the standard product
    return root


def provider_layout(root: Path) -> Path:
    (root / "maxi" / "star_data" / "J1535-572").mkdir(parents=True)
    shutil.copy(DATA / "J1535-572_g_lc_1day_all.dat", root / "maxi" / "star_data" / "J1535-572")
    return root


@pytest.mark.parametrize("layout", [shared_layout, provider_layout])
def test_the_maxi_j1535_outburst_is_found_in_either_layout(layout, tmp_path: Path, events: Path) -> None:
    result = evaluate(Settings(), layout(tmp_path / "mirror"), events)
    assert result["details"]["source_years"] == 11.19  # MJD 55053.5 to 59141.5: the one file read
    for name in METHODS:
        method = result["methods"][name]
        assert [e["source_id"] for e in method["events"]] == ["maxij1535-571"]  # Cir X-1 has no file here
        assert method["recall_7d"] == 1.0 and method["recall_2d_by_kind"]["onset"] == method["recall_2d"]
    # The baselines do not depend on the model's tuning: their figures are pinned.
    formula, median = result["methods"]["formula"], result["methods"]["median_5sigma"]
    assert formula["events"][0]["latency_d"] == 2.5 and formula["recall_2d"] == 0.0
    assert median["events"][0]["latency_d"] == 1.5 and median["recall_2d"] == 1.0
    episodes = {name: result["details"]["methods"][name]["false_alert_episodes"] for name in METHODS}
    assert episodes["formula"] == 1 and episodes["median_5sigma"] == 7
    assert median["false_alerts_per_source_year"] == pytest.approx(7 / (4088 / YEAR))
    model = result["methods"]["model"]
    assert -2 <= model["events"][0]["latency_d"] <= 2 and model["recall_2d"] == 1.0


def test_false_alerts_are_counted_in_episodes_outside_event_windows() -> None:
    events = [Event("a", "outburst onset", 100.0)]
    alerts = {"a": [99.0, 150.0, 170.0, 175.0, 300.0], "b": [10.0, 12.0]}  # window of a: 98 to 160
    metrics, details = score_method(alerts, {"a": 365.25, "b": 365.25}, events)
    assert metrics["events"][0]["latency_d"] == -1.0 and metrics["recall_2d"] == 1.0
    # a: 170 and 175 are one episode, 300 another; b: 10 and 12 are one. 5 false alerts, 3 episodes, 2 source-years.
    assert metrics["false_alerts_per_source_year"] == 1.5 and details["false_alerts_raw_per_source_year"] == 2.5
    assert details["false_alert_episodes"] == 3 and details["source_years"] == 2.0
    assert details["false_alert_episodes_per_year_by_source"] == {"a": 2.0, "b": 1.0}


def test_event_kinds_are_grouped_for_per_kind_recall() -> None:
    assert {
        kind: event_kind(kind)
        for kind in (
            "outburst onset",
            "giant outburst",
            "state transition hard-to-soft",
            "state transition soft-to-hard",
            "flare",
            "Flare ",
            "superburst",
            "not in the mirror",
        )
    } == {
        "outburst onset": "onset",
        "giant outburst": "onset",
        "state transition hard-to-soft": "state transition",
        "state transition soft-to-hard": "state transition",
        "flare": "flare",
        "Flare ": "flare",
        "superburst": "other",
        "not in the mirror": "other",
    }
    # Every kind in the shared events file belongs to one of the three groups.
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "events.csv"
    if shared.exists():
        assert {event_kind(ev.kind) for ev in read_events(shared)} == {"onset", "state transition", "flare"}


def test_recall_within_2_days_is_given_per_kind() -> None:
    events = [
        Event("a", "outburst onset", 100.0),
        Event("a", "state transition hard-to-soft", 130.0),
        Event("b", "giant outburst", 500.0),
        Event("b", "state transition soft-to-hard", 540.0),
    ]
    # a: the onset found after 1.5 d; the transition's window (128..190) holds 131.5 (latency 1.5, within 2 d).
    # b: the giant outburst found after 3 d (within 7 d, not 2 d); the transition (window 538..600) not found:
    # both alerts of b are earlier. No alert is outside every window: no false alert.
    alerts = {"a": [101.5, 131.5], "b": [503.0, 520.0]}
    metrics, _ = score_method(alerts, {"a": YEAR, "b": YEAR}, events)
    assert [e["latency_d"] for e in metrics["events"]] == [1.5, 1.5, 3.0, None]
    assert metrics["recall_2d"] == 0.5 and metrics["recall_7d"] == 0.75 and metrics["median_latency_d"] == 1.5
    assert metrics["recall_2d_by_kind"] == {"onset": 0.5, "state transition": 0.5, "flare": None}
    assert metrics["false_alerts_per_source_year"] == 0.0


# A fixed case, by hand. Sources a and b cover 1 year each, c 2 years (4 source-years); one event each:
# a onset at 100, b flare at 200, c state transition at 300 (windows onset-2 .. onset+60).
# Levels 1 < 2 < 3 (3 the strictest); alerts and, per source, (false episodes, latency of its event):
#   level 1: a [101, 400, 600] -> (2, 1)   b [201, 500] -> (1, 1)   c [301] -> (0, 1)
#   level 2: a [101, 400]      -> (1, 1)   b [205]      -> (0, 5)   c []    -> (0, -)
#   level 3: a [700]           -> (1, -)   b []         -> (0, -)   c []    -> (0, -)
# Target 0.5 false episodes per source-year, judged on the training sources only:
#   fold a (train b, c: 3 yr): level 1 has 1 episode / 3 yr = 0.33 <= 0.5 -> level 1; a scored at 1: found after
#     1 d, 2 false episodes.
#   fold b (train a, c: 3 yr): level 1 2/3 = 0.67; level 2 1/3 = 0.33 -> level 2; b at 2: found after 5 d, 0 false.
#   fold c (train a, b: 2 yr): level 1 3/2 = 1.5; level 2 1/2 = 0.5 -> level 2; c at 2: not found, 0 false.
# Pooled: recall 2 d 1/3 (the onset), 7 d 2/3, median latency of (1, 5) = 3, false 2 episodes / 4 yr = 0.5;
# per kind within 2 d: onset 1, flare 0, state transition 0. On all sources: level 1 3/4 = 0.75, level 2
# 1/4 = 0.25 -> level 2. With target 0.2 no level reaches it on all sources (level 3: 1/4) -> the strictest, 3.
HAND_SPANS = {"a": YEAR, "b": YEAR, "c": 2 * YEAR}
HAND_EVENTS = [
    Event("a", "outburst onset", 100.0),
    Event("b", "flare", 200.0),
    Event("c", "state transition hard-to-soft", 300.0),
]
HAND_ALERTS = {
    1.0: {"a": [101.0, 400.0, 600.0], "b": [201.0, 500.0], "c": [301.0]},
    2.0: {"a": [101.0, 400.0], "b": [205.0], "c": []},
    3.0: {"a": [700.0], "b": [], "c": []},
}


def test_level_selection_on_a_hand_made_case() -> None:
    assert select_level(HAND_ALERTS, {"b": YEAR, "c": 2 * YEAR}, HAND_EVENTS, 0.5) == 1.0
    assert select_level(HAND_ALERTS, {"a": YEAR, "c": 2 * YEAR}, HAND_EVENTS, 0.5) == 2.0
    assert select_level(HAND_ALERTS, {"a": YEAR, "b": YEAR}, HAND_EVENTS, 0.5) == 2.0
    assert select_level(HAND_ALERTS, HAND_SPANS, HAND_EVENTS, 0.5) == 2.0
    assert select_level(HAND_ALERTS, HAND_SPANS, HAND_EVENTS, 0.2) == 3.0  # none reaches it: the strictest
    assert select_level(HAND_ALERTS, HAND_SPANS, HAND_EVENTS, 0.75) == 1.0  # exactly at the target counts
    # The levels' order, not the mapping's, decides which is the least strict.
    assert select_level(dict(reversed(HAND_ALERTS.items())), HAND_SPANS, HAND_EVENTS, 0.5) == 2.0


def test_cross_validation_on_a_hand_made_case() -> None:
    scored = Scored(0.7, HAND_SPANS, HAND_EVENTS, {"model": 1.0}, {"model": HAND_ALERTS})
    cv = cross_validate(scored, 0.5)
    assert [(f["held_out"], f["methods"]["model"]["level"]) for f in cv["folds"]] == [
        ("a", 1.0),
        ("b", 2.0),
        ("c", 2.0),
    ]
    assert [f["methods"]["model"]["false_alert_episodes"] for f in cv["folds"]] == [2, 0, 0]
    assert [f["methods"]["model"]["found_2d"] for f in cv["folds"]] == [1, 0, 0]
    assert [f["methods"]["model"]["train_false_alerts_per_source_year"] for f in cv["folds"]] == [1 / 3, 1 / 3, 0.5]
    m = cv["methods"]["model"]
    assert [e["latency_d"] for e in m["events"]] == [1.0, 5.0, None]
    assert m["recall_2d"] == 1 / 3 and m["recall_7d"] == 2 / 3 and m["median_latency_d"] == 3.0
    assert m["false_alerts_per_source_year"] == 0.5
    assert m["recall_2d_by_kind"] == {"onset": 1.0, "state transition": 0.0, "flare": 0.0}
    assert cv["details"]["model"]["false_alert_episodes_per_year_by_source"] == {"a": 2.0, "b": 0.0, "c": 0.0}
    assert cv["selected_on_all_sources"] == {"model": 2.0} and cv["grids"] == {"model": [1.0, 2.0, 3.0]}
    # The held-out source never takes part in its own fold's choice: a's alerts made as bad as can be at every
    # level change the other folds (a is in their training sources) and the choice on all sources, not fold a.
    noisy = {level: {**per, "a": [1000.0 + 20 * i for i in range(20)]} for level, per in HAND_ALERTS.items()}
    noisy_cv = cross_validate(Scored(0.7, HAND_SPANS, HAND_EVENTS, {"model": 1.0}, {"model": noisy}), 0.5)
    assert [f["methods"]["model"]["level"] for f in noisy_cv["folds"]] == [1.0, 3.0, 3.0]
    assert noisy_cv["selected_on_all_sources"] == {"model": 3.0}


def test_cross_validation_needs_two_sources() -> None:
    with pytest.raises(ValueError, match="at least 2 sources"):
        cross_validate(Scored(0.7, {"a": YEAR}, [], {"model": 1.0}, {"model": {1.0: {"a": []}}}))


THREE_SOURCES = (
    "J1535-572_g_lc_1day_all.dat",  # MAXI J1535-571: an outburst and its state changes
    "J1520-571_g_lc_1day_all.dat",  # Cir X-1: periodic flares, no listed event
    "J1619-156_g_lc_1day_all.dat",
)  # Sco X-1: bright, persistent, no listed event


@pytest.fixture(scope="module")
def three_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cv")
    (root / "mirror" / "maxi").mkdir(parents=True)
    for name in THREE_SOURCES:
        shutil.copy(DATA / name, root / "mirror" / "maxi")
    events = root / "events.csv"
    events.write_text(
        "source_id,kind,onset_mjd,reference\n"
        "maxij1535-571,outburst onset,57998,ATel #10700\n"
        "maxij1535-571,state transition hard-to-soft,58006,ATel #10761\n"
        "maxij1535-571,state transition soft-to-hard,58039,ATel #11020\n"
    )
    return root / "mirror", events


@pytest.fixture(scope="module")
def three_sources_scored(three_sources: tuple[Path, Path]) -> Scored:
    return score_mirror(Settings(), *three_sources, model_grid=True)


def test_cv_through_the_cli_on_three_real_sources(
    three_sources: tuple[Path, Path], three_sources_scored: Scored, capsys: pytest.CaptureFixture
) -> None:
    mirror, events = three_sources
    main(["evaluate", "--mirror", str(mirror), "--events", str(events), "--cv", "--json"])
    result = json.loads(capsys.readouterr().out)
    cv, scored = result["cv"], three_sources_scored
    assert [f["held_out"] for f in cv["folds"]] == ["cirx-1", "maxij1535-571", "scox-1"]
    assert cv["target_false_rate"] == 0.5
    assert cv["grids"]["model"] == sorted(
        {*MODEL_LEVELS.tolist(), PARAMS.alert_sigma}
    )  # the grid, the one in service among them
    for fold in cv["folds"]:
        held_out = fold["held_out"]
        train = {sid: days for sid, days in scored.spans.items() if sid != held_out}
        for name in METHODS:
            # Each fold's level is what the selection rule gives on the other sources' cached alerts ...
            assert fold["methods"][name]["level"] == select_level(scored.alerts[name], train, scored.events, 0.5)
            # ... and the held-out source is scored at that level.
            level = fold["methods"][name]["level"]
            own = [ev for ev in scored.events if ev.source_id == held_out]
            _, details = score_method(
                {held_out: scored.alerts[name][level][held_out]}, {held_out: scored.spans[held_out]}, own
            )
            assert fold["methods"][name]["false_alert_episodes"] == details["false_alert_episodes"]
    for name in METHODS:
        m, details = cv["methods"][name], cv["details"][name]
        folds = [f["methods"][name] for f in cv["folds"]]
        # Pooled figures add up from the folds.
        assert details["false_alert_episodes"] == sum(f["false_alert_episodes"] for f in folds)
        assert details["source_years"] == pytest.approx(sum(f["source_years"] for f in cv["folds"]))
        assert m["false_alerts_per_source_year"] == pytest.approx(
            details["false_alert_episodes"] / details["source_years"]
        )
        assert m["recall_2d"] * 3 == pytest.approx(sum(f["found_2d"] for f in folds))
        # Every false episode has one cause (evaluation/causes.py), in-sample and held out.
        for part in (details, result["details"]["methods"][name]):
            assert sum(part["false_alert_episodes_by_cause"].values()) == part["false_alert_episodes"]
        for fold in cv["folds"]:
            assert details["false_alert_episodes_per_year_by_source"][fold["held_out"]] == pytest.approx(
                fold["methods"][name]["false_alert_episodes"] / fold["source_years"], abs=5e-4
            )
        kinds = m["recall_2d_by_kind"]
        assert kinds["flare"] is None and (kinds["onset"] + 2 * kinds["state transition"]) / 3 == pytest.approx(
            m["recall_2d"]
        )
    # The in-sample figures are the ones without --cv.
    assert result["methods"] == evaluate(Settings(), mirror, events)["methods"]
    # Pinned baseline figures (they do not depend on the model). The formula reaches 0.5 false episodes per
    # source-year at no threshold on two of the three sources (Sco X-1 saturates it), so every fold takes 1.0.
    assert [f["methods"]["formula"]["level"] for f in cv["folds"]] == [1.0, 1.0, 1.0]
    assert [f["methods"]["formula"]["false_alert_episodes"] for f in cv["folds"]] == [22, 0, 130]
    assert [f["methods"]["median_5sigma"]["level"] for f in cv["folds"]] == [6.7, 17.3, 17.3]
    assert [f["methods"]["median_5sigma"]["false_alert_episodes"] for f in cv["folds"]] == [27, 0, 0]
    median = cv["methods"]["median_5sigma"]
    assert [e["latency_d"] for e in median["events"]] == [2.5, None, None]
    assert median["recall_2d"] == 0.0 and median["recall_7d"] == 1 / 3
    assert result["methods"]["median_5sigma"]["recall_2d"] == 1 / 3  # in-sample at 5σ: the onset after 1.5 d


def test_a_held_out_source_does_not_choose_its_own_level(three_sources_scored: Scored) -> None:
    scored = three_sources_scored
    before = cross_validate(scored)
    # Sco X-1 made to raise 200 false episodes at every level of every method.
    noisy = {
        name: {level: {**per, "scox-1": [55100.0 + 20 * i for i in range(200)]} for level, per in by_level.items()}
        for name, by_level in scored.alerts.items()
    }
    after = cross_validate(Scored(scored.threshold, scored.spans, scored.events, scored.defaults, noisy))
    fold = {f["held_out"]: f for f in before["folds"]}["scox-1"]
    noisy_fold = {f["held_out"]: f for f in after["folds"]}["scox-1"]
    for name in METHODS:
        assert noisy_fold["methods"][name]["level"] == fold["methods"][name]["level"]
        assert noisy_fold["methods"][name]["false_alert_episodes"] == 200
        # ... while the choice on all sources, which includes Sco X-1, goes to the strictest level.
        assert after["selected_on_all_sources"][name] == max(scored.alerts[name])


def test_target_false_rate_needs_cv(tmp_path: Path, events: Path) -> None:
    with pytest.raises(SystemExit, match="add --cv"):
        main(["evaluate", "--mirror", str(tmp_path), "--events", str(events), "--target-false-rate", "0.3"])
    with pytest.raises(SystemExit, match="not a rate"):
        main(["evaluate", "--mirror", str(tmp_path), "--events", str(events), "--cv", "--target-false-rate", "nan"])


def test_the_model_beats_both_baselines_on_the_bundled_real_files(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("source_id,kind,onset_mjd,reference\nmaxij1535-571,outburst onset,57998,ATel #10700\n")
    mirror = tmp_path / "mirror" / "maxi"
    mirror.mkdir(parents=True)
    for name in ("J1535-572_g_lc_1day_all.dat", "J1520-571_g_lc_1day_all.dat"):  # an outburst; Cir X-1's flares
        shutil.copy(DATA / name, mirror)
    result = evaluate(Settings(), mirror.parent, events)
    model, formula, median = (result["methods"][m] for m in ("model", "formula", "median_5sigma"))
    assert model["recall_2d"] == 1.0
    # Baselines, pinned: Cir X-1 73 + MAXI J1535-571 1 episodes (formula), 41 + 7 (median), over 22.38 source-years.
    details = result["details"]["methods"]
    assert (details["formula"]["false_alert_episodes"], details["median_5sigma"]["false_alert_episodes"]) == (74, 48)
    assert formula["recall_2d"] == 0.0 and median["recall_2d"] == 1.0
    assert (
        model["false_alerts_per_source_year"]
        < min(formula["false_alerts_per_source_year"], median["false_alerts_per_source_year"]) / 2
    )
    for name in ("formula", "median_5sigma"):
        assert result["details"]["methods"][name]["at_model_false_alert_rate"]["recall_2d"] <= model["recall_2d"]
