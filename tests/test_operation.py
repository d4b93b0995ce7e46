"""Six simulated days of operation with every fault of devtools/operation.py (bench/operation.py runs a month)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.operation import run

pytestmark = pytest.mark.integration  # starts its own stack for six simulated days


def test_six_days_of_operation_push_each_news_record_once_and_no_history(tmp_path: Path) -> None:
    outcome = run(tmp_path, days=6, faults=True)
    figures = outcome.figures()
    assert outcome.news_records >= 2, figures  # both injected outbursts opened an episode as news
    assert outcome.news_delivered == 2 * outcome.news_records, figures  # by webhook and by e-mail
    assert (outcome.history_pushed, outcome.duplicates, outcome.missing, outcome.exits) == (0, 0, 0, 0), figures
    assert outcome.freshness[2] == 503 and outcome.freshness[-1] == 200, figures  # red in the BAT outage, green after
    assert outcome.dead_letters.get("fetcher", 0) >= 2, figures  # the malformed file and the future-dated row
    assert outcome.states_upgraded > 0, figures  # the upgrade rewrote stored relevance states
    assert outcome.newcomer_stored > 0 and outcome.newcomer_scored > 0, figures  # the newcomer's whole history
