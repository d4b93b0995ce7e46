"""Concurrency caps per key (a subscription, a receiving network), so that many dead receivers delay nobody else.

Each key gets its own semaphore while someone holds or waits for it, and is forgotten when nobody does: memory
follows the work in flight, not the number of subscriptions or hosts ever seen. The delivery takes its keyed caps
before the global slot (Deliverer.slots), so an attempt waiting for a busy host holds no global slot: a thousand
subscriptions on a black hole fill their host's cap and queue behind it, while every other host's attempts find
the global slots free.

That holds while the dead receivers share a network. Spread over many networks (a /24 each), they would fill
the global slots together, each within its host's cap. A subscription whose attempts get no answer several
times in a row (Streaks: timed out, refused, closed, TLS, a host that does not resolve; not an HTTP status) is
suspect: its attempts take one of a few suspect slots (webhook_suspect_slots) in place of a global slot, and
its lookups are made inside one too. Dead receivers then queue behind each other there, while every
subscription that answers keeps the global slots. An answer of any kind, a 2xx or not, ends the streak.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import schemas
from flashes.keyedcap import KeyedCap
from services.delivery.webhooks import FAILURES

__all__ = ["KeyedCap", "Streaks", "answered"]


def answered(why: str) -> bool:
    """Did a failed webhook attempt get an answer (an HTTP status), rather than none (one of FAILURES)?"""
    return why.split(";")[0] not in FAILURES


class Streaks:
    """Webhook attempts in a row without an answer, per subscription; suspect from `after` on.

    Only subscriptions whose last attempt got no answer are held (a success or an HTTP status drops the entry),
    and prune() drops the revoked: memory follows the failing subscriptions, at most all of them."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.failures: dict[str, int] = {}

    def suspect(self, sub_id: str) -> bool:
        return self.failures.get(sub_id, 0) >= self.after

    def note(self, sub_id: str, why: str | None) -> None:
        """One attempt's outcome: None if delivered, else why it failed (the words recorded)."""
        if why is None or answered(why):
            self.failures.pop(sub_id, None)
        else:
            self.failures[sub_id] = self.failures.get(sub_id, 0) + 1

    def load(self, records: Iterable[schemas.DeliveryRecord]) -> None:
        """The streaks the delivery log shows (in log order), so a restart does not trust the dead again."""
        for r in records:
            if r.channel != "webhook":
                continue
            if r.status == "delivered":
                self.note(r.subscription_id, None)
            elif r.status in ("retrying", "dead"):
                self.note(r.subscription_id, r.detail)

    def prune(self, live: Collection[str]) -> None:
        """Forget the subscriptions no longer live, when the entries outnumber the live ones (only revoked
        subscriptions make them: a revoked one is never attempted again, so its entry would stay)."""
        if len(self.failures) > len(live):
            self.failures = {k: n for k, n in self.failures.items() if k in live}
