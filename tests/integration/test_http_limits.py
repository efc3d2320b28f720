"""HTTP limits against the real hypercorn on an ephemeral port (docs/operations.md, "HTTP limits
and TLS"): the 429 of the per-client rate limit, the import queue's bound, the header timeout
(slowloris) and the header size limit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import running

from visionflow.graph.store import GraphStore
from visionflow.web import routes_graph

DOC = {"nodes": [{"id": "a"}]}


def _port(url: object) -> int:
    return int(str(url).rsplit(":", 1)[1].strip("/"))


async def _head(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    with anyio.fail_after(30):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    return data


@pytest.mark.anyio
async def test_mutating_requests_past_the_burst_get_429_with_retry_after(tmp_path: Path) -> None:
    # one token per 100 s: the third request finds the bucket empty however slow the machine
    raw = {"state": {"dir": str(tmp_path)}, "server": {"rate_limit": 0.01, "rate_burst": 2}}
    async with running(raw) as (_, client):
        for _ in range(2):
            assert (await client.post("/api/graph/import", json=DOC)).status_code == 200
        refused = await client.patch("/api/settings", json={"log": {"level": "DEBUG"}})
        assert refused.status_code == 429
        assert 90 <= int(refused.headers["retry-after"]) <= 100
        assert refused.headers["content-type"] == "application/json"
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and "try again in" in error["message"]
        # reads and probes are never limited
        for path in ("/healthz", "/readyz", "/metrics", "/api/settings", "/api/graph/data"):
            assert (await client.get(path)).status_code in (200, 503), path
        # the setting did not change: the refused PATCH never reached its route
        assert (await client.get("/api/settings")).json()["settings"]["log"]["level"] == "INFO"


@pytest.mark.anyio
async def test_the_default_limit_lets_a_test_suites_bursts_through(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        codes = {(await client.post("/api/graph/import", json=DOC)).status_code for _ in range(60)}
        assert codes == {200}


@pytest.mark.anyio
async def test_imports_wait_their_turn_and_past_the_queue_get_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = routes_graph._import
    started = threading.Event()
    release = threading.Event()

    def held_import(store: GraphStore, data: bytes, *rest: Any) -> dict[str, Any]:
        started.set()
        release.wait(60)  # a worker thread: the first import holds its turn until released
        return real_import(store, data, *rest)

    monkeypatch.setattr(routes_graph, "_import", held_import)
    raw = {"state": {"dir": str(tmp_path)}, "server": {"max_queued_imports": 1}}
    async with running(raw) as (svc, client):
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await client.post("/api/graph/import", json=DOC, timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(post)
            with anyio.fail_after(30):
                while not started.is_set():
                    await anyio.sleep(0.01)
            tg.start_soon(post)  # waits its turn
            with anyio.fail_after(30):
                while svc.ctx.imports.admitted < 2:
                    await anyio.sleep(0.01)
            # one runs, one waits: a third is refused at once, before its body is read
            refused = await client.post("/api/graph/import", json=DOC)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["error"]["code"] == "busy"
            assert "server.max_queued_imports" in refused.json()["error"]["message"]
            release.set()
        assert sorted(r.status_code for r in answers) == [200, 200]
        assert svc.ctx.imports.admitted == 0
        assert (await client.post("/api/graph/import", json=DOC)).status_code == 200


#: HTTP/1.1: a request line and headers that never end.
H1_DRIP = (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100)
#: HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame at once, then a HEADERS
#: frame (stream 1, 16 KiB of block announced) a byte at a time.
H2_DRIP = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"),
    bytes.fromhex("004000010400000001") + b"\x00" * 100,
)


async def _dripped(port: int, first: bytes, drip: bytes, limit: float) -> tuple[float, int]:
    """Send ``first``, then ``drip`` a byte a second until the server hangs up: how long it
    took from connecting (or ``inf`` if it never did) and how many bytes were dripped."""
    start = anyio.current_time()
    ended = float("inf")
    sent = 0
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:

        async def reader() -> None:
            nonlocal ended
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass
            ended = anyio.current_time() - start

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            with anyio.move_on_after(limit):
                if first:
                    await stream.send(first)
                for byte in drip:
                    if ended != float("inf"):
                        break
                    try:
                        await stream.send(bytes([byte]))
                    except (anyio.BrokenResourceError, OSError):
                        break
                    sent += 1
                    await anyio.sleep(1.0)
                while ended == float("inf"):
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    return ended, sent


@pytest.mark.anyio
@pytest.mark.slow
async def test_headers_dripped_a_byte_a_second_are_cut_off_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    # 7 s, more than hypercorn's own 5 s keep-alive timeout: a server that ignored the setting
    # would cut the connections too early, one with no timeout never
    timeout = 7.0
    raw = {"state": {"dir": str(tmp_path)}, "server": {"header_timeout": timeout}}
    async with running(raw) as (svc, client):
        port = _port(svc.http.url)
        results: dict[str, tuple[float, int]] = {}

        async def drip(name: str, first: bytes, drip: bytes) -> None:
            results[name] = await _dripped(port, first, drip, timeout + 20)

        async with anyio.create_task_group() as tg:  # HTTP/1.1 and HTTP/2 side by side
            tg.start_soon(drip, "h1", *H1_DRIP)
            tg.start_soon(drip, "h2", *H2_DRIP)
        for name, (elapsed, sent) in results.items():
            assert timeout - 0.5 <= elapsed <= timeout + 15, (name, elapsed)
            assert sent < 100, (name, sent)
        # the others were served all along
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_headers_over_max_header_bytes_get_431(tmp_path: Path) -> None:
    raw = {"state": {"dir": str(tmp_path)}, "server": {"max_header_bytes": 2048}}
    async with running(raw) as (svc, client):
        assert (await client.get("/healthz", headers={"X-Pad": "a" * 1000})).status_code == 200
        async with await anyio.connect_tcp("127.0.0.1", _port(svc.http.url)) as stream:
            # headers not ended after 4000 bytes (under hypercorn's own 16 KiB: only the setting
            # refuses them; without it the server would wait for the rest)
            pad = b"a" * 4000
            await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + pad)
            head = await _head(stream)
        assert head.startswith(b"HTTP/1.1 431"), head
