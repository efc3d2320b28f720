"""The swarm simulator: an MCP server speaking claude-flow's dialect over loopback TCP.

One :class:`~visionflow.mcpsim.model.SwarmModel` is shared by every connection (as the TCP
bridge in front of claude-flow shares one server process) and a ticker keeps it alive. Faults
(:class:`SimFaults`) make it misbehave in the ways real deployments do, for tests.
"""

from __future__ import annotations

import math
import os
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream
from loguru import logger

from visionflow.errors import RemoteProtocolError
from visionflow.mcp.framing import LineFramer, SkippedLine, encode_line
from visionflow.mcpsim.dialect import SimDialect
from visionflow.mcpsim.model import Flavor, SwarmModel

__all__ = ["SimFaults", "Simulator", "serve_simulator", "serve_simulator_stdio"]

log = logger.bind(subsystem="mcp")

#: A request line bigger than this closes the connection: requests are small.
MAX_REQUEST_LINE = 1024 * 1024
#: Lines waiting for the writer, per connection; a slow reader backs up the handler, not memory.
OUTBOX_SIZE = 32
#: Connections served at once; further ones wait in the accept backlog.
MAX_CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class SimFaults:
    """Misbehaviour, per simulator run. Defaults: a well-behaved server.

    - ``drop_after_messages``: close the connection on receiving the N-th message, unanswered.
    - ``reply_delay``: seconds to wait before each reply.
    - ``garbage_every``: write a non-JSON line before every N-th line.
    - ``banner``: a non-JSON line written first (older 2.x builds print one).
    - ``out_of_order``: hold each line up to ``hold_s`` and send the next one first.
    - ``drip_bytes``/``drip_interval``: write lines in chunks of that size, pausing between.
    - ``huge_line_bytes``: after answering ``initialize``, send one notification this big.
    - ``chatter``: an unrelated notification before every reply.
    """

    drop_after_messages: int | None = None
    reply_delay: float = 0.0
    garbage_every: int = 0
    banner: str | None = None
    out_of_order: bool = False
    hold_s: float = 0.05
    drip_bytes: int = 0
    drip_interval: float = 0.001
    huge_line_bytes: int = 0
    chatter: bool = False


class Simulator:
    """The simulator's state and connection handler; :func:`serve_simulator` runs it."""

    def __init__(
        self,
        *,
        flavor: Flavor = "v2",
        faults: SimFaults | None = None,
        seed: int = 0,
        tick_interval: float = 1.0,
        autopilot: bool = True,
    ) -> None:
        self.flavor: Flavor = flavor
        self.faults = faults or SimFaults()
        self.model = SwarmModel(flavor, seed=seed)
        self.dialect = SimDialect(self.model)
        self.tick_interval = tick_interval
        self.autopilot = autopilot
        self.connections = 0
        self._limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)

    async def run_ticker(self) -> None:
        if not math.isfinite(self.tick_interval) or self.tick_interval <= 0:
            return
        while True:
            await anyio.sleep(self.tick_interval)
            self.model.tick(autopilot=self.autopilot)

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        async with self._limiter:
            self.connections += 1
            # One connection's trouble must not reach the listener's task group: that would
            # stop the whole simulator. The handler's task group wraps errors in groups.
            try:
                await self._converse(stream)
            except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as group:
                log.debug("sim: connection lost: {!r}", group.exceptions[0])
            except* RemoteProtocolError as group:
                log.warning("sim: closing connection: {}", group.exceptions[0])
            finally:
                await anyio.aclose_forcefully(stream)

    async def _converse(self, stream: anyio.abc.ByteStream) -> None:
        faults = self.faults
        framer = LineFramer(MAX_REQUEST_LINE)
        outbox, outbox_reader = anyio.create_memory_object_stream[bytes](OUTBOX_SIZE)
        received = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_loop, stream, outbox_reader)
            async with outbox:
                if faults.banner is not None:
                    await outbox.send(faults.banner.encode() + b"\n")
                for message in self.dialect.greeting():
                    await outbox.send(encode_line(message))
                while True:
                    try:
                        chunk = await stream.receive()
                    except anyio.EndOfStream:
                        break
                    for event in framer.feed(chunk):
                        if isinstance(event, SkippedLine):
                            log.warning("sim: skipped line {!r}: {}", event.preview, event.reason)
                            continue
                        received += 1
                        if faults.drop_after_messages and received >= faults.drop_after_messages:
                            log.info("sim: dropping connection after {} messages", received)
                            tg.cancel_scope.cancel()
                            return
                        replies = self.dialect.handle(event)
                        if replies and faults.reply_delay > 0:
                            await anyio.sleep(faults.reply_delay)
                        for reply in replies:
                            if faults.chatter and "id" in reply:
                                await outbox.send(encode_line(_progress(received)))
                            await outbox.send(encode_line(reply))
                        if event.method == "initialize" and faults.huge_line_bytes > 0:
                            await outbox.send(_huge_line(faults.huge_line_bytes))
            # Outbox closed: the writer flushes what is queued, then the task group ends.

    async def _write_loop(
        self, stream: anyio.abc.ByteStream, lines: MemoryObjectReceiveStream[bytes]
    ) -> None:
        faults = self.faults
        written = 0
        async with lines:
            async for line in lines:
                batch = [line]
                if faults.out_of_order:
                    # Wait briefly for the next line and send it first; a lone line goes
                    # out after hold_s so a one-at-a-time client is not stalled forever.
                    with anyio.move_on_after(faults.hold_s), suppress(anyio.EndOfStream):
                        batch.insert(0, await lines.receive())
                for item in batch:
                    written += 1
                    if faults.garbage_every and written % faults.garbage_every == 0:
                        await self._write(stream, b"this is not JSON {{{ garbage\n")
                    await self._write(stream, item)

    async def _write(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        step = self.faults.drip_bytes
        if step <= 0:
            await stream.send(data)
            return
        for i in range(0, len(data), step):
            await stream.send(data[i : i + step])
            await anyio.sleep(self.faults.drip_interval)


def _progress(n: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": f"sim-{n}", "progress": n},
    }


def _huge_line(size: int) -> bytes:
    head = msgspec.json.encode(
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": ""}}
    )
    pad = max(0, size - len(head) - 1)
    # Splice the padding into the empty "data" string: one valid JSON line of ``size`` bytes.
    return head.replace(b'"data":""', b'"data":"' + b"x" * pad + b'"') + b"\n"


async def serve_simulator(
    host: str = "127.0.0.1",
    port: int = 9500,
    *,
    flavor: Flavor = "v2",
    faults: SimFaults | None = None,
    seed: int = 0,
    tick_interval: float = 1.0,
    autopilot: bool = True,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a simulated claude-flow ``flavor`` on ``host:port`` until cancelled.

    ``port=0`` picks a free port; the bound port is reported through ``task_status.started``.
    ``tick_interval`` paces the living swarm (0 or inf: frozen); ``autopilot=False`` makes the
    swarm change only through tool calls and their tasks.
    """
    sim = Simulator(
        flavor=flavor, faults=faults, seed=seed, tick_interval=tick_interval, autopilot=autopilot
    )
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener, anyio.create_task_group() as tg:
        bound = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        log.info("mcp simulator ({}) listening on {}:{}", flavor, host, bound)
        tg.start_soon(sim.run_ticker)
        task_status.started(bound)
        await listener.serve(sim.handle, task_group=tg)


class _StdioStream(anyio.abc.ByteStream):
    """stdin/stdout as a byte stream: blocking fd reads and writes in worker threads."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd, self._write_fd = read_fd, write_fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # os.read returns as soon as any bytes are there (a buffered read would wait for all).
        data = await anyio.to_thread.run_sync(
            os.read, self._read_fd, max_bytes, abandon_on_cancel=True
        )
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            try:
                n = await anyio.to_thread.run_sync(os.write, self._write_fd, view)
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[n:]

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def serve_simulator_stdio(
    *,
    flavor: Flavor = "v2",
    faults: SimFaults | None = None,
    seed: int = 0,
    tick_interval: float = 1.0,
    autopilot: bool = True,
) -> None:
    """Serve one session over stdin/stdout (as ``npx claude-flow mcp start`` does) until EOF."""
    sim = Simulator(
        flavor=flavor, faults=faults, seed=seed, tick_interval=tick_interval, autopilot=autopilot
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(sim.run_ticker)
        await sim.handle(_StdioStream(0, 1))
        tg.cancel_scope.cancel()
