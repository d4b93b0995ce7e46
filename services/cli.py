"""The `flashes` command line, one subcommand per job: run a service (services/registry.py), fetch, backfill, sync
a mirror, refresh the catalogue, export schemas, evaluate, listen, rescore, grant Kafka ACLs. It lives with the
services because it starts them; `python -m devtools` reuses its fetch commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

import schemas
from flashes import safety, topics
from flashes.errors import InfraError, SettingsError, UnsafeSettings
from flashes.settings import Settings
from flashes.topics import INSTRUMENTS
from services import registry
from services.registry import SERVICES


def _run(args: argparse.Namespace, settings: Settings) -> None:
    """Run one service in the foreground until SIGTERM/Ctrl-C; unsafe settings exit with the reasons, no traceback."""
    try:
        registry.run(args.service, settings)
    except UnsafeSettings as exc:
        sys.exit(f"flashes run {args.service}: {exc}")


def _kafka_acls(args: argparse.Namespace, settings: Settings) -> None:
    """The one-shot step before the services start (compose): every topic and every service's ACLs, as admin;
    a broker still starting (or away) is waited for, an ACL the broker refuses ends it with the reason."""
    from flashes import kafka_acl
    from flashes.kafka import run_restarting

    async def grant() -> None:
        print(f"{await kafka_acl.apply(settings)} ACLs in place for {', '.join(kafka_acl.PLAN)}")

    try:
        run_restarting("kafka-acls", grant)
    except InfraError as exc:
        sys.exit(f"flashes kafka-acls: {exc}")


def fetch(args: argparse.Namespace, settings: Settings) -> None:
    """One round (--once), the schedule (no --once), or everything again (backfill); `python -m devtools fetch`
    calls it with settings that point at a served mirror."""
    from services.fetcher.service import fetch_once, run_forever

    try:
        safety.require_safe(settings, "fetcher")
        if args.command == "fetch" and not args.once:
            asyncio.run(run_forever(settings))
            return
        report = asyncio.run(
            fetch_once(
                settings, args.source or None, args.instrument or None, full=args.command == "backfill", progress=True
            )
        )
    except (ValueError, UnsafeSettings) as exc:
        sys.exit(f"flashes {args.command}: {exc}")
    print(
        f"{report.series} series with new points ({report.points} points), {report.unchanged} unchanged, "
        f"{report.rejected} bad lines to the dead-letter topic, {len(report.errors)} failures"
    )
    for error in report.errors:
        print(f"  {error}")


def _mirror(args: argparse.Namespace, settings: Settings) -> None:
    from services.fetcher.mirror_sync import sync

    try:
        safety.require_safe(settings, "fetcher")
    except UnsafeSettings as exc:
        sys.exit(f"flashes mirror sync: {exc}")
    report = asyncio.run(sync(settings, Path(args.folder), args.source or None, args.instrument or None))
    print(f"{report.series} files written to {args.folder}, {len(report.errors)} failures")
    for error in report.errors:
        print(f"  {error}")


def _catalogue(args: argparse.Namespace, settings: Settings) -> None:
    from flashes import catalogue

    names = None
    if args.online:
        from flashes import heasarc
        from flashes.errors import HeasarcError

        try:
            names = heasarc.class_names(settings.heasarc_vo_url, settings.http_timeout_s)
        except HeasarcError as exc:
            print(
                f"flashes catalogue build: {exc}; the classes are named from the bundled table "
                f"{settings.heasarc_classes}",
                file=sys.stderr,
            )
    print(catalogue.write(settings, names))
    if names:
        differing = catalogue.differing_names(catalogue.HeasarcClasses(settings.heasarc_classes), names)
        print(
            f"{len(names)} class names from HEASARC; {len(differing)} of them in other words than the bundled "
            f"table's{': ' if differing else ''}{', '.join(map(str, differing))}"
        )


def _schemas(args: argparse.Namespace, settings: Settings) -> None:
    from flashes.schema_export import export

    for path in export():
        print(path)


def _evaluate(args: argparse.Namespace, settings: Settings) -> None:
    import json

    from evaluation.metrics import TARGET_FALSE_RATE
    from evaluation.report import table
    from evaluation.run import evaluate

    if args.target_false_rate is not None and not args.cv:
        sys.exit("flashes evaluate: --target-false-rate is the level selection of --cv; add --cv")
    target = TARGET_FALSE_RATE if args.target_false_rate is None else args.target_false_rate
    if not target >= 0:  # nan too
        sys.exit(f"flashes evaluate: --target-false-rate {args.target_false_rate} is not a rate (≥ 0)")
    try:
        result = evaluate(
            settings, Path(args.mirror), Path(args.events), cv=args.cv, target_false_rate=target, progress=True
        )
    except ValueError as exc:
        sys.exit(f"flashes evaluate: {exc}")
    print(json.dumps(result, indent=1) if args.json else table(result))


def _rescore(args: argparse.Namespace, settings: Settings) -> None:
    """Rebuild the relevance models of the selected sources from their stored history (relevance stopped)."""
    from aiokafka.errors import KafkaError

    from flashes.errors import StateRestoreError
    from services.relevance.rescore import WorkersRunning, rescore

    try:
        report = asyncio.run(rescore(settings, args.source))
    except (WorkersRunning, StateRestoreError, KafkaError) as exc:
        sys.exit(f"flashes rescore: {exc}")
    points = sum(report.rebuilt.values())
    print(f"{len(report.rebuilt)} series rebuilt from {points} stored points in {report.seconds:.1f} s")
    for series, n in report.rebuilt.items():
        print(f"  {series}: {n} points")
    problems = [
        *(f"{s}: no stored state (its workers rebuild it before its next point)" for s in report.unknown),
        *(
            f"{s}: the stored history ends before what its state had scored (the sink is behind); "
            "left as it is, run rescore again later"
            for s in report.behind
        ),
        *(f"{s}: its state record does not decode; left as it is" for s in report.unreadable),
    ]
    for problem in problems:
        print(f"  {problem}")
    if report.behind or report.unreadable:
        sys.exit(1)


def _since(text: str) -> datetime:
    """--since: ISO 8601 (no zone: UTC) or an MJD number (UTC)."""
    from flashes.timeconv import datetime_to_mjd, mjd_to_datetime

    try:
        mjd = float(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            sys.exit(
                f"flashes listen: --since {text!r} is neither an ISO 8601 time (e.g. 2024-05-01T12:00:00, "
                "UTC unless it has a zone) nor an MJD number (e.g. 60431.5)"
            )
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    first, last = (datetime_to_mjd(datetime(y, 1, 1, tzinfo=UTC)) for y in (1, 9999))
    if not first <= mjd <= last:  # nan too
        sys.exit(
            f"flashes listen: --since {text!r}: MJD {mjd} is not a time in the years 1 to 9999 "
            f"(MJD {first:.0f} to {last:.0f})"
        )
    return mjd_to_datetime(mjd)


def _alert_line(alert: schemas.Alert) -> str:
    time = alert.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"{time}  {alert.alert_type} #{alert.record_number}  {alert.source_name}  "
        f"peak {alert.peak_relevance:.2f}  {','.join(alert.reasons)}  {alert.explanation}"
    )


LISTEN_FILTERS = {
    "sources": "--source",
    "tags": "--tag",
    "instruments": "--instrument",
    "reasons": "--reason",
    "alert_types": "--alert-type",
    "min_relevance": "--min-relevance",
    "cone": "--cone",
}


def _listen_filters(args: argparse.Namespace) -> schemas.SubscriptionFilters:
    """The listen options as a subscription's filters (history included unless --news-only); a value out of
    bounds exits naming the option and the bound."""
    try:
        return schemas.SubscriptionFilters(
            sources=args.source or [],
            tags=args.tag or [],
            instruments=args.instrument or [],
            reasons=args.reason or [],
            alert_types=args.alert_type or [],
            min_relevance=args.min_relevance,
            cone=None if args.cone is None else dict(zip(("ra", "dec", "radius"), args.cone)),
            history=not args.news_only,
        )
    except ValidationError as exc:
        sys.exit("flashes listen: " + "; ".join(_filter_error(*e["loc"], message=e["msg"]) for e in exc.errors()))


def _filter_error(field: str | int, *part: str | int, message: str) -> str:
    """One refused filter: its option (a cone's coordinate named, e.g. '--cone dec') and the bound it breaks."""
    coordinate = f" {part[0]}" if field == "cone" and part else ""
    return f"{LISTEN_FILTERS[str(field)]}{coordinate}: {message}"


def _listen(args: argparse.Namespace, settings: Settings) -> None:
    """Print alerts from Kafka as they come (or replay them), one per line."""
    from aiokafka.errors import KafkaError

    from flashes.client import AlertListener

    since = _since(args.since) if args.since is not None else None
    listener = AlertListener.from_settings(
        settings, _listen_filters(args), since=since, from_beginning=args.from_beginning, exit_at_end=args.exit_at_end
    )

    async def show() -> None:
        async for alert in listener:
            print(topics.ALERTS.encode(alert).decode() if args.json else _alert_line(alert), flush=True)

    try:
        asyncio.run(show())
    except KeyboardInterrupt:
        sys.exit(130)
    except KafkaError as exc:
        sys.exit(f"flashes listen: Kafka at {listener.bootstrap_servers}: {exc}")


def add_selection(p: argparse.ArgumentParser) -> None:
    """--source / --instrument, as fetch, backfill and mirror sync take them."""
    p.add_argument("--source", action="append", help="source id (repeatable); default: all")
    p.add_argument("--instrument", action="append", choices=INSTRUMENTS, help="repeatable")


def add_fetch_commands(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """`fetch` and `backfill` (here, and with a mirror folder in `python -m devtools`)."""
    parsers = []
    for name, text in (
        ("fetch", "fetch new and revised points of the catalogue's lightcurves and publish them"),
        ("backfill", "fetch and publish the full history of every selected series"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "fetch":
            p.add_argument("--once", action="store_true", help="one round, then exit (default: on the schedule)")
        add_selection(p)
        p.set_defaults(func=fetch)
        parsers.append(p)
    return parsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashes", description="FLASHES stream: X-ray monitor alerts")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one service in the foreground")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=_run)
    add_fetch_commands(sub)
    p = sub.add_parser("mirror", help="provider mirrors")
    p.add_argument("action", choices=["sync"], help="sync: download the catalogue's live files into FOLDER")
    p.add_argument("folder")
    add_selection(p)
    p.set_defaults(func=_mirror)
    p = sub.add_parser("catalogue", help="build the source catalogue from data/master_table.csv")
    p.add_argument("action", choices=["build"])
    p.add_argument(
        "--online",
        action="store_true",
        help="name the classes from HEASARC's class table (astroquery); the bundled table when it "
        "cannot be had and for the codes it lacks",
    )
    p.set_defaults(func=_catalogue)
    p = sub.add_parser("schemas", help="export the topic contracts as JSON Schema into schemas/")
    p.add_argument("action", choices=["export"])
    p.set_defaults(func=_schemas)
    p = sub.add_parser("evaluate", help="score a mirror folder in time order against labelled events")
    p.add_argument("--mirror", required=True, help="a folder per instrument, or the providers' site layout")
    p.add_argument("--events", required=True, help="CSV with source_id,kind,onset_mjd,reference")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument(
        "--cv",
        action="store_true",
        help="also leave-one-source-out cross-validation: every level (model alert_sigma, formula "
        "threshold, median σ) chosen on the other sources, then the held-out source scored with it",
    )
    p.add_argument(
        "--target-false-rate",
        type=float,
        metavar="X",
        help="with --cv: each level is the least strict whose false-alert episodes per source-year on "
        "the training sources are ≤ X, else the strictest (default 0.5)",
    )
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("listen", help="print alerts from Kafka as they come, or replay them")
    p.add_argument("--source", action="append", metavar="ID", help="source id (repeatable); default: all")
    p.add_argument("--tag", action="append", help="alerts of sources with any of these tags (repeatable)")
    p.add_argument(
        "--instrument",
        action="append",
        choices=INSTRUMENTS,
        help="alerts with a series of any of these instruments (repeatable)",
    )
    p.add_argument(
        "--reason",
        action="append",
        choices=get_args(schemas.Reason),
        help="alerts with any of these reasons (repeatable)",
    )
    p.add_argument("--alert-type", action="append", choices=get_args(schemas.AlertType), help="repeatable")
    p.add_argument(
        "--min-relevance", type=float, default=0.0, metavar="X", help="lowest peak relevance of the episode (0..1)"
    )
    p.add_argument(
        "--cone",
        nargs=3,
        type=float,
        metavar=("RA", "DEC", "RADIUS"),
        help="sources within RADIUS of (RA, DEC), all in degrees (ICRS)",
    )
    p.add_argument(
        "--news-only",
        action="store_true",
        help="only news, as a subscription without history gets (default: history too)",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--since",
        metavar="TIME",
        help="alerts published since TIME: ISO 8601 (UTC unless it has a zone) or MJD; default: new alerts only",
    )
    start.add_argument("--from-beginning", action="store_true", help="every stored alert")
    p.add_argument("--exit-at-end", action="store_true", help="stop at the last alert published before the start")
    p.add_argument("--json", action="store_true", help="one JSON object per line, as on the topic")
    p.set_defaults(func=_listen)
    p = sub.add_parser("rescore", help="rebuild relevance models from the stored history (stop relevance first)")
    p.add_argument("--source", action="append", metavar="ID", help="source id (repeatable); default: all")
    p.set_defaults(func=_rescore)
    p = sub.add_parser("kafka-acls", help="create every topic and each service user's ACLs (log in as admin)")
    p.set_defaults(func=_kafka_acls)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)  # the one place the environment is read
    except SettingsError as exc:
        sys.exit(f"flashes {args.command}: {exc}")
    args.func(args, settings)
