"""A small VisionFlow for the /wss tests: hub + endpoint + hypercorn on port 0, fake physics."""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.sync.client import ClientConnection, connect

from support.hubfakes import FakeSource
from visionflow import settings as s
from visionflow.errors import GraphError
from visionflow.protocol.frames import (
    AGENT_FLAG,
    HEADER_SIZE,
    ID_MASK,
    KNOWLEDGE_FLAG,
    Frame,
    decode_frame,
)
from visionflow.protocol.snapshot import Snapshot
from visionflow.service import Service, restart_policy
from visionflow.supervisor import Supervisor
from visionflow.web.app import create_app
from visionflow.web.context import ServiceContext
from visionflow.web.hub import Hub
from visionflow.web.server import HttpServer
from visionflow.web.ws import websocket_route


@dataclass
class FakePins:
    known: set[int]
    pinned: dict[int, tuple[int, tuple[float, ...]]] = field(default_factory=dict)

    def pin(self, node_ids: np.ndarray, positions: np.ndarray, owner: int) -> None:
        unknown = [int(i) for i in node_ids if int(i) not in self.known]
        if unknown:
            raise GraphError("unknown_node", f"no node {unknown[0]}", "ids")
        for i, p in zip(node_ids.tolist(), positions.tolist(), strict=True):
            self.pinned[i] = (owner, tuple(p))

    def release(self, node_ids: np.ndarray, owner: int) -> None:
        for i in node_ids.tolist():
            if self.pinned.get(i, (None,))[0] == owner:
                del self.pinned[i]

    def release_all(self, owner: int) -> None:
        for i in [i for i, (o, _) in self.pinned.items() if o == owner]:
            del self.pinned[i]


def graph(knowledge: int, agents: int = 0) -> np.ndarray:
    k = np.arange(knowledge, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)
    a = np.arange(10_000, 10_000 + agents, dtype=np.uint32) | np.uint32(AGENT_FLAG)
    return np.concatenate([k, a]).astype(np.uint32)


def snapshot(
    sequence: int, ids: np.ndarray, offset: float = 0.0, *, settled: bool = False
) -> Snapshot:
    n = len(ids)
    pos = np.arange(n * 3, dtype=np.float32).reshape(n, 3) + np.float32(offset)
    vel = np.full((n, 3), 0.5, np.float32)
    return Snapshot.create(sequence, ids.copy(), pos, vel, settled=settled)


@dataclass
class Harness:
    source: FakeSource
    pins: FakePins
    hub: Hub
    ctx: ServiceContext
    http: HttpServer
    supervisor: Supervisor
    settings: s.Settings

    @property
    def url(self) -> str:
        assert self.http.url is not None
        return self.http.url.replace("http://", "ws://") + "/wss"

    async def shutdown(self) -> None:
        """What Service.run does on SIGTERM."""
        self.supervisor.begin_shutdown()
        with anyio.move_on_after(self.settings.server.shutdown_grace):
            await self.supervisor.wait_stopped()


@asynccontextmanager
async def running(
    overrides: dict[str, Any] | None = None, knowledge: int = 50
) -> AsyncIterator[Harness]:
    doc: dict[str, Any] = {"server": {"port": 0, "shutdown_grace": 2.0}}
    for section, values in (overrides or {}).items():
        doc.setdefault(section, {}).update(values)
    settings = s.validate(doc)
    ctx = Service(settings).ctx  # whatever the service puts in its context; nothing started
    source = FakeSource()
    pins = FakePins(known=set(range(knowledge)) | {i & ID_MASK for i in range(10_000, 10_100)})
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(tg, ctx.registry, restart_policy(settings))
        hub = Hub(ctx, source, pins=pins, stopping=supervisor.stopping)
        app = create_app(ctx, extra_routes=[websocket_route(ctx, hub, graph_revision=lambda: 7)])
        http = HttpServer(app, settings, supervisor.stopping)
        await supervisor.start("http", http.run, critical=True)
        await supervisor.start("hub", hub.run)
        h = Harness(source, pins, hub, ctx, http, supervisor, settings)
        try:
            yield h
        finally:
            await h.shutdown()
            tg.cancel_scope.cancel()


#: How long a test client waits for one message (a blocked thread can't be cancelled). Only a
#: failing test waits this long; generous, because the first frame waits for the physics'
#: compile, which on a machine busy with other work took more than 5 s.
WAIT = 20.0


class Client:
    """A ``websockets`` sync client driven from worker threads, so tests run on both backends."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        options = {"open_timeout": WAIT, "close_timeout": 1, "max_size": None, "legacy": True}
        ws = await anyio.to_thread.run_sync(lambda: connect(url, **{**options, **kwargs}))
        return cls(ws)

    async def recv(self) -> str | bytes:
        return await anyio.to_thread.run_sync(self.ws.recv, WAIT)

    async def send(self, data: str | bytes | dict[str, Any]) -> None:
        payload = json.dumps(data) if isinstance(data, dict) else data
        await anyio.to_thread.run_sync(self.ws.send, payload)

    async def json(self) -> dict[str, Any]:
        """The next control message, skipping frames."""
        while True:
            message = await self.recv()
            if isinstance(message, str):
                result: dict[str, Any] = json.loads(message)
                return result

    async def frame(self) -> Frame:
        """The next protocol-2 frame, skipping control messages."""
        return decode_frame(await self.binary())

    async def binary(self) -> bytes:
        while True:
            message = await self.recv()
            if isinstance(message, bytes):
                return message

    async def closed(self) -> Close:
        """Read until the server closes; the close frame it sent."""
        rcvd: Close | None = None
        while rcvd is None:
            try:
                await self.recv()
            except ConnectionClosed as exc:
                if exc.rcvd is None:
                    raise AssertionError(f"no close frame received: {exc!r}") from exc
                rcvd = exc.rcvd
        return rcvd

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.ws.close)


def stalled_viewer(url: str, rcvbuf: int | None = 4096) -> socket.socket:
    """Upgrade a raw socket to a WebSocket and never read from it (a tiny receive buffer)."""
    return upgrade(url, rcvbuf=rcvbuf)[0]


def upgrade(
    url: str, *, rcvbuf: int | None = None, extensions: str | None = None
) -> tuple[socket.socket, bytes]:
    """Upgrade a raw socket to a WebSocket; the socket and the response head."""
    host, _, rest = url.removeprefix("ws://").partition(":")
    port, _, path = rest.partition("/")
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect((host, int(port)))
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall(
        f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n".encode()
        + b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        + f"Sec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, head


def client_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """One final, masked (with a zero key) client frame; ``rsv1`` marks it compressed."""
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 1 << 16:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes([0x80 | (0x40 if rsv1 else 0) | opcode]) + length + b"\0\0\0\0" + payload


def deflated_zeros(size: int) -> bytes:
    """A permessage-deflate payload that inflates to ``size`` zero bytes (about 1000:1)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [z.compress(chunk[: min(len(chunk), size - at)]) for at in range(0, size, len(chunk))]
    data = b"".join(parts) + z.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]  # RFC 7692: the sync flush's empty block is left off


def read_server_frames(sock: socket.socket, timeout: float) -> tuple[list[tuple[int, bytes]], bool]:
    """Read (opcode, payload) frames until EOF or ``timeout`` of silence; also whether EOF came."""
    sock.settimeout(timeout)
    data, frames, eof = b"", [], False
    while not eof:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            break
        except ConnectionResetError:
            chunk = b""
        eof = not chunk
        data += chunk
        while len(data) >= 2:
            n, at = data[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(data[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(data[2:10], "big"), 10
            if len(data) < at + n:
                break
            frames.append((data[0] & 0x0F, data[at : at + n]))
            data = data[at + n :]
    return frames, eof


def header_sequence(data: bytes) -> int:
    assert len(data) >= HEADER_SIZE
    return int.from_bytes(data[8:16], "little")
