"""A method no route takes gets 405 with every method the path has, as /openapi.json lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.servicekit import running

pytestmark = pytest.mark.anyio


async def test_405_names_every_method_of_the_path_as_the_openapi_document_does(
    tmp_path: Path,
) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        spec = (await client.get("/openapi.json")).json()
        checked = 0
        for path, ops in spec["paths"].items():
            if "101" in ops.get("get", {}).get("responses", {}):
                continue  # the WebSocket upgrade: see the next test

            documented = {m.upper() for m in ops}
            path = re.sub(r"{\w+}", "1", path)  # a path parameter: any value routes the same
            wrong = next(m for m in ("DELETE", "PUT", "PATCH") if m not in documented)
            # no Content-Type on purpose: the router's 405, not the guard's 415, must answer
            r = await client.request(wrong, path)
            assert r.status_code == 405, (path, wrong, r.status_code, r.text)
            allow = set(r.headers["allow"].split(", "))
            assert documented <= allow <= documented | {"HEAD"}, (path, allow, documented)
            assert r.json()["error"]["code"] == "method_not_allowed"
            checked += 1
        assert checked >= 10
        # a method the path does take still needs a JSON body type
        r = await client.post("/api/settings", content=b"{}")
        assert r.status_code == 415


async def test_plain_http_at_the_websocket_path_is_told_to_upgrade(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        spec = (await client.get("/openapi.json")).json()
        assert "101" in spec["paths"]["/wss"]["get"]["responses"]  # still the WebSocket doc
        r = await client.get("/wss")
        assert r.status_code == 426 and r.headers["upgrade"] == "websocket"
        assert r.json()["error"]["code"] == "upgrade_required"
        r = await client.delete("/wss")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
