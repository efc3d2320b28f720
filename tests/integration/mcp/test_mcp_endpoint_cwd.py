"""A launched (``command``) endpoint runs in the working directory the watcher was given.

Servers such as claude-flow keep files under their working directory (``.swarm/`` for 2.x,
``.claude-flow/`` for 3.x), so tests and embedders point it at a folder of their own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from visionflow import settings as s
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry

pytestmark = pytest.mark.anyio


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc to read a cwd")
async def test_launched_server_runs_in_the_given_directory(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "visionflow", "mcp-sim", "--stdio", "--tick", "0"]
    settings = s.validate(
        {"mcp": {"endpoints": [{"name": "sim", "command": command, "poll_interval": 0.1}]}}
    )
    registry = HealthRegistry("t")
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:sim"),
        Metrics(),
        lambda name, agents, live: None,
        cwd=tmp_path,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        with anyio.fail_after(20):
            while watcher.client is None:
                await anyio.sleep(0.02)
        client = watcher.client
        pid = int(client.endpoint.rsplit("pid ", 1)[1].rstrip(")"))
        assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path)
        assert registry.status() == "ok"
        tg.cancel_scope.cancel()


def _environ_of(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
async def test_launched_server_gets_env_added_to_ours(tmp_path: Path) -> None:
    endpoint = {
        "name": "sim",
        "command": sys.executable,  # the .mcp.json form: a program and its args
        "args": ["-m", "visionflow", "mcp-sim", "--stdio", "--tick", "0"],
        "env": {"VF_TEST_KEY": "k-123"},
        "poll_interval": 0.1,
    }
    settings = s.validate({"mcp": {"endpoints": [endpoint]}})
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        HealthRegistry("t").register("mcp:sim"),
        Metrics(),
        lambda name, agents, live: None,
    )
    assert watcher.status.transport == "stdio"
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        with anyio.fail_after(20):
            while watcher.client is None:
                await anyio.sleep(0.02)
        pid = int(watcher.client.endpoint.rsplit("pid ", 1)[1].rstrip(")"))
        environ = _environ_of(pid)
        assert environ["VF_TEST_KEY"] == "k-123"
        assert environ["PATH"] == os.environ["PATH"]  # ours, not replaced
        tg.cancel_scope.cancel()
