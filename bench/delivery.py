"""Delivery under load: 1,000 webhook subscriptions, a burst of alerts, one receiver that never answers; then
1,000 more subscriptions on that receiver and another burst (the flood of issue #21).

A private stack (Kafka and QuestDB on free loopback ports) and the delivery service as its own
process, with its default caps (256 attempts in flight, 4 per subscription, 16 per receiving
network). 999 subscriptions point at four healthy receivers (aiohttp, answering 204, on
127.0.0.1), one at a black hole (127.0.1.1, another /24: another network) that accepts the
connection and never answers. The subscriptions are written to flashes.subscriptions.v1 as the API
writes them; after a warm-up alert reached everyone, a burst of `--alerts` alerts, each matching
every subscription, is produced at once. Then `--dead` subscriptions on the black hole are added
and a burst of `--flood-alerts` alerts goes to all of them.

Figures: deliveries_per_s (healthy deliveries / time from the first alert produced to the last
delivery received) and p50_s / p99_s / max_s from an alert produced to its webhook received, for
the healthy receivers; dead_attempts counts the connections the black hole got in that time. For
the flood: flood_p50_s / flood_p99_s / flood_max_s of the healthy receivers, flood_dead_at_once
(the most connections the black hole held at once: the per-network cap) and the webhook timeout
the healthy ones are measured against.

    .venv/bin/python bench/delivery.py [--subscriptions 1000] [--alerts 50] [--dead 1000] [--flood-alerts 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from aiohttp import web

import schemas
from benchkit import tidy, webhook_subscriptions, write_subscriptions
from flashes import infra, stack, topics
from flashes.kafka import ensure_topics, make_producer
from flashes.observe import positioned, wait_until
from flashes.settings import Settings

EXAMPLE = schemas.EXAMPLE_ALERT
HEALTHY = 4
DEAD_HOST = "127.0.1.1"  # on Linux every 127/8 address is loopback; this one is in another /24 than the receivers


class Receivers:
    """Healthy receivers (aiohttp) and a dead one, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []  # (webhook-id, time)
        self.dead_attempts = 0
        self.dead_open = self.dead_most = 0
        self.dead_writers: set[asyncio.StreamWriter] = set()
        self.ports: list[int] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append((request.headers["webhook-id"], time.time()))
        return web.Response(status=204)

    async def _never(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.dead_attempts += 1
        self.dead_open += 1
        self.dead_most = max(self.dead_most, self.dead_open)
        self.dead_writers.add(writer)
        try:
            await reader.read()  # until the client gives up
        except ConnectionError:
            pass
        finally:
            self.dead_open -= 1
            self.dead_writers.discard(writer)
            writer.close()

    def close_dead(self) -> None:
        """Drop the black hole's connections and stop listening: attempts still queued fail at once."""
        def shut() -> None:
            self.dead.close()
            for w in list(self.dead_writers):
                w.transport.abort()
        self.loop.call_soon_threadsafe(shut)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{name}", self._hook)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            for _ in range(HEALTHY):
                site = web.TCPSite(runner, "127.0.0.1", infra.free_port())
                await site.start()
                self.ports.append(site._server.sockets[0].getsockname()[1])
            self.dead = await asyncio.start_server(self._never, DEAD_HOST, 0)
            self.ports.append(self.dead.sockets[0].getsockname()[1])

        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()


async def publish(settings: Settings, alerts: list[schemas.Alert]) -> dict[str, float]:
    """Produce the alerts; the time each was produced."""
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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(1 for i, _ in list(receivers.received) if i in ids) >= each * len(ids):
            return
        time.sleep(0.2)
    raise TimeoutError(f"not every delivery arrived within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--dead", type=int, default=1000, help="subscriptions added on the black hole for the flood")
    parser.add_argument("--flood-alerts", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the private stack's folder")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="flashes-bench-delivery-"))
    env = {**infra.isolated_env(var), "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true"}
    settings = Settings(**{k.removeprefix("FLASHES_").lower(): v for k, v in env.items()})
    receivers = Receivers()
    urls = [f"http://127.0.0.1:{receivers.ports[i % HEALTHY]}/s{i}" for i in range(args.subscriptions - 1)]
    urls.append(f"http://{DEAD_HOST}:{receivers.ports[HEALTHY]}/dead")
    subs = webhook_subscriptions(settings, urls)
    flood = webhook_subscriptions(settings, [f"http://{DEAD_HOST}:{receivers.ports[HEALTHY]}/flood{i}"
                                             for i in range(args.dead)])
    example = schemas.Alert.model_validate_json(EXAMPLE.read_bytes())
    alerts = [example.model_copy(update={"alert_id": f"bench@{i}"}) for i in range(args.alerts + 1 + args.flood_alerts)]
    infra.start(settings)
    processes = {}
    ok = False
    try:
        asyncio.run(ensure_topics(settings))
        asyncio.run(write_subscriptions(settings, subs))
        processes = stack.spawn(("delivery",), env, var / "logs")
        wait_until(lambda: asyncio.run(positioned(settings, "flashes-delivery", topics.ALERTS.name)),
                   "the delivery service to join at the end of the alerts", 120, 0.2)
        warm = asyncio.run(publish(settings, alerts[:1]))
        wait_for(receivers, set(warm), len(subs) - 1, 120)
        start = len(receivers.received)
        dead_before = receivers.dead_attempts
        sent = asyncio.run(publish(settings, alerts[1:args.alerts + 1]))
        wait_for(receivers, set(sent), len(subs) - 1, 600)
        got = [(i, t) for i, t in receivers.received[start:] if i in sent]
        latency = np.array([t - sent[i] for i, t in got])
        span = max(t for _, t in got) - min(sent.values())
        result = {"subscriptions": len(subs), "alerts": len(sent), "deliveries": len(got),
                  "deliveries_per_s": round(len(got) / span, 1), "p50_s": round(float(np.percentile(latency, 50)), 3),
                  "p99_s": round(float(np.percentile(latency, 99)), 3), "max_s": round(float(latency.max()), 3),
                  "dead_attempts": receivers.dead_attempts - dead_before}
        # The flood: `--dead` more subscriptions on the black hole, written before the burst, so that their
        # attempts start first.
        asyncio.run(write_subscriptions(settings, flood))
        start, receivers.dead_most = len(receivers.received), 0
        sent = asyncio.run(publish(settings, alerts[args.alerts + 1:]))
        wait_for(receivers, set(sent), len(subs) - 1, 600)
        latency = np.array([t - sent[i] for i, t in receivers.received[start:] if i in sent])
        result |= {"flood_dead_subscriptions": len(flood) + 1, "flood_alerts": len(sent),
                   "flood_healthy_deliveries": len(latency),
                   "flood_p50_s": round(float(np.percentile(latency, 50)), 3),
                   "flood_p99_s": round(float(np.percentile(latency, 99)), 3),
                   "flood_max_s": round(float(latency.max()), 3), "flood_dead_at_once": receivers.dead_most,
                   "webhook_timeout_s": settings.webhook_timeout_s}
        ok = True
        print(json.dumps(result))
    finally:
        receivers.close_dead()  # the attempts queued behind the black hole fail at once: delivery stops in time
        stack.terminate(processes)
        infra.stop(settings)
        tidy(var, var / "logs", processes, args.keep, ok)


if __name__ == "__main__":
    main()
