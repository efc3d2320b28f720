"""Labelled series exist from the start, and stamina's retry lines say what they retry."""

from __future__ import annotations

import re
import socket

import pytest
import stamina.instrumentation
from loguru import logger
from support.servicekit import eventually, running

from visionflow import logs


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_every_subsystem_and_endpoint_has_series_before_anything_happens(
    anyio_backend: str,
) -> None:
    endpoint = {"name": "down", "port": _free_port()}
    async with running({"mcp": {"endpoints": [endpoint], "backoff_initial": 5.0}}) as (
        svc,
        client,
    ):
        text = (await client.get("/metrics")).text
        for name in svc.ctx.registry.subsystems:
            assert f'visionflow_subsystem_restarts_total{{subsystem="{name}"}} 0.0' in text, name
        assert {"physics", "http", "mcp:down"} <= set(svc.ctx.registry.subsystems)
        assert 'visionflow_mcp_connected{endpoint="down"} 0.0' in text
        assert 'visionflow_mcp_agents{endpoint="down"} 0.0' in text


@pytest.mark.anyio
async def test_a_retry_line_names_the_endpoint_attempt_and_delay(anyio_backend: str) -> None:
    lines: list[str] = []
    logs.route_retries()  # as logs.setup does at start
    sink = logger.add(lines.append, format="{extra[subsystem]} | {message}", level="WARNING")
    try:
        endpoint = {"name": "down", "port": _free_port()}
        mcp = {"endpoints": [endpoint], "backoff_initial": 0.05, "backoff_max": 0.1}
        async with running({"mcp": mcp}):
            await eventually(lambda: any("retrying in" in line for line in lines), timeout=20)
    finally:
        logger.remove(sink)
        stamina.instrumentation.set_on_retry_hooks(None)
    retry = next(line for line in lines if "retrying in" in line)
    assert retry.startswith("mcp:down | ")
    assert "MCP endpoint down (127.0.0.1:" in retry
    assert re.search(r"attempt \d+ failed \(.+\); retrying in \d+\.\d\ds", retry), retry
    assert "stamina.retry_scheduled" not in "".join(lines)
