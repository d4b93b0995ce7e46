"""A provider answering 404, 500, nothing, too much or a redirect to plain http: retried with backoff or
refused, reported, and the others carry on."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from werkzeug import Request, Response

from devtools.observe import files, lightcurve_points, read_topic, serve
from flashes.settings import PROJECT_ROOT, Settings
from services.fetcher.service import fetch_once
from tests.certs import self_signed, server_context
from tests.conftest import providers

BROKEN = {"/maxi/star_data/J1820+071/": 500, "/maxi/star_data/J1520-571/": "hang"}


def flaky(hits: dict[str, int]) -> Callable[[Request], Response]:
    """Serves the sample mirror, except that some paths answer 500 or never answer in time; counts the requests
    per path."""
    serve_file = files(PROJECT_ROOT / "data" / "mirror")

    def handle(request: Request) -> Response:
        hits[request.path] = hits.get(request.path, 0) + 1
        for prefix, behaviour in BROKEN.items():
            if request.path.startswith(prefix):
                if behaviour == "hang":
                    time.sleep(3)  # the slowness under test: longer than FLASHES_HTTP_TIMEOUT_S=2 in the tests
                return Response(status=500 if behaviour == 500 else 503)
        return serve_file(request)

    return handle


@pytest.fixture()
def flaky_settings(settings: Settings) -> Iterator[tuple[Settings, str, dict[str, int]]]:
    hits: dict[str, int] = {}
    with providers(settings, flaky(hits)) as (served, base):
        yield served, base, hits


def test_failing_providers_are_retried_and_the_good_source_still_arrives(
    flaky_settings: tuple[Settings, str, dict[str, int]],
) -> None:
    settings, base, hits = flaky_settings
    sources = ["maxij1535-571", "maxij1820+070", "cirx-1", "gx339-4"]  # ok, 500, timeout, 404 (not in mirror)
    report = asyncio.run(fetch_once(settings, sources, ["maxi"]))
    assert report.series == 1 and report.points == 3855
    errors = "\n".join(report.errors)
    assert "HTTP 500 after 4 attempt(s)" in errors
    assert "timed out after 4 attempt(s)" in errors
    assert "HTTP 404 after 4 attempt(s)" in errors
    assert hits["/maxi/star_data/J1820+071/J1820+071_g_lc_1day_all.dat"] == settings.http_retries
    assert hits["/maxi/star_data/J1702-487/J1702-487_g_lc_1day_all.dat"] == settings.http_retries
    published = [p for p in lightcurve_points(settings) if p["provenance"]["url"].startswith(base)]
    assert len(published) == 3855 and {v["source_id"] for v in published} == {"maxij1535-571"}
    letters = [
        v for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1")) if (v["url"] or "").startswith(base)
    ]
    assert {letter["origin"] for letter in letters} == {
        "fetcher:maxi:maxij1820+070",
        "fetcher:maxi:cirx-1",
        "fetcher:maxi:gx339-4",
    }


def test_unknown_source_is_refused_with_its_name(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown source id\\(s\\): no-such-source"):
        asyncio.run(fetch_once(settings, ["no-such-source"]))


def fixed(bodies: dict[str, bytes], unsized: set[str]) -> Callable[[Request], Response]:
    """Serves fixed bodies by path; a path in `unsized` is streamed without Content-Length (chunked), so that only
    counting the body can bound it."""

    def handle(request: Request) -> Response:
        body = bodies.get(request.path)
        if body is None:
            return Response(status=404)
        if request.path in unsized:
            return Response(iter([body[i : i + 65536] for i in range(0, len(body), 65536)]))
        return Response(body)

    return handle


def fetches(provider: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("flashes_fetches_total", {"provider": provider, "outcome": outcome}) or 0.0


def test_downloads_and_gzip_beyond_their_limits_are_refused_and_the_other_series_arrive(settings: Settings) -> None:
    sample = PROJECT_ROOT / "data" / "mirror"
    good = (sample / "maxi/star_data/J1535-572/J1535-572_g_lc_1day_all.dat").read_bytes()
    bodies = {
        "/maxi/star_data/J0243+614/J0243+614_g_lc_1day_all.dat": good * 4,  # 1.3 MB, streamed unsized
        "/swift/results/transients/weak/SwiftJ0243.6p6124.lc.txt": b"#" * 1_200_000,  # declared 1.2 MB
        "/fermi/swiftj0243_old.fits.gz": gzip.compress(b"\0" * 3_000_000),  # 3 kB inflating to 3 MB
        "/maxi/star_data/J1535-572/J1535-572_g_lc_1day_all.dat": good,
        "/swift/results/transients/weak/MAXIJ1535-571.lc.txt": (
            sample / "swift/results/transients/weak/MAXIJ1535-571.lc.txt"
        ).read_bytes(),
    }
    before = {p: fetches(p, "refused") for p in ("maxi", "swift", "fermi")}
    with providers(settings, fixed(bodies, {next(iter(bodies))})) as (served, base):
        bounded = served.model_copy(update={"max_download_bytes": 1_000_000, "max_decompressed_bytes": 2_000_000})
        report = asyncio.run(fetch_once(bounded, ["swiftj0243.6+6124", "maxij1535-571"]))
    assert sorted(report.errors) == [
        "fermi:swiftj0243.6+6124: gzip inflates beyond FLASHES_MAX_DECOMPRESSED_BYTES (2,000,000 bytes)",
        "maxi:swiftj0243.6+6124: larger than FLASHES_MAX_DOWNLOAD_BYTES (1,000,000 bytes)",
        "swift:swiftj0243.6+6124: larger than FLASHES_MAX_DOWNLOAD_BYTES (1,000,000 bytes)",
    ]
    assert {p: fetches(p, "refused") - before[p] for p in before} == {"maxi": 1, "swift": 1, "fermi": 1}
    published = [p for p in lightcurve_points(settings) if p["provenance"]["url"].startswith(base)]
    assert len(published) == report.points == 3855 + 3180  # MAXI J1535-571's MAXI and BAT series, whole
    assert {(p["source_id"], p["instrument"]) for p in published} == {
        ("maxij1535-571", "maxi"),
        ("maxij1535-571", "swift"),
    }
    letters = [
        v for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1")) if (v["url"] or "").startswith(base)
    ]
    assert sorted(letter["reason"] for letter in letters) == sorted(e.split(": ", 1)[1] for e in report.errors)


def redirecting(downgrade: str) -> Callable[[Request], Response]:
    """Serves the sample mirror; MAXI J1535-571's file moved (https → https, followed), MAXI J1820+070's redirected
    to plain http (`downgrade`), which must not be followed."""
    serve_file = files(PROJECT_ROOT / "data" / "mirror")

    def handle(request: Request) -> Response:
        if request.path.startswith("/maxi/star_data/J1535-572/"):
            return Response(status=301, headers={"Location": "/moved" + request.path})
        if request.path.startswith("/maxi/star_data/J1820+071/"):
            return Response(status=302, headers={"Location": downgrade + request.path})
        request.environ["PATH_INFO"] = request.path.removeprefix("/moved")
        return serve_file(Request(request.environ))

    return handle


def test_a_redirect_from_https_to_http_is_refused_and_the_other_series_arrive(
    settings: Settings, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    hits: dict[str, int] = {}
    plain, plain_base = serve(flaky(hits))
    secure, secure_base = serve(redirecting(plain_base), ssl_context=server_context(cert, key))
    base = f"{secure_base}/maxi/"
    try:  # the client trusts the loopback server's certificate through http_ca_file
        report = asyncio.run(
            fetch_once(
                settings.model_copy(update={"maxi_base_url": base, "http_ca_file": cert}),
                ["maxij1535-571", "maxij1820+070"],
                ["maxi"],
            )
        )
    finally:
        secure.stop()
        plain.stop()
    refusal = (
        f"{base}star_data/J1820+071/J1820+071_g_lc_1day_all.dat: refused a redirect from https to http://127.0.0.1"
    )
    assert report.errors == [f"maxi:maxij1820+070: {refusal}"]
    assert hits == {}  # the http address was never asked
    assert report.series == 1 and report.points == 3855  # the file moved within https arrives whole
    letters = [
        v for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1")) if (v["url"] or "").startswith(base)
    ]
    assert [(letter["origin"], letter["reason"]) for letter in letters] == [("fetcher:maxi:maxij1820+070", refusal)]
