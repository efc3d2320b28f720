"""The Host, Origin and Content-Type rules (visionflow/web/security.py), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from visionflow import settings as s
from visionflow.errors import ConfigError
from visionflow.web.security import (
    host_allowed,
    http_refusal,
    is_json,
    is_mutating,
    origin_allowed,
    same_origin,
    split_host,
    split_origin,
    websocket_refusal,
)

LOOPBACK = ["localhost", "127.0.0.1", "[::1]"]


def server(**values: Any) -> s.ServerSettings:
    return s.validate({"server": values}).server


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:4000", ("127.0.0.1", 4000)),
        ("LocalHost", ("localhost", None)),
        ("localhost.:80", ("localhost", 80)),  # the fully qualified form
        ("[::1]:4000", ("[::1]", 4000)),
        ("[0:0:0:0:0:0:0:1]", ("[::1]", None)),  # one spelling per address
        ("viewer.example", ("viewer.example", None)),
        ("", None),
        ("::1", None),  # IPv6 needs brackets in a Host
        ("[::1]x", None),
        ("[evil]", None),
        ("a b", None),
        ("evil.example@127.0.0.1", None),
        ("localhost:http", None),
        ("localhost:65536", None),
    ],
)
def test_split_host(text: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host(text) == expected


def test_split_origin_fills_in_the_default_port() -> None:
    assert split_origin("http://localhost:4000") == ("http", "localhost", 4000)
    assert split_origin("HTTPS://Viewer.Example/") == ("https", "viewer.example", 443)
    assert split_origin("http://[::1]") == ("http", "[::1]", 80)
    assert split_origin("null") is None
    assert split_origin("file://") is None
    assert split_origin("chrome-extension://abc") is None


@pytest.mark.parametrize(
    "host", ["localhost:4000", "127.0.0.1:4000", "[::1]:4000", "localhost", "LOCALHOST:1"]
)
def test_loopback_names_are_allowed_with_any_port(host: str) -> None:
    assert host_allowed(host, LOOPBACK, "127.0.0.1")


@pytest.mark.parametrize(
    "host", ["evil.example:4000", "evil.example", "localhost.evil.example", "", None, "a b"]
)
def test_foreign_or_missing_hosts_are_refused(host: str | None) -> None:
    assert not host_allowed(host, LOOPBACK, "127.0.0.1")


def test_a_specific_listen_address_is_allowed_as_host() -> None:
    assert host_allowed("192.168.1.5:4000", LOOPBACK, "192.168.1.5")
    assert host_allowed("[fe80::1]:4000", LOOPBACK, "fe80::1")  # bare IPv6, as server.host has it
    assert host_allowed("box.lan:4000", LOOPBACK, "box.lan")
    assert not host_allowed("192.168.1.6:4000", LOOPBACK, "192.168.1.5")


def test_listening_everywhere_allows_addresses_but_not_names() -> None:
    for bind in ("0.0.0.0", "::"):
        assert host_allowed("10.1.2.3:4000", LOOPBACK, bind)
        assert host_allowed("[2001:db8::7]:4000", LOOPBACK, bind)
        assert host_allowed("localhost:4000", LOOPBACK, bind)
        assert not host_allowed("evil.example:4000", LOOPBACK, bind)  # a rebinding has a name


def test_allowed_host_forms() -> None:
    assert host_allowed("anything.example:1", ["*"], "127.0.0.1")
    assert host_allowed(None, ["*"], "127.0.0.1")
    assert host_allowed("box.lan:4000", ["box.lan:4000"], "127.0.0.1")
    assert not host_allowed("box.lan:4001", ["box.lan:4000"], "127.0.0.1")
    assert not host_allowed("box.lan", ["box.lan:4000"], "127.0.0.1")
    assert host_allowed("corp.example", [".corp.example"], "127.0.0.1")
    assert host_allowed("a.b.corp.example:9", [".corp.example"], "127.0.0.1")
    assert not host_allowed("evilcorp.example", [".corp.example"], "127.0.0.1")
    assert host_allowed("BOX.LAN", ["Box.Lan"], "127.0.0.1")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:4000", "127.0.0.1:4000", True),
        ("http://localhost", "localhost", True),  # both on port 80
        ("http://localhost:80", "localhost", True),
        ("https://viewer.example", "viewer.example", True),  # behind a TLS proxy
        ("http://[::1]:4000", "[::1]:4000", True),
        ("http://localhost:4000", "localhost:4001", False),
        ("http://localhost:4000", "127.0.0.1:4000", False),
        ("http://evil.example:4000", "127.0.0.1:4000", False),
        ("null", "127.0.0.1:4000", False),
        ("http://127.0.0.1:4000", None, False),
    ],
)
def test_same_origin(origin: str, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same


def test_origin_allowed() -> None:
    own = "127.0.0.1:4000"
    assert origin_allowed(None, own, [])  # a script, not a browser
    assert origin_allowed("http://127.0.0.1:4000", own, [])
    assert not origin_allowed("http://evil.example", own, [])
    assert not origin_allowed("null", own, [])
    assert not origin_allowed("", own, [])
    listed = ["https://viewer.example/", "chrome-extension://abc"]
    assert origin_allowed("https://viewer.example", own, listed)
    assert origin_allowed("https://VIEWER.example:443", own, listed)
    assert origin_allowed("chrome-extension://abc", own, listed)
    assert not origin_allowed("http://viewer.example", own, listed)  # another scheme
    assert origin_allowed("http://evil.example", own, ["*"])


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON;charset=UTF-8", True),
        (None, False),
        ("", False),
        ("text/plain", False),
        ("text/plain; charset=utf-8", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/jsonx", False),
    ],
)
def test_is_json(content_type: str | None, ok: bool) -> None:
    assert is_json(content_type) is ok


def test_mutating_methods() -> None:
    assert [m for m in ("GET", "HEAD", "OPTIONS", "TRACE") if is_mutating(m)] == []
    assert all(is_mutating(m) for m in ("POST", "PATCH", "PUT", "DELETE", "patch", "FOO"))


def test_http_refusals_in_order() -> None:
    srv = server()
    own = "127.0.0.1:4000"
    json_ = "application/json"
    assert http_refusal(srv, "GET", own, "http://evil.example", None) is None  # reads: no Origin
    assert http_refusal(srv, "POST", own, None, json_) is None
    assert http_refusal(srv, "POST", own, "http://127.0.0.1:4000", json_) is None
    cases = [
        ("GET", "evil.example:4000", None, None, 403, "host_not_allowed", "Host"),
        (
            "POST",
            "evil.example:4000",
            "http://evil.example:4000",
            json_,
            403,
            "host_not_allowed",
            "Host",
        ),
        ("POST", own, "http://evil.example", "text/plain", 403, "origin_not_allowed", "Origin"),
        ("PATCH", own, None, "text/plain", 415, "unsupported_media_type", "Content-Type"),
        ("DELETE", own, None, None, 415, "unsupported_media_type", "Content-Type"),
    ]
    for method, host, origin, content_type, status, code, path in cases:
        refusal = http_refusal(srv, method, host, origin, content_type)
        assert refusal is not None, (method, host, origin, content_type)
        assert (refusal.status, refusal.code, refusal.path) == (status, code, path)
        assert refusal.message


def test_configured_origins_and_hosts_are_honoured() -> None:
    srv = server(allowed_hosts=["box.lan"], allowed_origins=["http://viewer.example:8080"])
    json_ = "application/json"
    assert http_refusal(srv, "POST", "box.lan:4000", "http://viewer.example:8080", json_) is None
    refusal = http_refusal(srv, "GET", "localhost:4000", None, None)  # the list replaces loopback
    assert refusal is not None and refusal.code == "host_not_allowed"


def test_websocket_refusal() -> None:
    srv = server()
    own = "127.0.0.1:4000"
    assert websocket_refusal(srv, own, None) is None
    assert websocket_refusal(srv, own, "http://127.0.0.1:4000") is None
    assert websocket_refusal(srv, "evil.example:4000", None)
    assert websocket_refusal(srv, own, "http://evil.example")
    listed = server(allowed_origins=["http://ok.example"])
    assert websocket_refusal(listed, own, None) is None  # scripts send none (was 1008)
    assert websocket_refusal(listed, own, "http://ok.example") is None


def test_settings_refuse_malformed_entries() -> None:
    with pytest.raises(ConfigError) as info:
        s.validate(
            {"server": {"allowed_hosts": ["http://box.lan"], "allowed_origins": ["box.lan"]}}
        )
    assert {i.path for i in info.value.issues} == {
        "server.allowed_hosts",
        "server.allowed_origins",
    }
    srv = server(allowed_hosts=["*", "box.lan:4000", ".lan", "[::1]:80"], allowed_origins=["*"])
    assert srv.allowed_hosts[0] == "*"
