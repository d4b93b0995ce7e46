"""`python -m devtools COMMAND`: what a developer runs beside the product's `flashes` command.

python -m devtools infra fetch|start|stop|status      Kafka and QuestDB on loopback from Maven Central jars
python -m devtools stack                              `make run`: the servers, every service, the sample
python -m devtools fetch|backfill MIRROR [options]    `flashes fetch|backfill` from a mirror folder, served
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from devtools import infra, mirror
from devtools.run import run_stack
from flashes.errors import InfraError, SettingsError
from flashes.settings import PREFIX, Settings
from services import cli


def _infra(args: argparse.Namespace, env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    try:
        {
            "fetch": lambda: print(infra.fetch_jars(settings)),
            "start": lambda: infra.start(settings),
            "stop": lambda: infra.stop(settings),
            "status": lambda: print(infra.status(settings)),
        }[args.action]()
    except InfraError as exc:
        sys.exit(f"devtools infra {args.action}: {exc}")


def _stack(args: argparse.Namespace, env: dict[str, str]) -> None:
    run_stack(env)


def _fetch(args: argparse.Namespace, env: dict[str, str]) -> None:
    """The product's fetch or backfill, with every provider's URL pointing at the mirror folder served here."""
    try:
        server, base = mirror.serve(Path(args.mirror))
    except FileNotFoundError as exc:
        sys.exit(f"devtools {args.command}: {exc}")
    try:
        cli.fetch(args, Settings.from_env({**env, **mirror.provider_env(base)}))
    finally:
        server.shutdown()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("infra", help="Kafka and QuestDB on loopback from Maven Central jars")
    p.add_argument("action", choices=["fetch", "start", "stop", "status"])
    p.set_defaults(func=_infra)
    p = sub.add_parser("stack", help="infrastructure, every service and the sample mirror, until Ctrl-C (make run)")
    p.set_defaults(func=_stack)
    for p in cli.add_fetch_commands(sub):
        p.add_argument("mirror", help="a folder laid out like the providers' sites, served on loopback")
        p.set_defaults(func=_fetch)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}  # the one place the environment is read
    try:
        Settings.from_env(env)
    except SettingsError as exc:
        sys.exit(f"devtools {args.command}: {exc}")
    args.func(args, env)


if __name__ == "__main__":
    main()
