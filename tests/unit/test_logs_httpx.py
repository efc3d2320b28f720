"""What other libraries may write into the service's log: httpx's per-request lines may not."""

from __future__ import annotations

import io
import logging
import sys

from visionflow import logs


def test_httpx_request_lines_stay_out_of_the_log() -> None:
    stream = io.StringIO()
    logs.setup("DEBUG", "human", stream)
    try:
        # what httpx writes at INFO for every request to an MCP endpoint: the whole URL, its
        # password and ?api_key= in clear, twice a poll (docs/mcp.md promises ***)
        logging.getLogger("httpx").info(
            'HTTP Request: POST http://user:pw-SECRET1@127.0.0.1:1/mcp?api_key=SECRET2 "200"'
        )
        logging.getLogger("httpcore.connection").debug("connect_tcp.started host='127.0.0.1'")
        logging.getLogger("httpx").warning("a real problem")
        logging.getLogger("visionflow.test").info("our own line")
    finally:
        logs.setup("INFO", "human", sys.stderr)
    text = stream.getvalue()
    assert "SECRET" not in text and "connect_tcp" not in text
    assert "a real problem" in text and "our own line" in text
