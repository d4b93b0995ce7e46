"""Mail as the API (confirmation) and the delivery service (alerts, digests) send it: messages with their
headers, the double opt-in mail, and SMTP sending with the configured transport security.

No e-mail address may appear in a log line or an error: `send` reports failures as a
DeliveryError whose message has every address redacted and no chained exception; `reason` is
that redaction, also for the delivery service's reasons.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage

import aiosmtplib

from flashes.errors import CLOSED, CONNECTION_REFUSED, FAILED, TIMED_OUT, TLS, DeliveryError
from flashes.safety import cleartext_smtp
from flashes.settings import Settings
from flashes.templating import environment

SMTP_TIMEOUT_S = 10.0
ADDRESS = re.compile(r"[^\s<>@\"',;:]+@[^\s<>@\"',;:]+")


def reason(exc: Exception, private: Iterable[str | None] = ()) -> str:
    """Why something failed, fit for a log, a table or a dead letter: '<ExceptionClass>: <message>' (a
    DeliveryError's message alone: it says it already), with the `private` values (a subscriber's address, URL,
    host; longest first) and anything like an e-mail address taken out."""
    text = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
    for value in sorted({v for v in private if v}, key=len, reverse=True):
        text = text.replace(value, "<subscriber>")
    return ADDRESS.sub("<address>", text)


_ENV = environment("flashes")


class UnencodedHeader(UnstructuredHeader):
    """A header written as it is, on one line (RFC 5322 allows up to 998 characters).

    Python folds a word longer than a line (a URL) into RFC 2047 encoded words, which mail
    clients do not decode in List-Unsubscribe: the link would be lost.
    """

    def fold(self, *, policy: email.policy.Policy) -> str:
        # typeshed's UnstructuredHeader is no BaseHeader (the registry mixes that in): `name` comes from it
        return f"{self.name}: {self}{policy.linesep}"  # type: ignore[attr-defined]


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", UnencodedHeader)  # type: ignore[arg-type]  # typeshed, as above
POLICY = email.policy.default.clone(header_factory=_HEADERS)


def new_message(
    settings: Settings, to: str, subject: str, text: str, html: str, message_id: str | None = None
) -> EmailMessage:
    """A text + HTML (multipart/alternative) message from the service, with Date and Message-ID (new unless
    given)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or make_id(settings)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def make_id(settings: Settings, seed: str | None = None) -> str:
    """A `<...@domain>` id in the sender's domain (for Message-ID and inline Content-IDs): new each time, or
    the same for the same `seed`, so that a mail sent again is recognisably the same message (Gmail and
    duplicate filters such as `formail -D` drop a repeated Message-ID)."""
    domain = email.utils.parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    if seed is None:
        return email.utils.make_msgid(domain=domain)
    return f"<{hashlib.sha256(seed.encode()).hexdigest()[:32]}@{domain}>"


def confirmation_message(settings: Settings, to: str, confirm_url: str, summary: str) -> EmailMessage:
    """The double opt-in mail: nothing is sent to `to` until `confirm_url` is opened."""
    context = {"confirm_url": confirm_url, "summary": summary, "api_url": settings.api_url}
    return new_message(
        settings,
        to,
        "Confirm your FLASHES stream alert subscription",
        _ENV.get_template("confirmation.txt.j2").render(context),
        _ENV.get_template("confirmation.html.j2").render(context),
    )


async def send(settings: Settings, message: EmailMessage) -> None:
    """Send through the configured SMTP server, with the transport security of `smtp_security`: starttls
    refuses a server that does not offer STARTTLS (aiosmtplib's start_tls=True; its default, None, would go on
    in clear), tls speaks TLS from the first byte, none is cleartext (refused beyond loopback unless allowed,
    flashes/safety.py, here too); certificates are verified. Login only when a user is set."""
    if refusal := cleartext_smtp(settings):
        raise DeliveryError(f"mail not sent: {refusal}")
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user or None,
            password=settings.smtp_password.get_secret_value() or None,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            cert_bundle=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
            timeout=SMTP_TIMEOUT_S,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        # `from None`: the original exception names the refused address and the relay and would reach tracebacks.
        raise DeliveryError(f"mail not sent: {smtp_failure(exc)}") from None


def smtp_failure(exc: Exception) -> str:
    """Why the relay did not take a mail, in words that name neither the relay (its host and port are the
    operator's, yet this text reaches the subscriber's delivery list) nor the recipient: the SMTP reply code
    when the relay answered, else the kind of failure, read from the exception and the one it wraps."""
    chain = [exc, *([exc.__cause__] if exc.__cause__ else [])]
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return f"recipient refused ({', '.join(str(r.code) for r in exc.recipients)})"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return f"recipient refused ({exc.code})"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "the relay refused the login"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"the relay answered {exc.code}"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "TLS" in str(exc):  # aiosmtplib's own STARTTLS refusals
        return TLS
    if any(isinstance(e, TimeoutError | aiosmtplib.SMTPTimeoutError) for e in chain):
        return TIMED_OUT
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return CONNECTION_REFUSED
    if any(isinstance(e, aiosmtplib.SMTPServerDisconnected | ConnectionResetError) for e in chain):
        return CLOSED
    return FAILED
