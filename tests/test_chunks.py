"""flashes/chunks.py: the one builder of data-topic chunks, without Kafka."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import numpy as np

import schemas
from flashes import chunks, topics
from flashes.timeconv import mjd_to_unix_us


def test_the_examples_in_the_docstrings_hold() -> None:
    result = doctest.testmod(chunks)
    assert result.attempted >= 3 and result.failed == 0


def test_a_long_maxi_series_becomes_bounded_chunks_that_give_back_every_point() -> None:
    rng = np.random.default_rng(3)
    n = 9000
    mjd = 55000.5 + np.arange(n)
    bands = ("2-20", "2-4", "4-10", "10-20")
    flux = {b: rng.normal(0.1, 0.05, n) for b in bands}
    error = {b: rng.uniform(0.001, 0.01, n) for b in bands}
    provenance = schemas.Provenance(url="file://x", fetched_at=datetime(2026, 1, 1, tzinfo=UTC))
    out = chunks.build(
        schemas.LightcurveChunk,
        mjd,
        {"flux": flux, "error": error, "flags": {}},
        source_id="gx339-4",
        instrument="maxi",
        bands=list(bands),
        units="photons/cm2/s",
        provenance=provenance,
    )
    assert len(out) == 5  # 2,080 points a chunk: 10 numbers each, a JSON float taking at most 25 bytes
    assert all(
        c.count <= schemas.MAX_CHUNK_POINTS and len(topics.LIGHTCURVE.encode(c)) <= schemas.MAX_CHUNK_BYTES for c in out
    )
    assert [m for c in out for m in c.mjd] == mjd.tolist()
    assert [t for c in out for t in c.time] == mjd_to_unix_us(mjd).tolist()
    for b in bands:
        assert [x for c in out for x in c.flux[b]] == flux[b].tolist()
        assert [x for c in out for x in c.error[b]] == error[b].tolist()
    assert all((c.first_mjd, c.last_mjd) == (c.mjd[0], c.mjd[-1]) and c.provenance == provenance for c in out)


def test_given_times_are_kept_and_grouped_columns_are_cut_with_the_others() -> None:
    mjd = [58000.5, 58001.5, 58002.5]
    time = (mjd_to_unix_us(np.array(mjd)) + 7).tolist()  # within the contract's 1 s of the MJD
    terms = {"model": [0.1, 0.2, 0.3], "hardness": [0.0] * 3, "flux": [0.5] * 3, "trend": [0.4] * 3}
    [one] = chunks.build(
        schemas.RelevanceChunk,
        mjd,
        {"value": [1.0, 2.0, 3.0], "error": [0.1] * 3, "relevance": [0.2, 0.3, 0.9], "terms": terms},
        time=time,
        source_id="gx339-4",
        series="maxi_gx339-4",
        kind="maxi",
        model_version="test",
    )
    assert one.time == time and one.count == 3 and one.terms == schemas.RelevanceTermColumns(**terms)
    empty = {"value": [], "error": [], "relevance": [], "terms": dict.fromkeys(terms, [])}
    assert (
        chunks.build(
            schemas.RelevanceChunk,
            [],
            empty,
            source_id="gx339-4",
            series="maxi_gx339-4",
            kind="maxi",
            model_version="test",
        )
        == []
    )  # no points, no chunk
