"""The API's in-memory series cache: one load for concurrent first requests, the old value served while
a newer one loads, and kept when the reload fails. Time is the cache's injected clock; each reload is awaited."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

from flashes.errors import QuestDBError
from flashes.settings import Settings
from services.api.store import TERMS, Reader, TTLCache


async def test_concurrent_first_requests_load_once() -> None:
    cache, calls, started, release = TTLCache(ttl_s=60, size=4), [], asyncio.Event(), asyncio.Event()

    async def load() -> int:
        calls.append(1)
        started.set()
        await release.wait()  # in flight until the test lets it finish
        return 7

    requests = asyncio.gather(*(cache.get("k", load) for _ in range(50)))
    await started.wait()  # the load task was scheduled by the first request, after all 50: each has asked
    assert len(calls) == 1 and not requests.done()
    release.set()
    assert await requests == [7] * 50
    assert len(calls) == 1


async def test_a_stale_value_is_served_while_the_new_one_loads_and_kept_if_that_fails() -> None:
    now = [0.0]
    cache, version, release = TTLCache(ttl_s=10, size=4, clock=lambda: now[0]), [1], asyncio.Event()

    async def load() -> int:
        if version[0] > 1:
            await release.wait()
        if version[0] == 3:
            raise QuestDBError("down")
        return version[0]

    assert await cache.get("k", load) == 1
    version[0] = 2
    now[0] += 11  # past the TTL
    assert await cache.get("k", load) == 1  # stale: the reload waits, the request does not
    reload = cache.refreshing["k"]
    release.set()
    await reload
    assert await cache.get("k", load) == 2  # the reload is in
    version[0] = 3
    now[0] += 11
    await cache.get("k", load)
    await cache.refreshing["k"]  # the reload fails (logged)
    assert await cache.get("k", load) == 2  # the failed reload kept the value


async def test_at_most_size_keys() -> None:
    cache = TTLCache(ttl_s=60, size=2)

    async def load() -> str:
        return "v"

    for key in "abc":
        await cache.get(key, load)
    assert list(cache.entries) == ["b", "c"]


async def test_every_limit_of_the_top_sources_shares_one_read_and_the_newest_points_stay_cached() -> None:
    """`Reader.top` ranks once for every limit: a cache key per limit would read QuestDB per limit and push the
    newest points (every page's) out of the cache. QuestDB stands in as `fetch`, whose queries are counted."""
    reader, reads = Reader(Settings.from_env({})), []
    terms = {f"{name}_term": 0.0 for name in TERMS}
    ts = datetime(2024, 1, 1, tzinfo=UTC)

    async def fetch(sql: str, *args: object) -> list[dict]:
        reads.append(sql)
        if "FROM relevance" not in sql:
            return []  # the newest points: none
        return [
            {"ts": ts, "series": f"maxi_s{i}", "source_id": f"s{i}", "kind": "maxi", "mjd": 60310.5, "value": 1.0}
            | {"relevance": i / 10, **terms}
            for i in range(10)
        ]

    reader.fetch = fetch  # type: ignore[method-assign]
    await reader.latest()
    tops = [[r["source_id"] for r in await reader.top(limit)] for limit in range(1, 11)]
    await reader.latest()
    assert tops == [[f"s{i}" for i in range(9, 9 - n, -1)] for n in range(1, 11)]
    assert sum("FROM relevance" in sql for sql in reads) == 1  # one read for ten limits
    assert len(reads) == 3  # and the newest points (lightcurve and derived) were read once, not pushed out


async def test_a_series_is_built_off_the_event_loop() -> None:
    """Building a whole-history series takes tens of ms; on the event loop it would hold every other request.
    The rows stand in for QuestDB's and note the thread that reads them."""
    reader, readers = Reader(Settings.from_env({})), set()
    ts = datetime(2024, 1, 1, tzinfo=UTC)

    class Rows(list):
        def __iter__(self):  # type: ignore[no-untyped-def]
            readers.add(threading.get_ident())
            return super().__iter__()

    async def fetch(sql: str, *args: object) -> list:
        return Rows([(ts, 60310.5, "2-20", 10.0, 1.0)])

    reader.fetch = fetch  # type: ignore[method-assign]
    body = await reader.timeseries("maxi_s", "maxi", ts, datetime(2025, 1, 1, tzinfo=UTC))
    assert b'"flux 2-20":10.0' in body
    assert readers and threading.get_ident() not in readers
