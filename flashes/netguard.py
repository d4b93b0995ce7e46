"""Where a webhook may connect: public addresses only, checked where the connection is made.

A webhook host checked once when the subscription is made and resolved again at every delivery
can be rebound (public at the check, 127.0.0.1 or 169.254.169.254 at the delivery). The Guard is
the aiohttp resolver of the delivery client: it resolves a host once, refuses the whole answer if
any address is not public, and the connector connects only to the addresses it returned (its own
DNS cache is off, so aiohttp asks nobody else). An IP literal never reaches a resolver in aiohttp,
so the Guard is also the connector's socket factory, which checks the address each socket is
about to connect to. The API's subscribe-time check (flashes.subscriptions.check_webhook_url) asks
the same Guard.

Lookups run in a small thread pool of their own (Lookups), not in the event loop's default executor:
getaddrinfo blocks its thread for as long as the nameserver is silent (glibc: 5 s a try, two tries per
nameserver), and a thousand names on a silent nameserver would otherwise hold every thread the charts
(asyncio.to_thread) and every other lookup need. A timeout ends the wait, not the thread, so the pool's
size is what a hanging resolver can hold.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import SplitResult

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult

from flashes.errors import RefusedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Translated forms carry an IPv4 address inside an IPv6 one; the host that receives them is a translator (NAT64,
# a 6to4 or Teredo relay) or this host's own IPv4 stack (mapped, compatible). Which IPv4 address they reach depends
# on that translator, so the whole prefix is refused, whatever IPv4 address it embeds: 64:ff9b::7f00:1 is
# 127.0.0.1 behind NAT64, and Python 3.11 calls it global.
TRANSLATED = _networks("::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
# Not reachable hosts, or not a host, that ipaddress's is_global lets through (multicast, 6to4's relay anycast,
# documentation 3fff::/20, site-local fec0::/10, SRv6 5f00::/16) or that are refused by name here, not by a flag.
NOT_HOSTS = _networks(
    "0.0.0.0/8",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "100::/64",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fec0::/10",
    "ff00::/8",
)
REFUSED = TRANSLATED + NOT_HOSTS
# The per-host cap counts a receiving network, not a name: a thousand names (or addresses) of one network share it.
CAP_PREFIX = (24, 48)
# Lookups at once in a process: twice the delivery's default suspect slots (16), inside which the lookups of
# failing subscriptions are made, so they leave half the threads to every other subscription.
LOOKUP_THREADS = 32
LOOKUP_TIMEOUT_S = 5.0  # glibc's own wait for one nameserver try (resolv.conf `timeout`)


def is_public(ip: IPAddress) -> bool:
    """Is this an address on the public internet that names one host? Not loopback, private, link-local,
    multicast, reserved, unspecified, CGNAT (100.64/10), documentation, site-local, nor a translated form."""
    flags = (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or getattr(ip, "is_site_local", False)
    )
    return ip.is_global and not flags and not any(ip in net for net in REFUSED if net.version == ip.version)


def allowed(address: str, allow_loopback: bool) -> bool:
    """May a webhook connect to this address (text, as in a sockaddr)? Loopback only when `allow_loopback` (tests)."""
    ip = parse(address)
    return ip is not None and (is_public(ip) or (allow_loopback and ip.is_loopback))


def prefix(ip: IPAddress, v4: int, v6: int) -> str:
    """The network of `ip`, /`v4` or /`v6` long (an IPv4-mapped IPv6 address counts as its IPv4 address): the
    key of a per-network budget (the API's rate limits, the delivery's per-host cap)."""
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(f"{ip}/{v4 if ip.version == 4 else v6}", strict=False))


def webhook_port(url: SplitResult) -> int:
    """The port a webhook URL connects to (ValueError if its port is not one)."""
    return url.port or (443 if url.scheme == "https" else 80)


def parse(text: str) -> IPAddress | None:
    """The address in a sockaddr or a URL host (IPv6 with its zone, if any), or None if it is not one."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Lookups(AbstractResolver):
    """getaddrinfo in a pool of `threads` threads of its own, each lookup given up after `timeout_s` (its thread
    is not: it stays with the resolver until the resolver answers). `lookup` is getaddrinfo's signature."""

    def __init__(
        self,
        threads: int = LOOKUP_THREADS,
        timeout_s: float = LOOKUP_TIMEOUT_S,
        lookup: Callable[..., list] = socket.getaddrinfo,
    ) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="webhook-lookup")
        self.timeout_s, self.lookup = timeout_s, lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        call = functools.partial(self.lookup, host, port, family, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
        async with asyncio.timeout(self.timeout_s):
            infos = await asyncio.get_running_loop().run_in_executor(self.pool, call)
        return [
            ResolveResult(
                hostname=host,
                host=address[0],
                port=address[1],
                family=kind,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for kind, _, proto, _, address in infos
            if kind in (socket.AF_INET, socket.AF_INET6)
        ]

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# One pool per process: the API makes a Guard for each subscribe-time check.
LOOKUPS = Lookups()


class Guard(AbstractResolver):
    """An aiohttp resolver and socket factory that let through public addresses only (and loopback ones when
    `allow_loopback`, for tests). Answers are kept `ttl_s` seconds and shared by concurrent lookups of a host, so
    the delivery's cap key and its connection use one lookup, and a thousand subscriptions on one name one more.
    A refusal (a host that does not resolve, resolves inward, or whose lookup timed out) is kept as long: the
    retries of a thousand subscriptions on a silent name cost one lookup in `ttl_s`. `inner`: LOOKUPS."""

    def __init__(self, allow_loopback: bool, inner: AbstractResolver | None = None, ttl_s: float = 10.0) -> None:
        self.allow_loopback = allow_loopback
        self.inner = inner or LOOKUPS
        self.ttl_s = ttl_s
        self.answers: dict[tuple[str, int, int], tuple[float, asyncio.Future[list[ResolveResult]]]] = {}
        self.pruned_at = 0.0

    def allowed(self, address: str) -> bool:
        return allowed(address, self.allow_loopback)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        """The host's addresses, every one allowed; RefusedAddress if it does not resolve or any address is not
        (a name that does not resolve and one that resolves inward look alike: no probing of internal names)."""
        now = asyncio.get_running_loop().time()
        key = (host.lower(), port, int(family))
        held = self.answers.get(key)
        if held is None or held[0] <= now:
            self._prune(now)
            answer = asyncio.ensure_future(self._checked(host, port, family))
            answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody waits
            held = self.answers[key] = (now + self.ttl_s, answer)
        return await asyncio.shield(held[1])

    async def _checked(self, host: str, port: int, family: socket.AddressFamily) -> list[ResolveResult]:
        try:
            answer = await self.inner.resolve(host, port, family)
        except OSError:  # socket.gaierror, and TimeoutError (an OSError) from a silent nameserver
            raise RefusedAddress("the webhook host does not resolve to public addresses only") from None
        if not answer or not all(self.allowed(a["host"]) for a in answer):
            raise RefusedAddress("the webhook host does not resolve to public addresses only")
        return answer

    def _prune(self, now: float) -> None:
        if now - self.pruned_at >= self.ttl_s:
            self.answers = {k: v for k, v in self.answers.items() if v[0] > now}
            self.pruned_at = now

    async def close(self) -> None:
        """The process's LOOKUPS stay open for the next Guard; another resolver is closed with its Guard."""
        if self.inner is not LOOKUPS:
            await self.inner.close()

    def socket(self, addr_info: AddrInfoType) -> socket.socket:
        """The connector's socket factory: the last look at the address before connecting (IP literals come here
        without a resolver)."""
        family, type_, proto, _, address = addr_info
        if not self.allowed(address[0]):
            raise RefusedAddress("the webhook address is not public")
        return socket.socket(family, type_, proto)

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The allowed addresses of a URL's host (an IP literal or a name); RefusedAddress otherwise."""
        literal = parse(host)
        if literal is not None:
            if not self.allowed(host):
                raise RefusedAddress("the webhook address is not public")
            return [literal]
        return [ip for ip in (parse(a["host"]) for a in await self.resolve(host, port)) if ip is not None]

    async def network(self, host: str, port: int) -> str:
        """The receiving network of a URL's host, the key of its per-host cap."""
        return prefix((await self.addresses(host, port))[0], *CAP_PREFIX)

    def connector(self, limit: int) -> aiohttp.TCPConnector:
        """A connector that resolves through this Guard only and checks every socket's address."""
        return aiohttp.TCPConnector(limit=limit, resolver=self, use_dns_cache=False, socket_factory=self.socket)
