"""Delivery under load: 1,000 webhook subscriptions, a burst of alerts, one receiver that never answers; then
1,000 more subscriptions on that receiver and another burst (the flood of issue #21); then 1,000 more on
receivers that never answer spread over 300 networks, and two bursts more.

A private stack (Kafka and QuestDB on free loopback ports) and the delivery service as its own
process, with its default caps (256 attempts in flight, 4 per subscription, 16 per receiving
network). 999 subscriptions point at four healthy receivers (aiohttp, answering 204, on
127.0.0.1), one at a black hole (127.0.1.1, another /24: another network) that accepts the
connection and never answers. The subscriptions are written to flashes.subscriptions.v1 as the API
writes them; after a warm-up alert reached everyone, a burst of `--alerts` alerts, each matching
every subscription, is produced at once. Then `--dead` subscriptions on the black hole are added
and a burst of `--flood-alerts` alerts goes to all of them. Then `--dead` subscriptions on black holes at
127.x.y.1 for 300 values of (x, y) (a /24 each, so no per-network cap binds) are added: first
webhook_suspect_after alerts, which each of them fails once, then (each suspect) a burst of
`--flood-alerts` alerts.

Figures: deliveries_per_s (healthy deliveries / time from the first alert produced to the last
delivery received) and p50_s / p99_s / max_s from an alert produced to its webhook received, for
the healthy receivers; dead_attempts counts the connections the black hole got in that time. For
the flood: flood_p50_s / flood_p99_s / flood_max_s of the healthy receivers, flood_dead_at_once
(the most connections the black hole held at once: the per-network cap) and the webhook timeout
the healthy ones are measured against. For the spread flood: spread_first_p99_s (the healthy ones during
the alerts that make the dead subscriptions suspect: their first attempts share the global slots),
spread_p50_s / spread_p99_s / spread_max_s during the burst after, and spread_dead_at_once and
spread_one_network_at_once (the most connections the spread and the first black hole held at once
meanwhile: the first flood's subscriptions are suspect too, and both share the suspect slots).

    .venv/bin/python bench/delivery.py [--subscriptions 1000] [--alerts 50] [--dead 1000] [--flood-alerts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Callable

import numpy as np
from aiohttp import web
from benchkit import latency_summary, webhook_subscriptions, write_subscriptions

import schemas
from devtools.infra import free_port
from devtools.observe import BlackHole, wait_positioned, wait_until
from devtools.stack import private_stack
from flashes import topics
from flashes.kafka import ensure_topics, make_producer
from flashes.settings import Settings

EXAMPLE = schemas.EXAMPLE_ALERT
HEALTHY = 4
DEAD_HOST = "127.0.1.1"  # on Linux every 127/8 address is loopback; this one is in another /24 than the receivers
SPREAD_HOSTS = [f"127.{x >> 8}.{x & 255}.1" for x in range(2, 302)]  # 300 more /24s, 127.0.1.0/24 left out


class Receivers:
    """Healthy receivers (aiohttp) in a thread with its own loop, and black holes (one network, many networks)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []  # (webhook-id, time)
        self.dead, self.spread = BlackHole((DEAD_HOST,)), BlackHole(SPREAD_HOSTS)
        self.ports: list[int] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append((request.headers["webhook-id"], time.time()))
        return web.Response(status=204)

    def close_dead(self) -> None:
        """Drop the black holes' connections and stop listening: attempts still queued fail at once."""
        self.dead.close()
        self.spread.close()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{name}", self._hook)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            for _ in range(HEALTHY):
                site = web.TCPSite(runner, "127.0.0.1", free_port())
                await site.start()
                self.ports.append(site._server.sockets[0].getsockname()[1])
            self.ports += [self.dead.port, self.spread.port]

        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()


async def publish(settings: Settings, alerts: list[schemas.Alert]) -> dict[str, float]:
    """Produce the alerts; the time each was handed to the started producer. Its own producer, not observe.produce:
    that time is taken per alert, after the producer's start (a connection and a metadata fetch)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        sent = {}
        for alert in alerts:
            sent[alert.message_id] = time.time()
            await producer.send(topics.ALERTS.name, topics.ALERTS.encode(alert), key=alert.source_id.encode())
        await producer.flush()
        return sent
    finally:
        await producer.stop()


def wait_for(receivers: Receivers, ids: set[str], each: int, timeout_s: float) -> None:
    """`each` deliveries of every one of `ids` (counted together)."""
    wait_until(
        lambda: sum(1 for i, _ in list(receivers.received) if i in ids) >= each * len(ids),
        "every delivery",
        timeout_s,
        0.2,
    )


def latencies(receivers: Receivers, start: int, sent: dict[str, float]) -> np.ndarray:
    return np.array([t - sent[i] for i, t in receivers.received[start:] if i in sent])


def measure(
    args: argparse.Namespace, settings: Settings, receivers: Receivers, start_delivery: Callable[[], None]
) -> None:
    """The three rounds; prints the figures as one JSON object."""
    urls = [f"http://127.0.0.1:{receivers.ports[i % HEALTHY]}/s{i}" for i in range(args.subscriptions - 1)]
    urls.append(f"http://{DEAD_HOST}:{receivers.ports[HEALTHY]}/dead")
    subs = webhook_subscriptions(settings, urls)
    flood = webhook_subscriptions(
        settings, [f"http://{DEAD_HOST}:{receivers.ports[HEALTHY]}/flood{i}" for i in range(args.dead)]
    )
    spread = webhook_subscriptions(
        settings,
        [
            f"http://{SPREAD_HOSTS[i % len(SPREAD_HOSTS)]}:{receivers.ports[HEALTHY + 1]}/spread{i}"
            for i in range(args.dead)
        ],
    )
    example = schemas.Alert.model_validate_json(EXAMPLE.read_bytes())
    suspect_after = settings.webhook_suspect_after
    alerts = [
        example.model_copy(update={"alert_id": f"bench@{i}"})
        for i in range(args.alerts + 1 + 2 * args.flood_alerts + suspect_after)
    ]
    asyncio.run(ensure_topics(settings))
    asyncio.run(write_subscriptions(settings, subs))
    start_delivery()
    wait_positioned(settings)
    warm = asyncio.run(publish(settings, alerts[:1]))
    wait_for(receivers, set(warm), len(subs) - 1, 120)
    start = len(receivers.received)
    dead_before = receivers.dead.attempts
    sent = asyncio.run(publish(settings, alerts[1 : args.alerts + 1]))
    wait_for(receivers, set(sent), len(subs) - 1, 600)
    got = [(i, t) for i, t in receivers.received[start:] if i in sent]
    latency = np.array([t - sent[i] for i, t in got])
    span = max(t for _, t in got) - min(sent.values())
    result = {
        "subscriptions": len(subs),
        "alerts": len(sent),
        "deliveries": len(got),
        "deliveries_per_s": round(len(got) / span, 1),
        **latency_summary(latency),
        "dead_attempts": receivers.dead.attempts - dead_before,
    }
    # The flood: `--dead` more subscriptions on the black hole, written before the burst, so that their
    # attempts start first.
    asyncio.run(write_subscriptions(settings, flood))
    start, receivers.dead.most = len(receivers.received), 0
    first_flood = args.alerts + 1
    sent = asyncio.run(publish(settings, alerts[first_flood : first_flood + args.flood_alerts]))
    wait_for(receivers, set(sent), len(subs) - 1, 600)
    latency = latencies(receivers, start, sent)
    result |= {
        "flood_dead_subscriptions": len(flood) + 1,
        "flood_alerts": len(sent),
        "flood_healthy_deliveries": len(latency),
        **latency_summary(latency, "flood_"),
        "flood_dead_at_once": receivers.dead.most,
        "webhook_timeout_s": settings.webhook_timeout_s,
    }
    # The spread flood: `--dead` subscriptions on 300 networks. The first alerts, one failed attempt each,
    # make every one of them suspect; the burst after is measured.
    asyncio.run(write_subscriptions(settings, spread))
    start = len(receivers.received)
    first_spread = first_flood + args.flood_alerts
    sent = asyncio.run(publish(settings, alerts[first_spread : first_spread + suspect_after]))
    wait_for(receivers, set(sent), len(subs) - 1, 600)
    first = latencies(receivers, start, sent)
    paths = [f"/spread{i}".encode() for i in range(args.dead)]
    wait_until(
        lambda: min(receivers.spread.paths[p] for p in paths) >= suspect_after,
        "every spread subscription to fail its first attempts",
        600,
        0.2,
    )
    start, receivers.spread.most, receivers.dead.most = len(receivers.received), 0, 0
    sent = asyncio.run(publish(settings, alerts[first_spread + suspect_after :]))
    wait_for(receivers, set(sent), len(subs) - 1, 600)
    latency = latencies(receivers, start, sent)
    result |= {
        "spread_dead_subscriptions": len(spread),
        "spread_networks": len(SPREAD_HOSTS),
        "spread_first_alerts": suspect_after,
        "spread_first_p99_s": latency_summary(first)["p99_s"],
        "spread_alerts": len(sent),
        "spread_healthy_deliveries": len(latency),
        **latency_summary(latency, "spread_"),
        "spread_dead_at_once": receivers.spread.most,
        "spread_one_network_at_once": receivers.dead.most,
        "suspect_slots": settings.webhook_suspect_slots,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--dead", type=int, default=1000, help="subscriptions added on the black hole for the flood")
    parser.add_argument("--flood-alerts", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the private stack's folder")
    args = parser.parse_args()
    receivers = Receivers()
    with private_stack(env={"FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true"}, keep=args.keep) as stack:
        try:
            measure(args, stack.settings, receivers, lambda: stack.start("delivery"))
        finally:
            receivers.close_dead()  # the attempts queued behind the black hole fail at once: delivery stops in time


if __name__ == "__main__":
    main()
