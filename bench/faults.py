"""The fault test N times: backlog waiting, random SIGKILLs, Kafka and QuestDB restarts (devtools/faults.py).

    .venv/bin/python bench/faults.py --runs 20 [--sources 16] [--kills 8]

Prints one line per run, then, as its last line, one JSON object with `runs`, `lost`,
`duplicated`, `mismatched` (summed over the runs) and the runs' details.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from devtools.faults import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sources", type=int, default=16, help="catalogue sources (about 6,600 points each)")
    parser.add_argument("--kills", type=int, default=8, help="random worker kills per run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = []
    for i in range(args.runs):
        var = Path(tempfile.mkdtemp(prefix="flashes-faults-"))
        try:
            result = run(var / "var", sources=args.sources, kills=args.kills, seed=i)
        finally:
            shutil.rmtree(var, ignore_errors=True)
        results.append(result)
        print(f"run {i + 1}/{args.runs}: {result}", flush=True)
    print(
        json.dumps(
            {
                "runs": len(results),
                **{k: sum(r[k] for r in results) for k in ("lost", "duplicated", "mismatched", "crashes")},
                "points_per_run": results[0]["points"] if results else 0,
                "kills": sum(r["kills"] for r in results),
                "details": results,
            }
        )
    )


if __name__ == "__main__":
    main()
