"""`flashes mirror sync DIR`: download the catalogue's live provider files into a mirror folder.

The folder gets the layout `python -m devtools fetch DIR` serves: {maxi,swift,fermi}/<path below
the provider's base URL>.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from flashes import catalogue
from flashes.errors import FetchError
from flashes.progress import progress_bar
from flashes.settings import Settings
from services.fetcher.http import Provider
from services.fetcher.service import FetchReport, selected_series


async def sync(
    settings: Settings, folder: Path, sources: list[str] | None = None, instruments: list[str] | None = None
) -> FetchReport:
    series = selected_series(catalogue.load(settings), sources, instruments)
    report = FetchReport()
    async with Provider(settings) as provider:
        with progress_bar(len(series), "copying", enabled=True) as advance:

            async def one(source_id: str, instrument: str, url: str) -> None:
                try:
                    download = await provider.get(url)
                except FetchError as exc:
                    report.errors.append(str(exc))
                else:
                    dest = folder / instrument / catalogue.path_below_base(settings, instrument, url)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(download.content or b"")
                    report.series += 1
                advance(f"copied {report.series}  errors {len(report.errors)}")

            await asyncio.gather(*(one(*s) for s in series))
    return report
