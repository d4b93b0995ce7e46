"""A month of operation, simulated (devtools/operation.py): news delivered once, history never pushed.

    .venv/bin/python bench/operation.py --days 30 [--no-compare] [--keep]

Runs the month with every fault, then (unless --no-compare) the same month without faults, and
compares the alert records raised (the newcomer source of the faulted run left out), and names
each record that was news without faults and history with them (its point older than live_days
when it was raised: a fault held it). The last line printed is one JSON object: days,
news_delivered, history_pushed, duplicates, exits, states_upgraded, newcomer_stored,
newcomer_scored, news_turned_history, ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from devtools.operation import Operation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--no-compare", action="store_true", help="skip the fault-free run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    t0 = time.perf_counter()
    var = Path(tempfile.mkdtemp(prefix="flashes-operation-"))
    faulted = Operation(var, args.days, faults=True)
    outcome = faulted.run()
    figures = outcome.figures()
    if not args.no_compare:
        clean_var = Path(tempfile.mkdtemp(prefix="flashes-operation-clean-"))
        clean = Operation(clean_var, args.days, faults=False).run()
        if not args.keep:
            shutil.rmtree(clean_var, ignore_errors=True)
        newcomer = faulted.newcomer.id
        mine = {r for r in outcome.records if not r[0].startswith(f"{newcomer}@")}
        figures["alerts_differing_from_the_fault_free_month"] = len(mine ^ clean.records)
        figures["fault_free_news_records"] = clean.news_records
        # News of the fault-free month raised as history here: its point was older than live_days when raised.
        figures["news_turned_history"] = [
            {"record": key, "trigger_series": series, "days_old_when_raised": round(age, 2)}
            for key, (live, age, series) in sorted(outcome.verdicts.items())
            if not live and clean.verdicts.get(key, (False,))[0]
        ]
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.keep:
        shutil.rmtree(var, ignore_errors=True)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
