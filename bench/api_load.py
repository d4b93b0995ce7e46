"""API load: /timeseries of one source over one year under concurrent clients, on loopback.

A private stack (Kafka and QuestDB on free loopback ports, the sink) holds the sample's MAXI J1535-571
(MAXI and BAT, fetched from the sample mirror); the API runs as its own process (`flashes run api`,
as in production). The load comes from another process: `--clients` concurrent aiohttp clients, each
asking in a loop for one year of one series for `--seconds`, after a warm-up: first always the same
year (2017: the MAXI series has four bands, 322 days), then a year starting on a random day of
2012-2018, so that almost every answer is cut and encoded anew. Latency is from sending the request
to the last byte.

    .venv/bin/python bench/api_load.py [--clients 50] [--seconds 20] [--series maxi]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from datetime import date

import aiohttp
import httpx
from benchkit import latency_summary

from devtools import observe
from devtools.stack import SAMPLE_MIRROR, private_stack
from flashes import questdb
from services.fetcher.service import fetch_once

SOURCE = "maxij1535-571"


def windows(query: str, year: int, vary: bool) -> list[str]:
    """The URLs asked for: the calendar year `year`, or (vary) a year starting on any day of 2012-2018,
    2,557 windows, so that few answers are encoded twice."""
    if not vary:
        return [f"{query}&start={year}-01-01T00:00:00Z&end={year + 1}-01-01T00:00:00Z"]
    first = date(2012, 1, 1).toordinal()
    return [
        f"{query}&start={date.fromordinal(d)}T00:00:00Z&end={date.fromordinal(d + 365)}T00:00:00Z"
        for d in range(first, first + 7 * 365 + 2)
    ]


async def load(urls: list[str], clients: int, seconds: float, warmup_s: float) -> dict[str, float]:
    """`clients` loops each asking for a URL drawn from `urls`; the latencies of the requests started after
    the warm-up."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    stop_at = start + warmup_s + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while (t0 := time.perf_counter()) < stop_at:
            async with session.get(random.choice(urls)) as r:
                await r.read()
                ok = r.status == 200
            if t0 < start + warmup_s:
                continue
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                failures += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return {
        "requests": len(latencies),
        "failures": failures,
        "requests_per_s": round(len(latencies) / seconds, 1),
        **latency_summary(latencies, unit="ms"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--series", default="maxi", choices=["maxi", "swift", "hardness", "combined"])
    parser.add_argument("--year", type=int, default=2017)
    parser.add_argument("--load-only", metavar="URL", help=argparse.SUPPRESS)  # the load generator's own process
    parser.add_argument("--vary", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()
    if args.load_only:
        urls = windows(args.load_only, args.year, args.vary)
        print(json.dumps(asyncio.run(load(urls, args.clients, args.seconds, args.warmup_s))))
        return

    with private_stack(("sink", "derive", "api"), mirror=SAMPLE_MIRROR, keep=args.keep) as run:
        settings = run.settings
        report = asyncio.run(fetch_once(settings, [SOURCE]))
        table = "derived" if args.series in ("hardness", "combined") else "lightcurve"
        observe.wait_until(
            lambda: (
                observe.series_counts(settings, table).get(f"{args.series}_{SOURCE}", 0) > 1000
                and questdb.wal_applied(settings)
            ),
            "the sample in QuestDB",
            300,
        )
        query = f"{settings.api_url}/timeseries?source={SOURCE}&series={args.series}"
        (url,) = windows(query, args.year, vary=False)
        observe.wait_until(lambda: httpx.get(url, timeout=5).status_code == 200, "the API", 60)
        rows = len(httpx.get(url).json())
        print(f"{report.points} points of {SOURCE} stored; {url} -> {rows} rows", flush=True)
        figures = {}
        for name, vary in (("same_window", []), ("varied_windows", ["--vary"])):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--load-only",
                    query,
                    *vary,
                    "--year",
                    str(args.year),
                    "--clients",
                    str(args.clients),
                    "--seconds",
                    str(args.seconds),
                    "--warmup-s",
                    str(args.warmup_s),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            figures[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: {figures[name]}", flush=True)
        run.keep = any(f["failures"] for f in figures.values())
        print(
            json.dumps(
                {
                    "endpoint": "/timeseries",
                    "series": args.series,
                    "rows_per_response": rows,
                    "clients": args.clients,
                    "seconds": args.seconds,
                    **figures,
                }
            )
        )


if __name__ == "__main__":
    main()
