"""Provider file readers on real MAXI files (values checked by hand) and on bad input."""
from pathlib import Path

import numpy as np
import pytest

from services.fetcher.parsers import parse_bat, parse_maxi

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
