"""Optional: the Streamable HTTP transport against a real server,
``@modelcontextprotocol/server-everything`` in its ``streamableHttp`` mode (the reference
TypeScript SDK's server transport: sessions, SSE answers, the GET stream, DELETE).

Skipped unless ``node`` is on PATH and the package is in the cache folder of
tests/e2e/test_claude_flow_real.py (``$VISIONFLOW_REAL_MCP_CACHE``, default
``~/.cache/visionflow-real-mcp``); ``VISIONFLOW_REAL_MCP=1`` installs it there first, as that
file does. The server listens on a free port (it binds every interface: its own choice).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.servicekit import eventually, running
from support.simkit import free_port

from visionflow.mcp.http import connect_http_mcp
from visionflow.mcp.versions import SUPPORTED

INSTALL = os.environ.get("VISIONFLOW_REAL_MCP") == "1"
CACHE = Path(
    os.environ.get("VISIONFLOW_REAL_MCP_CACHE") or Path.home() / ".cache" / "visionflow-real-mcp"
)
PACKAGE = "@modelcontextprotocol/server-everything"
SERVER = CACHE / "node_modules" / PACKAGE / "dist" / "index.js"

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(600 if INSTALL else 120)]


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not on PATH")
    if not SERVER.is_file() and INSTALL:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("VISIONFLOW_REAL_MCP=1 but npm is not on PATH")
        CACHE.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund"]
        subprocess.run([*command, "--prefix", str(CACHE), PACKAGE], check=True, timeout=480)
    if not SERVER.is_file():
        pytest.skip(
            f"{PACKAGE} not installed in {CACHE}; set VISIONFLOW_REAL_MCP=1 to install it there"
        )
    return found


class Everything:
    def __init__(self, node: str, port: int, log: Path) -> None:
        self.node, self.port, self.log = node, port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "PORT": str(self.port)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.node, str(SERVER), "streamableHttp"],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.log.parent,
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    async def ready(self) -> None:
        """Until this start's line (the log keeps the earlier starts' ones) is there."""
        starts = self.starts
        with anyio.fail_after(30):
            while (
                self.log.read_text(errors="replace").count(f"listening on port {self.port}")
                < starts
            ):
                assert self.process is not None and self.process.poll() is None, (
                    self.log.read_text()
                )
                await anyio.sleep(0.05)


@pytest.fixture
def everything(node: str, tmp_path: Path) -> Iterator[Everything]:
    server = Everything(node, free_port(), tmp_path / "everything.log")
    server.start()
    yield server
    server.stop()


async def test_a_session_with_the_reference_server(everything: Everything) -> None:
    await everything.ready()
    notes: list[str] = []
    with anyio.fail_after(60):
        async with connect_http_mcp(
            everything.url,
            name="everything",
            call_timeout=20,
            on_notification=lambda n: notes.append(n.method),
        ) as client:
            assert client.protocol_version in SUPPORTED
            assert client.protocol_version == SUPPORTED[0]  # it speaks the newest we offer
            assert "everything" in str(client.server_info.get("name"))
            assert "echo" in client.catalog.names
            result = await client.call(
                "tools/call", {"name": "echo", "arguments": {"message": "hi"}}
            )
            assert "hi" in str(result)
            await client.call("ping")
            await client.refresh_tools()


async def test_a_service_watches_it_and_retries_when_it_drops(
    everything: Everything, tmp_path: Path
) -> None:
    await everything.ready()
    raw: dict[str, Any] = {
        "state": {"dir": str(tmp_path / "state")},
        "mcp": {
            "call_timeout": 20.0,
            "backoff_initial": 0.1,
            "backoff_max": 0.5,
            "breaker_cooldown": 1.0,
            "endpoints": [{"name": "everything", "url": everything.url, "poll_interval": 0.2}],
        },
    }
    with anyio.fail_after(120):
        async with running(raw) as (_, client):

            async def endpoint() -> dict[str, Any]:
                return (await client.get("/api/bots/status")).json()["endpoints"][0]  # type: ignore[no-any-return]

            async def connected() -> dict[str, Any] | None:
                ep = await endpoint()
                return ep if ep["connected"] and ep["last_poll"] else None

            ep = await eventually(connected, timeout=30)
            assert ep["transport"] == "http" and ep["state"] == "connected"
            assert ep["server"]["protocol_version"] == SUPPORTED[0]
            assert "echo" in ep["tools"] and ep["agents"] == 0
            assert (await client.get("/api/health")).json()["status"] == "ok"

            everything.stop()

            async def down() -> dict[str, Any] | None:
                ep = await endpoint()
                return ep if ep["state"] == "backoff" else None

            ep = await eventually(down, timeout=30)
            assert not ep["connected"] and ep["last_error"]
            assert (await client.get("/api/health")).json()["status"] == "degraded"

            everything.start()
            await everything.ready()

            async def back() -> dict[str, Any] | None:
                ep = await endpoint()
                return ep if ep["connected"] and ep["connects"] == 2 else None

            await eventually(back, timeout=30)
