"""One fetch round over the catalogue, and the service loop that repeats it."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flashes import catalogue
from flashes.kafka import dead_letter, ensure_topics, make_producer, send_dead_letter
from flashes.settings import Settings
from services.fetcher.http import FetchError, get_text, make_client
from services.fetcher.parsers import PARSERS
from services.fetcher.publish import publish

log = logging.getLogger(__name__)


@dataclass
class FetchReport:
    series: int = 0
    points: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def selected_series(records: list[dict[str, Any]], sources: list[str] | None,
                    instruments: list[str] | None) -> list[tuple[str, str, str]]:
    """(source_id, instrument, url) for every series with a readable provider format."""
    wanted = set(sources) if sources else None
    return [(rec["_id"], inst, rec[inst]["data_url"])
            for rec in records if wanted is None or rec["_id"] in wanted
            for inst in PARSERS if rec.get(inst) and (not instruments or inst in instruments)]


async def fetch_once(settings: Settings, sources: list[str] | None = None,
                     instruments: list[str] | None = None) -> FetchReport:
    records = catalogue.load(settings)
    known = {rec["_id"] for rec in records}
    unknown = sorted(set(sources or []) - known)
    if unknown:
        raise ValueError(f"unknown source id(s): {', '.join(unknown)}")
    await ensure_topics(settings)
    report = FetchReport()
    producer = make_producer(settings)
    await producer.start()
    try:
        async with make_client(settings) as client:
            async def one(source_id: str, instrument: str, url: str) -> None:
                origin = f"fetcher:{instrument}:{source_id}"
                try:
                    text = await get_text(client, url, settings)
                    parsed = PARSERS[instrument](text)
                except (FetchError, ValueError) as exc:
                    report.errors.append(str(exc))
                    log.error("%s: %s", origin, exc)
                    await send_dead_letter(producer, dead_letter(origin, str(exc), "", url))
                    return
                published = await publish(producer, parsed, source_id, instrument, url, datetime.now(timezone.utc))
                report.series += 1
                report.points += published
                report.rejected += len(parsed.rejected)

            await asyncio.gather(*(one(*s) for s in selected_series(records, sources, instruments)))
        await producer.flush()
    finally:
        await producer.stop()
    log.info("fetched %d series, %d points, %d rejected lines, %d failures",
             report.series, report.points, report.rejected, len(report.errors))
    return report


async def run_forever(settings: Settings) -> None:
    """The fetcher service: a round now, then one every fetch_interval_s."""
    while True:
        await fetch_once(settings, settings.fetch_sources or None)
        await asyncio.sleep(settings.fetch_interval_s)
