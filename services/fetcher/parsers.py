"""Readers of the providers' lightcurve files into validated column arrays.

Each reader returns a `ParsedLightcurve`: the good rows as arrays, and every rejected line with
the reason (they go to the dead-letter topic). Bad lines never stop the good ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAXI_COLUMNS = ["MJD", "F2_20", "E2_20", "F2_4", "E2_4", "F4_10", "E4_10", "F10_20", "E10_20"]
MAXI_BANDS = {"2-20": ("F2_20", "E2_20"), "2-4": ("F2_4", "E2_4"), "4-10": ("F4_10", "E4_10"),
              "10-20": ("F10_20", "E10_20")}
BAT_COLUMNS = ["TIME", "RATE", "ERROR", "YEAR", "DAY", "STAT_ERR", "SYS_ERR", "DATA_FLAG",
               "TIMEDEL_EXPO", "TIMEDEL_CODED", "TIMEDEL_DITHERED"]
BAT_BANDS = {"15-50": ("RATE", "ERROR")}


@dataclass
class ParsedLightcurve:
    mjd: np.ndarray
    bands: dict[str, tuple[np.ndarray, np.ndarray]]
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (line, reason)

    def __len__(self) -> int:
        return len(self.mjd)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _table(text: str, default_columns: list[str]) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Split a whitespace table into (column names, float rows, rejected lines).

    `#` lines are comments; a line of words before the first data row is a column header
    (with or without a leading `#`), which then decides the column order.
    """
    columns = default_columns
    rows: list[list[str]] = []
    rejected: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        body = stripped.lstrip("#").split()
        if stripped.startswith("#"):
            if not rows and body and body[0].upper() in {c.upper() for c in default_columns[:1]}:
                columns = [c.upper() for c in body]
            continue
        tokens = stripped.split()
        if not rows and not rejected and not any(_is_number(t) for t in tokens):
            columns = [c.upper() for c in tokens] if tokens[0].upper() == default_columns[0] else default_columns
            continue
        if len(tokens) != len(columns):
            rejected.append((line, f"expected {len(columns)} columns, found {len(tokens)}"))
            continue
        rows.append(tokens)
    if not rows:
        return columns, np.empty((0, len(columns))), rejected
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:  # a non-numeric token somewhere: find the rows one by one
        good = []
        for tokens in rows:
            bad = [t for t in tokens if not _is_number(t)]
            if bad:
                rejected.append((" ".join(tokens), f"not a number: {bad[0]!r}"))
            else:
                good.append(tokens)
        values = np.array(good, dtype=np.float64).reshape(-1, len(columns))
    return columns, values, rejected


def _validate(columns: list[str], values: np.ndarray, time_col: str, bands: dict[str, tuple[str, str]],
              rejected: list[tuple[str, str]]) -> np.ndarray:
    """Boolean mask of usable rows; every unusable row is added to `rejected` with its reason."""
    idx = {c: i for i, c in enumerate(columns)}
    used = [idx[time_col]] + [idx[c] for pair in bands.values() for c in pair]
    finite = np.isfinite(values[:, used]).all(axis=1)
    errors = values[:, [idx[e] for _, e in bands.values()]]
    positive_error = (errors >= 0).all(axis=1)
    times = values[:, idx[time_col]]
    # Strictly increasing time: a row not later than every row before it is a duplicate or out of order.
    running_max = np.maximum.accumulate(np.where(finite & positive_error, times, -np.inf))
    increasing = np.ones(len(times), dtype=bool)
    increasing[1:] = times[1:] > running_max[:-1]
    ok = finite & positive_error & increasing
    for i in np.flatnonzero(~ok):
        reason = ("non-finite value" if not finite[i] else
                  "negative error" if not positive_error[i] else
                  "time not after the previous row (duplicate or out of order)")
        rejected.append((" ".join(repr(v) if not np.isfinite(v) else f"{v:g}" for v in values[i]), reason))
    return ok


def _parse(text: str, default_columns: list[str], time_col: str, bands: dict[str, tuple[str, str]],
           flag_columns: dict[str, str]) -> ParsedLightcurve:
    columns, values, rejected = _table(text, default_columns)
    missing = [c for c in [time_col, *(c for pair in bands.values() for c in pair)] if c not in columns]
    if missing:
        raise ValueError(f"not a lightcurve: missing column(s) {', '.join(missing)} (found {columns})")
    ok = _validate(columns, values, time_col, bands, rejected)
    good = values[ok]
    idx = {c: i for i, c in enumerate(columns)}
    return ParsedLightcurve(
        mjd=good[:, idx[time_col]],
        bands={band: (good[:, idx[f]], good[:, idx[e]]) for band, (f, e) in bands.items()},
        flags={name: good[:, idx[col]].astype(np.int64) for name, col in flag_columns.items() if col in idx},
        rejected=rejected,
    )


def parse_maxi(text: str) -> ParsedLightcurve:
    """MAXI/GSC `*_g_lc_1day_all.dat`: MJD and flux/error in 2-20, 2-4, 4-10, 10-20 keV (photons/cm²/s)."""
    return _parse(text, MAXI_COLUMNS, "MJD", MAXI_BANDS, {})


def parse_bat(text: str) -> ParsedLightcurve:
    """Swift/BAT transient monitor daily `*.lc.txt`: TIME (MJD), RATE, ERROR in 15-50 keV (counts/cm²/s)."""
    return _parse(text, BAT_COLUMNS, "TIME", BAT_BANDS, {"data_flag": "DATA_FLAG"})


PARSERS = {"maxi": parse_maxi, "swift": parse_bat}
