"""What the benchmarks share beside the private stack (devtools/stack.py): subscriptions as the API makes them.

Importable from a script in bench/, whose folder Python puts on sys.path.
"""

from __future__ import annotations

import schemas
from devtools.observe import write_subscriptions
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_subscription

__all__ = ["webhook_subscriptions", "write_subscriptions"]


def webhook_subscriptions(settings: Settings, urls: list[str]) -> list[schemas.Subscription]:
    """One subscription to every alert per URL, as the API makes them (the codes are thrown away)."""
    vault = Vault(settings)
    return [new_subscription(vault, schemas.SubscriptionFilters(), "webhook", url)[2] for url in urls]
