"""Running the whole stack: infrastructure, every service as its own process, the sample mirror."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

from flashes import catalogue, infra, links, mirror, observe, questdb
from flashes.services import PIPELINE, metrics_port
from flashes.topics import series_kind
from flashes.settings import PROJECT_ROOT, Settings

SAMPLE_MIRROR = PROJECT_ROOT / "data" / "mirror"


def mirrored_sources(settings: Settings, folder: Path) -> list[str]:
    """Ids of the catalogue sources that have a MAXI file in a provider-layout mirror folder."""
    present = {p.name for p in (folder / "maxi" / "star_data").iterdir() if p.is_dir()}
    return [r["_id"] for r in catalogue.load(settings) if r["maxi"] and r["maxi"]["provider_id"] in present]


def sample_pairs(settings: Settings) -> list[tuple[Path, Path]]:
    """(MAXI file, BAT file) of every sample source that has both (benchmarks and the fault run reuse them)."""
    pairs = []
    for rec in catalogue.load(settings):
        if rec["maxi"] and rec["swift"]:
            maxi_id = rec["maxi"]["provider_id"]
            maxi = SAMPLE_MIRROR / "maxi" / "star_data" / maxi_id / f"{maxi_id}_g_lc_1day_all.dat"
            bat = list(SAMPLE_MIRROR.glob(f"swift/results/transients/**/{rec['swift']['provider_id']}.lc.txt"))
            if maxi.exists() and bat:
                pairs.append((maxi, bat[0]))
    return pairs


def crashed(log_dir: Path, names: Iterable[str]) -> list[str]:
    """The services whose log in log_dir shows a traceback."""
    return [name for name in names
            if "Traceback" in ((log_dir / f"{name}.log").read_text(errors="replace")
                               if (log_dir / f"{name}.log").exists() else "")]


def spawn(services: tuple[str, ...], env: dict[str, str], log_dir: Path) -> dict[str, subprocess.Popen]:
    """Start `flashes run NAME` for each service, logging to log_dir/NAME.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).parent / "flashes")
    return {name: subprocess.Popen([exe, "run", name], env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                   stdout=(log_dir / f"{name}.log").open("ab"), stderr=subprocess.STDOUT)
            for name in services}


def terminate(processes: dict[str, subprocess.Popen], timeout_s: float = 30.0) -> None:
    """SIGTERM every service, give them time to commit and leave their groups, then SIGKILL stragglers."""
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in processes.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def episodes(settings: Settings) -> list[dict]:
    """Every alert episode: those with most records first (it escalated: another series joined, brighter, a state
    change), then those most series agree on, then by peak relevance; source, onset, series, reasons, newest
    explanation."""
    rows = questdb.query(settings, "SELECT alert_id, source_id, count() records, sum(live::int) news, "
                                   "last(payload) payload FROM alerts GROUP BY alert_id, source_id")
    out = []
    for r in rows:
        alert = orjson.loads(r["payload"])  # the newest record: it carries the onset and the peak so far
        out.append({"source_id": r["source_id"], "name": alert["source_name"], "onset": alert["onset_time"][:10],
                    "peak": alert["peak_relevance"], "records": r["records"], "series": sorted(map(series_kind, alert["series"])),
                    "reasons": alert["reasons"], "explanation": alert["explanation"], "news": r["news"]})
    return sorted(out, key=lambda e: (-e["records"], -len(e["series"]), -e["peak"], e["onset"]))


def print_episodes(settings: Settings, sources: list[str], limit: int = 12) -> None:
    """What `make run` shows: the strongest episodes first, then why each sample source raised what it raised."""
    found = episodes(settings)
    news = sum(e["news"] > 0 for e in found)
    print(f"\n{len(found)} alert episodes, {len(found) - news} of them history (raised from data older than "
          f"{settings.live_days:g} days: stored and shown, never pushed to subscribers), {news} news; "
          "the ones that escalated most (records) and most series agree on first:")
    for e in found[:limit]:
        print(f"  {e['name']:<20} {e['onset']}  {', '.join(e['reasons']):<24} in {'+'.join(e['series'])}, "
              f"peak relevance {e['peak']:.2f} ({e['records']} records)")
    print("Per source, each episode's onset and reasons (each alert explains itself: GET /alerts?source=ID):")
    for source in sorted(sources, key=lambda s: sum(e["source_id"] == s for e in found)):
        own = sorted((e for e in found if e["source_id"] == source), key=lambda e: e["onset"])
        what = "; ".join(f"{e['onset']} {'+'.join(e['reasons'])}" for e in own[:8]) + ("; …" if len(own) > 8 else "")
        print(f"  {source:<20} {len(own):>2}  {what or 'none'}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_stack(settings: Settings) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    infra.start(settings)
    server, base = mirror.serve(SAMPLE_MIRROR)
    env = mirror.provider_env(base)
    os.environ.update(env)
    settings = Settings()
    questdb.ensure_tables(settings)
    sources = mirrored_sources(settings, SAMPLE_MIRROR)
    env["FLASHES_FETCH_SOURCES"] = "[" + ",".join(f'"{s}"' for s in sources) + "]"
    logs = settings.var_dir / "logs"
    processes = spawn(PIPELINE + ("fetcher",), env, logs)
    try:
        print(f"FLASHES stream is starting; fetching {len(sources)} sample sources from the mirror at {base} "
              f"(service logs in {logs})", flush=True)
        observe.wait_until(lambda: questdb.query(settings, "SELECT count() n FROM relevance")[0]["n"] > 0,
                           "the first relevance scores")
        observe.wait_drained(settings)
        rows = questdb.query(settings, "SELECT count() n FROM relevance")[0]["n"]
        print(f"\n{rows} relevance scores stored.")
        print_episodes(settings, sources)
        print(f"\nPages:   {settings.api_url}/  (what is unusual now, the newest alerts, the sky map), "
              f"{links.source_page(settings, sources[0])}")
        print(f"API:     {settings.api_url}/docs  (e.g. {settings.api_url}/sources?q={sources[0]}, "
              f"{settings.api_url}/download/maxi_{sources[0]}, {settings.api_url}/alerts)")
        print(f"QuestDB: {settings.questdb_http_url}  (web console; tables lightcurve, derived, relevance, alerts)")
        print(f"Health:  {settings.api_url}/health/freshness answers 503 here, naming each instrument: the bundled "
              f"sample ends in 2020 (live providers bring a point a day); Prometheus metrics of each service at "
              f"http://{settings.metrics_host}:{metrics_port(settings, 'fetcher')}/metrics … "
              f":{metrics_port(settings, 'sink')} (fetcher … sink) and {settings.api_url}/metrics")
        print(f"Grafana: not run here (no Grafana on this machine); `docker compose up` serves the dashboards at "
              f"{settings.grafana_url or 'http://localhost:3000'}, and {settings.api_url}/plots/{{id}} leads there")
        print("Press Ctrl-C to stop everything.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping services…", flush=True)
        terminate(processes)
        server.shutdown()
        infra.stop(settings)
        print("stopped.")
