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
    except asyncio.TimeoutError as exc:
        raise DeliveryError("TimeoutError: no answer in time") from exc
    except aiohttp.ClientConnectorError as exc:  # its text (and asyncio's) names the address: the errno's words only
        cause = exc.os_error
        raise DeliveryError(f"{type(exc).__name__}: "
                            f"{os.strerror(cause.errno) if cause.errno else type(cause).__name__}") from exc
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")
