"""Fuzzing the fetcher with damaged real-shaped provider files (issue 19, item 3).

1,200 seeded mutations (truncations, byte flips, junk lines, header and column damage, wrong dates,
huge numbers, gzip damage) of the sample MAXI text, BAT text and FITS, and GBM FITS files: each
either reads into rows that keep every promise of a lightcurve chunk, or is refused with the one
error type and a reason. Then one real fetch round (HTTP, Kafka) over many damaged files and
untouched ones: it completes, and every untouched series is on the lightcurve topic, whole.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from devtools import mirror
from devtools.observe import lightcurve_points, read_topic
from flashes import catalogue
from flashes.errors import RefusedFile
from flashes.parsers import LAUNCH_MJD, MAX_ABS_VALUE, ParsedLightcurve, parse
from flashes.settings import PROJECT_ROOT, Settings
from flashes.timeconv import datetime_to_mjd
from services.fetcher.publish import make_chunks
from services.fetcher.service import fetch_once

SEED = 19
MUTATIONS_PER_KIND = 300
LIMIT = 2_000_000  # max_decompressed_bytes in the fuzz: the sample GBM file inflates to 25,920 bytes
FETCHED = datetime(2026, 12, 1, tzinfo=UTC)
SAMPLE = PROJECT_ROOT / "data" / "mirror"
TESTS = Path(__file__).resolve().parent / "data"

JUNK = [
    b"this is not a number line",
    b"\x00\x01\x02\xff\xfe\x80",
    b"<html><body>oops</body></html>",
    b"nan " * 9,
    b"1 2 3",
    b"9" * 5000,
    b"#",
    b"\t \t",
    "\uff15\uff15\uff10\uff15\uff13 1 1 1 1 1 1 1 1".encode(),
    b"55053.5 " + b"1e999 " * 10,
    b"\xef\xbb\xbf55053.5 1 0.1",
    b"- - - - - - - - -",
    b"0x10 1 1 1 1 1 1 1 1",
    b"SIMPLE  = T",
    b"\x1f\x8b\x08\x00",
    b"55060.5" + b" 0.1" * 200,
]
DATES = [
    b"96000.5",
    b"0",
    b"-1",
    b"1e300",
    b"50000.5",
    b"nan",
    b"99999999999",
    b"55028",
    b"-inf",
    b"1e-300",
    b"61376.5",
    b"55053.5",
]
HUGE = [b"1e308", b"-1e308", b"9e999", b"123456789012345678901234567890", b"inf", b"-0", b"1e-320", b"4e4", b"-5"]
CARDS = [
    b"NAXIS2  =",
    b"NAXIS1  =",
    b"TFIELDS =",
    b"TFORM1  =",
    b"TFORM2  =",
    b"TTYPE1  =",
    b"TTYPE2  =",
    b"TTYPE3  =",
    b"BITPIX  =",
    b"PCOUNT  =",
    b"XTENSION=",
    b"TUNIT1  =",
    b"NAXIS   =",
    b"END     ",
    b"SIMPLE  =",
]
CARD_VALUES = [
    b"9999999999",
    b"-1",
    b"'XYZ    '",
    b"0",
    b"1E30",
    b"'8A      '",
    b"'s       '",
    b"T",
    b"'TIME    '",
    b"",
    b"3",
    b"'PD()    '",
    b"2147483648",
]
CELL_VALUES = [np.nan, np.inf, -np.inf, 1e308, -1e308, 96000.5, 0.0, -1.0, 50000.5, 1e30, 2.5]

BOMB = gzip.compress(b"\0" * (LIMIT + 1), 1)  # 9 kB that inflate beyond the limit
Mutator = Callable[[random.Random, bytes], bytes]


# Text mutations, on the lines of a MAXI or BAT text file.
def _lines(content: bytes) -> list[bytes]:
    return content.split(b"\n")


def _data_line(rng: random.Random, lines: list[bytes]) -> int:
    return rng.randrange(max(1, len(lines) - 1))


def truncate(rng: random.Random, content: bytes) -> bytes:
    return content[: rng.randrange(len(content) + 1)]


def flip_bytes(rng: random.Random, content: bytes) -> bytes:
    out = bytearray(content)
    for _ in range(rng.randint(1, 40) if out else 0):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def junk_lines(rng: random.Random, content: bytes) -> bytes:
    lines = _lines(content)
    for _ in range(rng.randint(1, 20)):
        lines.insert(rng.randrange(len(lines)), rng.choice(JUNK))
    return b"\n".join(lines)


def column_damage(rng: random.Random, content: bytes) -> bytes:
    lines = _lines(content)
    for _ in range(rng.randint(1, 10)):
        i = rng.randrange(min(12, len(lines))) if rng.random() < 0.3 else _data_line(rng, lines)  # header or data
        words = lines[i].split()
        if not words:
            continue
        j = rng.randrange(len(words))
        action = rng.randrange(4)
        if action == 0:
            del words[j]
        elif action == 1:
            words.insert(j, words[j])
        elif action == 2:
            words[j] = words[j][::-1] + b"X"  # a renamed column, or a number that is none
        else:
            words[j] = words[j] + rng.choice([b",", b";", b"e", b"%"])
        lines[i] = b" ".join(words)
    if rng.random() < 0.2:
        lines.insert(0, rng.choice([b"# TIME FLUX", b"MJD F2_20", b"# TIME RATE", b"TIME ERROR RATE"]))
    return b"\n".join(lines)


def _replace_token(rng: random.Random, content: bytes, first: bool, values: list[bytes]) -> bytes:
    lines = _lines(content)
    for _ in range(rng.randint(1, 15)):
        i = _data_line(rng, lines)
        words = lines[i].split()
        if len(words) > 1 and words[0][:1].isdigit():
            words[0 if first else rng.randrange(1, len(words))] = rng.choice(values)
            lines[i] = b" ".join(words)
    return b"\n".join(lines)


def wrong_dates(rng: random.Random, content: bytes) -> bytes:
    return _replace_token(rng, content, True, DATES)


def huge_numbers(rng: random.Random, content: bytes) -> bytes:
    return _replace_token(rng, content, False, HUGE)


def reorder(rng: random.Random, content: bytes) -> bytes:
    lines = _lines(content)
    for _ in range(rng.randint(1, 10)):
        i, j = _data_line(rng, lines), _data_line(rng, lines)
        if rng.random() < 0.5:
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(j, lines[i])
    return b"\n".join(lines)


def replace_all(rng: random.Random, content: bytes) -> bytes:
    return rng.choice(
        [
            lambda: b"",
            lambda: b"\n\n",
            lambda: b"<!DOCTYPE html><html>Not Found</html>",
            lambda: rng.randbytes(rng.randrange(1, 5000)),
            lambda: gzip.compress(content, 1),
            lambda: content.decode("latin-1").encode("utf-16"),
            lambda: content * 2,
        ]
    )()


TEXT_MUTATORS: list[Mutator] = [
    truncate,
    flip_bytes,
    junk_lines,
    column_damage,
    wrong_dates,
    huge_numbers,
    reorder,
    replace_all,
]


# FITS mutations, on the bytes of an (uncompressed) FITS file.
def damage_card(rng: random.Random, content: bytes) -> bytes:
    out = bytearray(content)
    for _ in range(rng.randint(1, 3)):
        at = content.find(rng.choice(CARDS), rng.choice([0, 2880]))
        if at >= 0:
            value = rng.choice(CARD_VALUES)
            out[at + 10 : at + 30] = value.rjust(20) if value[:1] != b"'" else value.ljust(20)
    return bytes(out)


@dataclass(frozen=True)
class Layout:
    """Where the first table's cells are in a FITS file: data offset, row length, columns."""

    offset: int
    row: int
    rows: int
    fields: list[tuple[int, np.dtype]]

    @classmethod
    def of(cls, content: bytes) -> Layout:
        import io

        with fits.open(io.BytesIO(content)) as hdus:
            table = hdus[1]
            dtype = table.data.dtype
            return cls(
                table._data_offset,
                dtype.itemsize,
                len(table.data),
                [(dtype.fields[n][1], dtype.fields[n][0]) for n in dtype.names],
            )


def cell_values(layout: Layout) -> Mutator:
    def mutate(rng: random.Random, content: bytes) -> bytes:
        out = bytearray(content)
        for _ in range(rng.randint(1, 20)):
            at, dtype = rng.choice(layout.fields)
            if dtype.kind != "f":
                continue
            start = layout.offset + rng.randrange(layout.rows) * layout.row + at
            with np.errstate(over="ignore"):  # 1e308 as a 4-byte float is inf: wanted
                out[start : start + dtype.itemsize] = np.array([rng.choice(CELL_VALUES)], dtype=dtype).tobytes()
        return bytes(out)

    return mutate


def cut_at_block(rng: random.Random, content: bytes) -> bytes:
    return content[: 2880 * rng.randrange(len(content) // 2880 + 1)] + rng.choice([b"", b"\0" * 100, b"junk"])


def fits_mutators(content: bytes) -> list[Mutator]:
    return [truncate, cut_at_block, flip_bytes, damage_card, cell_values(Layout.of(content)), replace_all]


# gzip mutations, on the compressed bytes.
def gzip_damage(rng: random.Random, content: bytes) -> bytes:
    action = rng.randrange(5)
    if action == 0:
        return truncate(rng, content)
    if action == 1:
        out = bytearray(content)
        for _ in range(rng.randint(1, 10) if len(out) > 10 else 0):
            out[rng.randrange(10, len(out))] = rng.randrange(256)  # inside the stream, past the header
        return bytes(out)
    if action == 2:
        return content + rng.choice([b"junk", gzip.compress(b"junk"), b"\0" * 16, content])  # after the end
    if action == 3:
        return content[:-8] + rng.randbytes(8)  # the CRC and size trailer
    return BOMB


def inside_gzip(mutator: Mutator) -> Mutator:
    def mutate(rng: random.Random, content: bytes) -> bytes:
        try:
            inner = gzip.decompress(content)
        except (OSError, EOFError, zlib.error):  # damaged by an earlier mutation: damage it further
            return mutator(rng, content)
        return gzip.compress(mutator(rng, inner), 1, mtime=0)

    return mutate


@dataclass(frozen=True)
class Kind:
    instrument: str
    url: str
    content: bytes
    mutators: list[Mutator]


def kinds() -> dict[str, Kind]:
    maxi = (TESTS / "maxi" / "J1535-572_g_lc_1day_all.dat").read_bytes()
    bat = (SAMPLE / "swift" / "results" / "transients" / "weak" / "MAXIJ1535-571.lc.txt").read_bytes()
    bat_fits = (TESTS / "bat" / "CirX-1.lc.fits").read_bytes()
    gbm = (SAMPLE / "fermi" / "swiftj0243_old.fits.gz").read_bytes()
    return {
        "maxi text": Kind("maxi", "x_g_lc_1day_all.dat", maxi, TEXT_MUTATORS),
        "bat text": Kind("swift", "x.lc.txt", bat, TEXT_MUTATORS),
        "bat fits": Kind("swift", "x.lc.fits", bat_fits, fits_mutators(bat_fits)),
        "gbm fits.gz": Kind(
            "fermi", "x_old.fits.gz", gbm, [gzip_damage] + [inside_gzip(m) for m in fits_mutators(gzip.decompress(gbm))]
        ),
    }


def mutate(rng: random.Random, kind: Kind) -> bytes:
    content = kind.content
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):  # now and then several at once
        content = rng.choice(kind.mutators)(rng, content) or content
    return content


def check_promises(parsed: ParsedLightcurve, instrument: str, latest_mjd: float) -> None:
    """What every consumer of flashes.lightcurve.v2 relies on, whatever the file held."""
    mjd = parsed.mjd
    assert np.isfinite(mjd).all() and (np.diff(mjd) > 0).all()
    assert len(mjd) == 0 or (mjd[0] >= LAUNCH_MJD[instrument] and mjd[-1] <= latest_mjd)
    for flux, error in parsed.bands.values():
        assert len(flux) == len(error) == len(mjd)
        assert np.isfinite(flux).all() and np.isfinite(error).all() and (error >= 0).all()
        assert (np.abs(flux) <= MAX_ABS_VALUE).all() and (error <= MAX_ABS_VALUE).all()
    assert all(len(v) == len(mjd) and v.dtype == np.int64 for v in parsed.flags.values())
    if len(mjd):  # the contract's own validation: times, order, finite values, chunk bounds
        make_chunks(parsed, np.ones(len(mjd), dtype=bool), "fuzz", instrument, "x", FETCHED)


def test_a_thousand_mutations_are_read_or_refused_with_a_reason_never_raised_otherwise() -> None:
    rng = random.Random(SEED)
    latest_mjd = datetime_to_mjd(FETCHED) + 1
    outcomes: Counter[tuple[str, str]] = Counter()
    causes: Counter[str] = Counter()
    for name, kind in kinds().items():
        for _ in range(MUTATIONS_PER_KIND):
            content = mutate(rng, kind)
            try:
                parsed = parse(kind.instrument, kind.url, content, fetched_at=FETCHED, max_decompressed_bytes=LIMIT)
            except RefusedFile as exc:
                assert str(exc), "a refusal without a reason"
                causes[type(exc.__cause__).__name__ if exc.__cause__ else "RefusedFile"] += 1
                outcomes[name, "refused"] += 1
                continue
            check_promises(parsed, kind.instrument, latest_mjd)
            assert all(r.reason and r.label for r in parsed.rejected)
            outcomes[name, "lines refused" if parsed.rejected else "clean"] += 1
    assert sum(outcomes.values()) == 4 * MUTATIONS_PER_KIND >= 1000
    for name in kinds():  # the mutations reach both the file-level and the line-level checks
        assert outcomes[name, "refused"] > 10 and outcomes[name, "lines refused"] > 10, outcomes
    # Exceptions of astropy and zlib that used to escape (the fetcher exited) now refuse the file they came from.
    assert {"VerifyError", "AssertionError", "OSError", "error"} <= set(causes), causes


# One real round: damaged files and untouched ones, served over HTTP, published to the real Kafka.
@pytest.fixture()
def fuzzed_mirror(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str, dict, dict]]:
    server, base = mirror.serve(tmp_path)
    try:
        s = settings.model_copy(update=mirror.provider_settings(base))
        rng = random.Random(SEED + 1)
        fuzz = kinds()
        untouched = {
            "maxi": [p.read_bytes() for p in sorted((TESTS / "maxi").glob("J*.dat"))],
            "swift": [p.read_bytes() for p in sorted((SAMPLE / "swift").rglob("*.lc.txt"))],
            "fermi": [fuzz["gbm fits.gz"].content],
        }
        kinds_of = {"maxi": ["maxi text"], "swift": ["bat text", "bat fits"], "fermi": ["gbm fits.gz"]}
        served: dict[tuple[str, str], bytes] = {}  # (source id, instrument) -> the file
        clean: dict[tuple[str, str], bytes] = {}
        records = catalogue.load(s)
        chosen = {
            r.id: r
            for instrument, count in (("maxi", 20), ("swift", 20), ("fermi", 12))
            for r in [r for r in records if r.entry(instrument)][:count]
        }
        for i, (sid, record) in enumerate(sorted(chosen.items())):
            for instrument in (inst for inst in kinds_of if record.entry(inst)):
                if (i + len(served)) % 3 == 0:  # a third untouched, on every instrument
                    served[sid, instrument] = clean[sid, instrument] = rng.choice(untouched[instrument])
                else:
                    served[sid, instrument] = mutate(rng, fuzz[rng.choice(kinds_of[instrument])])
                rel = catalogue.path_below_base(s, instrument, record.entry(instrument).data_url)
                (tmp_path / instrument / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / instrument / rel).write_bytes(served[sid, instrument])
        yield s, base, served, clean
    finally:
        server.shutdown()


def test_a_round_over_damaged_files_completes_and_every_untouched_series_arrives(
    fuzzed_mirror: tuple[Settings, str, dict, dict],
) -> None:
    settings, base, served, clean = fuzzed_mirror
    assert len(clean) >= 15 and len(served) - len(clean) >= 30 and {i for _, i in clean} == {"maxi", "swift", "fermi"}
    now = datetime.now(UTC)
    report = asyncio.run(fetch_once(settings, sorted({sid for sid, _ in served})))
    points = [p for p in lightcurve_points(settings) if p["provenance"]["url"].startswith(base)]
    published: dict[tuple[str, str], list[float]] = {}
    for p in points:
        published.setdefault((p["source_id"], p["instrument"]), []).append(p["mjd"])
    for key, content in clean.items():
        expected = parse(key[1], "x.gz" if key[1] == "fermi" else "x", content, fetched_at=now)
        assert published.get(key) == expected.mjd.tolist() and len(expected) > 1000, key
    refused: dict[str, str] = {}  # origin -> reason
    for (source_id, instrument), content in served.items():
        try:
            expected = parse(
                instrument,
                "x.gz" if instrument == "fermi" else "x",
                content,
                fetched_at=now,
                max_decompressed_bytes=settings.max_decompressed_bytes,
            )
        except RefusedFile as exc:
            refused[f"fetcher:{instrument}:{source_id}"] = str(exc)
            assert (source_id, instrument) not in published
            continue
        assert published.get((source_id, instrument), []) == expected.mjd.tolist(), (source_id, instrument)
    assert len(refused) >= 10 and len(report.errors) == len(refused)
    letters = {
        (v["origin"], v["reason"])
        for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1"))
        if (v["url"] or "").startswith(base)
    }
    assert set(refused.items()) <= letters  # each refused file's dead letter says why
