"""POST /api/graph/import in every format and GET /api/graph/export?format=, against the whole
service on a real hypercorn (both backends)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import JSON, eventually, running

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "unit" / "graph" / "fixtures"
CSV = {"Content-Type": "text/csv"}
GRAPHML = {"Content-Type": "application/graphml+xml"}
XML = {"Content-Type": "application/xml"}

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>
<graphml><graph><node id="&lol2;"/></graph></graphml>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE gexf [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<gexf><graph><nodes><node id="&xxe;"/></nodes></graph></gexf>"""


def config(tmp_path: Path) -> dict[str, Any]:
    return {"state": {"dir": str(tmp_path)}}


async def post(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], **params: str
) -> httpx.Response:
    return await client.post("/api/graph/import", content=body, headers=headers, params=params)


async def test_every_format_imports(tmp_path: Path) -> None:
    cases: list[tuple[bytes, dict[str, str], dict[str, str], str, int, int]] = [
        ((FIXTURES / "gephi.graphml").read_bytes(), GRAPHML, {}, "graphml", 3, 2),
        ((FIXTURES / "gephi.gexf").read_bytes(), XML, {}, "gexf", 3, 4),  # sniffed; mutual
        ((FIXTURES / "networkx.gexf").read_bytes(), {"Content-Type": "text/xml"}, {}, "gexf", 3, 2),
        ((FIXTURES / "edges.csv").read_bytes(), CSV, {}, "csv", 4, 3),
        ((FIXTURES / "d3-miserables.json").read_bytes(), JSON, {}, "d3", 3, 2),
        ((FIXTURES / "networkx-node-link.json").read_bytes(), JSON, {}, "networkx", 2, 1),
        (b"a,b\nb,c\n", XML, {"format": "csv"}, "csv", 3, 2),  # ?format= wins
    ]
    async with running(config(tmp_path)) as (svc, client):
        for body, headers, params, fmt, nodes, edges in cases:
            r = await post(client, body, headers, mode="replace", **params)
            assert r.status_code == 200, (fmt, r.text)
            assert r.json()["format"] == fmt
            answer = r.json()
            assert (answer["added"] + answer["updated"], answer["edges"]) == (nodes, edges), fmt
            assert (len(svc.ctx.store), svc.ctx.store.edge_count) == (nodes, edges), fmt


async def test_what_a_format_does_not_map_is_metadata(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (_, client):
        body = (FIXTURES / "force-graph-after-run.json").read_bytes()
        assert (await post(client, body, JSON)).status_code == 200
        doc = {
            "nodes": [{"id": "a", "color": "red", "metadata": {"k": 1}}, {"id": "b"}],
            "edges": [{"source": "a", "target": "b", "kind": "cites"}],
        }
        assert (await client.post("/api/graph/import", json=doc)).status_code == 200
        data = (await client.get("/api/graph/data")).json()
        meta = {n["key"]: n["metadata"] for n in data["nodes"]}
        assert meta["a"] == {"k": 1, "color": "red"}
        assert meta["1"] == {"color": "#ff0000", "index": 1, "vx": 0.0, "vy": 0.0, "vz": 0.01}
        exported = (await client.get("/api/graph/export")).json()
        assert {"source": "a", "target": "b", "weight": 1.0, "metadata": {"kind": "cites"}} in (
            exported["edges"]
        )


@pytest.mark.parametrize(
    ("body", "headers", "params", "status", "code", "path"),
    [
        (b"{}", JSON, {}, 400, "unknown_format", None),
        (b'{"vertices": []}', JSON, {}, 400, "unknown_format", None),
        (BOMB, XML, {}, 400, "unsafe_xml", "line 2"),
        (BOMB, GRAPHML, {}, 400, "unsafe_xml", "line 2"),
        (XXE, {"Content-Type": "application/gexf+xml"}, {}, 400, "unsafe_xml", "line 2"),
        (b"<svg/>", XML, {}, 400, "unknown_format", "line 1"),
        (b"a,b\nc\n", CSV, {}, 400, "bad_csv", "line 2"),
        (b"a,b,heavy\n", CSV, {}, 400, "invalid_weight", "line 1"),
        (
            b"a,b\n",
            {"Content-Type": "text/plain"},
            {},
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
        (b"a,b\n", CSV, {"format": "yaml"}, 400, "invalid_parameter", "format"),
        (
            b'{"nodes": [{"id": "a"}], "links": [{"source": "a", "target": "zz"}]}',
            JSON,
            {},
            400,
            "unknown_node",
            "links[0].target",
        ),
        (
            b'<graphml><graph><node id="a"/>\n<edge source="a" target="zz"/></graph></graphml>',
            GRAPHML,
            {},
            400,
            "unknown_node",
            "line 2: edges[0].target",
        ),
    ],
)
async def test_refusals_change_nothing(
    tmp_path: Path,
    body: bytes,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
    code: str,
    path: str | None,
) -> None:
    async with running(config(tmp_path)) as (svc, client):
        assert (await post(client, b"x,y\n", CSV)).status_code == 200
        revision = svc.ctx.store.revision
        r = await post(client, body, headers, mode="replace", **params)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert (error["code"], error["path"]) == (code, path), error
        assert svc.ctx.store.revision == revision and len(svc.ctx.store) == 2


async def positioned(client: httpx.AsyncClient, n: int) -> None:
    async def check() -> bool:
        nodes = (await client.get("/api/graph/data")).json()["nodes"]
        return len(nodes) == n and all(node["position"] is not None for node in nodes)

    await eventually(check, timeout=30)


async def test_exports_in_every_format_read_back(tmp_path: Path) -> None:
    nx = pytest.importorskip("networkx")
    doc = {
        "nodes": [
            {"id": "a", "label": "Alpha", "group": "g", "metadata": {"k": "v", "n": 2}},
            {"id": "b & <c>", "label": "Beta", "metadata": {"tags": ["x"]}},
            {"id": "c"},
        ],
        "edges": [
            {"source": "a", "target": "b & <c>", "weight": 2.5, "metadata": {"kind": "x"}},
            {"source": "b & <c>", "target": "c"},
        ],
    }
    async with running(config(tmp_path)) as (svc, client):
        assert (await client.post("/api/graph/import", json=doc)).status_code == 200
        await positioned(client, 3)
        exports = {}
        for fmt, media, reader in [
            ("graphml", "application/graphml+xml", nx.read_graphml),
            ("gexf", "application/gexf+xml", nx.read_gexf),
        ]:
            r = await client.get("/api/graph/export", params={"format": fmt})
            assert r.status_code == 200
            assert r.headers["content-type"] == media
            assert r.headers["content-disposition"] == (
                f'attachment; filename="visionflow-graph.{fmt}"'
            )
            g = reader(io.BytesIO(r.content))
            assert set(g.nodes) == {"a", "b & <c>", "c"}
            assert g.nodes["a"]["label"] == "Alpha" and g.nodes["a"]["n"] == 2
            assert g.edges["a", "b & <c>"]["weight"] == 2.5
            exports[fmt] = r.content
        default = await client.get("/api/graph/export")
        assert default.headers["content-type"] == "application/json"
        reference = default.json()
        r = await client.get("/api/graph/export", params={"format": "csv"})
        assert r.status_code == 400 and r.json()["error"]["path"] == "format"
        # each export, imported in place of the graph, gives the same graph and layout
        for fmt, data in exports.items():
            r = await post(client, data, GRAPHML if fmt == "graphml" else XML, mode="replace")
            assert r.status_code == 200, r.text
            assert (r.json()["added"], r.json()["removed"], r.json()["format"]) == (0, 0, fmt)
            assert svc.ctx.store.export_document()["edges"] == reference["edges"]
            nodes = svc.ctx.store.export_document()["nodes"]
            assert [(n["id"], n["label"], n["group"], n["metadata"]) for n in nodes] == [
                (n["id"], n["label"], n["group"], n["metadata"]) for n in reference["nodes"]
            ]


async def test_an_export_xml_cannot_carry_is_refused_with_its_reason(tmp_path: Path) -> None:
    doc = {"nodes": [{"id": "a\u0000b"}, {"id": "a\u0001b"}], "edges": []}
    async with running(config(tmp_path)) as (_svc, client):
        assert (await client.post("/api/graph/import", json=doc)).status_code == 200
        for fmt in ("graphml", "gexf"):
            r = await client.get("/api/graph/export", params={"format": fmt})
            # it was a 200 whose file our own import refused (duplicate_id)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert (error["code"], error["path"]) == ("not_exportable", "format")
            assert "export them as JSON" in error["message"]
        r = await client.get("/api/graph/export")
        assert [n["id"] for n in r.json()["nodes"]] == ["a\u0000b", "a\u0001b"]


async def test_concurrent_exports_of_different_formats_are_not_shared(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (_, client):
        nodes = [{"id": f"n{i}"} for i in range(40)]  # below the multilevel placement
        assert (await client.post("/api/graph/import", json={"nodes": nodes})).status_code == 200
        got: dict[str, httpx.Response] = {}

        async def fetch(fmt: str) -> None:
            got[fmt] = await client.get("/api/graph/export", params={"format": fmt})

        async with anyio.create_task_group() as tg:
            for fmt in ("json", "graphml", "gexf", "json", "graphml"):
                tg.start_soon(fetch, fmt)
        assert json.loads(got["json"].content)["nodes"][0]["id"] == "n0"
        assert got["graphml"].content.startswith(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<graphml'
        )
        assert b"<gexf" in got["gexf"].content[:100]


async def test_openapi_documents_the_formats(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (_, client):
        spec = (await client.get("/openapi.json")).json()
        op = spec["paths"]["/api/graph/import"]["post"]
        content = op["requestBody"]["content"]
        assert set(content) == {
            "application/json",
            "application/graphml+xml",
            "application/gexf+xml",
            "application/xml",
            "text/xml",
            "text/csv",
        }
        shapes = content["application/json"]["schema"]["oneOf"]
        assert shapes[0] == {"$ref": "#/components/schemas/GraphDocument"}
        assert [s["title"] for s in shapes[1:]] == ["D3Graph", "NodeLinkGraph"]
        assert "GraphDocument" in spec["components"]["schemas"]
        params = {p["name"]: p["schema"] for p in op["parameters"]}
        assert params["format"]["enum"] == ["json", "d3", "networkx", "graphml", "gexf", "csv"]
        assert params["mode"]["default"] == "merge"
        assert (
            "text/csv" in op["responses"]["415"]["description"]
            or "Content-Types" in (op["responses"]["415"]["description"])
        )
        export = spec["paths"]["/api/graph/export"]["get"]
        (fmt,) = export["parameters"]
        assert (fmt["name"], fmt["schema"]["enum"]) == ("format", ["json", "graphml", "gexf"])
