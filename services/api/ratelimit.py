"""Rate limits per client network, in bounded memory: a token bucket per network, the least recently seen
network forgotten beyond a cap.

A network is an IPv4 address (/32) or an IPv6 /64. IPv4 addresses are scarce, and a /24 is often one
campus, company or carrier-grade NAT pool, so a /24 key would let one visitor exhaust the budget of
hundreds; an IPv6 /64 is the smallest block a home or a server is given (RFC 6177), so one subscriber
walks through 2^64 addresses of it for free and the /64 is what one IPv4 address is. An IPv4-mapped
IPv6 address counts as its IPv4 address.

Memory: each network costs one entry (a key and two floats, about 200 bytes), at most `networks` of them
(50,000: about 10 MB). A forgotten network starts again with a full bucket; filling the map to forget
one costs the visitor `networks` distinct networks.

Budget counts uses of a key in a sliding window, for budgets that must hold exactly ("at most 3 in any 24 h"),
such as the confirmation mails one address may be sent whatever the networks asking.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request

from flashes.netguard import parse, prefix
from services.api.problems import TooMany


def network(host: str) -> str:
    """The key of a client address: its IPv4 address, or its IPv6 /64; anything else (a test client's name)
    as it is, cut short."""
    ip = parse(host)
    return host[:64] if ip is None else prefix(ip, 32, 64)


def client_network(request: Request) -> str:
    """The network of the client that made the request (the server's view: behind a proxy, uvicorn's
    `--forwarded-allow-ips` decides whether X-Forwarded-For is believed)."""
    return network(request.client.host if request.client else "unknown")


class RateLimit:
    """At most `per_hour` calls per network in an hour, in bursts of up to `per_hour` (a token bucket that
    refills continuously); `what` names the calls in the 429's words."""

    def __init__(self, per_hour: int, what: str, networks: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour, self.what, self.networks, self.clock = per_hour, what, networks, clock
        self.rate = per_hour / 3600.0  # tokens per second
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # network -> (tokens, at)

    def check(self, key: str) -> None:
        """Take one call from the network's budget, or refuse (TooMany: 429 and Retry-After, seconds)."""
        now = self.clock()
        tokens, at = self.buckets.pop(key, (float(self.per_hour), now))
        tokens = min(float(self.per_hour), tokens + (now - at) * self.rate)
        self.buckets[key] = (tokens - 1 if tokens >= 1 else tokens, now)  # (re)inserted last: the most recent
        while len(self.buckets) > self.networks:
            self.buckets.popitem(last=False)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.rate) if self.rate else 3600
            raise TooMany(
                f"too many {self.what} from this network: at most {self.per_hour} per hour; try again in {wait} s", wait
            )


class Budget:
    """At most `count` uses per key in any `window_s` seconds (the times of each key's last `count` uses), for at
    most `keys` keys, the least recently used forgotten; `what` says in the 429 what ran out."""

    def __init__(
        self, count: int, window_s: float, what: str, keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.count, self.window_s, self.what, self.keys, self.clock = count, window_s, what, keys, clock
        self.uses: OrderedDict[str, tuple[float, ...]] = OrderedDict()  # key -> times of its recent uses

    def check(self, key: str) -> None:
        """Take one use of the key's budget, or refuse (TooMany: 429 and Retry-After, seconds)."""
        now = self.clock()
        recent = tuple(t for t in self.uses.pop(key, ()) if t > now - self.window_s)
        if len(recent) >= self.count:
            self.uses[key] = recent
            wait = math.ceil((recent[0] if recent else now) + self.window_s - now)
            raise TooMany(f"{self.what}: try again in {wait} s", wait)
        self.uses[key] = (*recent, now)[-self.count :]  # (re)inserted last: the most recent
        while len(self.uses) > self.keys:
            self.uses.popitem(last=False)
