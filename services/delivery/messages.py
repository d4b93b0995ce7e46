"""The delivery service's mails: one alert with its lightcurve inline, or a digest of alerts held back.

Both carry one-click unsubscribe headers (RFC 8058); the unsubscribe URL must accept a POST.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from email.message import EmailMessage

import asyncpg
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import schemas
from flashes.questdb import naive_utc
from flashes.settings import Settings
from flashes.smtp import make_id, new_message
from flashes.templating import environment
from flashes.topics import catalogue_series
from flashes.units import MAIN_BAND

log = logging.getLogger(__name__)
WINDOW_DAYS = 60
CONNECT_TIMEOUT_S, QUERY_TIMEOUT_S = 10.0, 30.0
LINK_LABELS = {"source": "Source page", "api": "API", "grafana": "Grafana"}
Points = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _point(p: schemas.AlertPoint) -> str:
    digits = 1 if p.units == "mCrab" else 3
    return f"{p.value:.{digits}f} ± {p.error:.{digits}f} {p.units}"


def _reasons(alert: schemas.Alert) -> str:
    return ", ".join(r.replace("_", " ") for r in alert.reasons)


_ENV = environment("services.delivery", point=_point, reasons=_reasons)


async def recent_points(settings: Settings, alert: schemas.Alert) -> Points:
    """series -> (MJD, mCrab, error): the source's instrument series, main band, 60 days up to the alert.

    Read as QuestDB's read-only user over the PostgreSQL wire, every value a bind parameter: the SQL
    text holds only names and placeholders written here, so no source name can change it, and the
    reader could not write if it did. The alert's own last points are merged in, as the sink may not
    have written the newest yet, and stand alone when QuestDB fails, so the mail still goes out.
    """
    series = {catalogue_series(instrument, alert.source_id): band for instrument, band in MAIN_BAND.items()}
    pairs = " OR ".join(f"(series = ${i} AND band = ${i + 1})" for i in range(3, 3 + 2 * len(series), 2))
    sql = (
        f"SELECT series, mjd, flux_mcrab value, error_mcrab error FROM lightcurve "
        f"WHERE ts >= $1 AND ts <= $2 AND ({pairs}) ORDER BY ts"
    )
    end = naive_utc(alert.time)
    args = [end - timedelta(days=WINDOW_DAYS), end, *(value for pair in series.items() for value in pair)]
    try:
        connection = await asyncpg.connect(
            host=settings.questdb_host,
            port=settings.questdb_pg_port,
            user=settings.questdb_reader_user,
            password=settings.questdb_reader_password.get_secret_value(),
            database="qdb",
            timeout=CONNECT_TIMEOUT_S,
        )
        try:
            rows = [dict(r) for r in await connection.fetch(sql, *args, timeout=QUERY_TIMEOUT_S)]
        finally:
            await connection.close()
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning(
            "lightcurve of %s not read, the mail shows the alert's last points: %s: %s",
            alert.source_id,
            type(exc).__name__,
            exc,
        )
        rows = []
    rows += [p.model_dump() for p in alert.last_points if p.series in series]
    frame = (
        pd.DataFrame(rows, columns=["series", "mjd", "value", "error"])
        .drop_duplicates(["series", "mjd"])
        .sort_values("mjd", kind="stable")
    )
    return {
        name: tuple(g[c].to_numpy(dtype=float) for c in ("mjd", "value", "error"))
        for name, g in frame.groupby("series", sort=False)
    }


def lightcurve_png(alert: schemas.Alert, points: Points) -> bytes:
    """A 600x300 px PNG of the 60 days up to the alert, marking the onset and the alert.

    A bare Figure rendered by Agg (savefig to PNG), so no pyplot state is shared between threads.
    """
    fig = Figure(figsize=(6, 3), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for series, (mjd, value, error) in points.items():
        ax.errorbar(mjd, value, yerr=error, fmt="o", markersize=3, elinewidth=0.8, label=series)
    ax.axvline(alert.onset_mjd, color="tab:orange", linestyle="--", label=f"onset {alert.onset_mjd:.2f}")
    ax.axvline(alert.mjd, color="tab:red", label=f"alert {alert.mjd:.2f}")
    ax.set(title=alert.source_name, xlabel="MJD", ylabel="mCrab", xlim=(alert.mjd - WINDOW_DAYS, alert.mjd + 1))
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.legend(fontsize="x-small", loc="upper left")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _subject(alert: schemas.Alert) -> str:
    test = "[TEST] " if alert.test else ""
    return f"{test}[FLASHES] {alert.alert_type}: {alert.source_name} {_reasons(alert)}, relevance {alert.relevance:.2f}"


def _add_unsubscribe(message: EmailMessage, unsubscribe_url: str) -> None:
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def _render(name: str, **context: object) -> tuple[str, str]:
    """The text and HTML versions of a template pair."""
    text, html = (
        _ENV.get_template(f"{name}.{kind}.j2").render(context, link_labels=LINK_LABELS) for kind in ("txt", "html")
    )
    return text, html


def alert_message(
    settings: Settings, to: str, alert: schemas.Alert, unsubscribe_url: str, png: bytes, message_id: str
) -> EmailMessage:
    """Text + HTML with the lightcurve PNG inline (multipart/alternative, the HTML in multipart/related)."""
    cid = make_id(settings)
    text, html = _render("alert", alert=alert, unsubscribe_url=unsubscribe_url, cid=cid[1:-1])
    message = new_message(settings, to, _subject(alert), text, html, message_id)
    _add_unsubscribe(message, unsubscribe_url)
    message["X-Flashes-Alert-Id"] = alert.message_id
    body = message.get_body(preferencelist=("html",))
    assert body is not None  # new_message gave it one
    body.add_related(png, "image", "png", cid=cid, filename=f"{alert.source_id}-lightcurve.png")
    return message


def digest_message(
    settings: Settings, to: str, alerts: list[schemas.Alert], unsubscribe_url: str, message_id: str
) -> EmailMessage:
    """One mail listing the alerts held back by the daily cap, oldest first as given."""
    count = f"{len(alerts)} more alert{'' if len(alerts) == 1 else 's'}"
    text, html = _render("digest", alerts=alerts, count=count, unsubscribe_url=unsubscribe_url)
    message = new_message(settings, to, f"[FLASHES] digest: {count}", text, html, message_id)
    _add_unsubscribe(message, unsubscribe_url)
    return message
