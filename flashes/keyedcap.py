"""At most n holders per key at once (a subscription, a receiving network), each key's semaphore kept only while
someone holds or waits for it: memory follows the work in flight, not the number of keys ever seen. Delivery caps
webhook attempts with it; the API serialises each subscription's read-modify-write with n = 1."""

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
