"""Every error the project raises on purpose, in one place; each message says what went wrong."""

from __future__ import annotations


class FlashesError(RuntimeError):
    """Base of the project's own errors."""


class SettingsError(FlashesError, ValueError):
    """A FLASHES_* variable does not read as its setting; the message names the variable and why, never its value
    (it may be a secret)."""


class InfraError(FlashesError):
    """Something the servers need is missing or they did not come up; the message says what."""


class QuestDBError(FlashesError):
    """QuestDB answered with an error or could not be reached; the message says which."""


class FetchError(FlashesError):
    """A provider file could not be downloaded; the message says why."""


class HeasarcError(FlashesError):
    """HEASARC's class table could not be had (unreachable, an error answer, not the table asked for); the message
    says which. The catalogue then names its classes from the bundled table."""


class RefusedFile(FetchError, ValueError):
    """A provider file refused as a whole (too large, not a lightcurve, unreadable); the message is the reason."""


class StateRestoreError(FlashesError):
    """A stream processor could not read back its state (from its state topic, or a model's stored history
    from QuestDB); it starts over from its stored state rather than go on without it."""


class DecodeError(FlashesError):
    """A Kafka message does not match its topic's contract; the message is the reason (for the dead letter)."""


class DeliveryError(FlashesError):
    """A webhook or an e-mail could not be delivered this time; the message says why (it is retried)."""


class SubscriptionError(FlashesError):
    """A subscription request is invalid (bad URL, unknown source or tag, ...); the message says which part."""


class RefusedAddress(OSError):
    """A webhook host that is not (or does not resolve to) public addresses only (flashes/netguard.py). An OSError,
    not a FlashesError (their layouts cannot be combined), so that aiohttp and aiohappyeyeballs handle it as the
    failed connection attempt it stands for."""


class UnsafeSettings(FlashesError):
    """A service refuses to start: its settings would expose it (a development secret, cleartext where it
    matters); the message lists every such setting and how to make a good value."""


# Words for a connection that failed, shared by the webhook and mail deliveries: what a subscriber, the logs and the
# deliveries table are told, never the exception's text (it names hosts, ports and addresses).
TIMED_OUT = "timed out"
TLS = "TLS error"
CONNECTION_REFUSED = "connection refused"
CLOSED = "connection closed"
FAILED = "connection failed"
