"""With a token set, a launched MCP server's command line (which may carry a key) is shown only
to requests that present the token: GET /api/settings and GET /api/bots/status."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.servicekit import running
from support.simkit import free_port

TOKEN = "t0ken"
SECRET = "sk-live-123456"


@pytest.mark.anyio
async def test_command_lines_need_the_token(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: the watcher's connects are refused
    raw = {
        "server": {"token": TOKEN},
        "state": {"dir": str(tmp_path / "state")},
        "mcp": {
            "endpoints": [
                {
                    "name": "launched",
                    # exits at once (an unknown option): the watcher retries with backoff
                    "command": [sys.executable, "-m", "visionflow", "mcp-sim", "--api-key", SECRET],
                    "cwd": str(tmp_path / "claude-flow-home"),
                },
                {"name": "tcp", "host": "127.0.0.1", "port": closed},
            ]
        },
    }
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with running(raw) as (_, client):
        anonymous = await client.get("/api/settings")
        assert anonymous.status_code == 200
        assert SECRET not in anonymous.text and "claude-flow-home" not in anonymous.text
        eps = anonymous.json()["settings"]["mcp"]["endpoints"]
        assert eps[0]["command"] == ["***"] and eps[0]["cwd"] == "***"
        assert eps[1]["command"] == [] and eps[1]["host"] == "127.0.0.1"
        assert anonymous.json()["settings"]["server"]["token"] == "***"
        full = await client.get("/api/settings", headers=bearer)
        assert SECRET in full.json()["settings"]["mcp"]["endpoints"][0]["command"]

        status = await client.get("/api/bots/status")
        assert SECRET not in status.text
        targets = {e["name"]: e["target"] for e in status.json()["endpoints"]}
        assert targets == {"launched": "***", "tcp": f"127.0.0.1:{closed}"}
        status = await client.get("/api/bots/status", headers=bearer)
        assert SECRET in status.text


@pytest.mark.anyio
async def test_without_a_token_everything_is_shown(tmp_path: Path) -> None:
    raw = {
        "state": {"dir": str(tmp_path / "state")},
        "mcp": {"endpoints": [{"name": "launched", "command": ["/bin/true", SECRET]}]},
    }
    async with running(raw) as (_, client):
        assert SECRET in (await client.get("/api/settings")).text
        assert SECRET in (await client.get("/api/bots/status")).text
