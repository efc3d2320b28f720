"""Sans-IO parts of the endpoint: upgrade checks and the inbound rate limiter."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers, QueryParams

from visionflow import settings as s
from visionflow.protocol.frames import WireFormat
from visionflow.protocol.snapshot import NodeFilter
from visionflow.web.hub import CloseRequest
from visionflow.web.ws import Admission, ConnectParams, InboundLimiter, parse_connect

SECURED = s.validate({"server": {"token": "tok", "allowed_origins": ["https://viewer.example"]}})
HOST = {"host": "127.0.0.1:4000"}
GOOD = {**HOST, "origin": "https://viewer.example"}


def check(query: str, headers: dict[str, str] | None = None) -> ConnectParams | CloseRequest:
    return parse_connect(
        SECURED, Headers(headers if headers is not None else GOOD), QueryParams(query)
    )


def test_defaults_and_choices() -> None:
    assert check("token=tok") == ConnectParams(WireFormat.PROTOCOL2, NodeFilter.ALL, True)
    assert check("token=tok&protocol=legacy&graph=agents&subscribe=false") == ConnectParams(
        WireFormat.LEGACY, NodeFilter.AGENTS, False
    )
    bearer = {**GOOD, "authorization": "Bearer tok"}
    assert isinstance(check("graph=knowledge", bearer), ConnectParams)


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ("", GOOD, 4401),
        ("token=nope", GOOD, 4401),
        ("token=tok", {**HOST, "origin": "https://evil.example"}, 1008),
        ("token=tok", {**GOOD, "host": "evil.example:4000"}, 1008),  # DNS rebinding
        ("token=tok", {"origin": "https://viewer.example"}, 1008),  # no Host at all
        ("token=tok&protocol=1", GOOD, 4400),
        ("token=tok&graph=people", GOOD, 4400),
        ("token=tok&subscribe=perhaps", GOOD, 4400),
    ],
)
def test_refusals(query: str, headers: dict[str, str], code: int) -> None:
    refusal = check(query, headers)
    assert isinstance(refusal, CloseRequest)
    assert refusal.code == code and refusal.reason


def test_no_origin_is_admitted_even_with_allowed_origins_set() -> None:
    # Scripts send no Origin; the token is their check (it was 1008).
    assert isinstance(check("token=tok", HOST), ConnectParams)


def test_open_server_needs_no_token_and_takes_its_own_origin_only() -> None:
    open_settings = s.validate({})
    own = {**HOST, "origin": "http://127.0.0.1:4000"}
    result = parse_connect(open_settings, Headers(own), QueryParams(""))
    assert isinstance(result, ConnectParams)
    assert isinstance(parse_connect(open_settings, Headers(HOST), QueryParams("")), ConnectParams)
    foreign = {**HOST, "origin": "http://evil.example"}
    refusal = parse_connect(open_settings, Headers(foreign), QueryParams(""))
    assert isinstance(refusal, CloseRequest) and refusal.code == 1008


def test_limiter_allows_bursts_tells_once_then_closes_on_repeated_excess() -> None:
    limiter = InboundLimiter(rate=10, now=0.0)
    assert [limiter.admit(0.0) for _ in range(20)] == [Admission.ACCEPT] * 20
    assert limiter.admit(0.0) is Admission.REFUSE_AND_TELL
    assert [limiter.admit(0.0) for _ in range(8)] == [Admission.REFUSE] * 8
    assert limiter.admit(0.1) is Admission.ACCEPT  # refilled one token
    assert limiter.admit(0.1) is Admission.REFUSE
    assert limiter.admit(0.1) is Admission.CLOSE  # over a second's worth refused


def test_limiter_forgives_once_calm_again() -> None:
    limiter = InboundLimiter(rate=10, now=0.0)
    for _ in range(25):
        limiter.admit(0.0)
    assert limiter.refused == 5
    assert limiter.admit(5.0) is Admission.ACCEPT  # the bucket filled up: a fresh episode
    assert limiter.refused == 0
