"""A server that keeps sending JSON that is not JSON-RPC gets a few warnings, not one per line."""

from __future__ import annotations

from typing import Any

import pytest
from loguru import logger

from visionflow.mcp.client import SKIP_LOG_EVERY, SKIP_LOG_FIRST, McpClient
from visionflow.mcp.rpc import InvalidMessage


@pytest.mark.anyio
async def test_invalid_messages_are_rate_limited_in_the_log() -> None:
    stream: Any = object()  # never read or written by _dispatch
    client = McpClient(
        stream, endpoint="spew", call_timeout=1.0, max_line_bytes=1024, on_notification=None
    )
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING", format="{message}")
    try:
        for _ in range(2 * SKIP_LOG_EVERY):
            await client._dispatch(InvalidMessage("neither request, notification nor reply"))
    finally:
        logger.remove(sink)
    assert len(warnings) == SKIP_LOG_FIRST + 2, warnings
    assert warnings[-1].rstrip().endswith(f"({2 * SKIP_LOG_EVERY} skipped so far)")
