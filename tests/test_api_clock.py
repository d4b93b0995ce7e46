"""The API reads the services' clock (`flashes.clock`, shifted by `clock_offset_days` in simulations): a test alert
is raised and due at its time, and a window without an end ends at it. Pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flashes import catalogue, clock
from flashes.settings import Settings
from services.api import subscribing
from services.api.params import window


def test_a_test_alert_is_dated_by_the_services_clock(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, clock_offset_days=-100.0)
    record = next(r for r in catalogue.load(settings) if r.maxi)
    before = clock.now(settings)
    alert = subscribing.test_alert(settings, record)
    assert before <= alert.raised_at <= clock.now(settings)
    assert alert.raised_at < datetime.now(UTC) - timedelta(days=99)  # 100 days behind the wall clock, as simulated
    assert alert.time == alert.onset_time == alert.raised_at and alert.test


def test_a_window_without_an_end_ends_at_the_clock_given() -> None:
    now = datetime(2020, 5, 1, tzinfo=UTC)
    assert window(None, None, timedelta(days=365), now) == (now - timedelta(days=365), now)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    assert window(start, None, None, now) == (start, now)
