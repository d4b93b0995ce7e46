"""Readers of the providers' lightcurve files into validated column arrays.

Each reader returns a `ParsedLightcurve`: the good rows as arrays, and every rejected line with
the reason (they go to the dead-letter topic). Bad lines never stop the good ones; a file that
cannot be read at all raises `RefusedFile` with the reason, whatever the reading tripped on.
"""

from __future__ import annotations

import bisect
import io
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from flashes.clock import FUTURE_DAYS
from flashes.errors import RefusedFile
from flashes.timeconv import datetime_to_mjd

MAXI_COLUMNS = ["MJD", "F2_20", "E2_20", "F2_4", "E2_4", "F4_10", "E4_10", "F10_20", "E10_20"]
MAXI_BANDS = {
    "2-20": ("F2_20", "E2_20"),
    "2-4": ("F2_4", "E2_4"),
    "4-10": ("F4_10", "E4_10"),
    "10-20": ("F10_20", "E10_20"),
}
BAT_COLUMNS = [
    "TIME",
    "RATE",
    "ERROR",
    "YEAR",
    "DAY",
    "STAT_ERR",
    "SYS_ERR",
    "DATA_FLAG",
    "TIMEDEL_EXPO",
    "TIMEDEL_CODED",
    "TIMEDEL_DITHERED",
]
BAT_BANDS = {"15-50": ("RATE", "ERROR")}
BAT_FLAGS = {"data_flag": "DATA_FLAG"}
GBM_BANDS = {"12-50": ("AMPLITUDE", "AMPLITUDE_ERR")}
GZIP_MAGIC = b"\x1f\x8b"
INFLATE_STEP = 1 << 20  # bytes inflated per call, so a gzip bomb is stopped within 1 MiB of the limit
FITS_BLOCK = 2880
TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])")
TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}

# The earliest time each instrument can have observed (MJD, UTC): MAXI was attached to the ISS on
# 2009-07-16, Swift launched on 2004-11-20, Fermi on 2008-06-11. A row dated before is a typo.
LAUNCH_MJD = {"maxi": 55028.0, "swift": 53329.0, "fermi": 54628.0}
# |flux| and error per point at most this, in provider units: over 2,000 Crab in every band (1 unit is
# 222 to 4,545 mCrab, flashes/units.py), where the brightest persistent source, Sco X-1, is about 15 Crab.
MAX_ABS_VALUE = 1e4
# A file with more bad lines than this is not the kind of file expected (a real one has ~4,000 lines);
# it is refused whole instead of filling the dead-letter topic line by line.
MAX_BAD_LINES = 1000

# Why a line is refused: its short label (the dead-letter metric's reason) -> how the reason begins.
LINE_REASONS = {
    "columns": "expected",
    "not_a_number": "not a number",
    "non_finite": "non-finite value",
    "negative_error": "negative error",
    "out_of_range": f"flux or error beyond ±{MAX_ABS_VALUE:g}",
    "flag": "flag not an integer",
    "before_launch": "time before the instrument's launch",
    "future": "time after the fetch time plus one day",
    "order": "time out of order or a duplicate",
}


class Rejected(NamedTuple):
    line: str
    reason: str  # what the dead letter says
    label: str  # a key of LINE_REASONS


@dataclass
class ParsedLightcurve:
    mjd: np.ndarray
    bands: dict[str, tuple[np.ndarray, np.ndarray]]
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.mjd)


@dataclass(frozen=True)
class Window:
    """The times a row of this file may have (MJD, UTC)."""

    earliest: float
    latest: float = np.inf


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
        frame = pd.read_csv(
            io.StringIO(body),
            sep=r"\s+",
            header=None,
            comment="#",
            dtype=np.float64,
            names=range(len(columns) + 1),
            engine="c",
        )
    except Exception:  # only a shortcut: whatever pandas trips on, the line-by-line reader decides
        return None
    values = frame.to_numpy()
    if not np.isfinite(values[:, :-1]).all() or not np.isnan(values[:, -1]).all():
        return None
    return np.ascontiguousarray(values[:, :-1])


def _table(body: str, columns: list[str]) -> tuple[np.ndarray, list[Rejected]]:
    """Line by line, for a body with bad lines: (float rows, rejected lines with reasons)."""
    rows: list[list[float]] = []
    rejected: list[Rejected] = []
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = stripped.split()
        if len(tokens) != len(columns):
            rejected.append(Rejected(line, f"expected {len(columns)} columns, found {len(tokens)}", "columns"))
            continue
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            rejected.append(Rejected(line, f"not a number: {bad[:40]!r}", "not_a_number"))
    return np.array(rows, dtype=np.float64).reshape(-1, len(columns)), rejected


def _increasing(times: np.ndarray, sound: np.ndarray) -> np.ndarray:
    """Mask of the longest strictly increasing sequence of the sound rows' times (the rows out of
    order are the fewest possible): a row dated too late (a typo such as MJD 96000.5, or a line
    copied from further down) is refused alone instead of refusing every real row after it, and of
    duplicates the first is kept. Patience sorting, O(n log n); only for a file out of order."""
    rows = np.flatnonzero(sound)
    keep = np.ones(len(times), dtype=bool)
    if (np.diff(times[rows]) > 0).all():
        return keep
    tails: list[float] = []  # tails[k]: the smallest last time of an increasing sequence of k + 1 rows
    tail_rows: list[int] = []
    previous = np.full(len(rows), -1)
    for i, t in enumerate(times[rows].tolist()):
        k = bisect.bisect_left(tails, t)
        if k < len(tails) and tails[k] == t:
            continue  # a duplicate: the earlier row already ends such a sequence
        previous[i] = tail_rows[k - 1] if k else -1
        if k == len(tails):
            tails.append(t)
            tail_rows.append(i)
        else:
            tails[k], tail_rows[k] = t, i
    keep[rows] = False
    i = tail_rows[-1]
    while i >= 0:
        keep[rows[i]] = True
        i = previous[i]
    return keep


def _validate(
    columns: list[str],
    values: np.ndarray,
    time_col: str,
    bands: dict[str, tuple[str, str]],
    flag_columns: list[str],
    window: Window,
    rejected: list[Rejected],
) -> np.ndarray:
    """Boolean mask of usable rows; every unusable row is added to `rejected` with its reason."""
    idx = {c: i for i, c in enumerate(columns)}
    times = values[:, idx[time_col]]
    measured = values[:, [idx[c] for pair in bands.values() for c in pair]]
    errors = values[:, [idx[e] for _, e in bands.values()]]
    flags = values[:, [idx[c] for c in flag_columns]]
    checks = {  # in this order a refused row gets its reason
        "non_finite": np.isfinite(times) & np.isfinite(measured).all(axis=1),
        "negative_error": (errors >= 0).all(axis=1),
        "out_of_range": (np.abs(measured) <= MAX_ABS_VALUE).all(axis=1),
        "flag": (np.isfinite(flags) & (np.round(flags) == flags) & (np.abs(flags) < 2**31)).all(axis=1),
        "before_launch": times >= window.earliest,
        "future": times <= window.latest,
    }
    sound = np.logical_and.reduce(list(checks.values()))
    checks["order"] = _increasing(times, sound)
    ok = sound & checks["order"]
    details = {"before_launch": f" (MJD {window.earliest:g})", "future": f" (MJD {window.latest:.2f})"}
    for i in np.flatnonzero(~ok):
        label = next(name for name, passed in checks.items() if not passed[i])
        line = " ".join(repr(v) if not np.isfinite(v) else f"{v:.10g}" for v in values[i])
        rejected.append(Rejected(line, LINE_REASONS[label] + details.get(label, ""), label))
    return ok


def _assemble(
    columns: list[str],
    values: np.ndarray,
    rejected: list[Rejected],
    time_col: str,
    bands: dict[str, tuple[str, str]],
    flag_columns: dict[str, str],
    window: Window,
) -> ParsedLightcurve:
    missing = [c for c in [time_col, *(c for pair in bands.values() for c in pair)] if c not in columns]
    if missing:
        raise RefusedFile(f"not a lightcurve: missing column(s) {', '.join(missing)} (found {columns[:20]})")
    flags = {name: col for name, col in flag_columns.items() if col in columns}
    ok = _validate(columns, values, time_col, bands, list(flags.values()), window, rejected)
    if len(rejected) > MAX_BAD_LINES:
        raise RefusedFile(
            f"{len(rejected):,} bad lines, more than {MAX_BAD_LINES:,}: not this kind of "
            f"lightcurve (the first: {rejected[0].reason})"
        )
    good = values[ok]
    idx = {c: i for i, c in enumerate(columns)}
    return ParsedLightcurve(
        mjd=good[:, idx[time_col]],
        bands={band: (good[:, idx[f]], good[:, idx[e]]) for band, (f, e) in bands.items()},
        flags={name: good[:, idx[col]].astype(np.int64) for name, col in flags.items()},
        rejected=rejected,
    )


def _read_text(text: str, default_columns: list[str]) -> tuple[list[str], np.ndarray, list[Rejected]]:
    """(column names, float rows, rejected lines) of a whitespace table."""
    columns, offset = _header(text, default_columns)
    body = text[offset:]
    values = _fast_table(body, columns)
    return (columns, values, []) if values is not None else (columns, *_table(body, columns))


def parse_maxi(text: str, latest_mjd: float = np.inf) -> ParsedLightcurve:
    """MAXI/GSC `*_g_lc_1day_all.dat`: MJD and flux/error in 2-20, 2-4, 4-10, 10-20 keV (photons/cm²/s)."""
    return _assemble(*_read_text(text, MAXI_COLUMNS), "MJD", MAXI_BANDS, {}, Window(LAUNCH_MJD["maxi"], latest_mjd))


def parse_bat(text: str, latest_mjd: float = np.inf) -> ParsedLightcurve:
    """Swift/BAT transient monitor daily `*.lc.txt`: TIME (MJD), RATE, ERROR in 15-50 keV (counts/cm²/s)."""
    return _assemble(
        *_read_text(text, BAT_COLUMNS), "TIME", BAT_BANDS, BAT_FLAGS, Window(LAUNCH_MJD["swift"], latest_mjd)
    )


def _fits_value(cards: dict[str, str], keyword: str, low: int, high: int, default: int | None = None) -> int:
    """A header's integer keyword, refused unless within low..high (a missing one is `default`)."""
    text = cards.get(keyword)
    try:
        value = int(text) if text is not None else default
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise RefusedFile(f"FITS keyword {keyword} = {str(text)[:20]!r} is not an integer in {low}..{high}")
    return value


def _fits_cards(content: bytes, offset: int) -> tuple[dict[str, str], int]:
    """The keywords of the header at `offset` (values as text, quotes and comments removed) and
    where its data begins."""
    cards: dict[str, str] = {}
    for start in range(offset, len(content) - 79, 80):
        card = content[start : start + 80].decode("ascii", errors="replace")
        keyword = card[:8].strip()
        if keyword == "END":
            return cards, offset + -(-(start + 80 - offset) // FITS_BLOCK) * FITS_BLOCK
        if card[8:10] == "= ":
            cards.setdefault(keyword, card[10:].split("/")[0].strip().strip("'").strip())
    raise RefusedFile("a FITS header without END: truncated or not FITS")


def _check_fits_sizes(content: bytes) -> None:
    """Refuse a FITS file whose headers declare sizes it cannot hold, before astropy reads it.

    astropy believes a header's sizes: with NAXIS = 2147483648 it looks up that many keywords
    (hours), and a table column TFORM = 9999999999 makes it allocate gigabytes (both found by
    tests/test_fetcher_fuzz.py). The sizes follow the FITS standard 4.0, sections 4.4.1 and 7.3."""
    offset, first = 0, True
    while first or content[offset : offset + 8] == b"XTENSION":
        cards, data_start = _fits_cards(content, offset)
        bitpix = _fits_value(cards, "BITPIX", -64, 64)
        if bitpix not in (8, 16, 32, 64, -32, -64):
            raise RefusedFile(f"FITS keyword BITPIX = {bitpix} is not a FITS data type")
        naxis = _fits_value(cards, "NAXIS", 0, 999)
        axes = [_fits_value(cards, f"NAXIS{i}", 0, len(content)) for i in range(1, naxis + 1)]
        size = (
            abs(bitpix)
            // 8
            * _fits_value(cards, "GCOUNT", 1, 1, 1)
            * (_fits_value(cards, "PCOUNT", 0, len(content), 0) + math.prod(axes))
            if naxis
            else 0
        )
        if cards.get("XTENSION") == "BINTABLE":
            fields = _fits_value(cards, "TFIELDS", 0, 999)
            widths = [_tform_bytes(cards.get(f"TFORM{i}", "")) for i in range(1, fields + 1)]
            if naxis != 2 or sum(widths) != axes[0]:
                raise RefusedFile(
                    f"FITS table rows of {axes[0] if axes else 0} bytes, columns (TFORMn) of {sum(widths)}"
                )
        if size > len(content) - data_start:
            raise RefusedFile(
                f"FITS header declares {size:,} bytes of data, the file holds {len(content) - data_start:,}"
            )
        offset, first = data_start + -(-size // FITS_BLOCK) * FITS_BLOCK, False


def _tform_bytes(tform: str) -> int:
    """Bytes per row of a binary-table column (FITS standard 4.0, table 18)."""
    match = TFORM.match(tform.upper())
    if match is None:
        raise RefusedFile(f"FITS column format TFORM = {tform[:20]!r} is not one of the standard's")
    repeat = int(match[1] or 1)
    return -(-repeat // 8) if match[2] == "X" else repeat * TFORM_BYTES[match[2]]


def _fits_table(
    content: bytes, required: list[str], optional: list[str]
) -> tuple[list[str], np.ndarray, dict[str, str], fits.Header]:
    """The first binary table holding every required column: (the required and present optional
    columns, their values as float rows, each one's unit, the table's header). Other columns are
    not read, so an unexpected extra column (text, arrays) does not refuse the file."""
    _check_fits_sizes(content)
    # A damaged file's warnings (truncated, bad header padding) only announce the error that refuses it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(io.BytesIO(content), memmap=False) as hdus:
            return _first_table(hdus, required, optional)


def _first_table(
    hdus: fits.HDUList, required: list[str], optional: list[str]
) -> tuple[list[str], np.ndarray, dict[str, str], fits.Header]:
    """See _fits_table; reading a table's data raises whatever astropy meets in a damaged file."""
    for hdu in hdus[1:]:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        names = {n.upper(): n for n in hdu.columns.names}
        if all(r in names for r in required):
            wanted = required + [o for o in optional if o in names]
            data = hdu.data
            values = (
                np.column_stack(
                    [np.asarray(data.field(names[c]), dtype=np.float64).reshape(len(data), -1)[:, 0] for c in wanted]
                )
                if len(data)
                else np.empty((0, len(wanted)))
            )
            units = {c: str(hdu.columns[names[c]].unit or "") for c in wanted}
            return wanted, values, units, hdu.header.copy()
    found = [[n.upper() for n in h.columns.names][:20] for h in hdus[1:] if isinstance(h, fits.BinTableHDU)]
    raise RefusedFile(f"FITS file has no table with columns {', '.join(required)} (tables found: {found})")


def parse_bat_fits(content: bytes, latest_mjd: float = np.inf) -> ParsedLightcurve:
    """Swift/BAT `*.lc.fits`. TIME in MJD, or in mission seconds (unit 's') from MJDREFI+MJDREFF."""
    names, values, units, header = _fits_table(content, ["TIME", "RATE", "ERROR"], ["DATA_FLAG"])
    if units["TIME"].strip().lower() == "s":
        mjdref = float(header.get("MJDREFI", 51910)) + float(header.get("MJDREFF", 7.428703703703703e-4))
        values[:, 0] = mjdref + values[:, 0] / 86400.0
    return _assemble(names, values, [], "TIME", BAT_BANDS, BAT_FLAGS, Window(LAUNCH_MJD["swift"], latest_mjd))


def parse_gbm_fits(content: bytes, latest_mjd: float = np.inf) -> ParsedLightcurve:
    """Fermi/GBM pulsar monitor `*_old.fits.gz`: PSRTIME (MJD), AMPLITUDE, AMPLITUDE_ERR in 12-50 keV.

    The provider's AMPLITUDE_ERR is often 0: such points are kept with error 0.
    """
    names, values, _, _ = _fits_table(content, ["PSRTIME", "AMPLITUDE", "AMPLITUDE_ERR"], [])
    return _assemble(names, values, [], "PSRTIME", GBM_BANDS, {}, Window(LAUNCH_MJD["fermi"], latest_mjd))


def gunzip(content: bytes, limit: int | None) -> bytes:
    """Every gzip member of `content` (as gzip.decompress reads them), refused once it inflates
    beyond `limit` bytes (None: a trusted local file, no limit)."""
    out, data = bytearray(), content
    try:
        while data[:2] == GZIP_MAGIC:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # a gzip header and trailer
            while not inflater.eof:
                piece = inflater.decompress(data, INFLATE_STEP)
                data = inflater.unconsumed_tail
                if not piece and not data:
                    raise RefusedFile("truncated or corrupt gzip: it ends before its last block")
                out += piece
                if limit is not None and len(out) > limit:
                    raise RefusedFile(f"gzip inflates beyond FLASHES_MAX_DECOMPRESSED_BYTES ({limit:,} bytes)")
            data = inflater.unused_data
    except zlib.error as exc:
        raise RefusedFile(f"truncated or corrupt gzip: {exc}") from exc
    if data.strip(b"\0"):  # zero padding after the last member is allowed, as gzip.decompress allows it
        raise RefusedFile("truncated or corrupt gzip: bytes that are not gzip after its end")
    return bytes(out)


def _looks_like_html(head: bytes) -> bool:
    lowered = head.lstrip().lower()
    return lowered.startswith((b"<!doctype", b"<html", b"<?xml")) or b"<html" in lowered[:512]


def _read(instrument: str, content: bytes, latest_mjd: float) -> ParsedLightcurve:
    if content.startswith(b"SIMPLE  ="):
        if instrument == "fermi":
            return parse_gbm_fits(content, latest_mjd)
        if instrument == "swift":
            return parse_bat_fits(content, latest_mjd)
        raise RefusedFile(f"a FITS file where a {instrument} text lightcurve was expected")
    text = content.decode("utf-8", errors="replace")
    if instrument == "maxi":
        return parse_maxi(text, latest_mjd)
    if instrument == "swift":
        return parse_bat(text, latest_mjd)
    raise RefusedFile(f"a text file where a {instrument} FITS lightcurve was expected")


def parse(
    instrument: str,
    url: str,
    content: bytes,
    *,
    fetched_at: datetime | None = None,
    max_decompressed_bytes: int | None = None,
) -> ParsedLightcurve:
    """Read a provider file of any supported kind, after checking it is one at all.

    Rows dated before the instrument's launch, or after `fetched_at` plus FUTURE_DAYS, are refused
    like any bad line (without `fetched_at`, an archive read offline, there is no upper bound).
    Anything that stops the file from being read raises RefusedFile with the reason.
    """
    if content[:2] == GZIP_MAGIC:
        content = gunzip(content, max_decompressed_bytes)
    elif url.endswith(".gz"):
        raise RefusedFile("not gzip although the file name ends in .gz")
    if not content.strip():
        raise RefusedFile("empty file")
    if _looks_like_html(content[:1024]):
        raise RefusedFile("an HTML page, not a lightcurve (an error page from the provider?)")
    latest_mjd = datetime_to_mjd(fetched_at) + FUTURE_DAYS if fetched_at is not None else np.inf
    try:
        return _read(instrument, content, latest_mjd)
    except RefusedFile:
        raise
    except Exception as exc:  # noqa: BLE001 - astropy, numpy and pandas raise nearly any type on a damaged
        # file (TypeError, IndexError, KeyError, VerifyError, OSError, ...): each refuses this file only
        raise RefusedFile(f"unreadable {instrument} file: {type(exc).__name__}: {str(exc)[:300]}") from exc
