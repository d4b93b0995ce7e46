"""A month of operation, simulated: the sample backfilled, then its last days released one a day.

Used by tests/test_operation.py (a short run) and bench/operation.py (`--days N`), on a private stack
(devtools/stack.py).

1. The sample's real MAXI files and their synthetic BAT partners are re-dated by a whole number of
   days so that their last day is yesterday (UTC). The mirror holds everything before the last
   `days` days; the stack backfills it (history: stored, never pushed). Two outbursts are
   injected into the released days of quiet sources (the same mCrab in every band, a 1-day or an
   instant rise, 5-day decay), so that there is news to deliver.
2. Each simulated day releases the next day of every file and runs one fetch round (the
   fetcher's own `fetch_once`). The services judge news by `flashes.clock` set to that day's
   morning (`FLASHES_CLOCK_OFFSET_DAYS`): relevance, alerts, delivery and the API are restarted
   (SIGTERM) with it each day, the harness's only way to move a running process's clock.
3. Faults, with `faults=True`: the MAXI file of one source is malformed for a day; the BAT
   provider answers 503 for two days; one MAXI row is dated MJD 96000.5 for a day; delivery is
   SIGKILLed while an outburst's webhook and mail are in flight (the receivers hold them, then
   answer with a temporary failure and keep nothing: the mail is pending, not delivered); the stored
   relevance states are rewritten as of the previous state version and relevance restarted (an
   upgrade, `states_upgraded`); a new source arrives with its whole history (a copy of a sample
   file: not that source's own data), stored and scored (`newcomer_stored`, `newcomer_scored`).
4. A webhook receiver and an SMTP server (aiosmtpd) subscribe to everything. Afterwards: every
   live alert record is received once per channel (`news_delivered`, `duplicates`); no history
   record is pushed (`history_pushed`); no service exited on its own (`exits`; one that did is
   restarted on its day's clock by `Stack.restart_exited`); the freshness check was red while BAT
   was down and green after (`freshness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import math
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
from aiosmtpd.controller import Controller

import schemas
from devtools import observe
from devtools.infra import free_port
from devtools.mirror import provider_env
from devtools.stack import Stack, private_stack, sample_pairs
from flashes import catalogue, questdb, topics
from flashes.kafka import ensure_topics, make_producer
from flashes.settings import Settings
from flashes.subscriptions import Vault, new_subscription
from flashes.timeconv import datetime_to_mjd
from flashes.units import MCRAB_PER_UNIT
from services.fetcher.service import fetch_once

SERVICES = ("sink", "derive", "relevance", "alerts", "delivery", "api")
# The services whose verdicts read the clock (news, future-dated points, the e-mail day, freshness):
# restarted each simulated day with its morning as their clock.
CLOCKED = ("relevance", "alerts", "delivery", "api")
MAXI_BANDS = ("2-20", "2-4", "4-10", "10-20")  # the columns after MJD: flux, error per band
# Source -> (peak mCrab added, rise days); both sources are quiet at the sample's end and have not been in
# outburst for two years (4U 1630-47, a recurrent transient, would find a moderate outburst routine).
OUTBURSTS = {"maxij1820+070": (300.0, 1), "maxij1535-571": (500.0, 0)}
KILLED = "maxij1535-571"  # delivery is killed while this source's outburst onset is in flight
MAIL_TO = "operator@example.org"
PUBLISHED_HOUR = 2.0  # a day's data is fetched at 02:00 UTC the next day


class FaultyMirror(SimpleHTTPRequestHandler):
    """The provider mirror; paths under a prefix in `down` answer 503 (conditional GETs are served: 304)."""

    down: set[str] = set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if any(self.path.startswith(prefix) for prefix in self.down):
            self.send_error(503, "provider down")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Gate:
    """Holds deliveries in flight while closed: the receivers then answer them with a temporary failure
    and keep nothing (their sender was killed meanwhile), so 'killed with mail pending' is deterministic."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.held: list[str] = []  # alert record ids that arrived while closed


class Hooks(BaseHTTPRequestHandler):
    """Webhook receiver: the `webhook-id` of every POST answered 204."""

    ids: list[str] = []
    gate = Gate()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        webhook_id = self.headers.get("webhook-id", "")
        if not self.gate.open.is_set():
            self.gate.held.append(webhook_id)
            self.gate.open.wait()
            self.send_response(503)
        else:
            self.ids.append(webhook_id)
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Mailbox:
    """aiosmtpd handler: the Message-ID header's alert record of every mail received."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.gate = Gate()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if not self.gate.open.is_set():
            self.gate.held.append(message["X-Flashes-Alert-Id"] or "")
            await asyncio.get_running_loop().run_in_executor(None, self.gate.open.wait)
            return "451 4.3.0 try again later"
        self.messages.append(message)
        return "250 OK"


@dataclass
class SampleFile:
    """One mirrored provider file, re-dated: its header lines and its rows (MJD, the rest of the line)."""

    path: Path  # in the mirror
    instrument: str
    source_id: str
    header: list[str]
    rows: list[tuple[float, str]]

    def write(self, until_mjd: float, extra: list[tuple[float, str]] = (), broken: bool = False) -> None:
        rows = [r for r in self.rows if r[0] < until_mjd] + list(extra)
        text = "\n".join(self.header + [f"{mjd:.6f} {rest}" for mjd, rest in rows]) + "\n"
        if broken:  # cut in the middle of a row, then HTML: what a proxy's error page in a file looks like
            text = text[: len(text) // 2] + "\n<html><body>502 Bad Gateway</body></html>\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text)
        stamp = time.time() + 0.0
        os.utime(self.path, (stamp, stamp))


def read_sample(path: Path, shift: int) -> tuple[list[str], list[tuple[float, str]]]:
    header, rows = [], []
    for line in path.read_text().splitlines():
        first, _, rest = line.strip().partition(" ")
        try:
            rows.append((float(first) + shift, rest.strip()))
        except ValueError:
            header.append(line)
    return header, rows


def inject(
    rows: list[tuple[float, str]], instrument: str, start: float, peak_mcrab: float, rise_days: int
) -> list[tuple[float, str]]:
    """An outburst from day `start`: half the peak on the first day if it rises for a day, the peak, then
    e-folding in 5 days; the same mCrab in every band (a Crab-like spectrum), errors unchanged."""
    out = []
    for mjd, rest in rows:
        days = math.floor(mjd) - math.floor(start)
        if days < 0:
            out.append((mjd, rest))
            continue
        extra = peak_mcrab * (0.5 if days < rise_days else math.exp(-(days - rise_days) / 5.0))
        cols = rest.split()
        if instrument == "maxi":
            for i, band in enumerate(MAXI_BANDS):
                cols[2 * i] = f"{float(cols[2 * i]) + extra / MCRAB_PER_UNIT['maxi', band]:.6f}"
        else:
            cols[0] = f"{float(cols[0]) + extra / MCRAB_PER_UNIT['swift', '15-50']:.6f}"
        out.append((mjd, " ".join(cols)))
    return out


@dataclass
class Outcome:
    days: int
    news_records: int = 0
    news_delivered: int = 0  # news records received, counted once per channel
    history_pushed: int = 0
    exits: int = 0
    kills: int = 0
    states_upgraded: int = 0  # relevance states rewritten as of the previous state version
    newcomer_stored: int = 0  # the newcomer's rows in the lightcurve table
    newcomer_scored: int = 0  # ... and in the relevance table
    dead_letters: dict[str, int] = field(default_factory=dict)
    freshness: list[int] = field(default_factory=list)  # /health/freshness status per simulated day
    records: set[tuple[str, int, str]] = field(default_factory=set)  # (alert_id, record_number, type) raised
    # "alert_id#record_number" -> (live, days from its triggering point to its raising, trigger series)
    verdicts: dict[str, tuple[bool, float, str]] = field(default_factory=dict)
    doubled: dict[str, int] = field(default_factory=dict)  # "channel:webhook-id" -> times received, if more than once

    @property
    def missing(self) -> int:
        """News records not received, counted once per channel."""
        return 2 * self.news_records - self.news_delivered

    @property
    def duplicates(self) -> int:
        """Receptions beyond the first of a record on a channel."""
        return sum(c - 1 for c in self.doubled.values())

    def figures(self) -> dict:
        return {
            "days": self.days,
            "news_records": self.news_records,
            "news_delivered": self.news_delivered,
            "history_pushed": self.history_pushed,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "exits": self.exits,
            "kills": self.kills,
            "states_upgraded": self.states_upgraded,
            "newcomer_stored": self.newcomer_stored,
            "newcomer_scored": self.newcomer_scored,
            "doubled": self.doubled,
            "dead_letters": self.dead_letters,
            "freshness": self.freshness,
        }


class Operation:
    """One simulated run on a private stack under `var`."""

    def __init__(self, var: Path, days: int, faults: bool) -> None:
        self.var, self.days, self.faults = var, days, faults
        self.mailbox = Mailbox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=free_port())
        self.hooks = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Hooks,), {"ids": [], "gate": Gate()}))
        self.mirror_dir = var / "mirror"
        self.mirror_dir.mkdir(parents=True, exist_ok=True)
        handler = type("M", (FaultyMirror,), {"down": set()})
        self.handler = handler
        self.mirror = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(self.mirror_dir)))
        base = f"http://127.0.0.1:{self.mirror.server_address[1]}"
        self.env = {
            "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
            "FLASHES_SMTP_PORT": str(self.smtp.port),
            "FLASHES_SMTP_SECURITY": "none",
            "FLASHES_EMAIL_DAILY_CAP": "1000",
            "FLASHES_DELIVERY_BACKOFF_S": "1",
            "FLASHES_HTTP_RETRIES": "1",
            "FLASHES_HTTP_BACKOFF_S": "0.05",
            **provider_env(base),
        }
        self.stack: Stack  # while `run` runs
        self.settings: Settings
        self.outcome = Outcome(days)
        self.files: list[SampleFile] = []
        self.sources: list[str] = []
        self.kill_day = max(3, days - 2)  # the day KILLED's outburst starts

    # -- the data ------------------------------------------------------------------------------
    def prepare(self) -> float:
        """Re-dated sample files in the mirror; the MJD of the first released day."""
        pairs = sample_pairs(self.settings)
        last = max(math.floor(read_sample(p, 0)[1][-1][0]) for m, b, _ in pairs for p in (m, b))
        today = math.floor(datetime_to_mjd(datetime.now(UTC)))
        shift = today - 1 - last  # the sample's last day becomes yesterday
        first_day = today - self.days
        for maxi, bat, rec in pairs:
            for instrument, path in (("maxi", maxi), ("swift", bat)):
                header, rows = read_sample(path, shift)
                if rec.id in OUTBURSTS:
                    start = first_day + (self.kill_day if rec.id == KILLED else 1)
                    rows = inject(rows, instrument, start, *OUTBURSTS[rec.id])
                target = (
                    self.mirror_dir
                    / instrument
                    / catalogue.path_below_base(self.settings, instrument, rec.entry(instrument).data_url)
                )
                self.files.append(SampleFile(target, instrument, rec.id, header, rows))
            self.sources.append(rec.id)
        self.newcomer = next(r for r in catalogue.load(self.settings) if r.maxi and not r.swift and not r.fermi)
        header, rows = read_sample(pairs[0].maxi, shift)
        self.newcomer_file = SampleFile(
            self.mirror_dir / "maxi" / catalogue.path_below_base(self.settings, "maxi", self.newcomer.maxi.data_url),
            "maxi",
            self.newcomer.id,
            header,
            rows,
        )
        return float(first_day)

    # -- the services --------------------------------------------------------------------------
    def spawn(self, name: str, offset_days: float = 0.0) -> None:
        self.stack.start(name, env={"FLASHES_CLOCK_OFFSET_DAYS": repr(offset_days)})

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop a service (SIGTERM, or SIGKILL); one that had already exited counts as an exit."""
        if self.stack.processes[name].poll() is not None:
            self.stack.processes.pop(name)
            self.outcome.exits += 1
        elif sig == signal.SIGKILL:
            self.stack.kill(name)
        else:
            self.stack.stop(name, timeout_s=60)

    def check_alive(self) -> None:
        """Restart, on the clock it had, a service that exited on its own, counting the exit."""
        self.outcome.exits += len(self.stack.restart_exited())

    def drained(self) -> None:
        def done() -> bool:
            self.check_alive()
            return asyncio.run(observe.group_lag(self.settings, observe.PIPELINE_GROUPS + ("flashes-delivery",))) == 0

        observe.wait_until(done, "the pipeline to catch up", 300, 0.5)

    async def subscribe(self) -> None:
        vault, everything = Vault(self.settings), schemas.SubscriptionFilters()
        hook = f"http://127.0.0.1:{self.hooks.server_address[1]}/hook"
        subs = [
            new_subscription(vault, everything, "webhook", webhook_url=hook)[2],
            new_subscription(vault, everything, "email", email=MAIL_TO, email_confirmed=True)[2],
        ]
        await observe.write_subscriptions(self.settings, subs)

    async def upgrade_relevance_states(self) -> int:
        """Rewrite every stored relevance state as written by the previous state version (an upgrade)."""
        spec = topics.RELEVANCE_STATE
        records = await observe.read_records(self.settings, spec.name)
        latest = {(partition, key): state for key, state, partition in records}
        states = {at: state for at, state in latest.items() if state is not None}  # tombstones: nothing to upgrade
        producer = make_producer(self.settings)
        await producer.start()
        try:
            for (partition, key), state in states.items():
                state["model"]["state_version"] = state["model"]["state_version"] - 1
                await producer.send_and_wait(spec.name, orjson.dumps(state), key=key, partition=partition)
        finally:
            await producer.stop()
        return len(states)

    def diagnosis(self, source_id: str, mjd: float) -> str:
        """What the stack made of a source's last days: its relevance scores and alert records."""
        scores = questdb.query(
            self.settings,
            f"SELECT series, mjd, value, relevance, model_version FROM relevance "
            f"WHERE source_id = '{source_id}' AND mjd > {mjd - 3}",
        )
        alerts = self.alerts()
        mine = [
            (a["alert_type"], a["mjd"], a["live"], a["raised_at"])
            for a in alerts
            if a["source_id"] == source_id and a["mjd"] > mjd - 3
        ]
        held = [g.held for g in (self.hooks.RequestHandlerClass.gate, self.mailbox.gate)]
        return f"scores {scores}; alerts {mine}; held {held}"

    def alerts(self) -> list[dict]:
        """Every alert record raised so far."""
        return [value for _, value in asyncio.run(observe.read_topic(self.settings, topics.ALERTS.name))]

    def freshness(self) -> int:
        return httpx.get(f"{self.settings.api_url}/health/freshness", timeout=30).status_code

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> Outcome:
        self.smtp.start()
        threading.Thread(target=self.hooks.serve_forever, daemon=True).start()
        threading.Thread(target=self.mirror.serve_forever, daemon=True).start()
        try:
            with private_stack(env=self.env, var=self.var) as self.stack:
                self.settings = self.stack.settings
                try:
                    asyncio.run(ensure_topics(self.settings))
                    self._run()
                finally:
                    for name in list(self.stack.processes):
                        self.stop(name)
        finally:
            self.smtp.stop()
            self.hooks.shutdown()
            self.mirror.shutdown()
        return self.outcome

    def _run(self) -> None:
        first = self.prepare()
        for f in self.files:
            f.write(first)
        asyncio.run(self.subscribe())
        for name in SERVICES:
            self.spawn(name, self._offset(first - 1))
        observe.wait_until(lambda: self._up(), "the API", 120)
        observe.wait_positioned(self.settings)  # news must come after delivery has its place on the alerts
        asyncio.run(fetch_once(self._clocked(first - 1), self.sources, ["maxi", "swift"]))
        self.drained()
        upgrade_day, newcomer_day = min(3, self.days - 1), min(4, self.days - 1)
        for day in range(self.days):
            mjd = first + day
            offset = self._offset(mjd)
            for name in CLOCKED:  # a new day on the services' clock
                self.stop(name)
                self.spawn(name, offset)
            if self.faults and day == upgrade_day:
                self.stop("relevance")
                self.outcome.states_upgraded = asyncio.run(self.upgrade_relevance_states())
                self.spawn("relevance", offset)
            self.handler.down = {"/swift/"} if self.faults and day in (1, 2) else set()
            for f in self.files:
                broken = self.faults and day == 0 and f.instrument == "maxi" and f.source_id == "cirx-1"
                future = (
                    [(96000.5, f.rows[-1][1])]
                    if self.faults and day == 1 and f.source_id == "scox-1" and f.instrument == "maxi"
                    else []
                )
                f.write(mjd + 1, future, broken)
            sources = list(self.sources)
            if self.faults and day >= newcomer_day:
                self.newcomer_file.write(mjd + 1)
                sources.append(self.newcomer.id)
            observe.wait_until(self._up, "the API", 120)
            gates = (self.hooks.RequestHandlerClass.gate, self.mailbox.gate)
            if self.faults and day == self.kill_day:  # its deliveries are held in flight, then delivery is killed
                for gate in gates:
                    gate.open.clear()
            asyncio.run(fetch_once(self._clocked(mjd), sources, ["maxi", "swift"]))
            if self.faults and day == self.kill_day:
                try:
                    observe.wait_until(
                        lambda: all(any(i.startswith(f"{KILLED}@") for i in g.held) for g in gates),
                        f"{KILLED}'s outburst alert in flight to both receivers",
                        120,
                        0.05,
                    )
                except TimeoutError as exc:
                    raise TimeoutError(f"{exc}; {self.diagnosis(KILLED, mjd)}") from exc
                self.stop("delivery", signal.SIGKILL)
                self.outcome.kills += 1
                for gate in gates:
                    gate.open.set()
                self.spawn("delivery", offset)
            self.drained()
            self.outcome.freshness.append(self.freshness())
        self.settle()

    def settle(self) -> None:
        """Wait for every news record to reach both channels, then count."""
        alerts = self.alerts()
        self.outcome.records = {(a["alert_id"], a["record_number"], a["alert_type"]) for a in alerts}
        self.outcome.verdicts = {
            f"{a['alert_id']}#{a['record_number']}": (
                a["live"],
                (datetime.fromisoformat(a["raised_at"]) - datetime.fromisoformat(a["time"])) / timedelta(days=1),
                a["trigger_series"],
            )
            for a in alerts
            if not a["test"]
        }
        news = {f"{a['alert_id']}#{a['record_number']}" for a in alerts if a["live"] and not a["test"]}
        history = {f"{a['alert_id']}#{a['record_number']}" for a in alerts if not a["live"]}
        self.outcome.news_records = len(news)

        def mail_ids() -> list[str]:
            return [m["X-Flashes-Alert-Id"] or "" for m in self.mailbox.messages]

        def arrived() -> bool:
            self.check_alive()
            return news <= set(self.hooks.RequestHandlerClass.ids) and news <= set(mail_ids())

        with contextlib.suppress(TimeoutError):  # counted as missing below
            observe.wait_until(arrived, "every news record by webhook and e-mail", 120, 0.5)
        hooks, mails = Counter(self.hooks.RequestHandlerClass.ids), Counter(mail_ids())
        self.outcome.news_delivered = sum(1 for n in news if hooks[n] >= 1) + sum(1 for n in news if mails[n] >= 1)
        self.outcome.doubled = {
            f"{channel}:{i}": c
            for channel, seen in (("webhook", hooks), ("email", mails))
            for i, c in seen.items()
            if c > 1
        }
        self.outcome.history_pushed = sum(hooks[h] + mails[h] for h in history)
        letters = asyncio.run(observe.read_topic(self.settings, topics.DEADLETTER.name))
        self.outcome.dead_letters = dict(Counter(letter["origin"].split(":")[0] for _, letter in letters))
        self.outcome.exits += len(self.stack.crashed(SERVICES))
        observe.wait_until(lambda: questdb.wal_applied(self.settings), "QuestDB to apply every write", 120, 0.5)
        where = f"WHERE source_id = '{self.newcomer.id}'"
        self.outcome.newcomer_stored, self.outcome.newcomer_scored = (
            questdb.query(self.settings, f"SELECT count() n FROM {table} {where}")[0]["n"]
            for table in ("lightcurve", "relevance")
        )

    # -- helpers -------------------------------------------------------------------------------
    def _morning(self, mjd: float) -> datetime:
        """The simulated wall time at which day `mjd`'s data is fetched: the next day at PUBLISHED_HOUR."""
        return datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=math.floor(mjd) + 1, hours=PUBLISHED_HOUR)

    def _offset(self, mjd: float) -> float:
        return (self._morning(mjd) - datetime.now(UTC)) / timedelta(days=1)

    def _clocked(self, mjd: float) -> Settings:
        return self.settings.model_copy(update={"clock_offset_days": self._offset(mjd)})

    def _up(self) -> bool:
        return observe.up(f"{self.settings.api_url}/health/kafka")


def run(var: Path, days: int, faults: bool = True) -> Outcome:
    return Operation(var, days, faults).run()
