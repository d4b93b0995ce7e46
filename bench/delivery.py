"""Delivery under load: 1,000 webhook subscriptions, a burst of alerts, one receiver that never answers.

A private stack (Kafka and QuestDB on free loopback ports) and the delivery service as its own
process. 999 subscriptions point at four healthy receivers (aiohttp, answering 204), one at a
receiver that accepts the connection and never answers. The subscriptions are written to
flashes.subscriptions.v1 as the API writes them; after a warm-up alert reached everyone, a burst
of `--alerts` alerts, each matching every subscription, is produced at once.

Figures: deliveries_per_s (healthy deliveries / time from the first alert produced to the last
delivery received) and p50_s / p99_s / max_s from an alert produced to its webhook received, for
the healthy receivers; dead_attempts counts the POSTs the dead receiver got in that time.

    .venv/bin/python bench/delivery.py [--subscriptions 1000] [--alerts 50]
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


class Receivers:
    """Healthy receivers (aiohttp) and a dead one, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []  # (webhook-id, time)
        self.dead_attempts = 0
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
        await asyncio.sleep(3600)

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
            dead = await asyncio.start_server(self._never, "127.0.0.1", 0)
            self.ports.append(dead.sockets[0].getsockname()[1])

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
    parser.add_argument("--keep", action="store_true", help="keep the private stack's folder")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="flashes-bench-delivery-"))
    env = {**infra.isolated_env(var), "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true"}
    settings = Settings(**{k.removeprefix("FLASHES_").lower(): v for k, v in env.items()})
    receivers = Receivers()
    urls = [f"http://127.0.0.1:{receivers.ports[i % HEALTHY]}/s{i}" for i in range(args.subscriptions - 1)]
    urls.append(f"http://127.0.0.1:{receivers.ports[HEALTHY]}/dead")
    subs = webhook_subscriptions(settings, urls)
    example = schemas.Alert.model_validate_json(EXAMPLE.read_bytes())
    alerts = [example.model_copy(update={"alert_id": f"bench@{i}"}) for i in range(args.alerts + 1)]
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
        sent = asyncio.run(publish(settings, alerts[1:]))
        wait_for(receivers, set(sent), len(subs) - 1, 600)
        got = [(i, t) for i, t in receivers.received[start:] if i in sent]
        latency = np.array([t - sent[i] for i, t in got])
        span = max(t for _, t in got) - min(sent.values())
        result = {"subscriptions": len(subs), "alerts": len(sent), "deliveries": len(got),
                  "deliveries_per_s": round(len(got) / span, 1), "p50_s": round(float(np.percentile(latency, 50)), 3),
                  "p99_s": round(float(np.percentile(latency, 99)), 3), "max_s": round(float(latency.max()), 3),
                  "dead_attempts": receivers.dead_attempts - dead_before}
        ok = True
        print(json.dumps(result))
    finally:
        stack.terminate(processes)
        infra.stop(settings)
        tidy(var, var / "logs", processes, args.keep, ok)


if __name__ == "__main__":
    main()
