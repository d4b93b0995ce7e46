"""The `flashes` command line: one subcommand per job."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from flashes.errors import InfraError
from flashes import services
from flashes.services import SERVICES
from flashes.settings import get_settings
from flashes.topics import INSTRUMENTS



def _infra(args: argparse.Namespace) -> None:
    from flashes import infra

    settings = get_settings()
    try:
        {"fetch": lambda: print(infra.fetch_jars(settings)),
         "start": lambda: infra.start(settings),
         "stop": lambda: infra.stop(settings),
         "status": lambda: print(infra.status(settings))}[args.action]()
    except InfraError as exc:
        sys.exit(f"flashes infra {args.action}: {exc}")


def _run(args: argparse.Namespace) -> None:
    """Run one service in the foreground until SIGTERM/Ctrl-C."""
    services.run(args.service, get_settings())


def _fetch(args: argparse.Namespace) -> None:
    """One round (--once), the schedule (no --once), or everything again (backfill)."""
    from flashes import mirror
    from services.fetcher.service import fetch_once, run_forever

    server = None
    if args.mirror:
        server, base = mirror.serve(Path(args.mirror))
        os.environ.update(mirror.provider_env(base))
        get_settings.cache_clear()
    settings = get_settings()
    try:
        if args.command == "fetch" and not args.once:
            asyncio.run(run_forever(settings))
            return
        report = asyncio.run(fetch_once(settings, args.source or None, args.instrument or None,
                                        full=args.command == "backfill", progress=True))
    except ValueError as exc:
        sys.exit(f"flashes {args.command}: {exc}")
    finally:
        if server:
            server.shutdown()
    print(f"{report.series} series with new points ({report.points} points), {report.unchanged} unchanged, "
          f"{report.rejected} bad lines to the dead-letter topic, {len(report.errors)} failures")
    for error in report.errors:
        print(f"  {error}")


def _mirror(args: argparse.Namespace) -> None:
    from services.fetcher.mirror_sync import sync

    report = asyncio.run(sync(get_settings(), Path(args.folder), args.source or None, args.instrument or None))
    print(f"{report.series} files written to {args.folder}, {len(report.errors)} failures")
    for error in report.errors:
        print(f"  {error}")


def _catalogue(args: argparse.Namespace) -> None:
    from flashes import catalogue

    print(catalogue.write(get_settings()))


def _schemas(args: argparse.Namespace) -> None:
    from flashes.schema_export import export

    for path in export():
        print(path)


def _evaluate(args: argparse.Namespace) -> None:
    import json

    from services.relevance.evaluate import evaluate, table

    result = evaluate(get_settings(), Path(args.mirror), Path(args.events))
    print(json.dumps(result, indent=1) if args.json else table(result))


def _stack(args: argparse.Namespace) -> None:
    from flashes.stack import run_stack

    run_stack(get_settings())


def _add_selection(p: argparse.ArgumentParser) -> None:
    """--source / --instrument, as fetch, backfill and mirror sync take them."""
    p.add_argument("--source", action="append", help="source id (repeatable); default: all")
    p.add_argument("--instrument", action="append", choices=INSTRUMENTS, help="repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashes", description="FLASHES stream: X-ray monitor alerts")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("infra", help="Kafka and QuestDB on loopback from Maven Central jars")
    p.add_argument("action", choices=["fetch", "start", "stop", "status"])
    p.set_defaults(func=_infra)
    p = sub.add_parser("run", help="run one service in the foreground")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=_run)
    for name, text in (("fetch", "fetch new and revised points of the catalogue's lightcurves and publish them"),
                       ("backfill", "fetch and publish the full history of every selected series")):
        p = sub.add_parser(name, help=text)
        if name == "fetch":
            p.add_argument("--once", action="store_true", help="one round, then exit (default: on the schedule)")
        _add_selection(p)
        p.add_argument("--mirror", help="a folder laid out like the providers' sites, served locally")
        p.set_defaults(func=_fetch)
    p = sub.add_parser("mirror", help="provider mirrors")
    p.add_argument("action", choices=["sync"], help="sync: download the catalogue's live files into FOLDER")
    p.add_argument("folder")
    _add_selection(p)
    p.set_defaults(func=_mirror)
    p = sub.add_parser("catalogue", help="build the source catalogue from data/master_table.csv")
    p.add_argument("action", choices=["build"])
    p.set_defaults(func=_catalogue)
    p = sub.add_parser("schemas", help="export the topic contracts as JSON Schema into schemas/")
    p.add_argument("action", choices=["export"])
    p.set_defaults(func=_schemas)
    p = sub.add_parser("evaluate", help="score a mirror folder in time order against labelled events")
    p.add_argument("--mirror", required=True, help="a folder per instrument, or the providers' site layout")
    p.add_argument("--events", required=True, help="CSV with source_id,kind,onset_mjd,reference")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("stack", help="infrastructure, every service and the sample mirror, until Ctrl-C")
    p.set_defaults(func=_stack)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)
