"""Polite HTTP downloads: one shared client, a per-host concurrency limit, timeouts, conditional
requests (ETag / If-Modified-Since), retries with exponential backoff and jitter, bounded bodies,
redirects followed but never from https to anything else."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from flashes.errors import FetchError, RefusedFile
from flashes.settings import Settings

log = logging.getLogger(__name__)
USER_AGENT = "FLASHES-stream/0.1 (X-ray transient alert service; python-httpx)"
RETRIED_STATUS = {404, 408, 429}  # besides every 5xx: mirrors and providers publish files late


@dataclass(frozen=True)
class Download:
    content: bytes | None  # None: not modified since the validators we sent
    etag: str | None
    last_modified: str | None


async def refuse_downgrade(response: httpx.Response) -> None:
    """A redirect from https to http is refused before it is followed (a man in the middle of the http hop
    could inject points); httpx calls this for every response, redirects included. Not retried: the
    provider's answer will not change within the backoff."""
    if response.has_redirect_location and response.url.scheme == "https":
        try:
            target = response.url.join(response.headers["Location"])
        except httpx.InvalidURL:
            return  # httpx refuses it itself, as a protocol error
        if target.scheme != "https":
            raise FetchError(f"{response.url}: refused a redirect from https to {target.scheme}://{target.host}")


def trusted(settings: Settings) -> ssl.SSLContext:
    """httpx's default certificate authorities, and those of `http_ca_file` when it is set."""
    context = httpx.create_ssl_context()
    if settings.http_ca_file is not None:
        context.load_verify_locations(cafile=settings.http_ca_file)
    return context


class Provider:
    """The shared HTTP client with at most `per_host` requests in flight to any one host."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(
            timeout=settings.http_timeout_s,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
            limits=httpx.Limits(max_connections=32),
            event_hooks={"response": [refuse_downgrade]},
            verify=trusted(settings),
        )
        self._limits: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(settings.http_per_host))

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def get(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Download:
        """GET with validators; 404, 5xx, timeouts and connection errors are retried with backoff."""
        headers = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if v}
        reason = ""
        attempts = self.settings.http_retries
        for attempt in range(attempts):
            if attempt:
                delay = self.settings.http_backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())
                log.info("retrying %s in %.1f s (%s)", url, delay, reason)
                await asyncio.sleep(delay)
            try:
                async with (
                    self._limits[urlsplit(url).netloc],
                    self.client.stream("GET", url, headers=headers) as response,
                ):
                    if response.status_code == 304:
                        return Download(None, etag, last_modified)
                    if response.status_code == 200:
                        return Download(
                            await self._body(response),
                            response.headers.get("ETag"),
                            response.headers.get("Last-Modified"),
                        )
            except httpx.TimeoutException:
                reason = "timed out"
                continue
            except httpx.TransportError as exc:
                reason = f"connection failed: {exc!r}"
                continue
            except httpx.HTTPError as exc:  # a broken Content-Encoding, a redirect loop: asking again won't help
                reason = f"{type(exc).__name__}: {exc}"
                attempts = attempt + 1
                break
            reason = f"HTTP {response.status_code}"
            if response.status_code not in RETRIED_STATUS and response.status_code < 500:
                attempts = attempt + 1
                break
        raise FetchError(f"{url}: {reason} after {attempts} attempt(s)")

    async def _body(self, response: httpx.Response) -> bytes:
        """The body, read in pieces and refused beyond max_download_bytes (counted after any
        Content-Encoding is undone, so a compressed transfer is bounded by what it inflates to)."""
        limit = self.settings.max_download_bytes
        refusal = f"larger than FLASHES_MAX_DOWNLOAD_BYTES ({limit:,} bytes)"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RefusedFile(refusal)
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > limit:
                raise RefusedFile(refusal)
        return bytes(body)
