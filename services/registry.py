"""The services, listed once: `flashes run` (services/cli.py) runs them, the stack runner starts them, compose
declares them, the healthcheck and Prometheus find their metrics ports here."""

from __future__ import annotations

from importlib import import_module

from flashes import metrics, safety
from flashes.kafka import run_restarting
from flashes.settings import Settings

SERVICES = ("fetcher", "derive", "relevance", "alerts", "delivery", "sink", "api")
PROCESSORS = ("derive", "relevance", "alerts")  # stateful stream processors on flashes/processor.py
PIPELINE = tuple(s for s in SERVICES if s != "fetcher")  # what runs continuously beside a fetch
LOOPS = {"fetcher": "services.fetcher.service", "sink": "services.sink.service", "delivery": "services.delivery.app"}


def metrics_port(settings: Settings, name: str) -> int:
    """Where service `name` serves Prometheus metrics: metrics_port + its place in SERVICES (the API: its own port)."""
    return settings.api_port if name == "api" else settings.metrics_port + SERVICES.index(name)


def run(name: str, settings: Settings) -> None:
    """Run one service in the foreground until SIGTERM/Ctrl-C, its metrics served beside it; settings that would
    expose it (flashes/safety.py) raise UnsafeSettings before anything starts."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    safety.require_safe(settings, name)
    if name != "api":  # the API serves GET /metrics itself
        metrics.serve(settings, metrics_port(settings, name))
    if name in PROCESSORS:
        import_module(f"services.{name}.app").build(settings).serve()
    elif name in LOOPS:
        main = import_module(LOOPS[name]).run_forever
        run_restarting(name, lambda: main(settings))
    else:
        import uvicorn

        from services.api.app import create_app

        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")
