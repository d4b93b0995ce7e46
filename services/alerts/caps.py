"""Concurrency caps per key (a subscription, a receiving network), so that many dead receivers delay nobody else.

Each key gets its own semaphore while someone holds or waits for it, and is forgotten when nobody does: memory
follows the work in flight, not the number of subscriptions or hosts ever seen. The delivery takes its keyed caps
before the global slot (Deliverer.slots), so an attempt waiting for a busy host holds no global slot: a thousand
subscriptions on a black hole fill their host's cap and queue behind it, while every other host's attempts find
the global slots free.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedCap:
    """At most `size` holders per key at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.keys: dict[str, tuple[asyncio.Semaphore, int]] = {}  # key -> (its semaphore, holders and waiters)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        semaphore, users = self.keys.get(key) or (asyncio.Semaphore(self.size), 0)
        self.keys[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self.keys[key]
            if users == 1:
                del self.keys[key]
            else:
                self.keys[key] = (semaphore, users - 1)
