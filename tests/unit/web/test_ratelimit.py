"""The per-client token buckets (web/ratelimit.py): the refill arithmetic with explicit clock
readings, and the middleware under trio's MockClock (time passes only when the test sleeps)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support.clock import anyio_backend  # noqa: F401  (trio with a MockClock)

from visionflow.web.ratelimit import RateLimit, TokenBuckets, client_key, retry_after


def test_a_burst_is_granted_then_the_next_waits_for_one_token() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 100.0) == pytest.approx(0.5)  # one token at 2 a second
    # a refusal takes nothing: a quarter second later half a token is back, a quarter to go
    assert buckets.take("a", 100.25) == pytest.approx(0.25)
    assert buckets.take("a", 100.5) == 0.0
    assert buckets.take("a", 100.5) == pytest.approx(0.5)


def test_refill_stops_at_the_burst() -> None:
    buckets = TokenBuckets(rate=10.0, burst=2)
    buckets.take("a", 0.0)
    buckets.take("a", 0.0)
    # an hour idle gives back 2 tokens, not 36000
    assert [buckets.take("a", 3600.0) for _ in range(3)][2] == pytest.approx(0.1)


def test_clients_have_buckets_of_their_own() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0


def test_rate_zero_is_no_limit_and_keeps_no_table() -> None:
    buckets = TokenBuckets(rate=0.0, burst=1)
    assert all(buckets.take("a", 0.0) == 0.0 for _ in range(1000))
    assert len(buckets) == 0


def test_the_table_is_bounded_and_forgets_the_least_recently_seen() -> None:
    buckets = TokenBuckets(rate=1.0, burst=2, max_clients=3)
    for client in "abcd":  # each takes its whole burst
        buckets.take(client, 0.0)
        buckets.take(client, 0.0)
    assert len(buckets) == 3
    # "a" was forgotten: it starts again with a full bucket; "d" still has none
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("d", 0.0) > 0
    for i in range(10_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(buckets) == 3


def test_refilled_buckets_are_swept_from_the_table() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    for i in range(100):
        buckets.take(str(i), 0.0)
    assert len(buckets) == 100
    # a second later every bucket is full again, the same as no bucket: each request sweeps a
    # few from the old end, so steady traffic from one client empties the table
    for _ in range(100):
        buckets.take("x", 1.0)
    assert len(buckets) == 1


def test_client_keys() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    # one IPv6 host usually holds a whole /64: it is one client
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("testclient") == "testclient"


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after(w) for w in (0.001, 0.5, 1.0, 1.01, 7.9)] == [1, 1, 1, 2, 8]


# ----------------------------------------------------------------------- the middleware


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def _app(rate: float, burst: int) -> Starlette:
    routes = [
        Route("/api/thing", _ok, methods=["GET", "POST", "PATCH"]),
        Route("/healthz", _ok, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(RateLimit, rate=rate, burst=burst)])


async def _codes(n: int, call: Callable[[], Awaitable[httpx.Response]]) -> set[int]:
    return {(await call()).status_code for _ in range(n)}


def _client(app: Starlette, address: str = "192.0.2.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


@pytest.mark.anyio
async def test_mutating_requests_past_the_burst_get_429_until_the_bucket_refills() -> None:
    app = _app(rate=0.5, burst=3)  # a token every 2 s
    async with _client(app) as client:
        codes = [(await client.post("/api/thing")).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        refused = await client.patch("/api/thing")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        body = refused.json()["error"]
        assert body["code"] == "rate_limited"
        assert "0.5 a second" in body["message"] and "3 in a burst" in body["message"]
        # reads are never counted
        assert await _codes(20, lambda: client.get("/api/thing")) == {200}
        await anyio.sleep(1.9)  # MockClock: no real time passes
        assert (await client.post("/api/thing")).status_code == 429
        await anyio.sleep(0.1)
        assert (await client.post("/api/thing")).status_code == 200
        assert (await client.post("/api/thing")).status_code == 429


@pytest.mark.anyio
async def test_probes_and_other_clients_are_not_limited() -> None:
    app = _app(rate=0.1, burst=1)
    async with _client(app, "192.0.2.1") as first, _client(app, "192.0.2.2") as second:
        assert (await first.post("/api/thing")).status_code == 200
        assert (await first.post("/api/thing")).status_code == 429
        assert (await second.post("/api/thing")).status_code == 200
        assert await _codes(5, lambda: first.post("/healthz")) == {200}


@pytest.mark.anyio
async def test_rate_zero_turns_the_limit_off() -> None:
    async with _client(_app(rate=0.0, burst=1)) as client:
        assert await _codes(50, lambda: client.post("/api/thing")) == {200}
