"""The graph import takes GraphML, GEXF and CSV bodies besides JSON; no route takes a type a
browser sends cross-site without a CORS preflight (visionflow/web/security.py)."""

from __future__ import annotations

import pytest

from visionflow import settings as s
from visionflow.graph.formats import detect
from visionflow.web.security import BODY_TYPES, SIMPLE_TYPES, body_type_allowed, http_refusal

IMPORT = "/api/graph/import"
OWN = "127.0.0.1:4000"
EVIL = "http://evil.example"


def server() -> s.ServerSettings:
    return s.validate({}).server


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/graphml+xml",
        "application/gexf+xml",
        "application/xml; charset=utf-8",
        "text/xml",
        "TEXT/CSV; header=present",
    ],
)
def test_the_import_takes_the_graph_formats(content_type: str) -> None:
    assert body_type_allowed(content_type, IMPORT)
    assert http_refusal(server(), "POST", OWN, None, content_type, IMPORT) is None


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/csv, text/plain",  # not one type: not a type we take
        "",
        None,
    ],
)
def test_what_a_page_sends_without_a_preflight_stays_refused(content_type: str | None) -> None:
    refusal = http_refusal(server(), "POST", OWN, None, content_type, IMPORT)
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.path) == (
        415,
        "unsupported_media_type",
        "Content-Type",
    )
    assert "text/csv" in refusal.message and "application/graphml+xml" in refusal.message


@pytest.mark.parametrize("path", ["/api/settings", "/api/bots/task", "/api/graph/import/", ""])
def test_other_routes_take_json_only(path: str) -> None:
    for content_type in ("text/csv", "application/xml", "application/graphml+xml"):
        assert not body_type_allowed(content_type, path)
        refusal = http_refusal(server(), "PATCH", OWN, None, content_type, path)
        assert refusal is not None and refusal.status == 415
        assert refusal.message.startswith("PATCH needs Content-Type: application/json, not")
    refusal = http_refusal(server(), "PATCH", OWN, None, None, "/api/settings")
    assert refusal is not None  # it said "..., not None": Python's, not the request's
    assert refusal.message == "PATCH needs Content-Type: application/json, and has none"


def test_a_cross_site_origin_is_refused_whatever_the_type() -> None:
    refusal = http_refusal(server(), "POST", OWN, EVIL, "text/csv", IMPORT)
    assert refusal is not None and (refusal.status, refusal.code) == (403, "origin_not_allowed")


def test_no_route_takes_a_simple_type() -> None:
    for path, types in BODY_TYPES.items():
        assert not types & SIMPLE_TYPES, path


def test_the_guard_and_the_readers_agree() -> None:
    # every type the guard lets through has a reader, and every reader's type gets through
    assert BODY_TYPES[IMPORT] | {"application/json"} == detect.MEDIA_TYPES
