"""Readers of the providers' lightcurve files into validated column arrays.

Each reader returns a `ParsedLightcurve`: the good rows as arrays, and every rejected line with
the reason (they go to the dead-letter topic). Bad lines never stop the good ones.
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from astropy.io import fits

MAXI_COLUMNS = ["MJD", "F2_20", "E2_20", "F2_4", "E2_4", "F4_10", "E4_10", "F10_20", "E10_20"]
MAXI_BANDS = {"2-20": ("F2_20", "E2_20"), "2-4": ("F2_4", "E2_4"), "4-10": ("F4_10", "E4_10"),
              "10-20": ("F10_20", "E10_20")}
BAT_COLUMNS = ["TIME", "RATE", "ERROR", "YEAR", "DAY", "STAT_ERR", "SYS_ERR", "DATA_FLAG",
               "TIMEDEL_EXPO", "TIMEDEL_CODED", "TIMEDEL_DITHERED"]
BAT_BANDS = {"15-50": ("RATE", "ERROR")}
GZIP_MAGIC = b"\x1f\x8b"


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


def _header(text: str, default_columns: list[str]) -> tuple[list[str], int]:
    """Column names and the offset of the first data line.

    Skipped: `#` comments and at most one bare line of words (e.g. MAXI's `MJDcenter 2-20keV …`).
    A line naming the columns (with or without `#`, first name as expected) decides their order.
    """
    columns, offset, bare_words = default_columns, 0, False
    for line in io.StringIO(text):
        stripped = line.strip()
        words = stripped.lstrip("#").split()
        if stripped and not stripped.startswith("#"):
            if bare_words or _is_number(words[0]):
                break
            bare_words = True
        if words and words[0].upper() == default_columns[0]:
            columns = [w.upper() for w in words]
        offset += len(line)
    return columns, offset


def _fast_table(body: str, columns: list[str]) -> np.ndarray | None:
    """The common case, vectorised: every data line numeric with the same column count (else None)."""
    try:
        frame = pd.read_csv(io.StringIO(body), sep=r"\s+", header=None, comment="#", dtype=np.float64,
                            names=range(len(columns) + 1), engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    values = frame.to_numpy()
    if not np.isfinite(values[:, :-1]).all() or not np.isnan(values[:, -1]).all():
        return None
    return np.ascontiguousarray(values[:, :-1])


def _table(body: str, columns: list[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Line by line, for a body with bad lines: (float rows, rejected lines with reasons)."""
    rows: list[list[str]] = []
    rejected: list[tuple[str, str]] = []
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = stripped.split()
        if len(tokens) != len(columns):
            rejected.append((line, f"expected {len(columns)} columns, found {len(tokens)}"))
            continue
        rows.append(tokens)
    if not rows:
        return np.empty((0, len(columns))), rejected
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
    return values, rejected


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


def _assemble(columns: list[str], values: np.ndarray, rejected: list[tuple[str, str]], time_col: str,
              bands: dict[str, tuple[str, str]], flag_columns: dict[str, str]) -> ParsedLightcurve:
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


def _read_text(text: str, default_columns: list[str]) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(column names, float rows, rejected lines) of a whitespace table."""
    columns, offset = _header(text, default_columns)
    body = text[offset:]
    values = _fast_table(body, columns)
    return (columns, values, []) if values is not None else (columns, *_table(body, columns))


def parse_maxi(text: str) -> ParsedLightcurve:
    """MAXI/GSC `*_g_lc_1day_all.dat`: MJD and flux/error in 2-20, 2-4, 4-10, 10-20 keV (photons/cm²/s)."""
    return _assemble(*_read_text(text, MAXI_COLUMNS), "MJD", MAXI_BANDS, {})


def parse_bat(text: str) -> ParsedLightcurve:
    """Swift/BAT transient monitor daily `*.lc.txt`: TIME (MJD), RATE, ERROR in 15-50 keV (counts/cm²/s)."""
    return _assemble(*_read_text(text, BAT_COLUMNS), "TIME", BAT_BANDS, {"data_flag": "DATA_FLAG"})


def _fits_table(content: bytes, required: list[str]) -> tuple[list[str], np.ndarray, dict]:
    """The first binary table holding every required column: (upper-case names, float rows, header)."""
    try:
        hdus = fits.open(io.BytesIO(content), memmap=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"not a readable FITS file: {exc}") from exc
    with hdus:
        for hdu in hdus[1:]:
            if not isinstance(hdu, fits.BinTableHDU):
                continue
            names = [n.upper() for n in hdu.columns.names]
            if all(r in names for r in required):
                data = hdu.data
                values = np.column_stack([np.asarray(data.field(n), dtype=np.float64).reshape(len(data), -1)[:, 0]
                                          for n in hdu.columns.names]) if len(data) else np.empty((0, len(names)))
                return names, values, dict(hdu.header)
        found = [[n.upper() for n in h.columns.names] for h in hdus[1:] if isinstance(h, fits.BinTableHDU)]
    raise ValueError(f"FITS file has no table with columns {', '.join(required)} (tables found: {found})")


def parse_bat_fits(content: bytes) -> ParsedLightcurve:
    """Swift/BAT `*.lc.fits`. TIME in MJD, or in mission seconds (unit 's') from MJDREFI+MJDREFF."""
    names, values, header = _fits_table(content, ["TIME", "RATE", "ERROR"])
    t = names.index("TIME")
    if str(header.get(f"TUNIT{t + 1}", "")).strip().lower() == "s":
        mjdref = float(header.get("MJDREFI", 51910)) + float(header.get("MJDREFF", 7.428703703703703e-4))
        values[:, t] = mjdref + values[:, t] / 86400.0
    return _assemble(names, values, [], "TIME", BAT_BANDS, {"data_flag": "DATA_FLAG"})


def parse_gbm_fits(content: bytes) -> ParsedLightcurve:
    """Fermi/GBM pulsar monitor `*_old.fits.gz`: PSRTIME (MJD), AMPLITUDE, AMPLITUDE_ERR in 12-50 keV.

    The provider's AMPLITUDE_ERR is often 0: such points are kept with error 0.
    """
    names, values, _ = _fits_table(content, ["PSRTIME", "AMPLITUDE", "AMPLITUDE_ERR"])
    return _assemble(names, values, [], "PSRTIME", {"12-50": ("AMPLITUDE", "AMPLITUDE_ERR")}, {})


def _looks_like_html(head: bytes) -> bool:
    lowered = head.lstrip().lower()
    return lowered.startswith((b"<!doctype", b"<html", b"<?xml")) or b"<html" in lowered[:512]


def parse(instrument: str, url: str, content: bytes) -> ParsedLightcurve:
    """Read a provider file of any supported kind, after checking it is one at all."""
    if content[:2] == GZIP_MAGIC:
        try:
            content = gzip.decompress(content)
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"truncated or corrupt gzip: {exc}") from exc
    elif url.endswith(".gz"):
        raise ValueError("not gzip although the file name ends in .gz")
    if not content.strip():
        raise ValueError("empty file")
    if _looks_like_html(content[:1024]):
        raise ValueError("an HTML page, not a lightcurve (an error page from the provider?)")
    if content.startswith(b"SIMPLE  ="):
        if instrument == "fermi":
            return parse_gbm_fits(content)
        if instrument == "swift":
            return parse_bat_fits(content)
        raise ValueError(f"a FITS file where a {instrument} text lightcurve was expected")
    text = content.decode("utf-8", errors="replace")
    if instrument == "maxi":
        return parse_maxi(text)
    if instrument == "swift":
        return parse_bat(text)
    raise ValueError(f"a text file where a {instrument} FITS lightcurve was expected")
