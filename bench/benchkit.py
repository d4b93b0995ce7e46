"""What the benchmarks share beside the private stack (devtools/stack.py): subscriptions as the API makes them, and
the latency summary they print.

Importable from a script in bench/, whose folder Python puts on sys.path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import schemas
from devtools.observe import write_subscriptions
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_subscription

__all__ = ["latency_summary", "webhook_subscriptions", "write_subscriptions"]


def webhook_subscriptions(settings: Settings, urls: list[str]) -> list[schemas.Subscription]:
    """One subscription to every alert per URL, as the API makes them (the codes are thrown away)."""
    vault = Vault(settings)
    return [new_subscription(vault, schemas.SubscriptionFilters(), "webhook", url)[2] for url in urls]


def latency_summary(seconds: Sequence[float] | np.ndarray, prefix: str = "", unit: str = "s") -> dict[str, float]:
    """p50, p99 (numpy's interpolated percentile) and max of latencies in seconds, as `{prefix}p50_{unit}`, …:
    in s to the millisecond, in ms to a tenth."""
    scale, digits = {"s": (1.0, 3), "ms": (1000.0, 1)}[unit]
    figures = {"p50": np.percentile(seconds, 50), "p99": np.percentile(seconds, 99), "max": np.max(seconds)}
    return {f"{prefix}{name}_{unit}": round(float(v) * scale, digits) for name, v in figures.items()}
