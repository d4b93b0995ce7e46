"""Jinja2 templates of the product, for the API's pages and every mail (flashes/smtp.py, services/delivery/messages.py):
HTML autoescaped, undefined names an error, times as UTC or MJD."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from flashes.timeconv import datetime_to_mjd


def as_datetime(time: str | datetime) -> datetime:
    """A datetime, or an ISO 8601 text (as the API's rows and QuestDB's answers carry) read as one."""
    return datetime.fromisoformat(time.replace("Z", "+00:00")) if isinstance(time, str) else time


def utc(time: str | datetime | None) -> str:
    return as_datetime(time).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if time else "–"


def mjd_number(value: str | datetime | float | None) -> str:
    if value is None or value == "":
        return "–"
    return f"{value if isinstance(value, float | int) else datetime_to_mjd(as_datetime(value)):.2f}"


def mjd(value: str | datetime | float) -> str:
    return f"MJD {mjd_number(value)}"


def environment(package: str, **filters: Callable[..., Any]) -> Environment:
    """Templates `*.j2` of `{package}/templates`; the `*.html.j2` ones are autoescaped."""
    env = Environment(
        loader=PackageLoader(package),
        autoescape=select_autoescape(["html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({"utc": utc, "mjd": mjd, **filters})  # a caller may format MJDs its own way
    return env
