"""Webhooks that cannot be aimed inward, failures that say nothing of the network, caps that a flood of dead
receivers cannot exhaust, and records keyed wrongly that reach nobody (issue #21, items 1 and 4).

Each test attacks. The address guard (flashes/netguard.py) is driven by a scripted resolver (a DNS server that
rebinds) in-process; everything else runs on a private Kafka and QuestDB with the sink, the API and the delivery
service as their own processes (the session's pipeline runs a delivery service of its own on the session's
topics), real HTTP receivers and a black hole that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiosmtpd.controller import Controller

import schemas
from devtools.infra import free_port
from devtools.observe import BlackHole, Mailbox, produce, read_topic, receiver, up, wait_positioned, wait_until
from devtools.stack import private_stack
from flashes import questdb, topics
from flashes.errors import DeliveryError, RefusedAddress, SubscriptionError
from flashes.kafka import create_topics, ensure_topics
from flashes.netguard import LOOKUP_THREADS, Guard, Lookups, is_public, parse
from flashes.settings import Settings
from flashes.subscriptions import Vault, check_webhook_url, new_subscription, subscription_id
from services.delivery import messages as alert_mail
from services.delivery.caps import Streaks
from services.delivery.webhooks import FAILURES, post
from tests.conftest import subscribe

EXAMPLE = schemas.Alert.model_validate_json(schemas.EXAMPLE_ALERT.read_bytes())
PUBLIC = "93.184.215.14"  # a public address; nothing connects to it here
TRANSLATED = [
    "64:ff9b::7f00:1",
    "64:ff9b:1::a00:1",
    "2002:7f00:1::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "::ffff:127.0.0.1",
    "::7f00:1",
]  # NAT64 (two), 6to4, Teredo, IPv4-mapped, IPv4-compatible
INWARD = [
    "100.64.0.1",
    "169.254.169.254",
    "10.1.2.3",
    "0.0.0.0",
    "224.0.0.1",
    "192.0.2.1",
    "fec0::1",
    "fe80::1",
    "ff02::1",
    "3fff::1",
]  # CGNAT, cloud metadata, private, unspecified, multicast, documentation, site-local…


class Rebinding(AbstractResolver):
    """A DNS server with TTL 0 that rebinds: each lookup gets the next answer of the script (the last repeats), an
    address or several."""

    def __init__(self, *answers: str | tuple[str, ...]) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "proto": 0,
                "flags": 0,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
            }
            for address in ((answer,) if isinstance(answer, str) else answer)
        ]

    async def close(self) -> None:
        pass


async def post_through(guard: Guard, url: str) -> str | None:
    """One signed POST through the guard's connector; the failure's words, or None if it was delivered."""
    async with aiohttp.ClientSession(connector=guard.connector(8), timeout=aiohttp.ClientTimeout(total=5)) as client:
        try:
            await post(client, url, "whsec_" + "A" * 44, "test#1", b"{}")
        except DeliveryError as exc:
            return str(exc)
    return None


def test_a_name_rebound_to_loopback_after_the_check_is_refused_at_connect_time() -> None:
    server, url, received = receiver(204)
    port = server.port
    try:

        async def attack() -> tuple[str | None, int]:
            dns = Rebinding(PUBLIC, "127.0.0.1")  # public when checked, loopback when delivered
            guard = Guard(allow_loopback=False, inner=dns, ttl_s=0)
            await check_webhook_url(f"https://hooks.example:{port}/in", False, guard)  # passes: public
            # http, so that a connection, had one been made, would have reached the plain receiver on loopback
            return await post_through(guard, f"http://hooks.example:{port}/in"), dns.asked

        words, asked = asyncio.run(attack())
        assert (words, asked, received) == ("refused address", 2, [])
    finally:
        server.stop()


def test_the_connection_goes_to_the_address_that_was_checked_and_nobody_is_asked_again() -> None:
    """Loopback stands in for the public receiver (allow_loopback); the second answer, never used, is the cloud
    metadata address. The socket factory sees every address the connector dials."""
    server, url, received = receiver(204)
    port = server.port
    try:

        async def deliver() -> tuple[str | None, int, list[str]]:
            dns = Rebinding("127.0.0.1", "169.254.169.254")
            guard = Guard(allow_loopback=True, inner=dns)
            dialled: list[str] = []
            checked = guard.socket

            def spy(addr_info: tuple) -> socket.socket:
                dialled.append(addr_info[4][0])
                return checked(addr_info)

            guard.socket = spy  # type: ignore[method-assign]
            await check_webhook_url(f"http://hooks.example:{port}/pinned", True, guard)
            network = await guard.network("hooks.example", port)  # the delivery's per-host cap key
            words = await post_through(guard, f"http://hooks.example:{port}/pinned")
            return words, dns.asked, dialled + [network]

        words, asked, dialled = asyncio.run(deliver())
        assert words is None and [r["path"] for r in received] == ["/pinned"]
        assert asked == 1 and dialled == ["127.0.0.1", "127.0.0.0/24"]
    finally:
        server.stop()


@pytest.mark.parametrize("address", TRANSLATED + INWARD)
def test_translated_and_inward_addresses_are_refused_at_subscribe_time_and_at_delivery(address: str) -> None:
    """As an IP literal (which aiohttp never gives a resolver: the socket factory refuses it) and as the answer for
    a name; loopback allowed (tests) changes nothing for them. "refused address", not "connection failed": the
    guard refused before any packet, the network was never asked."""
    assert not is_public(parse(address))
    literal = f"[{address}]" if ":" in address else address

    async def attack() -> list[str | None]:
        out = []
        for host, dns in ((literal, None), ("hooks.example", Rebinding(address))):
            guard = Guard(allow_loopback=True, inner=dns)
            with pytest.raises(SubscriptionError, match="public addresses only") as refused:
                await check_webhook_url(f"https://{host}/hook", True, guard)
            assert address not in str(refused.value) and "hooks.example" not in str(refused.value)
            out.append(await post_through(guard, f"https://{host}:8443/hook"))
        return out

    assert asyncio.run(attack()) == ["refused address", "refused address"]


def test_public_addresses_pass_the_guard() -> None:
    assert all(is_public(parse(a)) for a in (PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001::200e"))


@pytest.mark.parametrize("inward", ["127.0.0.1", "169.254.169.254", "64:ff9b::7f00:1"])
def test_an_answer_mixing_a_public_and_an_inward_address_is_refused_whole(inward: str) -> None:
    """A name answering a public address and an inward one: connecting to the public one first and falling back
    (happy eyeballs) would reach the inward one. The whole answer is refused, at subscribe time and at delivery;
    the receiver on loopback hears nothing."""
    server, url, received = receiver(204)
    port = server.port
    try:

        async def attack() -> str | None:
            guard = Guard(allow_loopback=False, inner=Rebinding((PUBLIC, inward)))
            with pytest.raises(SubscriptionError, match="public addresses only"):
                await check_webhook_url(f"https://hooks.example:{port}/mixed", False, guard)
            return await post_through(guard, f"http://hooks.example:{port}/mixed")

        assert (asyncio.run(attack()), received) == ("refused address", [])
    finally:
        server.stop()


def test_a_resolver_that_hangs_holds_only_the_lookup_threads_and_its_refusals_are_kept() -> None:
    """A nameserver that never answers: each lookup blocks its thread in getaddrinfo. A hundred names asked at once
    hold LOOKUP_THREADS threads of the Guard's own pool, no more; meanwhile a chart is drawn in the event loop's
    default executor and a webhook at an address is delivered. Each lookup is given up (refused, in the usual
    words) and the refusal kept: asking a refused name again asks no nameserver, while a new name does."""
    server, url, received = receiver(204)
    release = threading.Event()
    asked: list[str] = []

    def silent(host: str, *_: object) -> list:
        asked.append(host)
        release.wait()
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def attack() -> None:
        guard = Guard(allow_loopback=True, inner=Lookups(timeout_s=1.0, lookup=silent), ttl_s=600)
        names = [f"h{i}.example" for i in range(100)]
        lookups = [asyncio.ensure_future(guard.addresses(name, 443)) for name in names]
        await asyncio.to_thread(wait_until, lambda: len(asked) >= LOOKUP_THREADS, "the lookups to hang", 30, 0.05)
        png = await asyncio.to_thread(alert_mail.lightcurve_png, EXAMPLE, {})
        delivered = await post_through(guard, f"{url}/while-hanging")
        assert png.startswith(b"\x89PNG") and delivered is None and len(received) == 1
        assert len(asked) == LOOKUP_THREADS and not release.is_set()  # the threads are still held: no more were
        outcomes = await asyncio.gather(*lookups, return_exceptions=True)
        assert all(
            isinstance(o, RefusedAddress) and str(o) == "the webhook host does not resolve to public addresses only"
            for o in outcomes
        )
        release.set()
        before = len(asked)
        for name in (names[0], names[-1], "fresh.example"):
            with pytest.raises(RefusedAddress):
                await guard.addresses(name, 443)
        assert asked[before:] == ["fresh.example"]
        await guard.inner.close()

    try:
        asyncio.run(attack())
    finally:
        release.set()
        server.stop()


def test_a_streak_of_unanswered_attempts_makes_a_subscription_suspect_and_an_answer_ends_it() -> None:
    """The rule of the suspect slots, and the streaks a restarted service reads back from the delivery log."""
    streaks = Streaks(after=2)
    streaks.note("dead", "timed out")
    assert not streaks.suspect("dead")
    streaks.note("dead", "connection refused")
    assert streaks.suspect("dead")
    streaks.note("dead", "HTTP 503")  # an answer: the receiver is there
    assert not streaks.suspect("dead") and streaks.failures == {}

    def record(sub: str, status: str, detail: str) -> schemas.DeliveryRecord:
        return schemas.DeliveryRecord(
            subscription_id=sub,
            alert_id="a",
            record_number=1,
            test=False,
            channel="webhook",
            attempt=1,
            status=status,
            detail=detail,
            at=datetime.now(UTC),
        )

    restarted = Streaks(after=2)
    restarted.load(
        [
            record("dead", "retrying", "timed out; attempt 2 in 30 s"),
            record("dead", "dead", "refused address; gave up after 2 attempts"),
            record("mended", "retrying", "timed out; attempt 2 in 30 s"),
            record("mended", "retrying", "timed out; attempt 3 in 60 s"),
            record("mended", "delivered", "2xx"),
            record("erring", "retrying", "HTTP 500; attempt 2 in 30 s"),
            record("erring", "retrying", "HTTP 500; attempt 3 in 60 s"),
            record("alive", "retrying", "connection closed; attempt 2 in 30 s"),
            record("alive", "retrying", "TLS error; attempt 3 in 60 s"),
        ]
    )
    assert [s for s in ("dead", "mended", "erring", "alive") if restarted.suspect(s)] == ["dead", "alive"]
    restarted.prune({"alive"})  # "dead" was revoked: the entries outnumber the live subscriptions
    assert restarted.failures == {"alive": 2}


@pytest.fixture(scope="module")
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


RELAY_PORT = free_port()


@pytest.fixture(scope="module")
def relay() -> Iterator[Controller]:
    """An SMTP relay that refuses every recipient, in a reply naming the recipient and itself."""
    refusing = Mailbox(refuse=lambda to: f"550 5.1.1 <{to}>: no such user at relay.internal.example:{RELAY_PORT}")
    controller = Controller(refusing, hostname="127.0.0.1", port=RELAY_PORT)
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture(scope="module")
def private(
    tmp_path_factory: pytest.TempPathFactory, black_hole: BlackHole, relay: Controller
) -> Iterator[tuple[Settings, str]]:
    """Kafka and QuestDB on free loopback ports; the sink, the API and the delivery service. The subscriptions
    topic is made as Kafka's auto-creation would make it, before the services create theirs (not compacted), so
    that a record without a key can be written at all: on the compacted topic the broker refuses one."""
    env = {
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
        "FLASHES_DELIVERY_BACKOFF_S": "0.5",
        "FLASHES_DELIVERY_MAX_ATTEMPTS": "2",
        "FLASHES_SUBSCRIPTIONS_PER_HOUR": "1000",
        "FLASHES_SMTP_PORT": str(relay.port),
        "FLASHES_SMTP_SECURITY": "none",
    }  # aiosmtpd on loopback
    with private_stack(env=env, var=tmp_path_factory.mktemp("security-webhooks")) as stack:
        settings = stack.settings
        try:
            asyncio.run(create_topics(settings, {topics.SUBSCRIPTIONS.name: (1, False)}))
            asyncio.run(ensure_topics(settings))
            stack.start("sink", "api", "delivery")
            wait_positioned(settings)
            wait_until(lambda: up(f"{settings.api_url}/health/kafka"), "the API", 120, 0.5)
            yield settings, settings.api_url
        finally:
            black_hole.close()  # the attempts queued behind it fail at once, so delivery stops in time
    assert not stack.crashed(), f"a service crashed: see {stack.logs}"


def letters(settings: Settings) -> list[dict]:
    return [v for _, v in asyncio.run(read_topic(settings, topics.DEADLETTER.name, 1.0))]


def an_alert(source: str) -> schemas.Alert:
    return EXAMPLE.model_copy(
        update={
            "source_id": source,
            "alert_id": f"{source}@{uuid.uuid4().hex}",
            "live": True,
            "raised_at": datetime.now(UTC),
        }
    )


def test_what_a_subscriber_reads_of_a_failure_names_no_address_port_or_host(
    private: tuple[Settings, str], black_hole: BlackHole
) -> None:
    """Four receivers that fail four ways, each made to fail twice through `POST /test` (the scan the issue
    reproduced): the delivery log the subscriber reads, the deliveries table, the dead letters and the service's
    log hold one word each, from the closed set, and nothing of the addresses, ports or paths."""
    settings, api = private
    failing, failing_url, _ = receiver(503)
    closed_port = free_port()
    vault = Vault(settings)
    nat64 = f"http://[64:ff9b::7f00:1]:{closed_port}/nat64-path"  # as stored before the subscribe-time check
    code, _, rebound = new_subscription(vault, schemas.SubscriptionFilters(sources=["gx339-4"]), "webhook", nat64)
    asyncio.run(
        produce(
            settings,
            [(topics.SUBSCRIPTIONS.name, rebound.subscription_id.encode(), topics.SUBSCRIPTIONS.encode(rebound))],
        )
    )
    urls = {
        "refused": f"http://127.0.0.1:{closed_port}/closed-path",
        "hole": f"http://127.0.1.1:{black_hole.port}/hole-path",
        "503": f"{failing_url}/status-path",
    }
    made = {
        name: subscribe(api, {"channel": "webhook", "webhook_url": url, "filters": {"sources": ["gx339-4"]}})
        for name, url in urls.items()
    }
    codes = {**{name: m["code"] for name, m in made.items()}, "nat64": code}
    expected = {"refused": "connection refused", "hole": "timed out", "503": "HTTP 503", "nat64": "refused address"}
    try:
        # at subscribe time the same address is refused, in words that name nothing
        r = httpx.post(
            f"{api}/subscriptions",
            json={
                "channel": "webhook",
                "webhook_url": nat64.replace("http", "https"),
                "filters": {"sources": ["gx339-4"]},
            },
        )
        assert r.status_code == 422 and "public addresses only" in r.text and "ff9b" not in r.text
        for c in codes.values():
            assert httpx.post(f"{api}/subscriptions/{c}/test").status_code == 202

        def served(c: str) -> list[dict]:
            return httpx.get(f"{api}/subscriptions/{c}/deliveries").json()

        wait_until(
            lambda: all("dead" in {r["status"] for r in served(c)} for c in codes.values()),
            "every failing subscription's attempts to end in the delivery log",
            90,
            0.5,
        )
        ids = {name: subscription_id(c) for name, c in codes.items()}
        table = questdb.query(settings, "SELECT subscription_id, detail FROM deliveries")
        for name, c in codes.items():
            seen = [r["detail"] for r in served(c)] + [r["detail"] for r in table if r["subscription_id"] == ids[name]]
            assert len(seen) == 4 and {d.split(";")[0] for d in seen} == {expected[name]}, (name, seen)
        assert set(expected.values()) - {"HTTP 503"} <= set(FAILURES)
        mine = [v for v in letters(settings) if v["origin"].startswith("delivery:webhook:")]
        assert {v["reason"].split(";")[0].removesuffix(" after 2 attempts") for v in mine} == set(expected.values())
        logged = [
            line
            for line in (settings.var_dir / "logs" / "delivery.log").read_text().splitlines()
            if any(i[:12] in line for i in ids.values())
        ]
        assert len(logged) >= 8  # each retry and each dead letter
        text = json.dumps([table, [(v["origin"], v["reason"], v["url"]) for v in mine], logged])  # payload: the alert
        for part in (
            "127.0.0.1",
            "127.0.1.1",
            "ff9b",
            str(closed_port),
            str(black_hole.port),
            str(failing.port),
            "closed-path",
            "hole-path",
            "status-path",
            "nat64-path",
        ):
            assert part not in text, part
    finally:
        failing.stop()


def test_records_without_a_key_or_keyed_wrongly_are_dead_letters_and_the_views_keep_serving(
    private: tuple[Settings, str],
) -> None:
    settings, api = private
    vault = Vault(settings)
    source = "cirx-1"
    server, url, received = receiver(204)
    code, _, good = new_subscription(vault, schemas.SubscriptionFilters(sources=[source]), "webhook", f"{url}/good")
    _, _, other = new_subscription(vault, schemas.SubscriptionFilters(sources=[source]), "webhook", f"{url}/other")
    value, other_value = topics.SUBSCRIPTIONS.encode(good), topics.SUBSCRIPTIONS.encode(other)
    stray, wrong, fine = an_alert(source), an_alert(source), an_alert(source)
    task = schemas.DeliveryTask(
        subscription_id=good.subscription_id, alert=stray, attempt=1, due=datetime.now(UTC) - timedelta(seconds=1)
    )
    before = len(letters(settings))
    try:
        asyncio.run(
            produce(
                settings,
                [
                    (topics.SUBSCRIPTIONS.name, None, other_value),  # no key
                    (topics.SUBSCRIPTIONS.name, b"../../etc", None),  # a tombstone keyed by no subscription id
                    (topics.SUBSCRIPTIONS.name, other.subscription_id.encode(), value),  # another subscription's id
                    (topics.SUBSCRIPTIONS.name, good.subscription_id.encode(), b"{not json"),
                    (topics.SUBSCRIPTIONS.name, good.subscription_id.encode(), value),  # and the good one after them
                ],
            )
        )
        asyncio.run(
            produce(
                settings,
                [
                    (topics.ALERTS.name, None, topics.ALERTS.encode(stray)),
                    (topics.ALERTS.name, b"gx339-4", topics.ALERTS.encode(wrong)),
                    (topics.DELIVERY_RETRY.name, other.subscription_id.encode(), topics.DELIVERY_RETRY.encode(task)),
                    (topics.ALERTS.name, source.encode(), topics.ALERTS.encode(fine)),
                ],
            )
        )
        wait_until(
            lambda: any(r["headers"]["webhook-id"] == fine.message_id for r in received),
            "the good alert at the good subscription",
            60,
            0.5,
        )
        assert httpx.get(f"{api}/subscriptions/{code}").status_code == 200  # the API's view serves it
        reasons = [v["reason"] for v in letters(settings)[before:]]
        for words in (
            "flashes.subscriptions.v1: a record without a key",
            "flashes.subscriptions.v1: the record's key is not a subscription id",
            "flashes.subscriptions.v1: the record's key is not its value's subscription id",
            "flashes.subscriptions.v1: not JSON",
            "flashes.alerts.v3: a record without a key",
            "flashes.alerts.v3: the record's key is not its value's source id",
            "flashes.delivery.retry.v1: the record's key is not its value's subscription id",
        ):
            wait_until(
                lambda words=words: any(r.startswith(words) for r in [v["reason"] for v in letters(settings)[before:]]),
                words,
                30,
                0.5,
            )
        # each read by the API's view and the delivery's (one letter each); none reached a receiver
        assert not [r for r in received if r["headers"]["webhook-id"] in (stray.message_id, wrong.message_id)]
        assert not any(r["path"] == "/other" for r in received)
        assert all("127.0.0.1" not in r and url not in r for r in reasons)
    finally:
        server.stop()


def timed_out(black_hole: BlackHole, since: float) -> list[float]:
    return [t for t in black_hole.closed if t > since]


def test_one_subscription_holds_at_most_its_cap_of_connections(
    private: tuple[Settings, str], black_hole: BlackHole
) -> None:
    """Ten alerts for one subscription at the black hole: four attempts at once (below the per-host cap), the
    others wait until one of them times out."""
    settings, _ = private
    source = "cap-test"
    sub = new_subscription(
        Vault(settings),
        schemas.SubscriptionFilters(sources=[source]),
        "webhook",
        f"http://127.0.1.1:{black_hole.port}/one",
    )[2]
    asyncio.run(
        produce(settings, [(topics.SUBSCRIPTIONS.name, sub.subscription_id.encode(), topics.SUBSCRIPTIONS.encode(sub))])
    )
    wait_until(lambda: black_hole.open == 0, "the earlier test's attempts at the black hole to end", 30, 0.1)
    black_hole.most, published = 0, time.time()
    asyncio.run(
        produce(
            settings, [(topics.ALERTS.name, source.encode(), topics.ALERTS.encode(an_alert(source))) for _ in range(10)]
        )
    )
    wait_until(
        lambda: len(timed_out(black_hole, published)) >= settings.webhook_per_subscription,
        "the first attempts to time out",
        60,
        0.1,
    )
    assert black_hole.most == settings.webhook_per_subscription < settings.webhook_per_host


def test_a_thousand_subscriptions_on_a_black_hole_delay_nobody_else(
    private: tuple[Settings, str], black_hole: BlackHole
) -> None:
    """1,000 subscriptions at a receiver that accepts and never answers, written before the healthy one (so that
    their attempts start first). The healthy one gets the alert while the first dead attempt is still waiting out
    its timeout, that is within its own timeout; the black hole never holds more than the per-host cap."""
    settings, _ = private
    source = "flood-test"
    server, url, received = receiver(204)
    vault = Vault(settings)
    filters = schemas.SubscriptionFilters(sources=[source])
    dead = [
        new_subscription(vault, filters, "webhook", f"http://127.0.1.1:{black_hole.port}/d{i}")[2] for i in range(1000)
    ]
    healthy = new_subscription(vault, filters, "webhook", f"{url}/healthy")[2]
    alert = an_alert(source)
    try:
        asyncio.run(
            produce(
                settings,
                [
                    (topics.SUBSCRIPTIONS.name, s.subscription_id.encode(), topics.SUBSCRIPTIONS.encode(s))
                    for s in [*dead, healthy]
                ],
            )
        )
        wait_until(lambda: black_hole.open == 0, "the earlier test's attempts at the black hole to end", 120, 0.1)
        black_hole.most, published = 0, time.time()
        asyncio.run(produce(settings, [(topics.ALERTS.name, source.encode(), topics.ALERTS.encode(alert))]))
        wait_until(
            lambda: any(r["headers"]["webhook-id"] == alert.message_id for r in received),
            "the healthy subscription's alert",
            60,
            0.1,
        )
        got = next(r["at"] for r in received if r["headers"]["webhook-id"] == alert.message_id)
        wait_until(
            lambda: len(timed_out(black_hole, published)) >= settings.webhook_per_host,
            "the first dead attempts to time out",
            60,
            0.1,
        )
        assert got < min(timed_out(black_hole, published))  # within the healthy one's timeout
        assert black_hole.most == settings.webhook_per_host  # never more at once: the rest wait, holding no slot
    finally:
        server.stop()


def test_dead_receivers_on_many_networks_take_the_suspect_slots_and_delay_nobody_else(
    private: tuple[Settings, str],
) -> None:
    """1,000 subscriptions at black holes on 300 networks (127.x.y.1, a /24 each and not the other black hole's:
    every per-host cap stays free).
    Their first alert fails twice for each (an attempt and its retry), which makes each suspect. At the next alert
    their attempts take the suspect slots, not the global ones: the healthy subscription gets it while the first
    dead attempt is still waiting out its timeout, and the black holes never hold more than the suspect slots."""
    settings, _ = private
    source = "networks-test"
    hosts = tuple(f"127.{x >> 8}.{x & 255}.1" for x in range(2, 302))
    hole = BlackHole(hosts)
    server, url, received = receiver(204)
    vault = Vault(settings)
    filters = schemas.SubscriptionFilters(sources=[source])
    dead = [
        new_subscription(vault, filters, "webhook", f"http://{hosts[i % len(hosts)]}:{hole.port}/n{i}")[2]
        for i in range(1000)
    ]
    healthy = new_subscription(vault, filters, "webhook", f"{url}/healthy")[2]
    origins = {f"delivery:webhook:{s.subscription_id[:12]}" for s in dead}

    def arrived(alert: schemas.Alert) -> list[float]:
        return [r["at"] for r in received if r["headers"]["webhook-id"] == alert.message_id]

    try:
        asyncio.run(
            produce(
                settings,
                [
                    (topics.SUBSCRIPTIONS.name, s.subscription_id.encode(), topics.SUBSCRIPTIONS.encode(s))
                    for s in [*dead, healthy]
                ],
            )
        )
        first, second = an_alert(source), an_alert(source)
        asyncio.run(produce(settings, [(topics.ALERTS.name, source.encode(), topics.ALERTS.encode(first))]))
        wait_until(
            lambda: origins <= {v["origin"] for v in letters(settings)},
            "every dead subscription to fail twice (its dead letter)",
            300,
            2.0,
        )
        assert arrived(first) and settings.webhook_suspect_after == settings.delivery_max_attempts == 2
        wait_until(lambda: hole.open == 0, "the first alert's attempts to end", 60, 0.1)
        hole.most, published = 0, time.time()
        asyncio.run(produce(settings, [(topics.ALERTS.name, source.encode(), topics.ALERTS.encode(second))]))
        wait_until(lambda: arrived(second), "the healthy subscription's alert", 60, 0.1)
        wait_until(
            lambda: len(timed_out(hole, published)) >= settings.webhook_suspect_slots,
            "the first suspect attempts to time out",
            60,
            0.1,
        )
        assert arrived(second)[0] < min(timed_out(hole, published))  # within the healthy one's timeout
        assert hole.most == settings.webhook_suspect_slots < settings.delivery_concurrency
    finally:
        hole.close()  # the suspect attempts still queued are refused at once
        server.stop()


def test_what_a_subscriber_reads_of_a_failed_mail_names_neither_the_relay_nor_the_address(
    private: tuple[Settings, str],
) -> None:
    """A confirmed e-mail subscription whose relay refuses the recipient in a reply that names the recipient, the
    relay's internal name and its port: the subscriber's delivery list says the relay refused the recipient, with
    its code, and nothing of the reply's text, the address or the relay."""
    settings, api = private
    source = "mail-test"
    address = "victim.mailbox@example.org"
    code, _, sub = new_subscription(
        Vault(settings), schemas.SubscriptionFilters(sources=[source]), "email", email=address, email_confirmed=True
    )
    asyncio.run(
        produce(settings, [(topics.SUBSCRIPTIONS.name, sub.subscription_id.encode(), topics.SUBSCRIPTIONS.encode(sub))])
    )
    asyncio.run(produce(settings, [(topics.ALERTS.name, source.encode(), topics.ALERTS.encode(an_alert(source)))]))

    def served() -> list[dict]:
        return httpx.get(f"{api}/subscriptions/{code}/deliveries").json()

    wait_until(lambda: "dead" in {r["status"] for r in served()}, "the mail's attempts to end", 60, 0.5)
    details = [r["detail"] for r in served()]
    assert [d.split(";")[0] for d in details] == ["mail not sent: recipient refused (550)"] * 2, details
    text = json.dumps(served())
    for part in (address, "victim", "example.org", "relay.internal", str(RELAY_PORT), "no such user", "127.0.0.1"):
        assert part not in text, part
