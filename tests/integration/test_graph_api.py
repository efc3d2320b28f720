"""Graph import/export/data against the whole service on a real hypercorn (both backends)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servicekit import JSON, eventually, running

pytestmark = pytest.mark.anyio


def doc(n: int = 5) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": f"n{i}", "label": f"Node {i}", "group": "g", "metadata": {"i": i}}
            for i in range(n)
        ],
        "edges": [{"source": f"n{i}", "target": f"n{i + 1}", "weight": 1.0} for i in range(n - 1)],
    }


async def positioned(client: httpx.AsyncClient, n: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = (await client.get("/api/graph/data")).json()
        nodes = body["nodes"]
        ok = len(nodes) == n and all(node["position"] is not None for node in nodes)
        return body if ok else None

    result: dict[str, Any] = await eventually(check, timeout=30)
    return result


async def test_import_then_data_and_export(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        r = await client.post("/api/graph/import", json=doc(5))
        assert r.status_code == 200, r.text
        assert r.json()["added"] == 5 and r.json()["edges"] == 4 and r.json()["saved"]
        body = await positioned(client, 5)
        node = body["nodes"][0]
        assert node["kind"] == "knowledge"
        assert node["flagged_id"] == node["id"] | 0x40000000
        assert node["label"] == "Node 0" and node["metadata"] == {"i": 0}
        assert all(math.isfinite(c) for n in body["nodes"] for c in n["position"])
        assert len(body["edges"]) == 4 and body["edge_count"] == 4
        page = (await client.get("/api/graph/data", params={"offset": 2, "limit": 2})).json()
        assert [n["key"] for n in page["nodes"]] == ["n2", "n3"]
        assert page["node_count"] == 5
        exported = (await client.get("/api/graph/export")).json()
        assert {n["id"] for n in exported["nodes"]} == {f"n{i}" for i in range(5)}
        assert all(len(n["position"]) == 3 for n in exported["nodes"])
        # the export is itself a valid import document (round trip)
        r = await client.post("/api/graph/import", params={"mode": "replace"}, json=exported)
        assert r.status_code == 200 and r.json()["added"] == 0


@pytest.mark.parametrize(
    ("document", "code", "path"),
    [
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "zz"}]},
            "unknown_node",
            "edges[0].target",
        ),
        ({"nodes": [{"id": "a"}, {"id": "a"}]}, "duplicate_id", "nodes[1].id"),
        (
            {
                "nodes": [{"id": "a"}, {"id": "b"}],
                "edges": [{"source": "a", "target": "b", "weight": -1}],
            },
            "invalid_weight",
            "edges[0].weight",
        ),
        ({"nodes": [{"id": 5}]}, "invalid_node", "nodes[0].id"),
        ([1, 2], "invalid_document", None),
        (  # a 401-digit integer: msgspec hands it over as a Python int (was a 500)
            {
                "nodes": [{"id": "a"}, {"id": "b"}],
                "edges": [{"source": "a", "target": "b", "weight": 10**400}],
            },
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a", "position": [0, 3e7, 0]}]},
            "invalid_position",
            "nodes[0].position",
        ),
    ],
)
async def test_bad_documents_are_refused_whole(
    tmp_path: Path, document: Any, code: str, path: str | None
) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        assert (await client.post("/api/graph/import", json=doc(3))).status_code == 200
        revision = svc.ctx.store.revision
        r = await client.post("/api/graph/import", params={"mode": "replace"}, json=document)
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == code, err
        assert err["path"] == path
        assert svc.ctx.store.revision == revision  # nothing applied
        assert len(svc.ctx.store) == 3


async def test_bad_requests(tmp_path: Path) -> None:
    raw = {"state": {"dir": str(tmp_path)}, "server": {"max_request_bytes": 2048}}
    async with running(raw) as (_, client):
        r = await client.post("/api/graph/import", content=b"{nope", headers=JSON)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
        r = await client.post("/api/graph/import", json=doc(200))
        assert r.status_code == 413
        r = await client.post("/api/graph/import", params={"mode": "upsert"}, json=doc(2))
        assert r.status_code == 400 and r.json()["error"]["path"] == "mode"
        r = await client.get("/api/graph/data", params={"limit": "-1"})
        assert r.status_code == 400 and r.json()["error"]["path"] == "limit"
        r = await client.get("/api/graph/data", params={"offset": "\u00b2"})  # isdigit() was True
        assert r.status_code == 400 and r.json()["error"]["path"] == "offset"


async def test_import_needs_the_token(tmp_path: Path) -> None:
    raw = {"state": {"dir": str(tmp_path)}, "server": {"token": "t0k"}}
    async with running(raw) as (_, client):
        assert (await client.post("/api/graph/import", json=doc(2))).status_code == 401
        r = await client.post(
            "/api/graph/import", json=doc(2), headers={"Authorization": "Bearer t0k"}
        )
        assert r.status_code == 200


async def test_graph_and_layout_survive_a_restart(tmp_path: Path) -> None:
    raw = {"state": {"dir": str(tmp_path), "save_interval": 0.2}}
    async with running(raw) as (_, client):
        assert (await client.post("/api/graph/import", json=doc(6))).status_code == 200
        before = await positioned(client, 6)
    saved = {n["key"]: n["position"] for n in before["nodes"]}
    async with running(raw) as (svc, client):
        assert len(svc.ctx.store) == 6
        after = await positioned(client, 6)
        for node in after["nodes"]:
            # restored near where it was (a step or two of motion at most)
            assert math.dist(node["position"], saved[node["key"]]) < 5.0
