"""Mails through a real SMTP server (aiosmtpd on loopback): alert, confirmation, digest, and failures; the
alert mail's chart read from a real QuestDB."""

from __future__ import annotations

import email
import html
import struct
import traceback
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

import schemas
from devtools.infra import free_port
from devtools.observe import Mailbox, wait_until
from flashes import questdb
from flashes.errors import DeliveryError
from flashes.settings import Settings
from flashes.smtp import confirmation_message, make_id, send
from flashes.timeconv import mjd_to_datetime
from services.delivery.messages import alert_message, digest_message, lightcurve_png, recent_points

TO = "alice@example.org"
REFUSED = "refused@example.org"
# Longer than a header line: it must still arrive as one plain token, not as RFC 2047 words.
UNSUBSCRIBE_URL = "https://flashes.example.org/subscriptions/" + "k" * 43 + "/unsubscribe?token=" + "t" * 40
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLE = schemas.EXAMPLE_ALERT


def refused(address: str) -> str | None:
    """The relay's reply refusing REFUSED (None: every other recipient is accepted)."""
    return f"550 5.1.1 <{address}>: Recipient address rejected" if address == REFUSED else None


@pytest.fixture
def smtp() -> Iterator[tuple[Settings, Mailbox]]:
    recorder = Mailbox(refuse=refused)
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield Settings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_user="", smtp_security="none"), recorder
    controller.stop()


@pytest.fixture
def alert() -> schemas.Alert:
    return schemas.Alert.model_validate_json(EXAMPLE.read_text())


async def deliver(
    settings: Settings, recorder: Mailbox, message: EmailMessage
) -> tuple[EmailMessage, list[bytes], str, str]:
    """Send; return the message as the server got it, its raw header lines, its text and HTML bodies."""
    await send(settings, message)
    [(recipients, raw)] = recorder.received
    assert recipients == [TO]
    received = email.message_from_bytes(raw, policy=policy.default)
    assert received["To"] == TO
    return (
        received,
        raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"),
        received.get_body(preferencelist=("plain",)).get_content(),
        received.get_body(preferencelist=("html",)).get_content(),
    )


def assert_unsubscribe_headers(header_lines: list[bytes]) -> None:
    """Both RFC 8058 headers, each exactly and on one line as sent."""
    assert f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>".encode() in header_lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in header_lines


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    return struct.unpack(">II", png[16:24])  # the IHDR chunk: width, height


async def test_alert_mail_arrives_with_text_html_and_inline_lightcurve(smtp, alert) -> None:
    settings, recorder = smtp
    closed = settings.model_copy(update={"questdb_pg_port": free_port()})
    points = await recent_points(closed, alert)  # QuestDB unreachable: the alert's own last points
    assert points["swift_maxij1535-571"][1].tolist() == [80.5, 401.2, 1022.7]
    assert points["maxi_maxij1535-571"][2].tolist() == [9.8, 12.5, 15.0]
    png = lightcurve_png(alert, points)

    message = alert_message(settings, TO, alert, UNSUBSCRIBE_URL, png, make_id(settings, "sub/" + alert.message_id))
    received, headers, text, body = await deliver(settings, recorder, message)

    assert received["Subject"] == "[FLASHES] update: MAXI J1535-571 brightening, relevance 0.97"
    assert received["X-Flashes-Alert-Id"] == "maxij1535-571@57998.50000#2"
    # The same Message-ID for the same subscription and alert record, so a repeat is recognisably the same mail.
    assert received["Message-ID"] == make_id(settings, "sub/" + alert.message_id) != make_id(settings, "other")
    assert received["Message-ID"].endswith("@localhost>")
    assert_unsubscribe_headers(headers)
    for part, escape in ((text, str), (body, html.escape)):
        assert escape(alert.explanation) in part
        assert escape(alert.change) in part
        assert "401.2 ± 22.7 mCrab" in part
        assert "MJD 57998.50" in part and "2017-09-02 12:00 UTC" in part
        assert escape(alert.links["grafana"]) in part
        assert escape(UNSUBSCRIBE_URL) in part
    related = received.get_body(preferencelist=("related",))
    [image] = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    assert image.get_content() == png and png_size(png) == (600, 300)
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in body


def test_test_alert_subject_and_lightcurve_without_points(alert) -> None:
    message = alert_message(Settings(), TO, alert.model_copy(update={"test": True}), UNSUBSCRIBE_URL, b"", "<t@x>")
    assert message["Subject"].startswith("[TEST] [FLASHES] update: MAXI J1535-571")
    assert png_size(lightcurve_png(alert, {})) == (600, 300)


async def test_confirmation_mail_carries_the_link_in_both_parts(smtp) -> None:
    settings, recorder = smtp
    url = "https://flashes.example.org/subscriptions/confirm?code=abc&sig=xyz"
    summary = "MAXI J1535-571 and black holes, relevance at least 0.8"
    received, _, text, body = await deliver(settings, recorder, confirmation_message(settings, TO, url, summary))
    assert received["Subject"] == "Confirm your FLASHES stream alert subscription"
    assert received["From"] == settings.mail_from
    assert url in text and f'href="{html.escape(url)}"' in body
    assert summary in text and summary in body


async def test_digest_lists_every_alert(smtp, alert) -> None:
    settings, recorder = smtp
    alerts = [alert.model_copy(update={"alert_id": f"src{i}@5800{i}.50000", "record_number": i}) for i in range(1, 4)]
    message = digest_message(settings, TO, alerts, UNSUBSCRIBE_URL, make_id(settings))
    received, headers, text, body = await deliver(settings, recorder, message)
    assert received["Subject"] == "[FLASHES] digest: 3 more alerts"
    assert_unsubscribe_headers(headers)
    for a in alerts:
        assert f"{a.alert_id}#{a.record_number}" in text and f"{a.alert_id}#{a.record_number}" in body


async def test_send_to_a_closed_port_raises_without_the_address() -> None:
    """The failure reaches the subscriber's delivery list: it names the kind, not the relay's host or port."""
    port = free_port()
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_user="", smtp_security="none")
    with pytest.raises(DeliveryError) as caught:
        await send(settings, confirmation_message(settings, TO, "https://x/confirm", "everything"))
    assert str(caught.value) == "mail not sent: connection refused"
    assert TO not in "".join(traceback.format_exception(caught.value))


async def test_refused_recipient_raises_without_the_address(smtp) -> None:
    settings, recorder = smtp
    with pytest.raises(DeliveryError) as caught:
        await send(settings, confirmation_message(settings, REFUSED, "https://x/confirm", "everything"))
    assert "550" in str(caught.value)
    assert REFUSED not in "".join(traceback.format_exception(caught.value))
    assert recorder.received == []


def lightcurve_rows(settings: Settings, rows: list[tuple[str, str, float, float, float]]) -> None:
    """(series, band, MJD, mCrab, error) rows into QuestDB's lightcurve table, visible once this returns."""
    with questdb.sender(settings) as sender:
        for series, band, mjd, value, error in rows:
            sender.row(
                "lightcurve",
                symbols={"series": series, "band": band},
                columns={"mjd": mjd, "flux_mcrab": value, "error_mcrab": error},
                at=mjd_to_datetime(mjd),
            )
        sender.flush()
    wait_until(lambda: questdb.wal_applied(settings), "QuestDB to apply the rows")


def renamed(alert: schemas.Alert, source_id: str) -> schemas.Alert:
    """The example alert about another source, its last points renamed with it."""
    points = [p.model_copy(update={"series": p.series.replace(alert.source_id, source_id)}) for p in alert.last_points]
    return alert.model_copy(update={"source_id": source_id, "last_points": points})


async def test_recent_points_merge_questdb_main_bands_with_the_alerts_own(settings: Settings, alert) -> None:
    """QuestDB's 60 days of the main bands (read as the read-only user over the PostgreSQL wire, not over
    HTTP) plus the alert's newest points, each point once; when the reader is refused, the alert's alone."""
    alert = renamed(alert, "chart-merge")
    lightcurve_rows(
        settings,
        [
            ("maxi_chart-merge", "2-20", 57950.5, 20.0, 5.0),
            ("maxi_chart-merge", "2-20", 57997.5, 30.1, 9.8),  # also among the alert's own
            ("maxi_chart-merge", "2-4", 57960.5, 99.0, 1.0),  # not the main band
            ("maxi_chart-merge", "2-20", 57930.5, 99.0, 1.0),  # before the 60 days
            ("maxi_other", "2-20", 57960.5, 99.0, 1.0),
        ],
    )  # another source
    no_http = settings.model_copy(update={"questdb_http_port": free_port()})
    mjd, value, error = (await recent_points(no_http, alert))["maxi_chart-merge"]
    assert (mjd.tolist(), value.tolist(), error.tolist()) == (
        [57950.5, 57997.5, 57998.5, 57999.5],
        [20.0, 30.1, 210.3, 612.8],
        [5.0, 9.8, 12.5, 15.0],
    )
    refused = settings.model_copy(update={"questdb_reader_password": SecretStr("not-the-password")})
    assert (await recent_points(refused, alert))["maxi_chart-merge"][0].tolist() == [57997.5, 57998.5, 57999.5]
