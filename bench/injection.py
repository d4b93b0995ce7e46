"""Injection-recovery on quiet stretches of real MAXI/GSC lightcurves, scored by the code of `flashes evaluate`.

What it measures: how soon the relevance model and the two baselines of `flashes evaluate`
(evaluation/, each at its level in service: the model at the relevance threshold,
5σ over the running median, the original formula at the threshold) find synthetic outbursts added to
real quiet data and colour changes added to real bright sources: completeness within 2 and 7 days by
evaluate's latency rule (the first alert from onset − 2 d on), the peak at which half the outbursts
are found within 2 days, and each method's false-alert episodes per source-year on the data untouched.

Quiet stretches, found in the standard 1-day files that `flashes evaluate` reads, in 2-20 keV mCrab:
a day is active when the running median of 31 points exceeds 3 typical errors (the running median of
the errors: a persistent flux) or the running median of 7 points exceeds 5 (a week-long excursion;
a median, so that single bad days do not count). Quiet stretches are the runs of days at least 30 d
from any active day and at least 365 d long. A stretch whose daily flux rises with that of a
catalogue source within 3° (MAXI/GSC's PSF and its wings) that has a file carries that neighbour's
light and does not count: a one-sided Spearman rank correlation over their common days at
p < 1e-3. MAXI J1535-571 is 2.0° from Cir X-1, and on the days Cir X-1 is above 300 mCrab its
2-20 keV flux is 3σ above zero four times as often as on the others (21 % of days against 5 %): not
a linear leak (about 1 % on average) but scan by scan. (MAXI J1631-479 and 4U 1630-47, 0.6° apart,
share most of their flux, but neither has a quiet year.)
Each stretch is scored as its own series from its start; its first 60 days are the warm-up: their
alerts and their days are not counted.

Outbursts: peak 10 to 320 mCrab in 2-20 keV, a linear rise over 1, 5 or 10 days from the onset,
then an exponential decay (e-folding 15 d), averaged over each day bin (the onset falls anywhere in
its day). Spectra: Crab-like (the peak's mCrab in every band, each with its factor from
flashes/units.py) and hard (photon index 1.6 against the Crab's 2.1: the 2-20 keV photon flux split
over 2-4/4-10/10-20 keV by the power law's integrals, each band converted with its own factor). The
2-20 keV signal is the stated mCrab for both; for the hard spectrum it is also the sum of the bands,
while the Crab-like bands add up to 1.16 times it, as the factors of flashes/units.py do for the
Crab. Noise: the data's own, plus per band the added source's counting noise N(0, √(b·S)), b from
error² = a + b·flux fitted per band to the bright files' days up to 1 Crab (through the medians of
flux bins: a day's error depends on its exposure too), plus a 2 % systematic of the signal (one
factor per day for all bands); the error bars grow by both in quadrature. The onsets (seeded) fall
in the stretches in proportion to their usable days, from 60 d after a stretch's start to 10 d
before its end; every level uses the same onsets and noise draws, so levels differ by their signal
only. Each injection is scored as one series on its window, onset − 150 d (or the stretch start)
to onset + 15 d.
"chance" is the same windows untouched: what lands near an onset without any signal; "data ceiling"
the fraction of onsets followed by a day bin within 2 and 7 days (MAXI's gaps bound every method).
The "matched filter" (bench/oracle.py) is told each outburst's rise and spectrum and tries every onset:
a reference for what these data allow, which no detector can run. Its level is set per rise and spectrum
on the untouched quiet stretches, the least strict with at most QUIET_FALSE false-alert episodes per
source-year (the quietness issue #20 asks of the model there: none in these 19.9 source-years); its
completeness is given beside the methods'.

State changes, in the bright persistent sources (Sco X-1, Cyg X-3, and GRS 1915+105 before its 2018
decline): from a random onset on, the 4-10 and 10-20 keV fluxes times (1 + d) and the 2-4 keV flux
times the factor that gives up what they gained on the median day before the onset, so that the
2-20 keV photon flux stays (the 2-20 keV column is left as it is); each band's error scales like a
counting error (by the square root of its factor). d = ±0.05, 0.1, 0.2, 0.4; a window whose 2-4 keV
flux cannot give up that much (Cyg X-3 in its hard state at d = +0.4) is left out, and the table
says how many were used.

    .venv/bin/python bench/injection.py [--mirror ../shared/data/lightcurves] [--onsets 32] [--seed 0] [--quick]
        [--alert-sigma S]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from oracle import Oracle
from oracle import scores as oracle_scores
from rich.console import Console
from rich.table import Table

from evaluation.causes import field_neighbours
from evaluation.methods import (
    MEDIAN_SIGMA,
    METHODS,
    crossings,
    file_series,
    formula_scores,
    median_sigma_scores,
    model_alerts,
)
from evaluation.metrics import DAYS_PER_YEAR, Event, false_episodes, score_method
from evaluation.run import find_series
from flashes.parsers import ParsedLightcurve, parse
from flashes.settings import PROJECT_ROOT, Settings
from flashes.timeconv import datetime_to_mjd, mjd_to_datetime
from flashes.units import BANDS, MCRAB_PER_UNIT
from services.relevance.model import MODEL_VERSION, PARAMS, Params

MAIN, SUB_BANDS = BANDS["maxi"][0], BANDS["maxi"][1:]
FACTOR = {band: MCRAB_PER_UNIT[("maxi", band)] for band in BANDS["maxi"]}
# Quiet stretches.
LEVEL_POINTS, LEVEL_ERRORS = 31, 3.0
WEEK_POINTS, WEEK_ERRORS = 7, 5.0
MARGIN_D, MIN_STRETCH_D, WARMUP_D = 30.0, 365.0, 60.0
FIELD_P = 1e-3  # a catalogue source within causes.FIELD_DEG whose flux the stretch's follows (one-sided p)
# Outbursts.
PEAKS_MCRAB = (10, 20, 40, 80, 160, 320)
RISES_D = (1, 5, 10)
DECAY_D = 15.0
SPECTRA = ("crab", "hard")
HARD_INDEX = 1.6
SYSTEMATIC = 0.02
HISTORY_D, AFTER_D, END_GAP_D = 150.0, 15.0, 10.0
BIN_SAMPLES = 48  # instants per day bin over which a profile is averaged
# State changes: the bright persistent sources and the end of their bright span (GRS 1915+105 declined in 2018).
BRIGHT_UNTIL = {
    "scox-1": math.inf,
    "cygx-3": math.inf,
    "grs1915+105": datetime_to_mjd(datetime(2018, 1, 1, tzinfo=UTC)),
}
SIZES = (0.05, 0.1, 0.2, 0.4)
# The error model's fit: days up to 1 Crab in the band (the injections reach 320 mCrab in 2-20 keV, 445 in a hard
# 10-20 keV; Sco X-1 is brighter on every day, and its errors follow no line in its flux), in log-spaced flux bins
# of at least NOISE_BIN_DAYS days.
NOISE_TOP_MCRAB, NOISE_BINS, NOISE_BIN_DAYS = 1000.0, 20, 20
# The matched filter's level: the least strict of ORACLE_LEVELS with at most QUIET_FALSE false-alert episodes per
# source-year on the untouched quiet stretches (what issue #20 asks of the model there).
ORACLE_LEVELS = np.round(np.arange(3.0, 15.0001, 0.25), 2)
QUIET_FALSE = 0.05
MATCHED = "matched filter"
QUICK = {"onsets": 8, "peaks": (10, 40, 160), "rises": (1, 5), "sizes": (0.1, 0.4)}
DEFAULT_ONSETS = 32


@dataclass(frozen=True)
class Levels:
    """The relevance threshold, and the model's tuning whose `alert_sigma` sets where it reaches it."""

    threshold: float
    model: Params


Rates = dict[str, dict[str, float]]  # method -> {"2d": completeness within 2 days, "7d": within 7 days}


@dataclass(frozen=True)
class Stretch:
    source_id: str
    start: float
    end: float

    @property
    def key(self) -> str:
        return f"{self.source_id}@{self.start:.1f}"

    @property
    def usable_d(self) -> float:
        """Days where an onset may fall: after the warm-up, END_GAP_D before the end."""
        return self.end - END_GAP_D - self.start - WARMUP_D

    def describe(self) -> str:
        return (
            f"{mjd_to_datetime(self.start):%Y-%m-%d} … {mjd_to_datetime(self.end):%Y-%m-%d} "
            f"({(self.end - self.start) / DAYS_PER_YEAR:.2f} yr)"
        )


@dataclass(frozen=True)
class Onset:
    stretch: Stretch
    mjd: float
    draw: int  # seeds this onset's noise draws, the same at every level


@dataclass(frozen=True)
class Activity:
    """A file's days in 2-20 keV mCrab, judged against its own typical error."""

    mjd: np.ndarray
    raised: np.ndarray  # a month's running median above LEVEL_ERRORS typical errors
    excursion: np.ndarray  # a week's running median above WEEK_ERRORS typical errors


@dataclass(frozen=True)
class Verdict:
    source_id: str
    kept: list[Stretch]
    refused: list[Stretch]
    reason: str  # why no stretch was kept, or why some were refused


@dataclass(frozen=True)
class Leak:
    """How a stretch's daily flux follows a field neighbour's: Spearman r and its one-sided p over common days."""

    neighbour: str
    separation_deg: float
    r: float
    p: float
    days: int

    def describe(self) -> str:
        return (
            f"{self.neighbour} {self.separation_deg:.1f}° away (r = {self.r:.2f} over {self.days} days, "
            f"p = {self.p:.0e})"
        )


def load(settings: Settings, mirror: Path) -> dict[str, ParsedLightcurve]:
    """The standard MAXI 1-day files of the mirror, by source id: the files `flashes evaluate` reads."""
    return {
        sid: parse(inst, path.name, path.read_bytes())
        for sid, inst, path in find_series(settings, mirror)
        if inst == "maxi"
    }


def cut(lc: ParsedLightcurve, start: float, end: float) -> ParsedLightcurve:
    keep = (lc.mjd >= start) & (lc.mjd <= end)
    return dataclasses.replace(
        lc,
        mjd=lc.mjd[keep],
        bands={b: (f[keep], e[keep]) for b, (f, e) in lc.bands.items()},
        flags={k: v[keep] for k, v in lc.flags.items()},
        rejected=[],
    )


def activity(lc: ParsedLightcurve) -> Activity:
    flux, error = (pd.Series(column * FACTOR[MAIN]) for column in lc.bands[MAIN])

    def running_median(values: pd.Series, points: int) -> np.ndarray:
        return values.rolling(points, center=True, min_periods=points // 3 + 1).median().to_numpy()

    typical, week = running_median(error, LEVEL_POINTS), running_median(flux, WEEK_POINTS)
    return Activity(lc.mjd, running_median(flux, LEVEL_POINTS) > LEVEL_ERRORS * typical, week > WEEK_ERRORS * typical)


def quiet_runs(mjd: np.ndarray, active: np.ndarray) -> list[tuple[float, float]]:
    """(first, last) MJD of every run of days more than MARGIN_D from any active day, MIN_STRETCH_D or longer."""
    times = mjd[active]
    quiet = np.ones(len(mjd), dtype=bool)
    if len(times):
        at = np.searchsorted(times, mjd)
        nearest = np.minimum(
            np.abs(mjd - times[np.maximum(at - 1, 0)]), np.abs(times[np.minimum(at, len(times) - 1)] - mjd)
        )
        quiet = nearest > MARGIN_D
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(int), [0]))))
    return [
        (float(mjd[a]), float(mjd[b - 1]))
        for a, b in zip(edges[::2], edges[1::2])
        if mjd[b - 1] - mjd[a] >= MIN_STRETCH_D
    ]


def leak(lc: ParsedLightcurve, stretch: Stretch, other: ParsedLightcurve, neighbour: str, sep: float) -> Leak:
    """How the stretch's 2-20 keV flux follows the neighbour's over their common days (rank correlation; its
    one-sided p from t = r √((n − 2)/(1 − r²)), normal for these hundreds of days)."""
    inside = (lc.mjd >= stretch.start) & (lc.mjd <= stretch.end)
    _, ia, ib = np.intersect1d(lc.mjd[inside], other.mjd, return_indices=True)
    pair = pd.DataFrame({"a": lc.bands[MAIN][0][inside][ia], "b": other.bands[MAIN][0][ib]}).dropna()
    n = len(pair)
    r = float(pair["a"].corr(pair["b"], method="spearman")) if n > 2 else 0.0
    r = 0.0 if math.isnan(r) else r
    t = r * math.sqrt((n - 2) / max(1.0 - r * r, 1e-12)) if n > 2 else 0.0
    return Leak(neighbour, sep, r, 0.5 * math.erfc(t / math.sqrt(2.0)), n)


def find_stretches(lcs: dict[str, ParsedLightcurve], settings: Settings) -> list[Verdict]:
    field = field_neighbours(settings, list(lcs))
    verdicts = []
    for sid, lc in lcs.items():
        act = activity(lc)
        runs = [Stretch(sid, *run) for run in quiet_runs(act.mjd, act.raised | act.excursion)]
        if not runs:
            reason = (
                f"no {MIN_STRETCH_D:g} d without activity: month median above "
                f"{LEVEL_ERRORS:g} typical errors on {act.raised.mean():.0%} of days, "
                f"week median above {WEEK_ERRORS:g} on {act.excursion.mean():.0%}"
            )
            verdicts.append(Verdict(sid, [], [], reason))
            continue
        kept, refused, leaks = [], [], []
        for st in runs:
            followed = [x for b, sep in field[sid] if (x := leak(lc, st, lcs[b], b, sep)).p < FIELD_P]
            (refused if followed else kept).append(st)
            leaks += [f"{st.describe()} follows {x.describe()}" for x in followed]
        verdicts.append(Verdict(sid, kept, refused, "; ".join(leaks) if leaks else "quiet"))
    return verdicts


def noise_model(lcs: list[ParsedLightcurve]) -> dict[str, tuple[float, float]]:
    """(a, b) of error² = a + b·flux per band (photons/cm²/s), a line through the medians of the flux bins of
    the given files' days up to NOISE_TOP_MCRAB: medians, because a day's error also depends on its exposure,
    which scatters error² by a factor of a few at one flux."""
    model = {}
    for band in BANDS["maxi"]:
        flux = np.concatenate([lc.bands[band][0] for lc in lcs])
        variance = np.concatenate([lc.bands[band][1] for lc in lcs]) ** 2
        used = (flux > 0) & (flux * FACTOR[band] <= NOISE_TOP_MCRAB)
        flux, variance = flux[used], variance[used]
        which = np.clip(np.digitize(flux, np.geomspace(flux.min(), flux.max(), NOISE_BINS + 1)) - 1, 0, NOISE_BINS - 1)
        medians = np.array(
            [
                (np.median(flux[which == k]), np.median(variance[which == k]))
                for k in range(NOISE_BINS)
                if np.count_nonzero(which == k) >= NOISE_BIN_DAYS
            ]
        )
        b, a = np.polyfit(medians[:, 0], medians[:, 1], 1)
        if b <= 0:
            raise ValueError(f"the {band} keV errors of the bright files do not grow with their flux (b = {b:.3g})")
        model[band] = (float(a), float(b))
    return model


def bin_times(mjd: np.ndarray, onset: float) -> np.ndarray:
    """Days since the onset at BIN_SAMPLES instants spread over each day bin (bins centred on `mjd`)."""
    return mjd[:, None] - onset + (np.arange(BIN_SAMPLES) + 0.5) / BIN_SAMPLES - 0.5


def outburst_shape(mjd: np.ndarray, onset: float, rise_d: float) -> np.ndarray:
    """Each day bin's mean of a profile rising linearly from 0 at the onset to 1 after rise_d days, then
    e-folding in DECAY_D."""
    t = bin_times(mjd, onset)
    return np.where(t < rise_d, np.clip(t / rise_d, 0.0, None), np.exp(-(t - rise_d) / DECAY_D)).mean(axis=1)


def power_law_shares(index: float) -> dict[str, float]:
    """The fraction of the 2-20 keV photons of a power law (photon index `index`) in each sub-band."""

    def photons(band: str) -> float:
        lo, hi = (float(e) for e in band.split("-"))
        return (hi ** (1 - index) - lo ** (1 - index)) / (1 - index)

    return {band: photons(band) / photons(MAIN) for band in SUB_BANDS}


def peak_photons(peak_mcrab: float, spectrum: str) -> dict[str, float]:
    """Photons/cm²/s per band at an outburst's peak of `peak_mcrab` in 2-20 keV."""
    total = peak_mcrab / FACTOR[MAIN]
    if spectrum == "crab":
        return {MAIN: total, **{band: peak_mcrab / FACTOR[band] for band in SUB_BANDS}}
    return {MAIN: total, **{band: total * share for band, share in power_law_shares(HARD_INDEX).items()}}


def add_source(
    window: ParsedLightcurve,
    signal: dict[str, np.ndarray],
    noise: dict[str, tuple[float, float]],
    rng: np.random.Generator,
) -> ParsedLightcurve:
    """The window plus a source's photon fluxes per band, with their counting noise and the systematic."""
    systematic = rng.normal(0.0, SYSTEMATIC, len(window))
    bands = {}
    for band, (flux, error) in window.bands.items():
        counting = noise[band][1] * signal[band]
        bands[band] = (
            flux + signal[band] * (1.0 + systematic) + rng.normal(0.0, np.sqrt(counting)),
            np.sqrt(error**2 + counting + (SYSTEMATIC * signal[band]) ** 2),
        )
    return dataclasses.replace(window, bands=bands)


def colour_change(window: ParsedLightcurve, onset: float, size: float) -> ParsedLightcurve | None:
    """From the onset on, 4-10 and 10-20 keV times (1 + size) and 2-4 keV times the factor that keeps the 2-20 keV
    photon flux of the median day before the onset; None where the 2-4 keV flux cannot give up that much."""
    before = window.mjd < onset
    soft = np.median(window.bands["2-4"][0][before])
    hard = sum(np.median(window.bands[band][0][before]) for band in ("4-10", "10-20"))
    if soft <= 0 or size * hard >= soft:
        return None
    after = (bin_times(window.mjd, onset) >= 0).mean(axis=1)
    bands = dict(window.bands)
    for band, ratio in (("2-4", 1.0 - size * hard / soft), ("4-10", 1.0 + size), ("10-20", 1.0 + size)):
        flux, error = window.bands[band]
        factor = 1.0 + (ratio - 1.0) * after
        bands[band] = (flux * factor, error * np.sqrt(factor))
    return dataclasses.replace(window, bands=bands)


def method_alerts(lc: ParsedLightcurve, levels: Levels) -> dict[str, list[float]]:
    """Alert times of each method on one series, as `flashes evaluate` finds them (the model at `levels.model`)."""
    series = file_series(lc, "maxi", "injected")
    return {
        "model": model_alerts(series, levels.threshold, levels.model),
        "formula": crossings(series.mjd, formula_scores(series), levels.threshold),
        "median_5sigma": crossings(series.mjd, median_sigma_scores(series), MEDIAN_SIGMA),
    }


def recovered(
    alerts: dict[str, list[float]], cases: list[tuple[ParsedLightcurve, float]], kind: str
) -> dict[str, float]:
    """The fraction of cases (a window and its onset) alerted within 2 and 7 days by evaluate's rule, from each
    case's alert times (by its index)."""
    spans = {str(i): float(lc.mjd[-1] - lc.mjd[0]) for i, (lc, _) in enumerate(cases)}
    events = [Event(str(i), kind, onset) for i, (_, onset) in enumerate(cases)]
    metrics, _ = score_method(alerts, spans, events)
    return {"2d": round(metrics["recall_2d"], 3), "7d": round(metrics["recall_7d"], 3)}


def completeness(cases: list[tuple[ParsedLightcurve, float]], kind: str, levels: Levels) -> Rates:
    """Per method, the fraction of cases alerted within 2 and 7 days."""
    alerts: dict[str, dict[str, list[float]]] = {name: {} for name in METHODS}
    for i, (lc, _) in enumerate(cases):
        for name, times in method_alerts(lc, levels).items():
            alerts[name][str(i)] = times
    return {name: recovered(alerts[name], cases, kind) for name in METHODS}


def false_rates(
    lcs: dict[str, ParsedLightcurve], stretches: list[Stretch], levels: Levels
) -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    """Each method's false-alert episodes per source-year on the untouched stretches, each scored from its start
    without its warm-up's alerts and days; and each stretch's false episodes per method."""
    alerts: dict[str, dict[str, list[float]]] = {name: {} for name in METHODS}
    spans = {}
    for st in stretches:
        for name, times in method_alerts(cut(lcs[st.source_id], st.start, st.end), levels).items():
            alerts[name][st.key] = [t for t in times if t >= st.start + WARMUP_D]
        spans[st.key] = st.end - st.start - WARMUP_D
    rates = {
        name: round(score_method(alerts[name], spans, [])[0]["false_alerts_per_source_year"], 3) for name in METHODS
    }
    episodes = {name: false_episodes(alerts[name], []) for name in METHODS}
    return rates, {st.key: {name: episodes[name][st.key][0] for name in METHODS} for st in stretches}


@dataclass(frozen=True)
class Matched:
    """The matched filter of one outburst (bench/oracle.py) at its level: the least strict of ORACLE_LEVELS with at
    most QUIET_FALSE false-alert episodes per source-year on the untouched quiet stretches."""

    oracle: Oracle
    level: float
    false_per_source_year: float

    def alerts(self, lc: ParsedLightcurve) -> list[float]:
        return crossings(*oracle_scores(lc, self.oracle, FACTOR), self.level)

    def recovered(self, cases: list[tuple[ParsedLightcurve, float]], kind: str) -> dict[str, float]:
        """The fraction of cases it alerts within 2 and 7 days."""
        return recovered({str(i): self.alerts(lc) for i, (lc, _) in enumerate(cases)}, cases, kind)


def matched_filters(
    lcs: dict[str, ParsedLightcurve], stretches: list[Stretch], rises: tuple[int, ...]
) -> dict[tuple[str, int], Matched]:
    """The matched filter of each spectrum and rise, at its level (the strictest if none is quiet enough)."""
    spans = {st.key: st.end - st.start - WARMUP_D for st in stretches}
    filters = {}
    for spectrum in SPECTRA:
        template = {band: mcrab * FACTOR[band] for band, mcrab in peak_photons(1.0, spectrum).items() if band != MAIN}
        for rise in rises:
            oracle = Oracle.of(template, rise, outburst_shape)
            found = {
                st.key: (st.start + WARMUP_D, oracle_scores(cut(lcs[st.source_id], st.start, st.end), oracle, FACTOR))
                for st in stretches
            }
            for level in ORACLE_LEVELS:
                alerts = {key: [t for t in crossings(*z, level) if t >= after] for key, (after, z) in found.items()}
                rate = score_method(alerts, spans, [])[0]["false_alerts_per_source_year"]
                if rate <= QUIET_FALSE:
                    break
            filters[(spectrum, rise)] = Matched(oracle, float(level), round(rate, 3))
    return filters


def draw_onsets(stretches: list[Stretch], n: int, rng: np.random.Generator) -> list[Onset]:
    usable = np.array([st.usable_d for st in stretches])
    picks = rng.choice(len(stretches), size=n, p=usable / usable.sum())
    return [
        Onset(stretches[k], stretches[k].start + WARMUP_D + rng.uniform(0.0, usable[k]), i) for i, k in enumerate(picks)
    ]


def window(lcs: dict[str, ParsedLightcurve], onset: Onset) -> ParsedLightcurve:
    return cut(lcs[onset.stretch.source_id], max(onset.stretch.start, onset.mjd - HISTORY_D), onset.mjd + AFTER_D)


def outburst_recovery(
    lcs: dict[str, ParsedLightcurve],
    onsets: list[Onset],
    noise: dict[str, tuple[float, float]],
    peaks: tuple[int, ...],
    rises: tuple[int, ...],
    seed: int,
    levels: Levels,
    filters: dict[tuple[str, int], Matched],
) -> dict[str, dict[str, dict[str, Rates]]]:
    """completeness[spectrum][rise_d][peak_mcrab][method or MATCHED] = {"2d", "7d"}."""
    windows = [window(lcs, onset) for onset in onsets]
    table: dict[str, dict[str, dict[str, Rates]]] = {}
    for spectrum in SPECTRA:
        for rise in rises:
            shapes = [outburst_shape(w.mjd, onset.mjd, rise) for w, onset in zip(windows, onsets)]
            for peak in peaks:
                photons = peak_photons(peak, spectrum)
                cases = [
                    (
                        add_source(
                            w,
                            {band: p * shape for band, p in photons.items()},
                            noise,
                            np.random.default_rng((seed, onset.draw)),
                        ),
                        onset.mjd,
                    )
                    for w, onset, shape in zip(windows, onsets, shapes)
                ]
                table.setdefault(spectrum, {}).setdefault(str(rise), {})[str(peak)] = {
                    **completeness(cases, "outburst onset", levels),
                    MATCHED: filters[(spectrum, rise)].recovered(cases, "outburst onset"),
                }
    return table


def peak_at_half(fractions: list[float], peaks: tuple[int, ...]) -> float | str | None:
    """The peak where completeness first reaches 0.5, log-interpolated between levels ("<p" below the smallest)."""
    for i, fraction in enumerate(fractions):
        if fraction >= 0.5:
            if i == 0:
                return f"<{peaks[0]}"
            below, lo, hi = fractions[i - 1], math.log(peaks[i - 1]), math.log(peaks[i])
            return round(math.exp(lo + (0.5 - below) / (fraction - below) * (hi - lo)), 1)
    return None


def state_recovery(
    lcs: dict[str, ParsedLightcurve], onsets: list[Onset], sizes: tuple[float, ...], levels: Levels
) -> dict[str, dict]:
    """[signed size] = {"cases": windows that can take the change, method: {"2d", "7d"}}; positive sizes harden."""
    windows = [window(lcs, onset) for onset in onsets]
    table = {}
    for size in sorted([*sizes, *(-s for s in sizes)]):
        changed = [(colour_change(w, onset.mjd, size), onset.mjd) for w, onset in zip(windows, onsets)]
        cases = [(lc, mjd) for lc, mjd in changed if lc is not None]
        table[f"{size:+g}"] = {"cases": len(cases), **completeness(cases, "state transition", levels)}
    return table


def untouched(lcs: dict[str, ParsedLightcurve], onsets: list[Onset]) -> list[tuple[ParsedLightcurve, float]]:
    """The onsets' windows without any signal, with their onsets: what lands near an onset by chance."""
    return [(window(lcs, onset), onset.mjd) for onset in onsets]


def data_ceiling(lcs: dict[str, ParsedLightcurve], onsets: list[Onset]) -> dict[str, float]:
    """The fraction of onsets with a day bin that can show them within 2 and 7 days: MAXI's gaps bound every method."""

    def shown(onset: Onset, days: float) -> bool:
        mjd = window(lcs, onset).mjd
        return bool(np.any((mjd > onset.mjd - 0.5) & (mjd <= onset.mjd + days)))

    return {f"{days}d": round(float(np.mean([shown(onset, days) for onset in onsets])), 3) for days in (2, 7)}


def rates_row(rates: Rates, names: tuple[str, ...] = METHODS) -> list[str]:
    return [f"{rates[name]['2d']:.2f} / {rates[name]['7d']:.2f}" if name in rates else "" for name in names]


def show(console: Console, result: dict, verdicts: list[Verdict], episodes: dict[str, dict[str, int]]) -> None:
    stretches = Table(title="Quiet stretches (2-20 keV, found in the data): false-alert episodes after the warm-up")
    for column in ("source", "stretch", *METHODS, "verdict"):
        stretches.add_column(column)
    for v in verdicts:
        for st in v.kept:
            stretches.add_row(v.source_id, st.describe(), *(str(episodes[st.key][name]) for name in METHODS), "kept")
        for st in v.refused:
            stretches.add_row(v.source_id, st.describe(), "", "", "", "refused")
    console.print(stretches)
    for v in verdicts:
        if v.refused or not v.kept:
            console.print(f"  {v.source_id}: {'stretches refused' if v.refused else 'no quiet stretch'}: {v.reason}")
    false = Table(title="False-alert episodes per source-year, untouched data (warm-up excluded)")
    for column in ("data", "source-years", *METHODS):
        false.add_column(column)
    for label, part in (("quiet stretches", result), ("bright sources", result["state_change"])):
        false.add_row(
            label,
            f"{part['source_years']:.1f}",
            *(f"{part['false_episodes_per_source_year'][name]:.3f}" for name in METHODS),
        )
    console.print(false)
    noise = Table(title="Error model error² = a + b·flux (photons/cm²/s), on the bright files' days up to 1 Crab")
    for column in ("band", "a", "b", "counting error at 100 mCrab (mCrab)"):
        noise.add_column(column)
    for band, fit in result["noise_model"].items():
        noise.add_row(
            band, f"{fit['a']:.3g}", f"{fit['b']:.3g}", f"{math.sqrt(fit['b'] * 100 / FACTOR[band]) * FACTOR[band]:.1f}"
        )
    console.print(noise)
    told = Table(
        title=f"The {MATCHED} (told each outburst's rise and spectrum): its level, the least strict with at most "
        f"{QUIET_FALSE:g} false-alert episodes per source-year on the quiet stretches"
    )
    for column in ("spectrum", "rise d", "level σ", "false / source-year", "chance 2 d / 7 d"):
        told.add_column(column)
    for spectrum, by_rise in result["matched_filter"].items():
        for rise, found_at in by_rise.items():
            told.add_row(
                spectrum,
                rise,
                f"{found_at['level']:g}",
                f"{found_at['false_episodes_per_source_year']:.3f}",
                *rates_row({MATCHED: found_at["chance"]}, (MATCHED,)),
            )
    console.print(told)
    columns = (*METHODS, MATCHED)
    found = Table(title="Outbursts found within 2 d / 7 d (completeness)")
    for column in ("spectrum", "rise d", "peak mCrab", *columns):
        found.add_column(column)
    found.add_row("none", "", "chance", *rates_row(result["chance"], columns))
    ceiling = result["data_ceiling"]
    found.add_row("any", "", "data ceiling", *[f"{ceiling['2d']:.2f} / {ceiling['7d']:.2f}"] * len(columns))
    for spectrum, by_rise in result["completeness"].items():
        for rise, by_peak in by_rise.items():
            for peak, rates in by_peak.items():
                found.add_row(spectrum, rise, peak, *rates_row(rates, columns))
    console.print(found)
    half = Table(title="Peak (mCrab) at 50 % completeness within 2 d")
    for column in ("spectrum", "rise d", *columns):
        half.add_column(column)
    for spectrum, by_rise in result["peak_at_50pct_2d"].items():
        for rise, by_method in by_rise.items():
            half.add_row(
                spectrum,
                rise,
                *("not reached" if by_method[name] is None else str(by_method[name]) for name in columns),
            )
    console.print(half)
    state = Table(
        title=f"Colour changes at constant 2-20 keV flux ({', '.join(result['state_change']['sources'])}), "
        "found within 2 d / 7 d"
    )
    for column in ("d", "onsets", *METHODS):
        state.add_column(column)
    state.add_row("0 (chance)", str(result["onsets"]), *rates_row(result["state_change"]["chance"]))
    ceiling = result["state_change"]["data_ceiling"]
    state.add_row("data ceiling", str(result["onsets"]), *[f"{ceiling['2d']:.2f} / {ceiling['7d']:.2f}"] * len(METHODS))
    for size, rates in result["state_change"]["completeness"].items():
        state.add_row(size, str(rates["cases"]), *rates_row(rates))
    console.print(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", default=str(PROJECT_ROOT.parent / "shared" / "data" / "lightcurves"))
    parser.add_argument(
        "--onsets", type=int, help=f"onsets per level (default {DEFAULT_ONSETS}, with --quick {QUICK['onsets']})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--alert-sigma",
        type=float,
        help=f"the model's level (evidence σ at the threshold; default {PARAMS.alert_sigma:g}, the one in service)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"peaks {QUICK['peaks']}, rises {QUICK['rises']}, sizes {QUICK['sizes']}, fewer onsets",
    )
    args = parser.parse_args()
    peaks, rises, sizes = (
        (QUICK["peaks"], QUICK["rises"], QUICK["sizes"]) if args.quick else (PEAKS_MCRAB, RISES_D, SIZES)
    )
    n = args.onsets or (QUICK["onsets"] if args.quick else DEFAULT_ONSETS)
    settings = Settings.from_env(os.environ)
    threshold = settings.relevance_threshold
    params = PARAMS if args.alert_sigma is None else dataclasses.replace(PARAMS, alert_sigma=args.alert_sigma)
    levels = Levels(threshold, params)
    lcs = load(settings, Path(args.mirror))
    missing = sorted(set(BRIGHT_UNTIL) - set(lcs))
    if missing:
        raise SystemExit(f"no MAXI file of {', '.join(missing)} under {args.mirror}/maxi")
    verdicts = find_stretches(lcs, settings)
    quiet = [st for v in verdicts for st in v.kept]
    if not quiet:
        raise SystemExit(f"no quiet stretch in the MAXI files under {args.mirror}/maxi")
    bright = [
        Stretch(sid, float(lcs[sid].mjd[0]), float(lcs[sid].mjd[lcs[sid].mjd < until][-1]))
        for sid, until in BRIGHT_UNTIL.items()
    ]
    noise = noise_model([lcs[sid] for sid in BRIGHT_UNTIL])
    rng = np.random.default_rng(args.seed)
    onsets, state_onsets = draw_onsets(quiet, n, rng), draw_onsets(bright, n, rng)

    quiet_false, episodes = false_rates(lcs, quiet, levels)
    bright_false, _ = false_rates(lcs, bright, levels)
    filters = matched_filters(lcs, quiet, rises)
    table = outburst_recovery(lcs, onsets, noise, peaks, rises, args.seed, levels, filters)
    chance = untouched(lcs, onsets)
    result = {
        "model_version": MODEL_VERSION,
        "threshold": threshold,
        "alert_sigma": params.alert_sigma,
        "median_sigma": MEDIAN_SIGMA,
        "onsets": n,
        "seed": args.seed,
        "quick": args.quick,
        "warmup_d": WARMUP_D,
        "stretches": [
            {
                "source_id": st.source_id,
                "start_mjd": st.start,
                "end_mjd": st.end,
                "years": round((st.end - st.start) / DAYS_PER_YEAR, 2),
            }
            for st in quiet
        ],
        "refused": [
            {"source_id": v.source_id, "reason": v.reason, "stretches": [[st.start, st.end] for st in v.refused]}
            for v in verdicts
            if v.refused or not v.kept
        ],
        "source_years": round(sum(st.end - st.start - WARMUP_D for st in quiet) / DAYS_PER_YEAR, 2),
        "false_episodes_per_source_year": quiet_false,
        "noise_model": {band: {"a": a, "b": b} for band, (a, b) in noise.items()},
        "completeness": table,
        "chance": completeness(chance, "outburst onset", levels),
        "data_ceiling": data_ceiling(lcs, onsets),
        "matched_filter": {
            spectrum: {
                str(rise): {
                    "level": found.level,
                    "false_episodes_per_source_year": found.false_per_source_year,
                    "chance": found.recovered(chance, "outburst onset"),
                }
                for (of, rise), found in filters.items()
                if of == spectrum
            }
            for spectrum in SPECTRA
        },
        "peak_at_50pct_2d": {
            spectrum: {
                rise: {
                    name: peak_at_half([by_peak[str(p)][name]["2d"] for p in peaks], peaks)
                    for name in (*METHODS, MATCHED)
                }
                for rise, by_peak in by_rise.items()
            }
            for spectrum, by_rise in table.items()
        },
        "state_change": {
            "sources": [st.source_id for st in bright],
            "source_years": round(sum(st.end - st.start - WARMUP_D for st in bright) / DAYS_PER_YEAR, 2),
            "false_episodes_per_source_year": bright_false,
            "completeness": state_recovery(lcs, state_onsets, sizes, levels),
            "chance": completeness(untouched(lcs, state_onsets), "state transition", levels),
            "data_ceiling": data_ceiling(lcs, state_onsets),
        },
    }
    console = Console(width=120)
    console.print(
        f"model {MODEL_VERSION} at {params.alert_sigma:g}σ, threshold {threshold}, median baseline "
        f"{MEDIAN_SIGMA:g}σ; {n} onsets per level (seed {args.seed}); warm-up {WARMUP_D:g} d; "
        f"{result['source_years']:.1f} quiet source-years"
    )
    show(console, result, verdicts, episodes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
