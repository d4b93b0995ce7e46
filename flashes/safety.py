"""The settings a service refuses to start with, and why: defaults that are safe on loopback only.

A deployment is local when every host setting (each `*_host` text: where a service listens or what it
connects to, and the host of `public_api_url`, where mail links point) is loopback: 127.0.0.0/8,
::1 or `localhost`. A name is not resolved (compose's `kafka` is not loopback), and `0.0.0.0`
listens everywhere. Provider URLs are not host settings: public data is read from them, no secret
crosses them.

Beyond loopback, every service refuses the development secret key among the keys in use, any
`*_password` or `*secret*` setting left at its declared default (found in Settings.model_fields,
so every such field is covered; an empty default means "no authentication" and is judged by its
own rule), and a `*_user` that is set while its `*_password` is empty (SMTP, Kafka). Whatever the
hosts, a service that mails refuses cleartext SMTP to a host that is not loopback unless
`smtp_allow_cleartext` says it is a local relay, and the fetcher refuses a provider URL that is
not https on a host that is not loopback.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretBytes, SecretStr

from flashes.errors import UnsafeSettings
from flashes.settings import Settings

SECRET_FIELD = re.compile(r"_password$|secret")
KEY_FIELDS = ("secret_key", "secret_keys")  # judged together: the keys in use are secret_keys or [secret_key]
MAILERS = ("api", "delivery")
FETCHERS = ("fetcher",)
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
    hosts = {name: getattr(settings, name) for name, field in Settings.model_fields.items()
             if name.endswith("_host") and field.annotation is str}  # not http_per_host, a count
    if settings.public_api_url:
        hosts["public_api_url"] = urlsplit(settings.public_api_url).hostname or ""
    return [env_name(name) for name, host in hosts.items() if not is_loopback(str(host))]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr | SecretBytes) else value


def default_secrets(settings: Settings) -> list[str]:
    """The development key in use and every secret setting left at its declared, non-empty default."""
    problems = []
    development_key = _plain(Settings.model_fields["secret_key"].get_default())
    if development_key in (_plain(key) for key in settings.secret_keys or [settings.secret_key]):
        name = env_name("secret_keys" if settings.secret_keys else "secret_key")
        problems.append(f"{name} holds the development key, which is public in the source: anyone could forge "
                        f"confirmation and unsubscribe links and open the stored addresses and webhook secrets; "
                        f"make a key with {FERNET_KEY}")
    for name, field in Settings.model_fields.items():
        if SECRET_FIELD.search(name) and name not in KEY_FIELDS:
            default = _plain(field.get_default(call_default_factory=True))
            if default and _plain(getattr(settings, name)) == default:
                problems.append(f"{env_name(name)} is its public default: set a new one on the server and the "
                                f"services, e.g. from {PASSWORD}")
    for name in Settings.model_fields:
        user = name.removesuffix("_password") + "_user"
        if name.endswith("_password") and getattr(settings, user, "") and not _plain(getattr(settings, name)):
            problems.append(f"{env_name(user)} is set and {env_name(name)} is empty: set the account's password")
    return problems


def cleartext_smtp(settings: Settings) -> str | None:
    """Why this SMTP setup would send credentials, addresses and unsubscribe links in clear, if it would."""
    if settings.smtp_security != "none" or is_loopback(settings.smtp_host) or settings.smtp_allow_cleartext:
        return None
    return ("FLASHES_SMTP_SECURITY is none (cleartext) and FLASHES_SMTP_HOST is not loopback: use starttls or tls, "
            "or set FLASHES_SMTP_ALLOW_CLEARTEXT=true for a relay on the local network")


def plain_providers(settings: Settings) -> list[str]:
    """Provider base URLs that are not https on a host that is not loopback (a local mirror may be http)."""
    return [f"{env_name(f'{instrument}_base_url')} is not https: a man in the middle could inject points that "
            f"become alerts; use the provider's https:// address (http is for a mirror on loopback)"
            for instrument, url in settings.base_urls.items()
            if (parts := urlsplit(url)).scheme != "https" and not is_loopback(parts.hostname or "")]


def unsafe_settings(settings: Settings, service: str) -> list[str]:
    """Every reason `service` must not start with these settings; empty: it may."""
    problems = []
    if exposed := exposed_hosts(settings):
        beyond = f"beyond loopback ({', '.join(exposed)}): "
        problems += [beyond + problem for problem in default_secrets(settings)]
    if service in MAILERS and (problem := cleartext_smtp(settings)):
        problems.append(problem)
    if service in FETCHERS:
        problems += plain_providers(settings)
    return problems


def require_safe(settings: Settings, service: str) -> None:
    """Raise UnsafeSettings naming every unsafe setting and how to make a good value."""
    if problems := unsafe_settings(settings, service):
        raise UnsafeSettings("refusing to start with unsafe settings:\n  - " + "\n  - ".join(problems))
