"""Nothing lost, nothing doubled: one fault run (devtools/faults.py) with a backlog of over 100 k points
waiting, workers SIGKILLed at random (also right after a start), two workers of derive and
relevance for a while, Kafka and QuestDB restarted once each. `bench/faults.py --runs N` repeats it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.faults import run

pytestmark = pytest.mark.integration  # starts its own stack and kills it


def test_random_kills_and_restarts_lose_nothing_double_nothing_change_nothing(tmp_path: Path) -> None:
    result = run(tmp_path / "var", sources=16, kills=5)
    assert result["points"] >= 100_000 and result["kills"] >= 5, result
    assert (result["lost"], result["duplicated"], result["mismatched"]) == (0, 0, 0), result
    assert result["crashes"] == 0, result  # a worker exiting on its own (not killed) is a bug, even if restarted
