"""Replies captured from the real claude-flow 2.7.47 stdio server, replayed over loopback TCP.

They were recorded (``node node_modules/claude-flow/src/mcp/mcp-server.js``, npm package
``claude-flow@2.7.47`` installed with ``--ignore-scripts``) and are kept verbatim except that the
``tools/list`` reply is cut down to the five tools VisionFlow calls (the real one lists 90 tools in
18.7 KB). This runs everywhere, without node; ``tests/e2e/test_claude_flow_real.py`` runs the
real server where it is installed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from visionflow.errors import RpcRemoteError
from visionflow.mcp.claudeflow import (
    PLACEHOLDER_AGENT_IDS,
    parse_agent_list,
    unwrap_tool_result,
)
from visionflow.mcp.client import PROTOCOL_VERSION, connect_mcp
from visionflow.mcp.framing import encode_line

pytestmark = pytest.mark.anyio

# fmt: off
GREETING = '{"jsonrpc":"2.0","method":"server.initialized","params":{"serverInfo":{"name":"claude-flow","version":"2.7.47","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true,"listChanged":true}}}}}'  # noqa: E501
INITIALIZE = '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2024-11-05","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true,"listChanged":true}},"serverInfo":{"name":"claude-flow","version":"2.7.47"}}}'  # noqa: E501
STRAY_ERROR = '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"}}'
TOOLS_LIST = '{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"swarm_init","description":"Initialize swarm with topology and configuration","inputSchema":{"type":"object","properties":{"topology":{"type":"string","enum":["hierarchical","mesh","ring","star"]},"maxAgents":{"type":"number","default":8},"strategy":{"type":"string","default":"auto"}},"required":["topology"]}},{"name":"agent_spawn","description":"Create specialized AI agents","inputSchema":{"type":"object","properties":{"type":{"type":"string","enum":["coordinator","analyst","optimizer","documenter","monitor","specialist","architect","task-orchestrator","code-analyzer","perf-analyzer","api-docs","performance-benchmarker","system-architect","researcher","coder","tester","reviewer"]},"name":{"type":"string"},"capabilities":{"type":"array"},"swarmId":{"type":"string"}},"required":["type"]}},{"name":"task_orchestrate","description":"Orchestrate complex task workflows","inputSchema":{"type":"object","properties":{"task":{"type":"string"},"strategy":{"type":"string","enum":["parallel","sequential","adaptive","balanced"]},"priority":{"type":"string","enum":["low","medium","high","critical"]},"dependencies":{"type":"array"}},"required":["task"]}},{"name":"swarm_status","description":"Monitor swarm health and performance","inputSchema":{"type":"object","properties":{"swarmId":{"type":"string"}}}},{"name":"agent_list","description":"List active agents & capabilities","inputSchema":{"type":"object","properties":{"swarmId":{"type":"string"}}}}]}}'  # noqa: E501
AGENT_LIST_PLACEHOLDERS = '{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{\\n  \\"success\\": true,\\n  \\"swarmId\\": \\"mock-swarm\\",\\n  \\"agents\\": [\\n    {\\n      \\"id\\": \\"agent-1\\",\\n      \\"name\\": \\"coordinator-1\\",\\n      \\"type\\": \\"coordinator\\",\\n      \\"status\\": \\"active\\",\\n      \\"capabilities\\": []\\n    },\\n    {\\n      \\"id\\": \\"agent-2\\",\\n      \\"name\\": \\"researcher-1\\",\\n      \\"type\\": \\"researcher\\",\\n      \\"status\\": \\"active\\",\\n      \\"capabilities\\": []\\n    },\\n    {\\n      \\"id\\": \\"agent-3\\",\\n      \\"name\\": \\"coder-1\\",\\n      \\"type\\": \\"coder\\",\\n      \\"status\\": \\"busy\\",\\n      \\"capabilities\\": []\\n    }\\n  ],\\n  \\"count\\": 3,\\n  \\"timestamp\\": \\"2026-11-27T04:26:25.484Z\\"\\n}"}]}}'  # noqa: E501
AGENT_SPAWN = '{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"{\\n  \\"success\\": true,\\n  \\"agentId\\": \\"agent_1795753585484_yt9hza\\",\\n  \\"type\\": \\"coder\\",\\n  \\"name\\": \\"C\\",\\n  \\"status\\": \\"active\\",\\n  \\"capabilities\\": [\\n    \\"code\\"\\n  ],\\n  \\"persisted\\": false,\\n  \\"timestamp\\": \\"2026-11-27T04:26:25.484Z\\"\\n}"}]}}'  # noqa: E501
AGENT_LIST_SPAWNED = '{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"{\\n  \\"success\\": true,\\n  \\"swarmId\\": \\"dynamic\\",\\n  \\"agents\\": [\\n    {\\n      \\"id\\": \\"agent_1795753585484_yt9hza\\",\\n      \\"swarmId\\": null,\\n      \\"name\\": \\"C\\",\\n      \\"type\\": \\"coder\\",\\n      \\"status\\": \\"active\\",\\n      \\"capabilities\\": [\\n        \\"code\\"\\n      ],\\n      \\"metadata\\": \\"{\\\\\\"sessionId\\\\\\":\\\\\\"session-cf-1795753585470-iteu\\\\\\",\\\\\\"createdBy\\\\\\":\\\\\\"mcp-server\\\\\\",\\\\\\"spawnedAt\\\\\\":\\\\\\"2026-11-27T04:26:25.484Z\\\\\\"}\\",\\n      \\"createdAt\\": \\"2026-11-27T04:26:25.484Z\\",\\n      \\"lastActive\\": \\"2026-11-27T04:26:25.484Z\\"\\n    }\\n  ],\\n  \\"count\\": 1,\\n  \\"timestamp\\": \\"2026-11-27T04:26:25.484Z\\"\\n}"}]}}'  # noqa: E501
UNKNOWN_TOOL_STUB = '{"jsonrpc":"2.0","id":6,"result":{"content":[{"type":"text","text":"{\\n  \\"success\\": true,\\n  \\"tool\\": \\"no_such_tool\\",\\n  \\"message\\": \\"Tool no_such_tool executed successfully\\",\\n  \\"args\\": {\\n    \\"x\\": 1\\n  },\\n  \\"timestamp\\": \\"2026-11-27T04:26:25.484Z\\"\\n}"}]}}'  # noqa: E501
PING_REFUSED = '{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found"}}'
SWARM_STATUS_NONE = '{"jsonrpc":"2.0","id":8,"result":{"content":[{"type":"text","text":"{\\n  \\"success\\": false,\\n  \\"error\\": \\"No active swarm found\\",\\n  \\"timestamp\\": \\"2026-11-27T04:26:25.484Z\\"\\n}"}]}}'  # noqa: E501
# fmt: on


class Replay:
    """Answers like the recorded server: same lines, the request's id put in."""

    def __init__(self) -> None:
        self.spawned = False
        self.seen: list[str] = []

    def reply(self, message: dict[str, Any]) -> bytes:
        method = message.get("method")
        self.seen.append(str(method))
        if "id" not in message:
            return STRAY_ERROR.encode() + b"\n"  # 2.x answers notifications, id dropped
        if method == "initialize":
            line = INITIALIZE
        elif method == "tools/list":
            line = TOOLS_LIST
        elif method == "tools/call":
            tool = message["params"]["name"]
            if tool == "agent_list":
                line = AGENT_LIST_SPAWNED if self.spawned else AGENT_LIST_PLACEHOLDERS
            elif tool == "agent_spawn":
                self.spawned = True
                line = AGENT_SPAWN
            elif tool == "swarm_status":
                line = SWARM_STATUS_NONE
            else:
                line = UNKNOWN_TOOL_STUB
        else:
            line = PING_REFUSED
        recorded = json.loads(line)
        recorded["id"] = message["id"]
        return encode_line(recorded)

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await stream.send(GREETING.encode() + b"\n")
            pending = b""
            while True:
                try:
                    pending += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        await stream.send(self.reply(json.loads(line)))


@asynccontextmanager
async def replaying() -> AsyncIterator[tuple[Replay, int]]:
    replay = Replay()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, replay.handle, tg)
        yield replay, port
        tg.cancel_scope.cancel()


async def test_client_against_recorded_claude_flow() -> None:
    with anyio.fail_after(10):
        async with replaying() as (replay, port), connect_mcp("127.0.0.1", port) as client:
            assert client.server_info == {"name": "claude-flow", "version": "2.7.47"}
            assert client.protocol_version == PROTOCOL_VERSION
            assert client.catalog.dialect == "v2"
            assert client.catalog.agent_spawn("coder", name="C").arguments == {
                "type": "coder",
                "name": "C",
            }
            raw = await client.call_tool(client.catalog.agent_list())
            assert {a.id for a in parse_agent_list(raw, keep_placeholders=True)} == (
                PLACEHOLDER_AGENT_IDS
            )
            assert await client.list_agents() == []
            assert await client.swarm_status() is None
            spawned = await client.spawn_agent("coder", name="C", capabilities=["code"])
            assert spawned.agent_id == "agent_1795753585484_yt9hza"
            (agent,) = await client.list_agents()
            assert agent.id == spawned.agent_id
            assert agent.swarm_id is None  # spawned without a swarm: "swarmId": null
            assert agent.capabilities == ("code",)
            assert agent.metadata["createdBy"] == "mcp-server"
            stub = await client.call_tool("no_such_tool", {"x": 1})
            assert stub.stub
            with pytest.raises(RpcRemoteError) as info:
                await client.call("ping")  # 2.x has no ping
            assert info.value.code == -32601
        assert replay.seen[:3] == ["initialize", "notifications/initialized", "tools/list"]


def test_real_stub_with_echoed_args_is_a_stub() -> None:
    """2.7.47's catch-all answer carries ``args``: still a stub, not data."""
    result = json.loads(UNKNOWN_TOOL_STUB)["result"]
    out = unwrap_tool_result("no_such_tool", result)
    assert out.stub
    assert out.data["args"] == {"x": 1}
