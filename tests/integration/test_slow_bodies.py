"""Request bodies must arrive at a useful pace and a few at a time (slowloris), against the real
hypercorn on an ephemeral port; the pace rules are shortened for the test."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from support.servicekit import running

from visionflow.web import uploads

HEAD = (
    "POST /api/graph/import HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


async def _response(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    with anyio.fail_after(30):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    return data


async def imports_again(client: httpx.AsyncClient) -> None:
    """A small import is refused (503) until the server has room again, then applied."""
    with anyio.fail_after(30):
        while True:
            r = await client.post("/api/graph/import", json={"nodes": [{"id": "a"}]})
            if r.status_code == 200:
                return
            assert r.status_code == 503
            await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_a_dripping_body_gets_408(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "GRACE_S", 0.5)
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        port = int(str(svc.http.url).rsplit(":", 1)[1].strip("/"))
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(HEAD.encode() + b'{"nodes": [')  # then nothing more
            head = await _response(stream)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_too_many_bodies_at_once_from_one_client_get_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uploads, "PER_CLIENT", 2)
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        port = int(str(svc.http.url).rsplit(":", 1)[1].strip("/"))
        held = []
        try:
            for _ in range(2):  # two stalled uploads hold both slots of this address
                s = await anyio.connect_tcp("127.0.0.1", port)
                held.append(s)
                await s.send(HEAD.encode() + b"{")
            await anyio.sleep(0.3)  # let the server start reading them
            async with await anyio.connect_tcp("127.0.0.1", port) as third:
                await third.send(HEAD.encode() + b"{")
                head = await _response(third)
            assert head.startswith(b"HTTP/1.1 503"), head
            assert b"retry-after: 1" in head.lower()
        finally:
            for s in held:
                await s.aclose()
        # the slots come back when those connections go
        await imports_again(client)


@pytest.mark.anyio
async def test_a_client_leaving_mid_upload_logs_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        port = int(str(svc.http.url).rsplit(":", 1)[1].strip("/"))
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(HEAD.encode() + b'{"nodes": [')
        await anyio.sleep(0.3)  # the handler is reading the body
        await stream.aclose()
        await anyio.sleep(0.5)
        assert (await client.get("/healthz")).status_code == 200
    assert not [r for r in caplog.records if r.exc_info or "Error in ASGI" in r.getMessage()]


@pytest.mark.anyio
async def test_bodies_held_at_once_share_a_byte_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 16 concurrent 63 MiB imports took 1.3-1.6 GB; here the budget is 250 kB and a body may
    # have 200 kB: one stalled upload holding 150 kB leaves no room for a second 150 kB.
    monkeypatch.setattr(uploads, "BYTE_BUDGET", 250_000)
    head = HEAD.replace("Content-Length: 100000", "Content-Length: 200000").encode()
    raw = {"state": {"dir": str(tmp_path)}, "server": {"max_request_bytes": 200_000}}
    async with running(raw) as (svc, client):
        port = int(str(svc.http.url).rsplit(":", 1)[1].strip("/"))
        first = await anyio.connect_tcp("127.0.0.1", port)
        try:
            await first.send(head + b"[" + b" " * 150_000)  # then stalls, holding 150 kB
            await anyio.sleep(0.5)
            async with await anyio.connect_tcp("127.0.0.1", port) as second:
                await second.send(head + b"[" + b" " * 150_000)
                answer = await _response(second)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"bytes of request bodies" in answer or b"connection: close" in answer.lower()
        finally:
            await first.aclose()
        # the bytes come back with the connection: a body fits again
        await imports_again(client)
    # the refused client hung up after the head: under trio hypercorn then fails the rest of
    # the response, which ended quietly (web/endings.py), not as an ASGI traceback
    assert not [r for r in caplog.records if r.exc_info or "Error in ASGI" in r.getMessage()]
