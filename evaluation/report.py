"""The table `flashes evaluate` prints (without --json): each method's figures, the folds of --cv, each event."""

from __future__ import annotations

from evaluation.methods import METHODS
from evaluation.metrics import CAUSES, EVENT_KINDS

REGULAR_SOURCES = ("scox-1", "cirx-1")  # sources whose every alert is false: their rates get a column


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _figures(m: dict, by_source: dict[str, float]) -> str:
    kinds = m.get("recall_2d_by_kind", {})
    return (
        f"{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{_fmt(m['median_latency_d'], '.1f'):>15}"
        f"{_fmt(m['false_alerts_per_source_year'], '.2f'):>14}"
        + "".join(f"{_fmt(by_source.get(sid), '.2f'):>12}" for sid in REGULAR_SOURCES)
        + "".join(f"{_fmt(kinds.get(kind), '.2f'):>10}" for kind in EVENT_KINDS)
    )


def table(result: dict) -> str:
    details = result["details"]["methods"]
    cv = result.get("cv")
    levels = result["details"].get("levels", {})
    lines = [
        f"threshold {result['threshold']}; false alerts are episodes "
        f"(alerts < {result['details']['episode_gap_d']:g} d apart count once) per source-year; "
        f"{result['details']['source_years']:g} source-years"
    ]
    if cv:
        lines.append(
            f"in-sample: levels in service on every source; cv: leave one source out, each level chosen on "
            f"the other sources (least strict with ≤ {cv['target_false_rate']:g} false episodes per "
            f"source-year there, else the strictest)"
        )
    lines.append(
        f"{'method':<15}{'figures':<11}{'level':>11}{'recall 2d':>10}{'recall 7d':>10}{'median lat. d':>15}"
        f"{'false/src-yr':>14}"
        + "".join(f"{sid + ' /yr':>12}" for sid in REGULAR_SOURCES)
        + "".join(f"{kind.split()[0] + ' 2d':>10}" for kind in EVENT_KINDS)
    )
    for name, m in result["methods"].items():
        by_source = details[name]["false_alert_episodes_per_year_by_source"]
        lines.append(f"{name:<15}{'in-sample':<11}{_fmt(levels.get(name), 'g'):>11}{_figures(m, by_source)}")
        if cv:
            chosen = [fold["methods"][name]["level"] for fold in cv["folds"]]
            span = f"{min(chosen):g}" if min(chosen) == max(chosen) else f"{min(chosen):g}-{max(chosen):g}"
            lines.append(
                f"{'':<15}{'cv':<11}{span:>11}"
                f"{_figures(cv['methods'][name], cv['details'][name]['false_alert_episodes_per_year_by_source'])}"
            )
    lines.append(
        "baselines (in-sample) made as strict as needed to raise no more false alerts than the model in service:"
    )
    for name in ("formula", "median_5sigma"):
        m = details[name]["at_model_false_alert_rate"]
        level = "no level reaches it" if m["level"] is None else f"level {m['level']:g}"
        lines.append(
            f"{name:<15}{'':<22}{m['recall_2d']:>10.2f}{m['recall_7d']:>10.2f}{'':>15}"
            f"{_fmt(m['false_alerts_per_source_year'], '.2f'):>14}   ({level})"
        )
    if "false_alert_episodes_by_cause" in details["model"]:
        lines.append(
            "false-alert episodes by what the data show at their first alert (evaluation/causes.py): "
            + ", ".join(CAUSES)
            + (", in-sample | cv" if cv else "")
        )
        for name in METHODS:
            parts = [details[name]] + ([cv["details"][name]] if cv else [])
            counts = [" / ".join(str(d["false_alert_episodes_by_cause"][c]) for c in CAUSES) for d in parts]
            rates = [_fmt(d["unexplained_false_alerts_per_source_year"], ".2f") for d in parts]
            lines.append(f"{name:<15}{'  |  '.join(counts):<40}unexplained per source-year {' | '.join(rates)}")
    if cv:
        lines.append(
            "cv: level chosen per fold on the other sources (model alert_sigma / formula threshold / median σ); "
            "held-out source's false episodes and events found within 2 d"
        )
        for fold in cv["folds"]:
            per = [fold["methods"][name] for name in METHODS]
            lines.append(
                f"  {fold['held_out']:<20}{' / '.join(format(p['level'], 'g') for p in per):<22}"
                f"false {' / '.join(str(p['false_alert_episodes']) for p in per):<14}"
                f"found {' / '.join(str(p['found_2d']) for p in per)} of {fold['events']}"
            )
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
