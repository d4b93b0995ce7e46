"""`make run`: Kafka and QuestDB, every service and the bundled sample mirror until Ctrl-C, with a summary.

The stack is devtools/stack.py's, on the ports and folder the FLASHES_* variables of the shell give
(default: the usual ports on loopback, var/); the fetcher reads the sample sources from the mirror.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from pathlib import Path

import orjson

from devtools.observe import wait_drained, wait_until
from devtools.stack import SAMPLE_MIRROR, mirrored_sources, running_stack
from flashes import links, questdb
from flashes.settings import Settings
from flashes.topics import series_kind
from services.registry import PIPELINE, metrics_port


def episodes(settings: Settings) -> list[dict]:
    """Every alert episode: those with most records first (it escalated: another series joined, brighter, a state
    change), then those most series agree on, then by peak relevance; source, onset, series, reasons, newest
    explanation."""
    rows = questdb.query(
        settings,
        "SELECT alert_id, source_id, count() records, sum(live::int) news, "
        "last(payload) payload FROM alerts GROUP BY alert_id, source_id",
    )
    out = []
    for r in rows:
        alert = orjson.loads(r["payload"])  # the newest record: it carries the onset and the peak so far
        out.append(
            {
                "source_id": r["source_id"],
                "name": alert["source_name"],
                "onset": alert["onset_time"][:10],
                "peak": alert["peak_relevance"],
                "records": r["records"],
                "series": sorted(map(series_kind, alert["series"])),
                "reasons": alert["reasons"],
                "explanation": alert["explanation"],
                "news": r["news"],
            }
        )
    return sorted(out, key=lambda e: (-e["records"], -len(e["series"]), -e["peak"], e["onset"]))


def print_episodes(settings: Settings, sources: list[str], limit: int = 12) -> None:
    """What `make run` shows: the strongest episodes first, then why each sample source raised what it raised."""
    found = episodes(settings)
    news = sum(e["news"] > 0 for e in found)
    print(
        f"\n{len(found)} alert episodes, {len(found) - news} of them history (raised from data older than "
        f"{settings.live_days:g} days: stored and shown, never pushed to subscribers), {news} news; "
        "the ones that escalated most (records) and most series agree on first:"
    )
    for e in found[:limit]:
        print(
            f"  {e['name']:<20} {e['onset']}  {', '.join(e['reasons']):<24} in {'+'.join(e['series'])}, "
            f"peak relevance {e['peak']:.2f} ({e['records']} records)"
        )
    print("Per source, each episode's onset and reasons (each alert explains itself: GET /alerts?source=ID):")
    for source in sorted(sources, key=lambda s: sum(e["source_id"] == s for e in found)):
        own = sorted((e for e in found if e["source_id"] == source), key=lambda e: e["onset"])
        what = "; ".join(f"{e['onset']} {'+'.join(e['reasons'])}" for e in own[:8]) + ("; …" if len(own) > 8 else "")
        print(f"  {source:<20} {len(own):>2}  {what or 'none'}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_stack(env: Mapping[str, str]) -> None:
    """Everything on the sample, with the shell's FLASHES_* variables `env`, until SIGTERM or Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    sources = mirrored_sources(Settings.from_env(env), SAMPLE_MIRROR)
    env = {**env, "FLASHES_FETCH_SOURCES": json.dumps(sources)}
    with running_stack(env, PIPELINE + ("fetcher",), mirror=SAMPLE_MIRROR) as stack:
        try:
            summarize(stack.settings, sources, stack.logs)
            print("Press Ctrl-C to stop everything.", flush=True)
            while True:
                signal.pause()
        except KeyboardInterrupt:
            print("stopping services…", flush=True)
    print("stopped.")


def summarize(settings: Settings, sources: list[str], logs: Path) -> None:
    """Wait until the sample is through the pipeline, then say what it raised and where to look."""
    print(
        f"FLASHES stream is starting; fetching {len(sources)} sample sources from the mirror at "
        f"{settings.maxi_base_url.removesuffix('/maxi/')} (service logs in {logs})",
        flush=True,
    )
    wait_until(
        lambda: questdb.query(settings, "SELECT count() n FROM relevance")[0]["n"] > 0, "the first relevance scores"
    )
    wait_drained(settings)
    rows = questdb.query(settings, "SELECT count() n FROM relevance")[0]["n"]
    print(f"\n{rows} relevance scores stored.")
    print_episodes(settings, sources)
    api = settings.api_url
    print(
        f"\nPages:   {api}/  (what is unusual now, the newest alerts, the sky map), "
        f"{links.source_page(settings, sources[0])}"
    )
    print(f"API:     {api}/docs  (e.g. {api}/sources?q={sources[0]}, {api}/download/maxi_{sources[0]}, {api}/alerts)")
    print(f"QuestDB: {settings.questdb_http_url}  (web console; tables lightcurve, derived, relevance, alerts)")
    print(
        f"Health:  {api}/health/freshness answers 503 here, naming each instrument: the bundled sample ends in "
        f"2020 (live providers bring a point a day); Prometheus metrics of each service at "
        f"http://{settings.metrics_host}:{metrics_port(settings, 'fetcher')}/metrics … "
        f":{metrics_port(settings, 'sink')} (fetcher … sink) and {api}/metrics"
    )
    print(
        f"Grafana: not run here (no Grafana on this machine); `docker compose up` serves the dashboards at "
        f"{settings.grafana_url or 'http://localhost:3000'}, and {api}/plots/{{id}} leads there"
    )
