"""Polite HTTP downloads: one shared client, timeouts, retries with exponential backoff and jitter."""
from __future__ import annotations

import asyncio
import logging
import random

import httpx

from flashes.settings import Settings

log = logging.getLogger(__name__)
USER_AGENT = "FLASHES-stream/0.1 (X-ray transient alert service; +https://github.com/flashes-stream)"


class FetchError(RuntimeError):
    """The provider did not deliver the file after every retry; the message says why."""


def make_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=settings.http_timeout_s, headers={"User-Agent": USER_AGENT},
                             follow_redirects=True, limits=httpx.Limits(max_connections=8))


async def get_text(client: httpx.AsyncClient, url: str, settings: Settings) -> str:
    """GET a text file; 404, 5xx, timeouts and connection errors are retried with backoff."""
    reason = ""
    for attempt in range(settings.http_retries):
        if attempt:
            delay = settings.http_backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())
            log.info("retrying %s in %.1f s (%s)", url, delay, reason)
            await asyncio.sleep(delay)
        try:
            response = await client.get(url)
        except httpx.TimeoutException:
            reason = "timed out"
            continue
        except httpx.TransportError as exc:
            reason = f"connection failed: {exc!r}"
            continue
        if response.status_code == 200:
            return response.text
        reason = f"HTTP {response.status_code}"
        if response.status_code not in (404, 408, 429) and response.status_code < 500:
            break
    raise FetchError(f"{url}: {reason} after {attempt + 1} attempt(s)")
