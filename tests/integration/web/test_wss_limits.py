"""What a hostile or stuck client costs the server: ``/wss`` over a real hypercorn on port 0."""

from __future__ import annotations

import time
import tracemalloc

import anyio
import httpx
import pytest
from support.wsharness import (
    Client,
    client_frame,
    deflated_zeros,
    read_server_frames,
    running,
    upgrade,
)

from visionflow.protocol.frames import RECORD_SIZE
from visionflow.web.ws import MAX_DRAG_RECORDS

pytestmark = pytest.mark.anyio


async def test_a_deflate_bomb_closes_1009_without_inflating_past_the_limit() -> None:
    # Before: the whole message was inflated before its size was checked; a 0.94 MB message
    # that inflates to 0.97 GB added 400 MB RSS and stalled the loop 5.1 s before the 1009.
    limit = 1 << 20
    settings = {"websocket": {"compression": True, "max_inbound_bytes": limit}}
    with anyio.fail_after(30):
        async with running(settings) as h:
            sock, head = await anyio.to_thread.run_sync(
                lambda: upgrade(h.url + "?subscribe=false", extensions="permessage-deflate")
            )
            assert b"permessage-deflate" in head.lower()
            bomb = client_frame(0x2, deflated_zeros(64 << 20), rsv1=True)
            assert len(bomb) < 256 << 10
            latencies: list[float] = []

            async def poll_health(http: httpx.AsyncClient) -> None:
                while True:
                    started = time.monotonic()
                    assert (await http.get("/healthz")).status_code == 200
                    latencies.append(time.monotonic() - started)
                    await anyio.sleep(0.01)

            http = httpx.AsyncClient(base_url=str(h.http.url), timeout=10)
            async with http, anyio.create_task_group() as tg:
                tg.start_soon(poll_health, http)
                with sock:
                    tracemalloc.start()
                    try:
                        started = time.monotonic()
                        await anyio.to_thread.run_sync(sock.sendall, bomb)
                        frames, eof = await anyio.to_thread.run_sync(read_server_frames, sock, 5.0)
                        took = time.monotonic() - started
                        _, peak = tracemalloc.get_traced_memory()
                    finally:
                        tracemalloc.stop()
                await anyio.sleep(0.1)  # a few more answers after the close
                tg.cancel_scope.cancel()
            opcodes = [op for op, _ in frames]
            assert opcodes[-1:] == [0x8], opcodes
            assert int.from_bytes(frames[-1][1][:2], "big") == 1009
            assert eof and took < 3.0  # generous: it is immediate
            # What the process allocated meanwhile (server and client): the limit, a zlib
            # window and the compressed frame, never the 64 MiB it would inflate to.
            assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB allocated"
            assert latencies and max(latencies) < 1.0, max(latencies)
            assert h.hub.connections == 0


async def test_compressed_messages_within_the_limit_arrive_whole() -> None:
    settings = {"websocket": {"compression": True, "max_inbound_bytes": 1 << 20}}
    with anyio.fail_after(20):
        async with running(settings) as h:
            c = await Client.connect(h.url + "?subscribe=false")
            assert [e.name for e in c.ws.protocol.extensions] == ["permessage-deflate"]
            assert (await c.json())["type"] == "connection_established"
            await c.send({"type": "ping", "timestamp": 5})
            assert await c.json() == {"type": "pong", "timestamp": 5}
            drag = bytes(RECORD_SIZE * (MAX_DRAG_RECORDS + 1))  # 112 KiB, a few hundred bytes sent
            await c.send(drag)
            error = await c.json()
            assert error["code"] == "bad_drag" and str(MAX_DRAG_RECORDS) in error["message"]
            await c.send(bytes((1 << 20) - 4))  # just under the limit once inflated
            await c.send({"type": "ping", "timestamp": 6})
            while (message := await c.json())["type"] != "pong":
                assert message["code"] == "bad_drag"  # 37k records: too many to pin
            assert message == {"type": "pong", "timestamp": 6}
            await c.aclose()
