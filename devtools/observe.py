"""Watching a running stack from outside: consumer-group lag, QuestDB progress, what a topic holds, whether a
service answers, and the receivers that catch what it sends (webhook receivers, a mailbox, a black hole).

The one home of these helpers for the tests, the fault and operation harnesses and the benches.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
from aiokafka import TopicPartition
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response
from werkzeug.utils import send_file

import schemas
from devtools.infra import free_port
from flashes import kafka, questdb, topics
from flashes.errors import DecodeError
from flashes.kafka import read_to_end
from flashes.settings import Settings
from flashes.topics import BY_NAME

# In pipeline order. Every group commits its input only after what it made of it is acknowledged (the processors'
# outputs and states, delivery's records and tasks) or written (the sink's QuestDB write), and a group's lag is read
# after its upstream's: when every group reads zero in one poll, nothing is on its way.
GROUP_INPUTS = {
    "flashes-derive": (topics.LIGHTCURVE.name,),
    "flashes-relevance": (topics.LIGHTCURVE.name, topics.DERIVED.name),
    "flashes-alerts": (topics.RELEVANCE.name,),
    "flashes-delivery": (topics.ALERTS.name,),
    "flashes-sink": tuple(t.name for t in topics.STORED),
}
# Delivery's retry group is left out: tasks due later (backoff, tomorrow's digest) keep it behind on purpose.
PIPELINE_GROUPS = ("flashes-derive", "flashes-relevance", "flashes-alerts", "flashes-sink")
# The receivers' server logs a line per request, which would drown the logs of the tests that fail.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


async def group_lag(settings: Settings, groups: tuple[str, ...] | None = None) -> int:
    """Messages the consumer groups (default: the pipeline's) have not committed yet, summed."""
    asked = sorted(groups or PIPELINE_GROUPS, key=list(GROUP_INPUTS).index)  # read in pipeline order
    async with InputLag(settings) as lag:
        return sum((await lag({g: GROUP_INPUTS[g] for g in asked})).values())


async def positioned(settings: Settings, group: str, topic: str) -> bool:
    """Has `group` a committed offset on every partition of `topic`? The delivery service, which starts a new
    group at the end of the alerts, commits that position as it joins: from then on nothing published is missed."""
    tps = [TopicPartition(topic, p) for p in range(BY_NAME[topic].partitions)]
    admin = kafka.admin(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):  # a new broker: no group yet
        return False
    finally:
        await admin.close()
    return all(tp in committed and committed[tp].offset >= 0 for tp in tps)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 240.0, every_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_drained(settings: Settings, groups: tuple[str, ...] | None = None, timeout_s: float = 600.0) -> None:
    """Every consumer group has committed everything (read in pipeline order: see GROUP_INPUTS) and QuestDB has
    applied every WAL transaction the sink's commits stand for."""

    def drained() -> bool:
        return asyncio.run(group_lag(settings, groups)) == 0 and questdb.wal_applied(settings)

    wait_until(drained, "the consumer groups to catch up", timeout_s)


def wait_positioned(settings: Settings, timeout_s: float = 120.0) -> None:
    """Delivery's consumer group has its start offsets on the alerts topic: an alert published from now on reaches
    it (a new group starts at the end of the topic)."""
    wait_until(
        lambda: asyncio.run(positioned(settings, "flashes-delivery", topics.ALERTS.name)),
        "the delivery service to join at the end of the alerts",
        timeout_s,
        0.2,
    )


def series_counts(settings: Settings, table: str, where: str = "") -> dict[str, int]:
    rows = questdb.query(settings, f"SELECT series, count() n FROM {table} {where}")
    return {r["series"]: r["n"] for r in rows}


class InputLag:
    """Per consumer group, the messages of its input topics it has not committed yet.

    Unlike `group_lag`, a partition the group has committed nothing on counts from its start
    (Kafka's offset fetch leaves such partitions out unless they are asked for), so a group that
    has not joined or not finished its first batch is not taken for caught up. One admin client
    and one consumer, kept open for repeated polls (`async with InputLag(s) as lag: await lag(...)`).
    """

    def __init__(self, settings: Settings) -> None:
        self.admin = kafka.admin(settings)
        self.consumer = kafka.consumer(settings)

    async def __aenter__(self) -> InputLag:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def __call__(self, inputs: dict[str, tuple[str, ...]]) -> dict[str, int]:
        """{group: lag} for {group: its input topic names} (partition counts from flashes.topics)."""
        out = {}
        for group, names in inputs.items():
            tps = [TopicPartition(n, p) for n in names for p in range(BY_NAME[n].partitions)]
            committed = await self.admin.list_consumer_group_offsets(group, partitions=tps)
            starts, ends = await self.consumer.beginning_offsets(tps), await self.consumer.end_offsets(tps)
            out[group] = sum(
                ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else starts[tp])
                for tp in tps
            )
        return out


async def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict]]:
    """Every (key, value) on a topic, from the beginning."""
    return [(key, value) for key, value, _ in await read_records(settings, topic, timeout_s)]


async def read_records(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes, dict, int]]:
    """Every (key, value, partition) on a topic, from the beginning to the end it had when called; a value that
    is not JSON (tests publish such records on purpose to see them dead-lettered) is left out."""
    tps = [TopicPartition(topic, p) for p in range(BY_NAME[topic].partitions)]
    async with asyncio.timeout(timeout_s + 30):
        records = await read_to_end(settings, tps)
    out = []
    for r in records:
        try:
            out.append((r.key, None if r.value is None else json.loads(r.value), r.partition))
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError both are
            continue
    return out


def lightcurve_points(settings: Settings, timeout_s: float = 5.0) -> list[dict]:
    """Every point on flashes.lightcurve.v2, flattened from its chunk, in topic order per partition; a record that
    is not a chunk (published on purpose by the dead-letter tests) is left out."""
    out = []
    for _, value in asyncio.run(read_topic(settings, topics.LIGHTCURVE.name, timeout_s)):
        try:
            chunk = topics.LIGHTCURVE.decode(json.dumps(value).encode())
        except DecodeError:
            continue
        for i, mjd in enumerate(chunk.mjd):
            out.append(
                {
                    "source_id": chunk.source_id,
                    "instrument": chunk.instrument,
                    "mjd": mjd,
                    "bands": {b: {"flux": chunk.flux[b][i], "error": chunk.error[b][i]} for b in chunk.bands},
                    "provenance": {"url": chunk.provenance.url},
                }
            )
    return out


def up(url: str) -> bool:
    """Does `url` answer 200 (a service's health route)? False while it does not listen yet."""
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def serve(handle: Callable[[Request], Response], ssl_context: ssl.SSLContext | None = None) -> tuple[HTTPServer, str]:
    """A real HTTP server on loopback (pytest-httpserver, a thread per request) answering every request through
    `handle`; the server (`server.stop()` ends it) and its base URL."""
    server = HTTPServer(host="127.0.0.1", ssl_context=ssl_context, threaded=True)
    server.expect_request(re.compile(".*")).respond_with_handler(handle)
    server.start()
    return server, f"{'https' if ssl_context else 'http'}://127.0.0.1:{server.port}"


def files(folder: Path) -> Callable[[Request], Response]:
    """A handler serving the files below `folder` as a provider does: Last-Modified and ETag, 304 to a conditional
    request for an unchanged file, 404 otherwise; never a Content-Encoding (a .gz file is the file)."""
    root = folder.resolve()

    def handle(request: Request) -> Response:
        path = (root / request.path.lstrip("/")).resolve()
        if not path.is_file() or not path.is_relative_to(root):
            return Response(status=404)
        return send_file(path, request.environ, mimetype="application/octet-stream")

    return handle


class Receiver(HTTPServer):
    """A webhook receiver on loopback answering every request with `status` (which a test may change while it
    runs); it remembers each request (path with query, lower-case headers, body, arrival time) in `received`."""

    def __init__(self, status: int) -> None:
        super().__init__(host="127.0.0.1", threaded=True)
        self.status = status
        self.received: list[dict] = []
        self.expect_request(re.compile(".*")).respond_with_handler(self._record)
        self.start()

    def _record(self, request: Request) -> Response:
        path = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
        self.received.append(
            {
                "path": path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": request.get_data(),
                "at": time.time(),
            }
        )
        return Response(status=self.status)


def receiver(status: int) -> tuple[Receiver, str, list[dict]]:
    """A started Receiver, its base URL and what it received (`server.stop()` ends it)."""
    server = Receiver(status)
    return server, f"http://127.0.0.1:{server.port}", server.received


class Mailbox:
    """An aiosmtpd handler keeping every message received, parsed, with its envelope recipients; `refuse` gives
    the reply to a recipient it refuses (None: accepted)."""

    def __init__(self, refuse: Callable[[str], str | None] = lambda address: None) -> None:
        self.refuse = refuse
        self.messages: list[email.message.EmailMessage] = []
        self.received: list[tuple[list[str], bytes]] = []  # (envelope recipients, the message as sent)

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: list[str]
    ) -> str:
        if (reply := self.refuse(address)) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content = envelope.content
        self.received.append((list(envelope.rcpt_tos), content))
        self.messages.append(email.message_from_bytes(content, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


class BlackHole:
    """A receiver that accepts connections on `hosts` and never answers, in a thread with its own loop. It counts
    the connections (`attempts`), those it holds and the most at once, the requests per URL path (read from what
    the client sent before giving up), and notes when the client closed each: when an attempt's timeout ran out.
    The default host, 127.0.1.1, is loopback in another /24 than the healthy receivers' (127.0.0.1)."""

    def __init__(self, hosts: Iterable[str] = ("127.0.1.1",)) -> None:
        self.attempts = self.open = self.most = 0
        self.paths: Counter[bytes] = Counter()
        self.closed: list[float] = []  # when the client gave up on each connection
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.port = free_port()  # one port on every host (port 0 would give each its own): free on 127.0.0.1,
        # and the other loopback addresses are the caller's alone
        self.server = self.loop.run_until_complete(asyncio.start_server(self._hold, list(hosts), self.port))
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        self.open += 1
        self.most = max(self.most, self.open)
        self.writers.add(writer)
        request = b""
        try:
            request = await reader.read()  # until the client gives up
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            self.closed.append(time.time())
            self.writers.discard(writer)
            writer.close()
            if request.count(b" ") >= 2:
                self.paths[request.split(b" ", 2)[1]] += 1

    def close(self) -> None:
        """Stop listening and drop every held connection: the attempts still queued fail at once."""

        def shut() -> None:
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()

        self.loop.call_soon_threadsafe(shut)


async def produce(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes | None]]) -> None:
    """Write (topic, key, value) records with one producer and wait until every one is acknowledged. They go out
    together (one linger, not one per record), in order on each partition; a record that must follow another on
    another partition (an alert after the subscription it is for) goes in a later call."""
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, value, key=key) for topic, key, value in records])
    finally:
        await producer.stop()


async def write_subscriptions(settings: Settings, subs: list[schemas.Subscription]) -> None:
    """Put subscriptions on their topic as the API does (a bench or harness subscribing without the API)."""
    spec = topics.SUBSCRIPTIONS
    await produce(settings, [(spec.name, sub.subscription_id.encode(), spec.encode(sub)) for sub in subs])
