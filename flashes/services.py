"""The services, listed once: the CLI runs them, the stack runner starts them, compose declares them."""
from __future__ import annotations

from importlib import import_module

from flashes.kafka import run_restarting
from flashes.settings import Settings

SERVICES = ("fetcher", "derive", "relevance", "alerts", "delivery", "sink", "api")
PROCESSORS = ("derive", "relevance", "alerts")  # stateful stream processors on flashes/processor.py
PIPELINE = tuple(s for s in SERVICES if s != "fetcher")  # what runs continuously beside a fetch
LOOPS = {"fetcher": "services.fetcher.service", "sink": "services.sink.service", "delivery": "services.alerts.delivery"}


def run(name: str, settings: Settings) -> None:
    """Run one service in the foreground until SIGTERM/Ctrl-C."""
    if name in PROCESSORS:
        import_module(f"services.{name}.app").build(settings).serve()
    elif name in LOOPS:
        main = import_module(LOOPS[name]).run_forever
        run_restarting(name, lambda: main(settings))
    elif name == "api":
        import uvicorn

        uvicorn.run("services.api.app:create_app", factory=True, host=settings.api_host, port=settings.api_port,
                    log_level="info")
    else:
        raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
