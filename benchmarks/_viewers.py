"""Shared by the reliability benchmarks: ``/wss`` viewers (protocol 2) that read every frame.

- :func:`watch`: one viewer, connected for a while, counting frames and recording when each
  arrived (the frame's sequence is the physics tick it shows);
- :func:`stalled`: a viewer that connects, then stops reading (a small receive buffer, so the
  server's sends block soon), and finds out afterwards how the server closed it;
- run as a script, a process of N viewers for a fixed window, printing one JSON line: what
  ``load.py`` starts, so that the viewers' CPU is not the server's.

      python benchmarks/_viewers.py WS_URL VIEWERS WARMUP_S WINDOW_S

Every wait has a deadline; the script process exits by itself after WARMUP_S + WINDOW_S + 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets
from websockets.exceptions import ConnectionClosed

HEADER = struct.Struct("<2sBBIQ")  # magic, version, kind, records, sequence (docs/protocol.md)
PING_S = 10.0  # stay clear of websocket.idle_timeout (60 s by default)


@dataclass
class Seen:
    """What one viewer received."""

    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (sequence, monotonic)
    close_code: int | None = None
    error: str | None = None


async def watch(
    ws_url: str, seconds: float, *, record: bool = False, seen: Seen | None = None
) -> Seen:
    """Connect, read every frame for ``seconds``, then close. A refusal or a close by the server
    is recorded in ``seen`` (``close_code``, ``error``), not raised."""
    seen = seen if seen is not None else Seen()
    until = time.monotonic() + seconds
    try:
        async with websockets.connect(
            ws_url, compression=None, max_size=None, open_timeout=30, close_timeout=2
        ) as ws:
            next_ping = time.monotonic() + PING_S
            while (left := until - time.monotonic()) > 0:
                try:
                    message = await asyncio.wait_for(ws.recv(), min(left, PING_S))
                except TimeoutError:
                    message = None
                now = time.monotonic()
                if isinstance(message, bytes) and len(message) >= HEADER.size:
                    _, _, kind, _, sequence = HEADER.unpack_from(message)
                    seen.frames += 1
                    seen.keyframes += kind == 0
                    seen.bytes += len(message)
                    if record:
                        seen.arrivals.append((sequence, now))
                if now > next_ping:
                    next_ping = now + PING_S
                    await ws.send('{"type":"ping"}')
    except ConnectionClosed as exc:
        seen.close_code = exc.rcvd.code if exc.rcvd is not None else None
        seen.error = f"closed {seen.close_code}: {exc.rcvd.reason if exc.rcvd else ''}"
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        seen.error = f"{type(exc).__name__}: {exc}"
    return seen


@dataclass
class Stalled:
    connected_at: float = 0.0
    closed_code: int | None = None
    closed_reason: str = ""
    frames_before_stall: int = 0
    ended: str = "still open"


async def stalled(ws_url: str, read_s: float, stall_s: float, result: Stalled) -> None:
    """Read frames for ``read_s``, then nothing for ``stall_s``, then drain what the kernel and
    the client library buffered to find the server's close frame (if it closed)."""
    parts = urlsplit(ws_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up fast once stalled
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    async with websockets.connect(
        ws_url, sock=sock, compression=None, max_size=None, max_queue=1, open_timeout=30
    ) as ws:
        result.connected_at = time.monotonic()
        until = time.monotonic() + read_s
        while time.monotonic() < until:
            with contextlib.suppress(TimeoutError):
                if isinstance(await asyncio.wait_for(ws.recv(), 1.0), bytes):
                    result.frames_before_stall += 1
        await asyncio.sleep(stall_s)  # not reading: the library stops reading the socket
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                result.closed_code, result.closed_reason = exc.rcvd.code, exc.rcvd.reason
                result.ended = f"close frame {exc.rcvd.code} {exc.rcvd.reason!r}"
            else:  # the server gave up on the TCP connection: its close frame could not go out
                result.ended = "connection dropped, no close frame"
        except TimeoutError:
            pass  # still open after the stall and 30 s of reading: closed_code stays None


async def _crowd(ws_url: str, viewers: int, warmup: float, window: float) -> dict[str, object]:
    starts = time.monotonic() + warmup
    seen = [Seen() for _ in range(viewers)]

    async def one(i: int) -> None:
        await asyncio.sleep(i * 0.01)  # not all at once: the listen backlog
        await watch(ws_url, starts + window - time.monotonic(), record=True, seen=seen[i])

    tasks = [asyncio.create_task(one(i)) for i in range(viewers)]
    await asyncio.sleep(max(0.0, starts - time.monotonic()))
    cpu0 = time.process_time()
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu0
    return {
        "window": [starts, starts + window],
        "cpu_s": cpu,
        "viewers": [
            {
                "arrivals": [a for a in s.arrivals if a[1] >= starts],
                "keyframes": s.keyframes,
                "error": s.error,
            }
            for s in seen
        ],
    }


if __name__ == "__main__":
    url, n, warm, win = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    threading.Timer(warm + win + 60, lambda: os._exit(3)).start()  # bounded whatever happens
    print(json.dumps(asyncio.run(_crowd(url, n, warm, win))), flush=True)
    os._exit(0)
