"""Per-client rate limits on mutating routes: a token bucket per client address.

Every mutating request (any method but GET, HEAD, OPTIONS, TRACE) takes one token from its
client's bucket; a bucket holds ``server.rate_burst`` tokens and refills at ``server.rate_limit``
tokens a second. An empty bucket means 429 ``rate_limited`` with ``Retry-After`` (whole seconds
until a token is back). Reads, probes (``/healthz``, ``/readyz``, ``/metrics``) and ``/wss`` are
never counted: they have limits of their own (the WebSocket message rate, the upload slots).

A client is its address; an IPv6 client is its /64 (one host usually holds a whole /64, and a
table per address would let it start afresh 2^64 times). Behind a reverse proxy every client has
the proxy's address and they share one bucket (docs/operations.md).

Memory: a full bucket is the same as no bucket, so a client whose bucket has refilled is dropped
from the table; the table holds at most ``MAX_CLIENTS`` entries, the least recently seen client
going first when it is full (that client then starts again with a full bucket). Event-loop
only: plain dicts, no lock.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

import anyio
from loguru import logger
from starlette.types import ASGIApp, Receive, Scope, Send

from visionflow.web.errors import error_response
from visionflow.web.security import SAFE_METHODS

log = logger.bind(subsystem="http")

#: Clients tracked at once (about 170 bytes each with the key): bounds the table under a flood.
MAX_CLIENTS = 50_000
#: Entries looked at per request when sweeping refilled buckets from the old end of the table.
SWEEP_PER_CALL = 4
#: Never counted, whatever the method (they are GET-only today; a probe must never be 429).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # when ``tokens`` was computed


class TokenBuckets:
    """The sans-IO core: one bucket per client key, refilled lazily from the clock reading
    passed in. ``rate`` tokens a second, ``burst`` at most; ``rate`` 0 = no limit."""

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        if rate < 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be >= 0, burst and max_clients >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        # insertion order = least recently seen first (an entry is re-inserted when seen)
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float) -> float:
        """Take a token for ``client`` at time ``now``: 0.0 when granted, else the seconds
        until one is back (nothing is taken then)."""
        if self.rate == 0:
            return 0.0
        self._sweep(now)
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = self._level(bucket, now)
            bucket.at = now
        self._buckets[client] = bucket  # now the most recently seen
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - bucket.tokens) / self.rate
        while len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return wait

    def _level(self, bucket: _Bucket, now: float) -> float:
        # max(): a clock reading older than the bucket's (never with a monotonic clock) adds none
        return min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.rate)

    def _sweep(self, now: float) -> None:
        """Drop refilled buckets from the least recently seen end (amortised O(1))."""
        for _ in range(SWEEP_PER_CALL):
            oldest = next(iter(self._buckets), None)
            if oldest is None or self._level(self._buckets[oldest], now) < self.burst:
                return
            del self._buckets[oldest]


def client_key(host: str) -> str:
    """The bucket an address counts against: itself, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket's path, a test client's name): as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def retry_after(wait: float) -> int:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


class RateLimit:
    """ASGI middleware: 429 for a mutating HTTP request whose client's bucket is empty."""

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and scope["path"] not in EXEMPT_PATHS
            and self.buckets.rate > 0
        ):
            client = scope.get("client")
            key = client_key(client[0] if client else "")
            wait = self.buckets.take(key, anyio.current_time())
            if wait > 0:
                seconds = retry_after(wait)
                log.debug("rate limited {} {} from {}", scope["method"], scope["path"], key)
                response = error_response(
                    429,
                    "rate_limited",
                    f"too many requests that change state from this client (at most "
                    f"{self.buckets.rate:g} a second, {self.buckets.burst} in a burst); "
                    f"try again in {seconds} s",
                    headers={"Retry-After": str(seconds)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
