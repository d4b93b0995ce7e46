"""Incremental fetching against a real HTTP mirror and the real broker: all three instruments,
conditional requests, only new or revised points published, state kept in Kafka, each provider
polled on its own schedule."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug import Request, Response

from devtools.observe import files, lightcurve_points, read_records, read_topic
from flashes.settings import PROJECT_ROOT, Settings
from services.fetcher import state
from services.fetcher.service import fetch_once, run_forever
from tests.conftest import providers

SOURCE = "swiftj0243.6+6124"  # MAXI, BAT (weak) and GBM pulsar series
FILES = [
    "maxi/star_data/J0243+614/J0243+614_g_lc_1day_all.dat",
    "swift/results/transients/weak/SwiftJ0243.6p6124.lc.txt",
    "fermi/swiftj0243_old.fits.gz",
]


@pytest.fixture()
def provider(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Path, list, str]]:
    """The files served as a static server does (If-Modified-Since answered with 304), each answer recorded as
    (path, status, whether the request was conditional)."""
    for rel in FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "data" / "mirror" / rel, tmp_path / rel)
    log: list[tuple[str, int, bool]] = []
    serve_file = files(tmp_path)

    def recording(request: Request) -> Response:
        response = serve_file(request)
        log.append((request.path, response.status_code, "If-Modified-Since" in request.headers))
        return response

    with providers(settings, recording) as (served, base):
        yield served, tmp_path, log, base


def published(settings: Settings, base: str) -> list[dict]:
    return [p for p in lightcurve_points(settings) if p["provenance"]["url"].startswith(base)]


def test_second_round_costs_only_conditional_requests_and_revisions_are_republished(
    provider: tuple[Settings, Path, list, str],
) -> None:
    settings, folder, log, base = provider
    first = asyncio.run(fetch_once(settings, [SOURCE]))
    assert first.series == 3 and not first.errors
    points = published(settings, base)
    assert {p["instrument"] for p in points} == {"maxi", "swift", "fermi"}
    assert len(points) == first.points
    # Every instrument of the source on one partition, so that derive can join them.
    records = asyncio.run(read_records(settings, "flashes.lightcurve.v2"))
    assert len({part for _, v, part in records if v["provenance"]["url"].startswith(base)}) == 1

    log.clear()
    second = asyncio.run(fetch_once(settings, [SOURCE]))
    assert second.points == 0 and second.unchanged == 3
    assert sorted((code, conditional) for _, code, conditional in log) == [(304, True)] * 3
    assert len(published(settings, base)) == len(points)

    # The provider revises one MAXI point and appends a new day.
    maxi = folder / FILES[0]
    lines = maxi.read_text().splitlines()
    revised = lines[100].split()
    revised[1] = "1.234567"
    lines[100] = " ".join(revised)
    lines.append("59200.500000 0.5 0.05 0.2 0.03 0.2 0.03 0.1 0.02")
    maxi.write_text("\r\n".join(lines) + "\r\n")
    bump(maxi)
    third = asyncio.run(fetch_once(settings, [SOURCE]))
    assert third.points == 2 and third.series == 1 and third.unchanged == 2
    latest = [p for p in published(settings, base) if p["instrument"] == "maxi"][-2:]  # one partition: in order
    assert [p["mjd"] for p in latest] == [float(revised[0]), 59200.5]
    assert latest[0]["bands"]["2-20"]["flux"] == 1.234567


def test_backfill_publishes_everything_again(provider: tuple[Settings, Path, list, str]) -> None:
    settings, _, _, base = provider
    first = asyncio.run(fetch_once(settings, [SOURCE]))
    again = asyncio.run(fetch_once(settings, [SOURCE], full=True))
    assert again.points == first.points > 0 and again.series == 3
    assert len(published(settings, base)) == 2 * first.points


def test_files_that_are_not_lightcurves_are_reported_and_the_other_series_still_arrive(
    provider: tuple[Settings, Path, list, str],
) -> None:
    settings, folder, log, base = provider
    (folder / FILES[1]).write_text("<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>")
    (folder / FILES[2]).write_bytes(b"SIMPLE  = T / not gzipped at all")
    report = asyncio.run(fetch_once(settings, [SOURCE]))
    assert report.series == 1 and report.points == 3417  # every MAXI day of J0243+614
    errors = "\n".join(report.errors)
    assert "swift:swiftj0243.6+6124" in errors and "HTML page" in errors
    assert "fermi:swiftj0243.6+6124" in errors and "not gzip" in errors
    assert {p["instrument"] for p in published(settings, base)} == {"maxi"}
    letters = [
        v for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1")) if (v["url"] or "").startswith(base)
    ]
    origins = {"fetcher:swift:swiftj0243.6+6124", "fetcher:fermi:swiftj0243.6+6124"}
    assert {letter["origin"] for letter in letters} == origins
    assert any("Service Unavailable" in letter["payload"] for letter in letters)  # the refused page itself

    # The next poll asks conditionally: the refused files cost a 304 and are not refused again.
    log.clear()
    again = asyncio.run(fetch_once(settings, [SOURCE]))
    assert again.unchanged == 3 and not again.errors
    assert sorted((code, conditional) for _, code, conditional in log) == [(304, True)] * 3
    # Once the provider mends the file, it is read (every point: none of it was published before).
    shutil.copy(PROJECT_ROOT / "data" / "mirror" / FILES[1], folder / FILES[1])
    bump(folder / FILES[1])
    mended = asyncio.run(fetch_once(settings, [SOURCE]))
    assert mended.series == 1 and mended.points == 2879 and not mended.errors


def bump(path: Path) -> None:
    """A newer modification time, as a provider's rewrite gives (the server's Last-Modified)."""
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))


def test_a_future_dated_row_is_refused_alone_and_never_becomes_the_series_last_time(
    provider: tuple[Settings, Path, list, str],
) -> None:
    settings, folder, _, base = provider
    asyncio.run(fetch_once(settings, [SOURCE], ["maxi"]))
    maxi = folder / FILES[0]
    with maxi.open("a") as f:  # a typo dated 2121, then the next real day
        f.write(
            "96000.500000 0.5 0.05 0.2 0.03 0.2 0.03 0.1 0.02\r\n59130.500000 0.6 0.05 0.2 0.03 0.2 0.03 0.1 0.02\r\n"
        )
    bump(maxi)
    report = asyncio.run(fetch_once(settings, [SOURCE], ["maxi"]))
    assert report.points == 1 and report.rejected == 1
    assert [p["mjd"] for p in published(settings, base)][-1] == 59130.5
    stored = asyncio.run(state.load_all(settings))[f"maxi:{SOURCE}"]
    assert stored.url.startswith(base) and stored.last_mjd == 59130.5
    letters = [
        v for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1")) if (v["url"] or "").startswith(base)
    ]
    assert [(letter["payload"].split()[0], letter["reason"].split(" (")[0]) for letter in letters] == [
        ("96000.5", "time after the fetch time plus one day")
    ]


def test_each_provider_is_polled_on_its_own_jittered_schedule_and_a_new_row_arrives_at_the_next_poll(
    provider: tuple[Settings, Path, list, str],
) -> None:
    settings, folder, log, base = provider
    every = {"maxi": 600.0, "swift": 900.0, "fermi": 1200.0}
    scheduled = settings.model_copy(update={"fetch_every_s": every, "fetch_jitter_s": 60.0, "fetch_sources": [SOURCE]})
    delays: dict[str, list[float]] = {i: [] for i in every}

    async def scenario() -> None:
        polled_twice = {i: asyncio.Event() for i in every}

        async def sleep(delay: float) -> None:  # stands in for the clock; the polls themselves are real
            instrument = next(i for i, s in every.items() if s <= delay <= s + 60.0)
            delays[instrument].append(delay)
            if instrument == "swift" and len(delays["swift"]) == 2:  # the provider adds a day before the 2nd poll
                bat = folder / FILES[1]
                bat.write_text(bat.read_text() + "59130.0 0.01 0.002 2020 282 0.002 0 0 900 800 850\n")
                bump(bat)
            if len(delays[instrument]) == 3:  # the start round and two polls done
                polled_twice[instrument].set()
                await asyncio.Event().wait()

        service = asyncio.create_task(run_forever(scheduled, sleep))
        done = asyncio.gather(*(e.wait() for e in polled_twice.values()))
        await asyncio.wait({service, done}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
        assert done.done(), f"not every provider polled twice: {delays}"

    asyncio.run(scenario())
    requests = {rel: [(code, conditional) for path, code, conditional in log if path == f"/{rel}"] for rel in FILES}
    # One request per file at start, then one per poll of its own provider only (not 1 + 6).
    assert requests == {
        FILES[0]: [(200, False), (304, True), (304, True)],
        FILES[1]: [(200, False), (304, True), (200, True)],
        FILES[2]: [(200, False), (304, True), (304, True)],
    }
    assert all(every[i] <= d <= every[i] + 60.0 for i, ds in delays.items() for d in ds)
    assert len({round(d, 6) for ds in delays.values() for d in ds}) == 9  # jittered: no two waits alike
    assert published(settings, base)[-1]["mjd"] == 59130.0


def test_mirror_sync_copies_the_provider_files_into_the_mirror_layout(
    provider: tuple[Settings, Path, list, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from services.fetcher.mirror_sync import sync

    settings, folder, _, _ = provider  # the served folder stands in for the live providers
    target = tmp_path_factory.mktemp("synced")
    report = asyncio.run(sync(settings, target, [SOURCE]))
    assert report.series == 3 and not report.errors
    for rel in FILES:
        assert (target / rel).read_bytes() == (folder / rel).read_bytes()
