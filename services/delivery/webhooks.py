"""The delivery service's webhooks, signed as in the Standard Webhooks specification (https://www.standardwebhooks.com).

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
import socket
import ssl
import time

import aiohttp

from flashes.errors import CLOSED, CONNECTION_REFUSED, FAILED, TIMED_OUT, TLS, DeliveryError, RefusedAddress


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def post(session: aiohttp.ClientSession, url: str, secret: str, msg_id: str, body: bytes) -> None:
    """One signed POST (redirects not followed); DeliveryError unless the receiver answers 2xx.

    aiohttp rather than httpx: with hundreds of requests in flight httpx's pool delivered 250 a second.
    """
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            status = response.status
    except Exception as exc:  # noqa: BLE001 - whatever talking to the receiver raised: its text is not repeated
        # `from None`: the exception's text and attributes hold the URL and the address and would reach a traceback.
        raise DeliveryError(failure(exc)) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


# What a subscriber, the logs, the dead letters and the deliveries table are told of a failed POST: these words (the
# connection ones are flashes.errors', shared with mail), or
# "HTTP <status>" for an answer that is not 2xx. Never the exception's text: aiohttp's texts quote the URL (yarl's
# normalised form, which no replacement of the stored URL finds), a connector error names the address and port
# dialled, an SSL error the names in the certificate, and the difference between them scanned a network.
REFUSED = "refused address"
NOT_HTTP = "not an HTTP answer"
FAILURES = (REFUSED, TIMED_OUT, TLS, CONNECTION_REFUSED, CLOSED, NOT_HTTP, FAILED)


def failure(exc: BaseException) -> str:
    """Why a POST failed, one of FAILURES, read from the exception and what it wraps (aiohttp keeps the OS error
    of a failed connection in `os_error` and `__cause__`).

    A name that does not resolve is a refused address like one that resolves inward (flashes/netguard.py). A
    ClientResponseError here is an answer aiohttp could not parse; its status (400) is aiohttp's, not the
    receiver's, so it is not reported as one.
    """
    chain = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    for kinds, words in (
        (RefusedAddress | socket.gaierror | aiohttp.ClientConnectorDNSError | aiohttp.InvalidURL, REFUSED),
        (asyncio.TimeoutError, TIMED_OUT),
        (ssl.SSLError | ssl.CertificateError | aiohttp.ClientSSLError, TLS),
        (ConnectionRefusedError, CONNECTION_REFUSED),
        (aiohttp.ClientResponseError, NOT_HTTP),
        (ConnectionResetError | aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError, CLOSED),
    ):
        if any(isinstance(e, kinds) for e in chain):
            return words
    return FAILED
