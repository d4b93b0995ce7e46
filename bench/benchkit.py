"""What the benchmarks share beside the private stack (devtools/stack.py): subscriptions as the API makes them.

Importable from a script in bench/, whose folder Python puts on sys.path.
"""

from __future__ import annotations

import schemas
from flashes import topics
from flashes.kafka import make_producer
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_subscription


def webhook_subscriptions(settings: Settings, urls: list[str]) -> list[schemas.Subscription]:
    """One subscription to every alert per URL, as the API makes them (the codes are thrown away)."""
    vault = Vault(settings)
    return [new_subscription(vault, schemas.SubscriptionFilters(), "webhook", url)[2] for url in urls]


async def write_subscriptions(settings: Settings, subs: list[schemas.Subscription]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for sub in subs:
            await producer.send(
                topics.SUBSCRIPTIONS.name, topics.SUBSCRIPTIONS.encode(sub), key=sub.subscription_id.encode()
            )
    finally:
        await producer.stop()
