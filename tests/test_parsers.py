"""Provider file readers on real MAXI files (values checked by hand) and on bad input."""
import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from flashes.parsers import parse, parse_bat, parse_maxi

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
        "55000.5 1.0 0.1",                                              # too few columns
        "58016.7 abc 0.1 1 0.1 1 0.1 1 0.1",                            # not a number
        "58016.8 nan 0.1 1 0.1 1 0.1 1 0.1",                            # NaN
        "58016.9 1.0 -0.1 1 0.1 1 0.1 1 0.1",                           # negative error
        lines[100],                                                     # duplicate time
    ]
    text = "\n".join(lines[:2000] + bad + lines[2000:])
    parsed = parse_maxi(text)
    assert len(parsed) == 3855
    reasons = [reason for _, reason in parsed.rejected]
    assert len(reasons) == 5
    assert "expected 9 columns, found 3" in reasons
    assert any(r.startswith("not a number") for r in reasons)
    assert "non-finite value" in reasons and "negative error" in reasons
    assert any("duplicate or out of order" in r for r in reasons)


def test_bat_text_with_comment_header_and_flags() -> None:
    path = SAMPLE_BAT / "weak" / "MAXIJ1535-571.lc.txt"
    text = path.read_text()
    assert "synthetic" in text.splitlines()[0].lower()
    data_lines = [l for l in text.splitlines() if l and l[0].isdigit()]
    parsed = parse_bat(text)
    assert len(parsed) == len(data_lines) and parsed.rejected == []
    first = data_lines[0].split()
    assert parsed.mjd[0] == float(first[0]) and parsed.bands["15-50"][0][0] == float(first[1])
    assert parsed.flags["data_flag"][0] == int(first[7])


def test_bat_header_variant_with_hash_and_reordered_columns() -> None:
    text = "# comment\n# TIME ERROR RATE YEAR DAY STAT_ERR SYS_ERR DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED\n" \
           "53414.0 0.002 0.010 2005 45 0.002 0 1 100 90 95\n"
    parsed = parse_bat(text)
    assert parsed.bands["15-50"][0][0] == 0.010 and parsed.bands["15-50"][1][0] == 0.002
    assert parsed.flags["data_flag"][0] == 1


def test_a_file_without_the_needed_columns_is_not_a_lightcurve() -> None:
    with pytest.raises(ValueError, match="missing column"):
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

    cols = [fits.Column("TIME", "D", unit="s", array=[86400.0 * 100]), fits.Column("RATE", "E", array=[0.01]),
            fits.Column("ERROR", "E", array=[0.002])]
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)])
    hdul[1].header["MJDREFI"], hdul[1].header["MJDREFF"] = 51910, 0.00074287037
    buf = io.BytesIO()
    hdul.writeto(buf)
    parsed = parse("swift", "x.lc.fits", buf.getvalue())
    assert parsed.mjd[0] == pytest.approx(51910.00074287037 + 100)


def test_gbm_pulsar_fits_gz_with_zero_errors_kept() -> None:
    path = SAMPLE_MIRROR / "fermi" / "swiftj0243_old.fits.gz"
    parsed = parse("fermi", path.name, path.read_bytes())
    assert len(parsed) > 1000 and parsed.rejected == []
    assert (parsed.bands["12-50"][1] == 0).all()  # the provider's AMPLITUDE_ERR is often 0


MAXI_TEXT = (DATA / "J1535-572_g_lc_1day_all.dat").read_bytes()


@pytest.mark.parametrize("name, content, message", [
    ("html", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML page"),
    ("not gzip", MAXI_TEXT, "not gzip"),
    ("truncated gzip", gzip.compress(MAXI_TEXT)[:5000], "truncated or corrupt gzip"),
    ("empty", b"\n\n", "empty file"),
    ("fits without columns", None, "no table with columns"),
])
def test_files_that_are_not_lightcurves_are_refused_with_the_reason(name: str, content: bytes | None,
                                                                    message: str) -> None:
    from astropy.io import fits

    if content is None:
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("PSRTIME", "D", array=[1.0])])]
                     ).writeto(buf)
        content = gzip.compress(buf.getvalue())
    url = "https://x/swiftj0243_old.fits.gz" if name in ("not gzip", "truncated gzip", "fits without columns") else "x.dat"
    instrument = "fermi" if url.endswith(".gz") else "maxi"
    with pytest.raises(ValueError, match=message):
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
    reasons = sorted(r for _, r in parsed.rejected)
    assert reasons == ["non-finite value", "time not after the previous row (duplicate or out of order)"]
    assert len(parsed) == len(lines) - 2
