"""What the benchmarks share (importable from a script in bench/, whose folder Python puts on sys.path)."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import schemas
from flashes import stack, topics
from flashes.kafka import make_producer
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_code, new_webhook_secret, subscription_id


def tidy(var: Path, logs: Path, services: Iterable[str], keep: bool, ok: bool) -> None:
    """Warn about every service that logged a traceback; remove the private stack's folder unless
    asked to keep it or something went wrong (then say where it is)."""
    for name in stack.crashed(logs, services):
        print(f"warning: {name} logged a traceback (see {logs / (name + '.log')})", file=sys.stderr)
        ok = False
    if ok and not keep:
        shutil.rmtree(var, ignore_errors=True)
    else:
        print(f"kept {var}", file=sys.stderr)


def webhook_subscriptions(settings: Settings, urls: list[str]) -> list[schemas.Subscription]:
    """One subscription to every alert per URL, as the API makes them (the codes are thrown away)."""
    vault, now = Vault(settings), datetime.now(timezone.utc)
    return [schemas.Subscription(subscription_id=subscription_id(new_code()), created_at=now,
                                 filters=schemas.SubscriptionFilters(), channel="webhook", webhook_url=url,
                                 webhook_secret=vault.seal(new_webhook_secret())) for url in urls]


async def write_subscriptions(settings: Settings, subs: list[schemas.Subscription]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for sub in subs:
            await producer.send(topics.SUBSCRIPTIONS.name, topics.SUBSCRIPTIONS.encode(sub),
                                key=sub.subscription_id.encode())
    finally:
        await producer.stop()
