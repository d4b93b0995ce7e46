"""Webhooks signed as in the Standard Webhooks specification (https://www.standardwebhooks.com).

Each POST carries the alert JSON and the headers `webhook-id` (the same on every retry of one
message, so a receiver can drop repeats), `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
subscription's secret (`whsec_` + base64 key, returned once when subscribing).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time

import aiohttp

from flashes.errors import DeliveryError


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def post(session: aiohttp.ClientSession, url: str, secret: str, msg_id: str, body: bytes) -> None:
    """One signed POST (redirects not followed); DeliveryError unless the receiver answers 2xx.

    aiohttp rather than httpx: with hundreds of requests in flight httpx's pool delivered 250 a second.
    """
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret, msg_id, timestamp, body)}
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            status = response.status
    except Exception as exc:  # noqa: BLE001 - whatever talking to the receiver raised: its text is not repeated
        # `from None`: the exception's text and attributes hold the URL and would reach any traceback.
        raise DeliveryError(failure(exc)) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


def failure(exc: Exception) -> str:
    """Why a POST failed, in words that cannot hold the URL or the address: the exception's class, and for an OS
    error the C library's words for its errno.

    aiohttp's texts quote what they were given: a ClientResponseError (an answer that is not HTTP) prints yarl's
    normalised URL (path re-quoted, host lower-cased), which no replacement of the stored URL finds; a connector
    error names host and port, an SSL error the names in the certificate. The status a ClientResponseError carries
    here is aiohttp's parser code (400), not one the receiver sent, so it is not reported as one.
    """
    name = type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError):
        return f"{name}: no answer in time"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{name}: the answer is not valid HTTP"
    if isinstance(exc, OSError) and not isinstance(exc, aiohttp.ClientSSLError) and (exc.errno or 0) > 0:
        return f"{name}: {os.strerror(exc.errno)}"  # DNS errors' numbers are negative: getaddrinfo's, not errno
    return name
