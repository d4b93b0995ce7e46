"""Incremental fetching against a real HTTP mirror and the real broker: all three instruments,
conditional requests, only new or revised points published, state kept in Kafka."""
from __future__ import annotations

import asyncio
import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flashes import mirror
from flashes.settings import PROJECT_ROOT, Settings, get_settings
from services.fetcher.service import fetch_once
from tests.kafka_helpers import lightcurve_points, read_records, read_topic

SOURCE = "swiftj0243.6+6124"  # MAXI, BAT (weak) and GBM pulsar series
FILES = ["maxi/star_data/J0243+614/J0243+614_g_lc_1day_all.dat",
         "swift/results/transients/weak/SwiftJ0243.6p6124.lc.txt", "fermi/swiftj0243_old.fits.gz"]


class RecordingHandler(SimpleHTTPRequestHandler):
    """The standard static server (it answers If-Modified-Since with 304), recording each answer."""

    log: list[tuple[str, int, bool]] = []

    def send_response(self, code: int, message: str | None = None) -> None:
        self.log.append((self.path, code, "If-Modified-Since" in self.headers))
        super().send_response(code, message)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def provider(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Path, list, str]]:
    for rel in FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "data" / "mirror" / rel, tmp_path / rel)
    log: list[tuple[str, int, bool]] = []
    handler = functools.partial(type("Rec", (RecordingHandler,), {"log": log}), directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    saved = dict(os.environ)
    os.environ.update(mirror.provider_env(base))
    get_settings.cache_clear()
    try:
        yield Settings(), tmp_path, log, base
    finally:
        server.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def published(settings: Settings, base: str) -> list[dict]:
    return [p for p in lightcurve_points(settings) if p["provenance"]["url"].startswith(base)]


def test_second_round_costs_only_conditional_requests_and_revisions_are_republished(
        provider: tuple[Settings, Path, list, str]) -> None:
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
    os.utime(maxi, (maxi.stat().st_atime, maxi.stat().st_mtime + 10))
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
        provider: tuple[Settings, Path, list, str]) -> None:
    settings, folder, _, base = provider
    (folder / FILES[1]).write_text("<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>")
    (folder / FILES[2]).write_bytes(b"SIMPLE  = T / not gzipped at all")
    report = asyncio.run(fetch_once(settings, [SOURCE]))
    assert report.series == 1 and report.points == 3417  # every MAXI day of J0243+614
    errors = "\n".join(report.errors)
    assert "swift:swiftj0243.6+6124" in errors and "HTML page" in errors
    assert "fermi:swiftj0243.6+6124" in errors and "not gzip" in errors
    assert {p["instrument"] for p in published(settings, base)} == {"maxi"}
    letters = [v for _, v in asyncio.run(read_topic(settings, "flashes.deadletter.v1")) if (v["url"] or "").startswith(base)]
    assert {l["origin"] for l in letters} == {"fetcher:swift:swiftj0243.6+6124", "fetcher:fermi:swiftj0243.6+6124"}
    assert any("Service Unavailable" in l["payload"] for l in letters)  # the refused page itself


def test_mirror_sync_copies_the_provider_files_into_the_mirror_layout(
        provider: tuple[Settings, Path, list, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    from services.fetcher.mirror_sync import sync

    settings, folder, _, _ = provider  # the served folder stands in for the live providers
    target = tmp_path_factory.mktemp("synced")
    report = asyncio.run(sync(settings, target, [SOURCE]))
    assert report.series == 3 and not report.errors
    for rel in FILES:
        assert (target / rel).read_bytes() == (folder / rel).read_bytes()
