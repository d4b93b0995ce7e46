"""Fetch rounds over the catalogue (incremental or full backfill) and the scheduled service."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

import schemas
from flashes import catalogue, clock, metrics, topics
from flashes.errors import FetchError, RefusedFile
from flashes.heartbeat import beat
from flashes.kafka import dead_letter, ensure_topics, make_producer, send_dead_letter
from flashes.parsers import parse
from flashes.progress import progress_bar
from flashes.settings import Settings
from services.fetcher import state
from services.fetcher.http import Provider
from services.fetcher.publish import publish

log = logging.getLogger(__name__)


@dataclass
class FetchReport:
    series: int = 0
    unchanged: int = 0  # answered 304 Not Modified, or nothing new in the file
    points: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def selected_series(
    records: list[schemas.CatalogueSource], sources: list[str] | None, instruments: list[str] | None
) -> list[tuple[str, str, str]]:
    """(source_id, instrument, url) of every series to fetch."""
    wanted = set(sources) if sources else None
    return [
        (rec.id, inst, entry.data_url)
        for rec in records
        if wanted is None or rec.id in wanted
        for inst in topics.INSTRUMENTS
        if (not instruments or inst in instruments)
        and (entry := rec.entry(inst)) is not None
        and entry.data_url is not None
    ]


async def fetch_series(
    provider: Provider,
    producer: AIOKafkaProducer,
    publishing: asyncio.Semaphore,
    previous: schemas.FetchState | None,
    source_id: str,
    instrument: str,
    url: str,
    report: FetchReport,
    full: bool,
) -> None:
    """Download one series, publish what is new or revised, and remember what was published."""
    key = topics.series_key(instrument, source_id)
    stored = previous if previous is not None and previous.url == url else None
    known = None if full else stored
    content, download = b"", None
    try:
        download = await provider.get(url, known.etag if known else None, known.last_modified if known else None)
        if download.content is None:
            report.unchanged += 1
            metrics.FETCHES.labels(provider=instrument, outcome="unchanged").inc()
            return
        content = download.content
        fetched_at = clock.now(provider.settings)
        parsed = parse(
            instrument,
            url,
            content,
            fetched_at=fetched_at,
            max_decompressed_bytes=provider.settings.max_decompressed_bytes,
        )
    except FetchError as exc:  # RefusedFile too: every other series carries on
        refused = isinstance(exc, RefusedFile)
        report.errors.append(f"{key}: {exc}")
        log.error("%s: %s", key, exc)
        metrics.FETCHES.labels(provider=instrument, outcome="refused" if refused else "failed").inc()
        metrics.DEAD_LETTERS.labels(service="fetcher", reason="refused_file" if refused else "download_failed").inc()
        head = content[:2000].decode("utf-8", errors="replace")  # enough of a refused file to see what it was
        await send_dead_letter(producer, dead_letter(f"fetcher:{key}", str(exc), head, url))
        if refused and download is not None:
            # Remember the refused file's validators (keeping what was published), so that the next
            # poll costs a 304 and refuses nothing again until the provider changes the file.
            await _send_state(
                producer,
                (stored or schemas.FetchState(series=key, url=url)).model_copy(
                    update={"etag": download.etag, "last_modified": download.last_modified}
                ),
            )
        return
    digests = state.row_digests(parsed)
    rows = state.changed_rows(known, parsed.mjd, digests)
    async with publishing:  # a few series at a time, so that no batch waits in the producer's queue for long
        sent = await publish(producer, parsed, rows, source_id, instrument, url, fetched_at)
    report.rejected += len(parsed.rejected)
    report.points += sent
    if sent:
        report.series += 1
    else:
        report.unchanged += 1
    metrics.FETCHES.labels(provider=instrument, outcome="new" if sent else "unchanged").inc()
    # parsed holds accepted rows only: a refused row (a future typo) never becomes last_mjd.
    await _send_state(
        producer,
        schemas.FetchState(
            series=key,
            url=url,
            etag=download.etag,
            last_modified=download.last_modified,
            last_mjd=float(parsed.mjd.max()) if len(parsed) else None,
            points=len(parsed),
            digests=state.encode_digests(parsed.mjd, digests),
        ),
    )


async def _send_state(producer: AIOKafkaProducer, fetch_state: schemas.FetchState) -> None:
    await producer.send(topics.FETCHSTATE.name, fetch_state.model_dump_json().encode(), key=fetch_state.series.encode())


async def fetch_once(
    settings: Settings,
    sources: list[str] | None = None,
    instruments: list[str] | None = None,
    full: bool = False,
    progress: bool = False,
) -> FetchReport:
    """One round: every selected series, incremental (or everything again with `full`).

    Sources are fetched concurrently, but a source's series in a fixed order (topics.INSTRUMENTS): in a
    backfill the alert episodes come from the history published first (a series more than 10 days
    behind the source's newest point opens nothing), so they must not depend on which download
    finished first."""
    records = catalogue.load(settings)
    unknown = sorted(set(sources or []) - {rec.id for rec in records})
    if unknown:
        raise ValueError(f"unknown source id(s): {', '.join(unknown)}")
    await ensure_topics(settings)
    states = await state.load_all(settings)
    series = selected_series(records, sources, instruments)
    report = FetchReport()
    producer = make_producer(settings)
    publishing = asyncio.Semaphore(topics.LIGHTCURVE.partitions)
    await producer.start()
    try:
        async with Provider(settings) as provider:
            with progress_bar(len(series), "fetching", progress) as advance:

                async def in_order(items: list[tuple[str, str, str]]) -> None:
                    for source_id, instrument, url in items:
                        await fetch_series(
                            provider,
                            producer,
                            publishing,
                            states.get(topics.series_key(instrument, source_id)),
                            source_id,
                            instrument,
                            url,
                            report,
                            full,
                        )
                        advance(f"points {report.points:,}  bad lines {report.rejected:,}  errors {len(report.errors)}")

                by_source: dict[str, list[tuple[str, str, str]]] = {}
                for item in series:  # a source's series one after the other, MAXI first: see the doc above
                    by_source.setdefault(item[0], []).append(item)
                await asyncio.gather(*(in_order(items) for items in by_source.values()))
        await producer.flush()
    finally:
        await producer.stop()
    log.info(
        "%d series published, %d unchanged, %d points, %d bad lines, %d failures",
        report.series,
        report.unchanged,
        report.points,
        report.rejected,
        len(report.errors),
    )
    return report


Sleep = Callable[[float], Awaitable[None]]


async def poll(
    settings: Settings, instrument: str, sleep: Sleep = asyncio.sleep, rng: random.Random | None = None
) -> None:
    """One provider's schedule, forever: wait fetch_every_s[instrument] plus up to fetch_jitter_s
    (so that the providers, and several fetchers, do not ask at the same moment), then a round of
    that provider's series. A file unchanged since the last poll costs a 304."""
    rng = rng or random.Random()
    while True:
        delay = settings.fetch_every_s[instrument] + rng.uniform(0.0, settings.fetch_jitter_s)
        log.info("next %s poll in %.0f s", instrument, delay)
        await sleep(delay)
        await fetch_once(settings, settings.fetch_sources or None, [instrument])


async def run_forever(settings: Settings, sleep: Sleep = asyncio.sleep) -> None:
    """The fetcher service: a round of every provider at start (a source's series in order, see
    fetch_once), then each provider polled on its own schedule (`poll`)."""
    unscheduled = [i for i in topics.INSTRUMENTS if settings.fetch_every_s.get(i, 0) <= 0]
    if unscheduled:
        raise ValueError(f"FLASHES_FETCH_EVERY_S needs a positive interval for {', '.join(unscheduled)}")
    heartbeat = asyncio.ensure_future(beat(settings, "fetcher"))
    try:
        await fetch_once(settings, settings.fetch_sources or None)
        await asyncio.gather(*(poll(settings, instrument, sleep) for instrument in topics.INSTRUMENTS))
    finally:
        heartbeat.cancel()
