"""Optional: the Streamable HTTP transport against real servers:
``@modelcontextprotocol/server-everything`` in its ``streamableHttp`` mode (the TypeScript SDK's
server transport: sessions, SSE answers, the GET stream, DELETE), and a server written with the
official Python SDK (``mcp``: ``MCPServer``, FastMCP before 2.0) in its ``streamable-http`` mode,
answering with event streams and, with ``json_response``, with JSON.

Skipped unless they are in the cache folder of tests/e2e/test_claude_flow_real.py
(``$VISIONFLOW_REAL_MCP_CACHE``, default ``~/.cache/visionflow-real-mcp``): the npm package under
``node_modules``, the Python SDK in a virtual environment of its own (``python-mcp``, so that
its 29 packages stay out of ours). ``VISIONFLOW_REAL_MCP=1`` installs them there first. The
node server listens on a free port (on every interface: its own choice); the Python one on
loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
PYTHON_SDK = "mcp==2.3.0"
SDK_VENV = CACHE / "python-mcp"
SDK_PYTHON = SDK_VENV / "bin" / "python"
SDK_SERVER = """
import sys

try:
    from mcp.server.mcpserver import MCPServer as Server  # mcp >= 2
except ImportError:
    from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

server = Server("vf-python-sdk")


@server.tool()
def echo(message: str) -> str:
    \"\"\"Say it back.\"\"\"
    return message


port, json_response = int(sys.argv[1]), sys.argv[2] == "json"
if hasattr(server, "run_streamable_http_async"):
    server.run("streamable-http", host="127.0.0.1", port=port, json_response=json_response)
else:
    server.settings.port, server.settings.json_response = port, json_response
    server.run("streamable-http")
"""

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


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    if not SDK_PYTHON.is_file() and INSTALL:
        subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True, timeout=120)
        pip = [str(SDK_PYTHON), "-m", "pip", "install", "--quiet", PYTHON_SDK]
        subprocess.run(pip, check=True, timeout=480)
    if not SDK_PYTHON.is_file():
        pytest.skip(
            f"the Python MCP SDK is not installed in {SDK_VENV}; "
            "set VISIONFLOW_REAL_MCP=1 to install it there"
        )
    return SDK_PYTHON


def _launch(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("answers", ["sse", "json"])
async def test_a_server_of_the_python_sdk(sdk_python: Path, tmp_path: Path, answers: str) -> None:
    script = tmp_path / "server.py"
    script.write_text(SDK_SERVER)
    port = free_port()
    log = tmp_path / "server.log"
    process = _launch([str(sdk_python), str(script), str(port), answers], log)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(60):
            while "Uvicorn running" not in log.read_text(errors="replace"):
                assert process.poll() is None, log.read_text()
                await anyio.sleep(0.05)
            async with connect_http_mcp(url, name="py", call_timeout=20) as client:
                assert client.protocol_version == SUPPORTED[0]
                assert client.server_info.get("name") == "vf-python-sdk"
                assert client.catalog.names == {"echo"}
                args = {"name": "echo", "arguments": {"message": "hi"}}
                result = await client.call("tools/call", args)
                assert result["content"][0]["text"] == "hi"
                await client.refresh_tools()
        assert "DELETE /mcp" in log.read_text()  # the session was ended
    finally:
        process.terminate()
        process.wait(10)
