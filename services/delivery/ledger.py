"""What the delivery log says was done, so that a restarted delivery service does nothing twice.

Every attempt's outcome goes to `flashes.deliveries.v1` before the offset of its alert or task is
committed. A starting service reads that log to its end before it consumes anything and knows:

- every attempt made and recorded, as (subscription, alert record, test, attempt, send or digest):
  an alert or a retry task read again after a restart (its commit point was behind it: the retry
  topic's stays at the oldest pending task, the next midnight's digest) is skipped;
- every finished pair (delivered, digested, dead, unconfirmed): nothing more is sent for it;
- the alert mails per subscription and UTC day, so the daily cap survives restarts.

Bounded: entries are filed by the UTC day of their record and kept for REMEMBER. Something is read
again only from its topic: the retry topic keeps a task for the broker's retention (7 days by
default), and the alerts group resumes from its committed offset, which Kafka keeps for 7 days
after the group stopped (offsets.retention.minutes); an attempt recorded before that cannot meet
its alert or task again. Each entry is a 16-byte BLAKE2b digest (a collision among a billion
entries has a chance below 1e-20), about 100 bytes with its dict slot: 10 k deliveries a day (an
attempt and an outcome each) cost about 16 MB over the 8 days.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date, timedelta

import schemas

REMEMBER = timedelta(days=8)  # the 7 days above and the day an entry is filed under
FINAL = ("delivered", "digested", "dead", "unconfirmed")


def _key(sub_id: str, alert_id: str, record_number: int, test: bool, what: str = "") -> bytes:
    return hashlib.blake2b(f"{sub_id}\0{alert_id}\0{record_number}\0{test:d}\0{what}".encode(), digest_size=16).digest()


class Ledger:
    """Attempts made, pairs finished and today's mails per subscription, from the delivery log."""

    def __init__(self) -> None:
        self.seen: dict[bytes, date] = {}  # attempt or finished pair -> the UTC day it is filed under
        self.mails: Counter[str] = Counter()  # alert mails per subscription on `today`
        self.today: date | None = None

    def load(self, records: list[schemas.DeliveryRecord], today: date) -> None:
        """The log, as read at start (in any order)."""
        self._turn(today)
        for r in records:
            if r.at.date() >= today - REMEMBER:
                self.note(r)
                if r.status == "delivered" and r.channel == "email" and r.at.date() == today:
                    self.mails[r.subscription_id] += 1

    def note(self, r: schemas.DeliveryRecord) -> None:
        """One outcome, recorded in the log (read at start, or just written)."""
        day = r.at.date()
        if r.status in FINAL:
            self.seen[_key(r.subscription_id, r.alert_id, r.record_number, r.test)] = day
        else:  # held: the send is done, its digest pending; retrying: the attempt (send or digest) handed on
            self.seen[_key(r.subscription_id, r.alert_id, r.record_number, r.test, f"send {r.attempt}")] = day
            if r.status == "retrying":
                self.seen[_key(r.subscription_id, r.alert_id, r.record_number, r.test, f"digest {r.attempt}")] = day

    def claim(self, sub_id: str, alert: schemas.Alert, attempt: int, today: date, digest: bool = False) -> bool:
        """True, and the attempt taken, unless it was made before or the pair is finished: a repeat is skipped."""
        pair = (sub_id, alert.alert_id, alert.record_number, alert.test)
        key = _key(*pair, f"{'digest' if digest else 'send'} {attempt}")
        if key in self.seen or _key(*pair) in self.seen:
            return False
        self._turn(today)
        self.seen[key] = today
        return True

    def take_mail(self, sub_id: str, today: date, cap: int) -> bool:
        """One alert mail of today's cap for the subscription, if any is left."""
        self._turn(today)
        if self.mails[sub_id] >= cap:
            return False
        self.mails[sub_id] += 1
        return True

    def give_back_mail(self, sub_id: str, today: date) -> None:
        """The mail taken was not sent (a mail taken before midnight is not given back to the next day)."""
        if today == self.today:
            self.mails[sub_id] -= 1

    def _turn(self, today: date) -> None:
        """On a new UTC day, forget the entries filed before REMEMBER and the mail counts of the day before."""
        if today == self.today:
            return
        self.today = today
        self.mails.clear()
        oldest = today - REMEMBER
        self.seen = {k: d for k, d in self.seen.items() if d >= oldest}
