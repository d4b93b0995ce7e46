"""The settings a service refuses to start with, and why: defaults that are safe on loopback only.

A deployment is local when every host setting (each `*_host` text: where a service listens or what it
connects to, and the host of `public_api_url`, where mail links point) is loopback: 127.0.0.0/8,
::1 or `localhost`. A name is not resolved (compose's `kafka` is not loopback), and `0.0.0.0`
listens everywhere. Provider URLs are not host settings: public data is read from them, no secret
crosses them.

Each service is judged on the secret settings it uses (SECRETS: a service that never opens QuestDB as
the writer is not asked for the writer's password, and compose does not give it one). Beyond
loopback, a service refuses the development secret key among the keys in use, any of its
`*_password` or `*secret*` settings left at the declared default (an empty default means "no
authentication" and is judged by its own rule), a `*_user` that is set while its `*_password` is
empty (SMTP, Kafka), and, where webhook addresses are checked, `webhook_allow_loopback`. Whatever
the hosts, every service refuses PLAINTEXT Kafka on a host that is not loopback and SASL without a
Kafka user; a service that mails refuses cleartext SMTP to a host that is not loopback unless
`smtp_allow_cleartext` says it is a local relay; the fetcher refuses a provider URL that is not
https on a host that is not loopback.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretBytes, SecretStr

from flashes.errors import UnsafeSettings
from flashes.settings import Settings

SECRET_FIELD = re.compile(r"_password$|secret")  # how a secret setting is named; each is in SECRETS of its readers
KEY_FIELDS = ("secret_key", "secret_keys")  # judged together: Settings.keys_in_use
# The secret settings each service of services.registry.SERVICES reads, "secret_key" standing for the keys in use:
# the Kafka login everywhere; QuestDB's writer where flashes.questdb sends HTTP (the sink writes, relevance reads the
# scored history through flashes.questdb.query); its read-only user where a PG-wire connection reads (the API's
# pages, delivery's mail charts); the key and SMTP where links are signed, addresses opened and mail sent.
SECRETS: dict[str, tuple[str, ...]] = {
    "fetcher": ("kafka_password",),
    "derive": ("kafka_password",),
    "relevance": ("kafka_password", "questdb_writer_password"),
    "alerts": ("kafka_password",),
    "delivery": ("kafka_password", "secret_key", "questdb_reader_password", "smtp_password"),
    "sink": ("kafka_password", "questdb_writer_password"),
    "api": ("kafka_password", "secret_key", "questdb_reader_password", "smtp_password"),
}
MAILERS = ("api", "delivery")
WEBHOOK_CHECKERS = ("api", "delivery")  # the API when an address is given, delivery when it connects
FETCHERS = ("fetcher",)
KAFKA_ACCOUNT = (
    "set FLASHES_KAFKA_USER to this service's user (its name: flashes/kafka_acl.py) and FLASHES_KAFKA_PASSWORD"
)
FERNET_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
PASSWORD = "openssl rand -base64 24"


def env_name(field: str) -> str:
    return f"FLASHES_{field.upper()}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also in brackets) or the name localhost (RFC 6761: it resolves to loopback only)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed_hosts(settings: Settings) -> list[str]:
    """The host settings that are not loopback (empty: a local deployment)."""
    hosts = {
        name: getattr(settings, name)
        for name, field in Settings.model_fields.items()
        if name.endswith("_host") and field.annotation is str
    }  # not http_per_host, a count
    if settings.public_api_url:
        hosts["public_api_url"] = urlsplit(settings.public_api_url).hostname or ""
    return [env_name(name) for name, host in hosts.items() if not is_loopback(str(host))]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr | SecretBytes) else value


def default_secrets(settings: Settings, used: tuple[str, ...]) -> list[str]:
    """Among the secret settings `used`: the development key in use, a secret left at its declared, non-empty
    default, a user whose password is empty."""
    problems = []
    development_key = _plain(Settings.model_fields["secret_key"].get_default())
    if "secret_key" in used and development_key in (_plain(key) for key in settings.keys_in_use):
        name = env_name("secret_keys" if settings.secret_keys else "secret_key")
        problems.append(
            f"{name} holds the development key, which is public in the source: anyone could forge "
            f"confirmation and unsubscribe links and open the stored addresses and webhook secrets; "
            f"make a key with {FERNET_KEY}"
        )
    for name in used:
        if name not in KEY_FIELDS:
            default = _plain(Settings.model_fields[name].get_default(call_default_factory=True))
            if default and _plain(getattr(settings, name)) == default:
                problems.append(
                    f"{env_name(name)} is its public default: set a new one on the server and the "
                    f"services, e.g. from {PASSWORD}"
                )
    for name in used:
        user = name.removesuffix("_password") + "_user"
        if name.endswith("_password") and getattr(settings, user, None) and not _plain(getattr(settings, name)):
            problems.append(f"{env_name(user)} is set and {env_name(name)} is empty: set the account's password")
    return problems


def kafka_login(settings: Settings) -> str | None:
    """Why this service's Kafka connection would be anonymous, if it would."""
    if settings.kafka_security_protocol == "PLAINTEXT" and not is_loopback(settings.kafka_host):
        return (
            "FLASHES_KAFKA_SECURITY_PROTOCOL is PLAINTEXT and FLASHES_KAFKA_HOST is not loopback: whoever reaches "
            f"the broker could publish alerts that delivery signs and sends; use SASL_PLAINTEXT, {KAFKA_ACCOUNT}"
        )
    if settings.kafka_security_protocol == "SASL_PLAINTEXT" and not settings.kafka_user:
        return f"FLASHES_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT and FLASHES_KAFKA_USER is empty: {KAFKA_ACCOUNT}"
    return None


def loopback_webhooks(settings: Settings) -> str | None:
    """Why webhooks could be aimed at this host's own servers, if they could (said only beyond loopback)."""
    if not settings.webhook_allow_loopback:
        return None
    return (
        "FLASHES_WEBHOOK_ALLOW_LOOPBACK is true: a subscriber could aim webhooks at the servers on this host's "
        "loopback (QuestDB, Kafka, the metrics); it is for tests, set it false"
    )


def cleartext_smtp(settings: Settings) -> str | None:
    """Why this SMTP setup would send credentials, addresses and unsubscribe links in clear, if it would."""
    if settings.smtp_security != "none" or is_loopback(settings.smtp_host) or settings.smtp_allow_cleartext:
        return None
    return (
        "FLASHES_SMTP_SECURITY is none (cleartext) and FLASHES_SMTP_HOST is not loopback: use starttls or tls, "
        "or set FLASHES_SMTP_ALLOW_CLEARTEXT=true for a relay on the local network"
    )


def plain_providers(settings: Settings) -> list[str]:
    """Provider base URLs that are not https on a host that is not loopback (a local mirror may be http)."""
    return [
        f"{env_name(f'{instrument}_base_url')} is not https: a man in the middle could inject points that "
        f"become alerts; use the provider's https:// address (http is for a mirror on loopback)"
        for instrument, url in settings.base_urls.items()
        if (parts := urlsplit(url)).scheme != "https" and not is_loopback(parts.hostname or "")
    ]


def unsafe_settings(settings: Settings, service: str) -> list[str]:
    """Every reason `service` (one of SECRETS) must not start with these settings; empty: it may."""
    problems = []
    if exposed := exposed_hosts(settings):
        beyond = f"beyond loopback ({', '.join(exposed)}): "
        problems += [beyond + problem for problem in default_secrets(settings, SECRETS[service])]
        if service in WEBHOOK_CHECKERS and (problem := loopback_webhooks(settings)):
            problems.append(beyond + problem)
    if problem := kafka_login(settings):  # every service logs into Kafka
        problems.append(problem)
    if service in MAILERS and (problem := cleartext_smtp(settings)):
        problems.append(problem)
    if service in FETCHERS:
        problems += plain_providers(settings)
    return problems


def require_safe(settings: Settings, service: str) -> None:
    """Raise UnsafeSettings naming every unsafe setting and how to make a good value."""
    if problems := unsafe_settings(settings, service):
        raise UnsafeSettings("refusing to start with unsafe settings:\n  - " + "\n  - ".join(problems))
