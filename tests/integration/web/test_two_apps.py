"""Two apps in one process keep their own settings: nothing in web/ is process-wide state."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support.wsharness import Client, running

from visionflow import settings as s
from visionflow.service import Service
from visionflow.web import openapi, routes_bots, routes_graph
from visionflow.web.app import create_app

pytestmark = pytest.mark.anyio


def spec(app: Any) -> dict[str, Any]:
    return openapi.document(app.routes)


def test_each_app_documents_its_own_routes() -> None:
    ctx = Service(s.validate({"server": {"port": 0}})).ctx
    small = create_app(ctx)
    before = spec(small)
    full = create_app(ctx, extra_routes=[*routes_graph.routes(), *routes_bots.routes()])
    assert spec(small) == before  # building the second app changed nothing in the first
    assert "/api/graph/import" not in before["paths"]
    assert not {"GraphDocument", "InitializeSwarm"} & before["components"]["schemas"].keys()
    assert {"GraphDocument", "DocumentNode", "InitializeSwarm"} <= spec(full)["components"][
        "schemas"
    ].keys()
    statuses = spec(full)["paths"]["/api/graph/import"]["post"]["responses"]
    assert {"400", "401", "413"} <= statuses.keys()
    assert spec(small)["paths"]["/api/settings"]["patch"]["responses"].keys() >= {"400", "503"}


async def test_two_servers_keep_their_own_compression_setting() -> None:
    with anyio.fail_after(20):
        async with running({"websocket": {"compression": True}}) as on, running() as off:
            # the server started last does not decide for the first, nor the other way round
            for h, expected in ((off, []), (on, ["permessage-deflate"]), (off, [])):
                c = await Client.connect(h.url)
                assert [e.name for e in c.ws.protocol.extensions] == expected
                await c.aclose()
