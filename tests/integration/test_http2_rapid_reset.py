"""HTTP/2 streams opened and reset at once ("rapid reset"): answered, and nothing in the log."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import h2.config
import h2.connection
import pytest
from support.servicekit import running

pytestmark = pytest.mark.anyio


def rapid_reset(host: str, port: int, streams: int) -> int:
    """Open ``streams`` requests on one HTTP/2 connection (prior knowledge, cleartext), reset
    each at once; return how many bytes the server sent back within a second."""
    with socket.create_connection((host, port), timeout=10) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        for _ in range(streams):
            sid = conn.get_next_available_stream_id()
            headers = [
                (":method", "GET"),
                (":path", "/api/graph/export"),
                (":scheme", "http"),
                (":authority", f"{host}:{port}"),
            ]
            conn.send_headers(sid, headers, end_stream=True)
            conn.reset_stream(sid)
            sock.sendall(conn.data_to_send())
        sock.settimeout(1.0)
        got = 0
        try:
            while chunk := sock.recv(65536):
                got += len(chunk)
        except TimeoutError:
            pass
        return got


async def test_rapid_reset_streams_leave_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        host, port = str(svc.http.url).removeprefix("http://").rstrip("/").split(":")
        got = await anyio.to_thread.run_sync(rapid_reset, host, int(port), 300)
        assert got > 0  # the server answered the connection (settings, at least)
        assert (await client.get("/healthz")).status_code == 200
    assert not [r for r in caplog.records if r.exc_info or "Error in ASGI" in r.getMessage()]
