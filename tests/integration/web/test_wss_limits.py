"""What a hostile or stuck client costs the server: ``/wss`` over a real hypercorn on port 0."""

from __future__ import annotations

import logging
import select
import socket
import time
import tracemalloc

import anyio
import httpx
import pytest
from loguru import logger
from support.wsharness import (
    Client,
    client_frame,
    deflated_zeros,
    graph,
    read_server_frames,
    running,
    snapshot,
    stalled_viewer,
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


def _ended_by_server(sock: socket.socket) -> bool:
    """Whether the server reset or closed ``sock``, seen without reading from it (reading would
    let a server that is still flushing get on with it)."""
    poll = select.poll()
    poll.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    return bool(poll.poll(0))


def _server_side_connections(port: int) -> int | None:
    """TCP connections on the server's side of ``port`` (Linux), listener and TIME_WAIT aside."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows += [line.split() for line in f.readlines()[1:]]
        except OSError:
            return None
    local_port = f":{port:04X}"
    return sum(1 for r in rows if r[1].endswith(local_port) and r[3] not in ("0A", "06"))


async def test_viewers_that_never_read_are_dropped_once_a_send_times_out() -> None:
    # Before: closed 1013 and out of their slots, but each socket stayed ~20 s (until
    # TCP_USER_TIMEOUT) holding its unsent frames, and the client never saw it end: at 60 new
    # such viewers a second, ~1000 file descriptors and 350 MB.
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(m if m.record["exception"] is None else "Traceback " + m),
        level="DEBUG",
        format="{level} {message}",
    )
    stdlib = _Records()
    logging.getLogger().addHandler(stdlib)
    settings = {"websocket": {"max_lag": 0.5, "send_timeout": 0.5, "min_interval_ms": 5}}
    try:
        with anyio.fail_after(40):
            async with running(settings) as h:
                ids = graph(4000)  # 112 KB keyframes: a viewer that does not read backs up
                h.source.publish(snapshot(1, ids))
                socks = [
                    await anyio.to_thread.run_sync(stalled_viewer, h.url) for _ in range(STALLED)
                ]
                assert h.hub.connections == STALLED
                started = time.monotonic()

                async def publish() -> None:
                    for seq in range(2, 100_000):  # frames keep coming while they stall
                        h.source.publish(snapshot(seq, ids, seq * 0.5))
                        await anyio.sleep(0.02)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(publish)
                    while not all(_ended_by_server(s) for s in socks):
                        assert time.monotonic() - started < 10, "some were never dropped"
                        await anyio.sleep(0.05)
                    took = time.monotonic() - started
                    tg.cancel_scope.cancel()
                assert h.hub.connections == 0
                assert h.http.port is not None
                left = _server_side_connections(h.http.port)
                assert left in (0, None), f"{left} server-side sockets left"
                for s in socks:
                    with pytest.raises(ConnectionResetError):  # reset, not a clean close
                        while s.recv(1 << 16):
                            pass
                    s.close()
                print(f"{STALLED} stalled viewers dropped within {took:.1f}s")
    finally:
        logger.remove(sink)
        logging.getLogger().removeHandler(stdlib)
    assert not [line for line in lines if line.startswith("Traceback")], lines
    assert not [r for r in stdlib.records if r.exc_info], stdlib.records
    assert sum("1013" in line for line in lines) <= STALLED  # a line each at most


STALLED = 8


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_close_that_a_viewer_does_not_take_ends_in_a_reset() -> None:
    # A 50-node graph: the frames still fit the buffers, so no send times out; the idle close
    # then waited behind them. Before: the socket stayed until TCP_USER_TIMEOUT (20 s).
    settings = {"websocket": {"idle_timeout": 1.0, "send_timeout": 0.5, "max_lag": 60.0}}
    with anyio.fail_after(40):
        async with running(settings) as h:
            ids = graph(50)
            h.source.publish(snapshot(1, ids))
            while h.hub.ticks == 0:  # the frame packer has compiled
                await anyio.sleep(0.02)
            sock = await anyio.to_thread.run_sync(stalled_viewer, h.url)
            started, seq = time.monotonic(), 1
            with sock:
                while not _ended_by_server(sock):
                    assert time.monotonic() - started < 10, "never reset"
                    seq += 1
                    h.source.publish(snapshot(seq, ids, seq * 0.5))
                    await anyio.sleep(0.02)
                with pytest.raises(ConnectionResetError):
                    while sock.recv(1 << 16):
                        pass
            assert h.hub.connections == 0
            assert h.http.port is not None
            assert _server_side_connections(h.http.port) in (0, None)


async def test_connections_per_client_address_are_capped() -> None:
    # Before: one address could take every slot (at 60 stalled viewers a second, all of them).
    settings = {"websocket": {"max_connections": 10, "max_connections_per_client": 2}}
    with anyio.fail_after(20):
        async with running(settings) as h:
            first = [await Client.connect(h.url + "?subscribe=false") for _ in range(2)]
            for c in first:
                assert (await c.json())["type"] == "connection_established"
            third = await Client.connect(h.url + "?subscribe=false")
            close = await third.closed()
            assert close.code == 1013 and "127.0.0.1" in close.reason, close
            assert "limit 2" in close.reason
            assert h.hub.connections == 2
            if _can_bind("127.0.0.2"):  # another address is not held back by this one
                other = await Client.connect(
                    h.url + "?subscribe=false", source_address=("127.0.0.2", 0)
                )
                assert (await other.json())["type"] == "connection_established"
                await other.aclose()
            await first[0].aclose()
            with anyio.fail_after(5):
                while h.hub.connections > 1:
                    await anyio.sleep(0.02)
            again = await Client.connect(h.url + "?subscribe=false")  # its slot is free again
            assert (await again.json())["type"] == "connection_established"
            await again.aclose()
            await first[1].aclose()


def _can_bind(host: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x3, b"x"), 1002),  # a reserved opcode
        (client_frame(0x1, b"\xff\xfe bad utf-8"), 1007),  # a text message that is not UTF-8
        (bytes([0x81, 0x02]) + b"hi", 1002),  # an unmasked client frame
    ],
)
async def test_a_protocol_error_is_answered_with_a_close_frame(frame: bytes, code: int) -> None:
    # hypercorn dropped the TCP connection without a close frame, so the peer saw 1006.
    with anyio.fail_after(30):
        async with running({}) as h:
            sock, _ = await anyio.to_thread.run_sync(lambda: upgrade(h.url + "?subscribe=false"))
            with sock:
                await anyio.to_thread.run_sync(sock.sendall, frame)
                frames, eof = await anyio.to_thread.run_sync(read_server_frames, sock, 5.0)
            closes = [payload for op, payload in frames if op == 0x8]
            assert closes, frames
            assert int.from_bytes(closes[0][:2], "big") == code
            assert eof
            with anyio.fail_after(10):
                while h.hub.connections:
                    await anyio.sleep(0.01)
