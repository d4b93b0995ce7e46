"""`flashes mirror sync DIR`: download the catalogue's live provider files into a mirror folder.

The folder gets the layout `flashes fetch --mirror DIR` serves: {maxi,swift,fermi}/<path below
the provider's base URL>.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from flashes import catalogue
from flashes.settings import Settings
from flashes.errors import FetchError
from services.fetcher.http import Provider
from services.fetcher.service import FetchReport, Progress, selected_series


async def sync(settings: Settings, folder: Path, sources: list[str] | None = None,
               instruments: list[str] | None = None) -> FetchReport:
    series = selected_series(catalogue.load(settings), sources, instruments)
    report = FetchReport()
    bar = Progress(len(series), report, enabled=True)

    async with Provider(settings) as provider:
        async def one(source_id: str, instrument: str, url: str) -> None:
            try:
                download = await provider.get(url)
            except FetchError as exc:
                report.errors.append(str(exc))
                return
            dest = folder / instrument / catalogue.path_below_base(settings, instrument, url)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(download.content or b"")
            report.series += 1
            bar.update()

        await asyncio.gather(*(one(*s) for s in series))
    bar.update(final=True)
    return report
