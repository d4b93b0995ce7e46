"""Provider file readers on real MAXI files (values checked by hand) and on bad input."""

import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flashes.errors import RefusedFile
from flashes.parsers import LINE_REASONS, parse, parse_bat, parse_maxi

DATA = Path(__file__).resolve().parent / "data" / "maxi"
SAMPLE_BAT = Path(__file__).resolve().parent.parent / "data" / "mirror" / "swift" / "results" / "transients"


def test_real_maxi_file_with_crlf_and_no_header() -> None:
    text = (DATA / "J1535-572_g_lc_1day_all.dat").read_text()
    parsed = parse_maxi(text)
    assert len(parsed) == 3855 and parsed.rejected == []
    # First line: 55053.500000 -0.095293 0.057269 -0.010116 0.026971 -0.023192 0.024141 -0.056941 0.038254
    assert parsed.mjd[0] == 55053.5
    assert parsed.bands["2-20"][0][0] == -0.095293 and parsed.bands["2-20"][1][0] == 0.057269
    assert parsed.bands["10-20"][0][0] == -0.056941 and parsed.bands["10-20"][1][0] == 0.038254
    # Line 2838, the outburst peak: 58016.500000 7.411582 0.061271 4.610519 0.057688 2.674983 0.030062 0.350699 0.014271
    i = int(np.flatnonzero(parsed.mjd == 58016.5)[0])
    assert parsed.bands["2-20"][0][i] == 7.411582
    assert parsed.bands["2-4"][0][i] == 4.610519 and parsed.bands["4-10"][1][i] == 0.030062


def test_malformed_lines_are_rejected_with_reasons_and_the_rest_kept() -> None:
    lines = (DATA / "J1535-572_g_lc_1day_all.dat").read_text().splitlines()
    bad = [
        "55000.5 1.0 0.1",  # too few columns
        "58016.7 abc 0.1 1 0.1 1 0.1 1 0.1",  # not a number
        "58016.8 nan 0.1 1 0.1 1 0.1 1 0.1",  # NaN
        "58016.9 1.0 -0.1 1 0.1 1 0.1 1 0.1",  # negative error
        lines[100],  # duplicate time
    ]
    text = "\n".join(lines[:2000] + bad + lines[2000:])
    parsed = parse_maxi(text)
    assert len(parsed) == 3855
    reasons = [reason for _, reason, _ in parsed.rejected]
    assert len(reasons) == 5
    assert "expected 9 columns, found 3" in reasons
    assert any(r.startswith("not a number") for r in reasons)
    assert "non-finite value" in reasons and "negative error" in reasons
    assert "time out of order or a duplicate" in reasons


def test_bat_text_with_comment_header_and_flags() -> None:
    path = SAMPLE_BAT / "weak" / "MAXIJ1535-571.lc.txt"
    text = path.read_text()
    assert "synthetic" in text.splitlines()[0].lower()
    data_lines = [line for line in text.splitlines() if line and line[0].isdigit()]
    parsed = parse_bat(text)
    assert len(parsed) == len(data_lines) and parsed.rejected == []
    first = data_lines[0].split()
    assert parsed.mjd[0] == float(first[0]) and parsed.bands["15-50"][0][0] == float(first[1])
    assert parsed.flags["data_flag"][0] == int(first[7])


def test_bat_header_variant_with_hash_and_reordered_columns() -> None:
    text = (
        "# comment\n# TIME ERROR RATE YEAR DAY STAT_ERR SYS_ERR DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED\n"
        "53414.0 0.002 0.010 2005 45 0.002 0 1 100 90 95\n"
    )
    parsed = parse_bat(text)
    assert parsed.bands["15-50"][0][0] == 0.010 and parsed.bands["15-50"][1][0] == 0.002
    assert parsed.flags["data_flag"][0] == 1


def test_a_file_without_the_needed_columns_is_not_a_lightcurve() -> None:
    with pytest.raises(RefusedFile, match="missing column"):
        parse_bat("TIME FLUX\n53414.0 0.01\n")


SAMPLE_MIRROR = Path(__file__).resolve().parent.parent / "data" / "mirror"
BAT_FITS = Path(__file__).resolve().parent / "data" / "bat" / "CirX-1.lc.fits"


def test_bat_fits_read_with_astropy_and_flags_kept() -> None:
    from astropy.io import fits

    parsed = parse("swift", "https://x/CirX-1.lc.fits", BAT_FITS.read_bytes())
    with fits.open(BAT_FITS) as hdus:
        assert hdus[0].header["ORIGIN"] == "SYNTHETIC"
        table = hdus["RATE"].data
        assert len(parsed) == len(table)
        assert parsed.mjd[0] == table["TIME"][0]
        assert parsed.bands["15-50"][0][0] == pytest.approx(table["RATE"][0])
        assert list(parsed.flags["data_flag"]) == list(table["DATA_FLAG"])  # bad-quality points kept, marked


def test_bat_fits_time_in_mission_seconds_is_converted_to_mjd() -> None:
    from astropy.io import fits

    cols = [
        fits.Column("TIME", "D", unit="s", array=[86400.0 * 5000]),
        fits.Column("RATE", "E", array=[0.01]),
        fits.Column("ERROR", "E", array=[0.002]),
    ]
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)])
    hdul[1].header["MJDREFI"], hdul[1].header["MJDREFF"] = 51910, 0.00074287037
    buf = io.BytesIO()
    hdul.writeto(buf)
    parsed = parse("swift", "x.lc.fits", buf.getvalue())
    assert parsed.mjd[0] == pytest.approx(51910.00074287037 + 5000)


def test_gbm_pulsar_fits_gz_with_zero_errors_kept() -> None:
    path = SAMPLE_MIRROR / "fermi" / "swiftj0243_old.fits.gz"
    parsed = parse("fermi", path.name, path.read_bytes())
    assert len(parsed) > 1000 and parsed.rejected == []
    assert (parsed.bands["12-50"][1] == 0).all()  # the provider's AMPLITUDE_ERR is often 0


MAXI_TEXT = (DATA / "J1535-572_g_lc_1day_all.dat").read_bytes()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("html", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML page"),
        ("not gzip", MAXI_TEXT, "not gzip"),
        ("truncated gzip", gzip.compress(MAXI_TEXT)[:5000], "truncated or corrupt gzip"),
        ("empty", b"\n\n", "empty file"),
        ("fits without columns", None, "no table with columns"),
    ],
)
def test_files_that_are_not_lightcurves_are_refused_with_the_reason(
    name: str, content: bytes | None, message: str
) -> None:
    from astropy.io import fits

    if content is None:
        buf = io.BytesIO()
        fits.HDUList(
            [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("PSRTIME", "D", array=[1.0])])]
        ).writeto(buf)
        content = gzip.compress(buf.getvalue())
    url = (
        "https://x/swiftj0243_old.fits.gz"
        if name in ("not gzip", "truncated gzip", "fits without columns")
        else "x.dat"
    )
    instrument = "fermi" if url.endswith(".gz") else "maxi"
    with pytest.raises(RefusedFile, match=message):
        parse(instrument, url, content)


def test_truncated_text_file_keeps_every_complete_line() -> None:
    cut = MAXI_TEXT[: len(MAXI_TEXT) // 2]
    cut = cut[: cut.rindex(b" ")]  # the last line stops in the middle
    parsed = parse("maxi", "x.dat", cut)
    assert len(parsed) == cut.count(b"\n")
    assert len(parsed.rejected) == 1 and parsed.rejected[0][1].startswith("expected 9 columns")


def test_inf_and_out_of_order_times_are_rejected() -> None:
    lines = MAXI_TEXT.decode().splitlines()
    lines[10] = lines[10].replace(lines[10].split()[1], "inf", 1)
    lines[20], lines[21] = lines[21], lines[20]
    parsed = parse("maxi", "x.dat", "\n".join(lines).encode())
    reasons = sorted(r for _, r, _ in parsed.rejected)
    assert reasons == ["non-finite value", "time out of order or a duplicate"]
    assert len(parsed) == len(lines) - 2


FETCHED = datetime(2020, 10, 20, 12, tzinfo=UTC)  # MJD 59142.5, the day after the sample's last bin
ROW = "{:.6f} 1.0 0.1 0.5 0.05 0.4 0.04 0.1 0.01"


def test_a_future_typo_is_refused_alone_and_every_real_row_after_it_kept() -> None:
    lines = MAXI_TEXT.decode().splitlines()
    text = "\n".join(lines[:3000] + [ROW.format(96000.5)] + lines[3000:]).encode()
    parsed = parse("maxi", "x.dat", text, fetched_at=FETCHED)
    assert len(parsed) == len(lines) and parsed.mjd.max() == 59141.5  # never the typo
    [(line, reason, label)] = parsed.rejected
    assert line.startswith("96000.5") and label == "future"
    assert reason == "time after the fetch time plus one day (MJD 59143.50)"


def test_the_upper_bound_is_the_fetch_time_passed_in_plus_one_day() -> None:
    text = "\n".join(ROW.format(m) for m in (59142.5, 59143.5, 59143.6)).encode()
    parsed = parse("maxi", "x.dat", text, fetched_at=FETCHED)
    assert list(parsed.mjd) == [59142.5, 59143.5]
    assert [r.label for r in parsed.rejected] == ["future"]
    assert len(parse("maxi", "x.dat", text)) == 3  # an archive read offline: no fetch time, no upper bound


@pytest.mark.parametrize("instrument, launch", [("maxi", 55028), ("swift", 53329)])
def test_a_row_dated_before_the_instrument_was_launched_is_refused(instrument: str, launch: int) -> None:
    if instrument == "maxi":
        text = "\n".join(ROW.format(m) for m in (launch - 0.5, launch + 0.5))
    else:
        text = "\n".join(f"{m:.1f} 0.01 0.002 2009 1 0.002 0 0 100 90 95" for m in (launch - 1, launch))
    parsed = parse(instrument, "x.txt", text.encode(), fetched_at=FETCHED)
    assert list(parsed.mjd) == [launch + (0.5 if instrument == "maxi" else 0)]
    [(_, reason, label)] = parsed.rejected
    assert label == "before_launch" and reason == f"time before the instrument's launch (MJD {launch})"


def test_absurd_values_and_flags_are_refused_with_a_label_for_each_reason() -> None:
    bat = [
        "55100.0 0.01 0.002 2009 1 0.002 0 0 100 90 95",
        "55101.0 5e300 0.002 2009 1 0.002 0 0 100 90 95",  # flux beyond any source
        "55102.0 0.01 0.002 2009 1 0.002 0 1.5 100 90 95",  # a flag that is not an integer
        "55103.0 0.01 0.002 2009 1 0.002 0 1e30 100 90 95",  # a flag no integer type holds
        "55104.0 0.01 0.002 2009 1 0.002 0 1 100 90 95",
    ]
    parsed = parse("swift", "x.lc.txt", "\n".join(bat).encode(), fetched_at=FETCHED)
    assert list(parsed.mjd) == [55100.0, 55104.0] and list(parsed.flags["data_flag"]) == [0, 1]
    assert [r.label for r in parsed.rejected] == ["out_of_range", "flag", "flag"]
    assert all(r.reason.startswith(LINE_REASONS[r.label]) for r in parsed.rejected)


def test_a_file_of_mostly_junk_is_refused_whole_not_line_by_line() -> None:
    junk = "\n".join(f"junk line {i}" for i in range(1002))  # the first is taken for a header line
    with pytest.raises(RefusedFile, match="1,001 bad lines, more than 1,000"):
        parse("maxi", "x.dat", (junk + "\n" + ROW.format(59000.5)).encode())


def test_a_gzip_bomb_is_refused_at_the_limit_and_several_members_are_read() -> None:
    bomb = gzip.compress(b"0" * 50_000_000)  # 49 kB that inflate to 50 MB
    with pytest.raises(RefusedFile, match=r"inflates beyond FLASHES_MAX_DECOMPRESSED_BYTES \(10,000,000 bytes\)"):
        parse("fermi", "x_old.fits.gz", bomb, max_decompressed_bytes=10_000_000)
    half = len(MAXI_TEXT) // 2
    cut = MAXI_TEXT.rindex(b"\n", 0, half) + 1
    members = gzip.compress(MAXI_TEXT[:cut]) + gzip.compress(MAXI_TEXT[cut:]) + b"\0" * 8
    assert len(parse("maxi", "x.dat.gz", members, max_decompressed_bytes=len(MAXI_TEXT))) == 3855
    with pytest.raises(RefusedFile, match="not gzip after its end"):
        parse("maxi", "x.dat.gz", gzip.compress(MAXI_TEXT) + b"trailing")


def _card(content: bytes, keyword: bytes, value: bytes) -> bytes:
    """The FITS file with one header card's value replaced (columns 11-30 of the card)."""
    at = content.index(keyword)
    return content[: at + 10] + (value.ljust(20) if value[:1] == b"'" else value.rjust(20)) + content[at + 30 :]


@pytest.mark.parametrize(
    "keyword, value, message",
    [
        (b"TUNIT2  =", b"'count/cm2/s", r"unreadable swift file: VerifyError: Unparsable card \(TUNIT2\)"),
        (b"TTYPE2  =", b"3", "unreadable swift file: AssertionError: Column name must be a string"),
        (b"TFORM1  =", b"'8A      '", "unreadable swift file: ValueError: could not convert string to float"),
        (b"TTYPE1  =", b"''", "unreadable swift file: AttributeError"),
    ],
)
def test_whatever_astropy_raises_on_a_damaged_fits_refuses_the_file_with_the_exception(
    keyword: bytes, value: bytes, message: str
) -> None:
    with pytest.raises(RefusedFile, match=message):
        parse("swift", "x.lc.fits", _card(BAT_FITS.read_bytes(), keyword, value))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda c: c[: len(c) // 2],
            r"FITS header declares 185,136 bytes of data, the file holds 89,280",
        ),  # astropy: TypeError
        (lambda c: _card(c, b"NAXIS   =", b"2147483648"), r"NAXIS = '2147483648' is not an integer in 0..999"),  # hours
        (lambda c: _card(c, b"TFORM1  =", b"9999999999"), r"TFORM = '9999999999' is not one of the standard's"),  # GBs
        (lambda c: _card(c, b"TFORM1  =", b"'99999999D'"), r"FITS table rows of 48 bytes, columns \(TFORMn\) of 800"),
        (lambda c: _card(c, b"NAXIS2  =", b"3901"), r"declares 187,248 bytes of data, the file holds 187,200"),
        (lambda c: c[: c.index(b"END     ")], r"a FITS header without END"),
    ],
)
def test_fits_sizes_the_file_cannot_hold_are_refused_before_astropy_believes_them(damage, message: str) -> None:
    with pytest.raises(RefusedFile, match=message):
        parse("swift", "x.lc.fits", damage(BAT_FITS.read_bytes()))


def test_a_line_copied_from_further_down_is_refused_alone() -> None:
    lines = MAXI_TEXT.decode().splitlines()
    parsed = parse("maxi", "x.dat", "\n".join(lines[:10] + [lines[3000]] + lines[10:]).encode(), fetched_at=FETCHED)
    assert len(parsed) == len(lines)  # the fewest rows refused: the copy, not the 2,990 real rows after it
    assert [(float(r.line.split()[0]), r.label) for r in parsed.rejected] == [(float(lines[3000].split()[0]), "order")]


def test_an_extra_text_column_in_a_fits_table_is_not_read() -> None:
    from astropy.io import fits

    cols = [
        fits.Column("PSRTIME", "D", array=[56000.5, 56001.5]),
        fits.Column("AMPLITUDE", "E", array=[1.0, 2.0]),
        fits.Column("AMPLITUDE_ERR", "E", array=[0.0, 0.1]),
        fits.Column("NOTE", "10A", array=["ok", "late"]),
    ]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    parsed = parse("fermi", "x_old.fits.gz", gzip.compress(buf.getvalue()), fetched_at=FETCHED)
    assert list(parsed.mjd) == [56000.5, 56001.5] and list(parsed.bands["12-50"][0]) == [1.0, 2.0]
