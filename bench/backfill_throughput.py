"""Backfill speed: parse-and-publish of the whole catalogue's history, against plain pandas.read_csv.

Builds a synthetic mirror at full catalogue scale with real-shaped files: every MAXI series gets
a copy of one of the real sample MAXI files (~3,500 days each), every BAT series a BAT text file
of --bat-days daily rows in the transient monitor's layout, every GBM series a pulsar FITS file.
Serves it with a separate `python -m http.server` process (the fetcher's real HTTP path, in a process
of its own), starts a private Kafka (devtools/stack.py) and times `fetch_once(full=True)` for every
series. The baseline is pandas.read_csv of the same text files from disk (parsing only).

    .venv/bin/python bench/backfill_throughput.py [--bat-days 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from devtools.infra import free_port
from devtools.mirror import provider_env
from devtools.stack import private_stack
from flashes import catalogue
from flashes.settings import PROJECT_ROOT, Settings
from services.fetcher.service import fetch_once

SAMPLE = PROJECT_ROOT / "data" / "mirror"
BAT_HEADER = (
    "# Swift/BAT transient monitor daily light curve -- SYNTHETIC (bench/backfill_throughput.py)\n"
    "TIME RATE ERROR YEAR DAY STAT_ERR SYS_ERR DATA_FLAG TIMEDEL_EXPO TIMEDEL_CODED TIMEDEL_DITHERED\n"
)


def bat_text(days: int, rng: np.random.Generator) -> str:
    t = 53414.0 + np.arange(days)
    rate = rng.normal(0.01, 0.003, days)
    err = np.abs(rng.normal(0.003, 0.0005, days))
    expo = rng.integers(600, 6000, days)
    table = np.column_stack(
        [
            t,
            rate,
            err,
            2005 + (t - 53371) // 365.25,
            (t - 53371) % 365 + 1,
            err,
            np.zeros(days),
            rng.random(days) < 0.02,
            expo,
            expo * 0.9,
            expo * 0.95,
        ]
    )
    buf = [BAT_HEADER]
    fmt = "%.1f %.6f %.6f %d %d %.6f %.6f %d %d %d %d"
    buf.append("\n".join(fmt % tuple(row) for row in table.tolist()))
    return "".join(buf) + "\n"


def build_mirror(settings: Settings, root: Path, bat_days: int) -> list[Path]:
    """Every catalogue series gets a file; returns the text files (for the read_csv baseline)."""
    rng = np.random.default_rng(7)
    maxi_files = sorted(SAMPLE.glob("maxi/star_data/*/*.dat"))
    gbm_file = next(SAMPLE.glob("fermi/*_old.fits.gz"))
    bat = bat_text(bat_days, rng)
    texts = []
    for i, rec in enumerate(catalogue.load(settings)):
        for inst in ("maxi", "swift", "fermi"):
            if not rec.entry(inst):
                continue
            dest = root / inst / catalogue.path_below_base(settings, inst, rec.entry(inst).data_url)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if inst == "maxi":
                shutil.copy(maxi_files[i % len(maxi_files)], dest)
            elif inst == "swift":
                dest.write_text(bat)
            else:
                shutil.copy(gbm_file, dest)
            if inst != "fermi":
                texts.append(dest)
    return texts


def read_csv_baseline(files: list[Path]) -> tuple[int, float]:
    start = time.perf_counter()
    rows = sum(
        len(pd.read_csv(f, sep=r"\s+", comment="#", header=None, skiprows=1 if f.suffix == ".txt" else 0))
        for f in files
    )
    return rows, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bat-days", type=int, default=8000, help="rows per BAT file (2005 to 2026 is ~7,700)")
    args = parser.parse_args()
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="flashes-backfill-mirror-") as root,
        private_stack(env=provider_env(f"http://127.0.0.1:{port}"), servers=("kafka",)) as stack,
    ):
        measure(args, stack.settings, Path(root), port)


def measure(args: argparse.Namespace, settings: Settings, root: Path, port: int) -> None:
    """The mirror built in `root` and served on `port`, the backfill timed, then the baseline."""
    texts = build_mirror(settings, root, args.bat_days)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        start = time.perf_counter()
        report = asyncio.run(fetch_once(settings, full=True, progress=True))
        elapsed = time.perf_counter() - start
        rows, csv_s = read_csv_baseline(texts)
        ours, theirs = report.points / elapsed, rows / csv_s
        print(f"series: {report.series}  points: {report.points:,}  failures: {len(report.errors)}")
        print(f"parse-and-publish (HTTP mirror -> parse -> Kafka): {elapsed:.1f} s, {ours:,.0f} points/s")
        print(
            f"pandas.read_csv of the same text files (parse only): {csv_s:.1f} s for {rows:,} rows, "
            f"{theirs:,.0f} rows/s"
        )
        print(f"ratio ours / read_csv: {ours / theirs:.2f}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
