"""With server.token set, the graph's data is read only with the token, like /wss.

The token used to guard /wss (the positions) and mutating routes, while the graph, its export,
the notes' text and the agents stayed readable by anyone who reached the port.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.servicekit import JSON, running

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
DATA_READS = [
    "/api/graph/data",
    "/api/graph/neighbours/0",
    "/api/graph/export",
    "/api/notes/0",
    "/api/bots/data",
    "/api/state/backup",
]
OPEN_READS = ["/healthz", "/readyz", "/api/health", "/metrics", "/openapi.json", "/api/docs", "/"]


async def test_the_graphs_data_needs_the_token_and_probes_do_not(tmp_path: Path) -> None:
    raw = {"state": {"dir": str(tmp_path)}, "server": {"token": TOKEN}}
    async with running(raw) as (_, client):
        doc = b'{"nodes": [{"id": "private note"}]}'
        r = await client.post("/api/graph/import", content=doc, headers={**JSON, **BEARER})
        assert r.status_code == 200, r.text
        for path in DATA_READS:
            refused = await client.get(path)
            assert refused.status_code == 401, (path, refused.status_code)
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert b"private note" not in refused.content
            wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            allowed = await client.get(path, headers=BEARER)
            assert allowed.status_code in (200, 404), (path, allowed.text)  # 404: no node 0
        page = (await client.get("/api/graph/data", headers=BEARER)).json()
        assert [n["key"] for n in page["nodes"]] == ["private note"]
        for path in OPEN_READS:
            assert (await client.get(path)).status_code == 200, path


async def test_without_a_token_the_reads_stay_open(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        for path in ("/api/graph/data", "/api/graph/export", "/api/bots/data"):
            assert (await client.get(path)).status_code == 200, path


async def test_openapi_declares_the_bearer_on_the_data_reads(tmp_path: Path) -> None:
    raw = {"state": {"dir": str(tmp_path)}, "server": {"token": TOKEN}}
    async with running(raw) as (_, client):
        spec = (await client.get("/openapi.json")).json()
        for path in ("/api/graph/data", "/api/graph/export", "/api/notes/{id}", "/api/bots/data"):
            get = spec["paths"][path]["get"]
            assert get["security"] == [{"bearer": []}], path
            assert "401" in get["responses"], path
