"""Search, filters and neighbourhoods of the graph against the whole service (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import eventually, running

from visionflow.mcpsim.server import serve_simulator
from visionflow.web.routes_graph import MAX_QUERY_CHARS

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def simulator() -> AsyncIterator[int]:
    """A claude-flow 2.x simulator that changes nothing on its own."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            partial(serve_simulator, "127.0.0.1", 0, flavor="v2", tick_interval=0, autopilot=False)  # type: ignore[arg-type]
        )
        yield port
        tg.cancel_scope.cancel()


# A notes vault's shape (aliases in metadata, a placeholder), an imported paper, a hub.
DOC: dict[str, Any] = {
    "nodes": [
        {
            "id": "note:physics",
            "label": "Physics",
            "group": "note",
            "metadata": {"path": "Physics.md", "aliases": ["Layout"], "tags": []},
        },
        {"id": "note:swarm", "label": "Swarm", "group": "note", "metadata": {"aliases": []}},
        {"id": "note:missing page", "label": "Missing page", "group": "placeholder"},
        {"id": "paper-1", "label": "Force layout", "group": "papers"},
        {"id": "hub", "label": "Hub"},
        *({"id": f"leaf{i}", "label": f"Leaf {i}"} for i in range(12)),
    ],
    "edges": [
        {"source": "note:physics", "target": "note:swarm", "weight": 2.0},
        {"source": "note:swarm", "target": "note:missing page"},
        {"source": "paper-1", "target": "note:physics"},
        {"source": "hub", "target": "paper-1"},
        *({"source": "hub", "target": f"leaf{i}"} for i in range(12)),
    ],
}


async def data(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/graph/data", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def edge_keys(body: dict[str, Any], names: dict[int, str]) -> set[tuple[str, str]]:
    return {(names[e["source"]], names[e["target"]]) for e in body["edges"]}


async def test_search_filters_and_pages(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        assert (await client.post("/api/graph/import", json=DOC)).status_code == 200
        everything = await data(client)
        names = {n["flagged_id"]: n["key"] for n in everything["nodes"]}
        assert not everything["truncated"]

        found = await data(client, q="LAYOUT")  # label of one, alias of the other
        assert [n["key"] for n in found["nodes"]] == ["note:physics", "paper-1"]
        assert found["node_count"] == 2
        assert edge_keys(found, names) == {("paper-1", "note:physics")}  # among the results
        assert found["edge_count"] == 1 and not found["truncated"]
        assert found["nodes"][0]["metadata"]["aliases"] == ["Layout"]  # the same node shape

        placeholders = await data(client, kind="placeholder")
        assert [n["key"] for n in placeholders["nodes"]] == ["note:missing page"]
        knowledge = await data(client, kind="knowledge", q="note:")
        assert [n["key"] for n in knowledge["nodes"]] == ["note:physics", "note:swarm"]
        assert (await data(client, kind="agent"))["node_count"] == 0

        # paging applies to the matches: Physics (alias Layout), Force layout, 12 leaves
        pages = [await data(client, q="l", offset=o, limit=5) for o in (0, 5, 10)]
        assert [len(p["nodes"]) for p in pages] == [5, 5, 4]
        assert all(p["node_count"] == 14 for p in pages)
        # the leaves' edges come from the hub, which is no match
        assert [edge_keys(p, names) for p in pages] == [{("paper-1", "note:physics")}, set(), set()]

        # an edge between matches comes once, with its source's page, wherever its target is
        pages = [await data(client, kind="knowledge", offset=o, limit=5) for o in (0, 5, 10, 15)]
        assert [len(p["nodes"]) for p in pages] == [5, 5, 5, 1]
        every = [edge for p in pages for edge in p["edges"]]
        expected = {
            (e["source"], e["target"]) for e in DOC["edges"] if e["target"] != "note:missing page"
        }
        assert len(every) == len(expected) == 15
        assert {(names[e["source"]], names[e["target"]]) for e in every} == expected
        for p in pages:
            assert {e["source"] for e in p["edges"]} <= {n["flagged_id"] for n in p["nodes"]}
            assert p["edge_count"] == len(p["edges"])

        # an empty parameter (a form's empty field) is no filter: the plain page
        plain = await data(client, q="", kind="")
        assert plain["node_count"] == everything["node_count"] == len(DOC["nodes"])
        assert plain["edge_count"] == len(DOC["edges"])


async def test_refusals_name_the_parameter(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        assert (await client.post("/api/graph/import", json=DOC)).status_code == 200
        long = "x" * (MAX_QUERY_CHARS + 1)
        for params, path in [
            ({"kind": "notes"}, "kind"),
            ({"kind": "Agent"}, "kind"),
            ({"q": long}, "q"),
            ({"type": long}, "type"),
            ({"status": long, "q": "a"}, "status"),
            ({"q": "a", "limit": "lots"}, "limit"),
            ({"offset": "1" * 5000}, "offset"),  # was a 500: int() refuses over 4300 digits
        ]:
            r = await client.get("/api/graph/data", params=params)
            assert r.status_code == 400, (params, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_parameter" and err["path"] == path, err
            assert path in err["message"]
        r = await client.get("/api/graph/data", params={"q": "x" * MAX_QUERY_CHARS})
        assert r.status_code == 200 and r.json()["node_count"] == 0


async def test_neighbours(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        assert (await client.post("/api/graph/import", json=DOC)).status_code == 200
        everything = await data(client)
        by_key = {n["key"]: n for n in everything["nodes"]}
        names = {n["flagged_id"]: n["key"] for n in everything["nodes"]}
        paper = by_key["paper-1"]

        for given in (paper["flagged_id"], paper["id"]):
            r = await client.get(f"/api/graph/neighbours/{given}")
            assert r.status_code == 200, r.text
            one = r.json()
            keys = [n["key"] for n in one["nodes"]]
            assert keys[0] == "paper-1" and set(keys[1:]) == {"note:physics", "hub"}
            assert one["nodes"][0] == paper | {"position": one["nodes"][0]["position"]}
            assert edge_keys(one, names) == {("paper-1", "note:physics"), ("hub", "paper-1")}
            assert one["depth"] == 1 and not one["truncated"]
            assert one["node_count"] == 3 and one["edge_count"] == 2

        r = await client.get(f"/api/graph/neighbours/{paper['id']}", params={"depth": 2})
        two = r.json()
        assert two["node_count"] == 3 + 12 + 1  # the hub's leaves, the swarm note
        assert two["edge_count"] == 2 + 12 + 1 and not two["truncated"]
        ring1 = {n["key"] for n in two["nodes"][1:3]}
        assert ring1 == {"note:physics", "hub"}  # one hop before two

        # a hub's neighbourhood is capped: the node, then the lowest ids, and truncated
        hub = by_key["hub"]
        r = await client.get(f"/api/graph/neighbours/{hub['id']}", params={"limit": 5})
        capped = r.json()
        assert capped["truncated"] and capped["node_count"] == 5 and capped["limit"] == 5
        assert capped["nodes"][0]["key"] == "hub"
        ids = [n["id"] for n in capped["nodes"][1:]]
        assert ids == sorted(ids) and capped["edge_count"] == 4


async def test_neighbours_refusals(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        assert (await client.post("/api/graph/import", json=DOC)).status_code == 200
        node = (await data(client, q="paper-1"))["nodes"][0]
        for path in (
            "/api/graph/neighbours/999999",
            f"/api/graph/neighbours/{node['id'] | 0x80000000}",
        ):
            r = await client.get(path)
            assert r.status_code == 404, r.text
            assert r.json()["error"] == {
                "code": "unknown_node",
                "message": r.json()["error"]["message"],
                "path": "id",
            }
        for path, params, name in [
            (f"/api/graph/neighbours/{node['id']}", {"depth": 3}, "depth"),
            (f"/api/graph/neighbours/{node['id']}", {"depth": 0}, "depth"),
            (f"/api/graph/neighbours/{node['id']}", {"depth": "two"}, "depth"),
            (f"/api/graph/neighbours/{node['id']}", {"limit": 0}, "limit"),
            (f"/api/graph/neighbours/{node['id']}", {"limit": 100001}, "limit"),
            ("/api/graph/neighbours/paper-1", {}, "id"),  # a key: not accepted
            ("/api/graph/neighbours/4294967296", {}, "id"),
            ("/api/graph/neighbours/-1", {}, "id"),
            ("/api/graph/neighbours/" + "9" * 5000, {}, "id"),  # int() refuses > 4300 digits
            (f"/api/graph/neighbours/{node['id']}", {"depth": "9" * 5000}, "depth"),
            (f"/api/graph/neighbours/{node['id']}", {"limit": "0" * 5000}, "limit"),
        ]:
            r = await client.get(path, params=params)
            assert r.status_code == 400, (path, params, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_parameter" and err["path"] == name, err
        # one range, whatever is wrong with the value (it said 0-100000 for -1, 1-100000 for 0)
        for limit in ("-1", "0", "x", "100001"):
            r = await client.get(f"/api/graph/neighbours/{node['id']}", params={"limit": limit})
            assert r.json()["error"]["message"] == "limit must be an integer 1-100000", limit


async def test_agents_by_type_and_status(tmp_path: Path) -> None:
    async with simulator() as port:
        await _agents_by_type_and_status(tmp_path, port)


async def _agents_by_type_and_status(tmp_path: Path, port: int) -> None:
    raw = {
        "state": {"dir": str(tmp_path)},
        "mcp": {"endpoints": [{"name": "sim", "port": port, "poll_interval": 0.2}]},
    }
    async with running(raw) as (svc, client):
        await eventually(lambda: svc.ctx.watchers["sim"].status.connected, timeout=10)
        r = await client.post("/api/bots/initialize-swarm", json={"topology": "mesh"})
        assert r.status_code == 200, r.text
        for kind in ("coder", "coder", "tester", "task-orchestrator"):
            r = await client.post("/api/bots/spawn-agent", json={"type": kind})
            assert r.status_code == 200, r.text

        async def agents() -> dict[str, Any] | None:
            body = await data(client, kind="agent", status="IDLE")
            return body if body["node_count"] == 4 else None

        idle = await eventually(agents, timeout=10)  # the swarm's hub node has no status
        assert all(
            n["kind"] == "agent" and n["metadata"]["status"] == "idle" for n in idle["nodes"]
        )
        coders = await data(client, type="coder")
        assert coders["node_count"] == 2
        assert {n["metadata"]["type"] for n in coders["nodes"]} == {"coder"}
        # the colour-table type finds the renamed one
        lead = await data(client, type="coordinator")
        assert [n["metadata"]["type"] for n in lead["nodes"]] in (
            ["task-orchestrator"],
            ["coordinator"],
        )
        assert (await data(client, type="coder", kind="knowledge"))["node_count"] == 0
        swarm = (await data(client, kind="agent", q="swarm"))["nodes"]
        assert len(swarm) == 1 and swarm[0]["group"] == "swarm"
        around = (await client.get(f"/api/graph/neighbours/{swarm[0]['flagged_id']}")).json()
        assert around["node_count"] == 5 and around["edge_count"] == 4


async def test_openapi_documents_search_and_neighbours(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        paths = (await client.get("/openapi.json")).json()["paths"]
        get = paths["/api/graph/data"]["get"]
        params = {p["name"]: p for p in get["parameters"]}
        assert set(params) == {"offset", "limit", "q", "kind", "type", "status"}
        # "" is a form's empty field: no filter
        assert params["kind"]["schema"]["enum"] == ["", "knowledge", "agent", "placeholder"]
        assert params["q"]["schema"]["maxLength"] == MAX_QUERY_CHARS
        assert "400" in get["responses"]
        around = paths["/api/graph/neighbours/{id}"]["get"]
        names = [(p["name"], p["in"]) for p in around["parameters"]]
        assert names == [("id", "path"), ("depth", "query"), ("limit", "query")]
        assert {"400", "404"} <= set(around["responses"])
        assert "flagged_id" in around["description"]
