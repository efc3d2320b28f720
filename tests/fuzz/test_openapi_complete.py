"""``/openapi.json`` declares every route the service serves, each with what the fuzzer needs.

The fuzzer (test_fuzz_http.py) fuzzes what the document lists: a route added without an entry
there would never be fuzzed, so an undeclared route fails here. So does an operation without an
``operationId``, a tag, a security requirement or a body for its success answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from support.servicekit import running

from visionflow.graph.formats import d3
from visionflow.live_settings import RUNTIME_KEYS
from visionflow.web import openapi
from visionflow.web.routes_settings import patch_schema

pytestmark = pytest.mark.anyio


def served_routes(routes: list[BaseRoute], prefix: str = "") -> list[tuple[str, str]]:
    """(OpenAPI path, method) for every route of an app, mounts' routers included."""
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Mount):
            if route.routes:
                found += served_routes(route.routes, prefix + route.path)
            else:  # files
                found.append((f"{prefix}{route.path}/{{path}}", "get"))
        elif isinstance(route, WebSocketRoute):
            found.append((prefix + route.path, "get"))
        elif isinstance(route, Route):
            path = re.sub(r"{(\w+)(?::\w+)?}", r"{\1}", prefix + route.path)
            found += [(path, m.lower()) for m in sorted((route.methods or set()) - {"HEAD"})]
    return found


async def test_every_route_of_the_service_is_declared(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        spec = (await client.get("/openapi.json")).json()
        app = svc.http._app  # the app the service serves, whatever routes were added to it
        served = served_routes(app.routes)
    assert len(served) >= 20
    missing = [(p, m) for p, m in served if m not in spec["paths"].get(p, {})]
    assert not missing, f"served but not in /openapi.json: {missing}"


async def test_every_operation_says_who_may_call_it_and_what_it_answers(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}, "server": {"token": "t0ken"}}) as (
        _,
        client,
    ):
        spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    ids: list[str] = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            ids.append(op["operationId"])
            assert op["tags"] and op["tags"][0] in {t["name"] for t in spec["tags"]}, where
            if method not in ("get", "head"):
                assert op["security"] == [{"bearer": []}], where
            else:
                assert op["security"] in ([{"bearer": []}], [{}, {"bearer": []}]), where
            ok = [s for s in op["responses"] if s.startswith("2")]
            if path == "/wss":
                assert "101" in op["responses"]
                continue
            assert ok, f"{where}: no success answer declared"
            for status in ok:
                assert op["responses"][status].get("content"), f"{where} {status}: no body"
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), where
    assert len(ids) == len(set(ids)), "operationIds repeat"


def test_a_route_without_metadata_is_still_listed_and_flagged() -> None:
    """A plain Route someone adds shows up (so the tests above catch its missing body)."""

    async def handler(request: Any) -> Any:
        """Something new."""

    spec = openapi.document([Route("/api/new/thing", handler, methods=["POST"])])
    op = spec["paths"]["/api/new/thing"]["post"]
    assert op["operationId"] == "handler" and op["tags"] == ["new"]
    assert "content" not in op["responses"]["200"]


def test_the_settings_patch_schema_lists_the_runtime_keys_only() -> None:
    """What /openapi.json says PATCH /api/settings takes is what it takes (RUNTIME_KEYS)."""
    schema = patch_schema()

    def leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
        found: set[str] = set()
        for name, sub in node["properties"].items():
            path = f"{prefix}{name}"
            runtime_table = f"{path}." in RUNTIME_KEYS
            if sub.get("type") == "object" and "properties" in sub and not runtime_table:
                found |= leaves(sub, f"{path}.")
            else:
                found.add(f"{path}." if runtime_table else path)
        return found

    assert leaves(schema) == set(RUNTIME_KEYS)
    assert schema["additionalProperties"] is False
    rate = schema["properties"]["physics"]["properties"]["rate_hz"]
    assert (rate["minimum"], rate["maximum"]) == (1.0, 240.0)


def test_a_d3_link_end_may_be_any_json_value_as_the_reader_takes() -> None:
    """The fuzzer sent a d3 link with ``source: null, target: false`` as a schema violation
    (it had broken the anyOf's object branch, the id branch still held) and the import took
    it; the schema now says what the reader does: any value, an object naming a node."""
    link = d3.SCHEMA["properties"]["links"]["items"]["properties"]
    for end in ("source", "target"):
        assert not {"type", "anyOf", "oneOf"} & link[end].keys()
    parsed = d3.read({"nodes": [], "links": [{"source": None, "target": False}]})
    assert len(parsed.document.edges) == 1
