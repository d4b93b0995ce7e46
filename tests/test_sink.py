"""The sink's write on the real QuestDB: rows QuestDB refuses come back with the reason, the rest is stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

import schemas
from devtools.observe import wait_until
from flashes import questdb
from flashes.settings import Settings
from services.sink.rows import deadletter_frame
from services.sink.service import Item, store


def test_a_row_questdb_refuses_is_returned_with_the_reason_and_the_others_are_stored(settings: Settings) -> None:
    letter = schemas.DeadLetter(
        origin="test:sink-refusal", reason="r", payload="p", url=None, received_at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    good = deadletter_frame(letter)
    bad = good.assign(ts=pd.to_datetime([-5], unit="us", utc=True), payload="q")  # before 1970: ILP refuses it
    refused = store(settings, [Item("deadletter", good, "good message", 1), Item("deadletter", bad, "bad message", 1)])
    assert [(record, "negative" in reason) for record, reason in refused] == [("bad message", True)]
    wait_until(
        lambda: (
            questdb.query(settings, "SELECT count() n FROM deadletter WHERE origin = 'test:sink-refusal'")[0]["n"] == 1
        ),
        "the good row",
        30,
    )
