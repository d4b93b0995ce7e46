"""Signed webhook delivery.

Each POST carries the alert JSON and `X-Flashes-Signature: sha256=<hex HMAC-SHA256 of the body
with the shared secret>`, so a receiver can check that the alert came from this service.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging

import httpx

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Flashes-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    return hmac.compare_digest(sign(body, secret), signature)


async def deliver(client: httpx.AsyncClient, url: str, body: bytes, secret: str, alert_id: str,
                  attempts: int = 4, backoff_s: float = 0.5) -> str | None:
    """POST until a 2xx answer; returns None on success, else why the last attempt failed."""
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret), "X-Flashes-Alert-Id": alert_id}
    reason = ""
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            continue
        if response.is_success:
            return None
        reason = f"HTTP {response.status_code}"
    log.error("webhook %s failed for alert %s: %s", url, alert_id, reason)
    return f"webhook {url}: {reason} after {attempts} attempts"
