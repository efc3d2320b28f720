"""An MCP server launched as a child process and spoken to over its pipes.

``async with launch_mcp(["npx", "claude-flow", "mcp", "start"]) as client:`` starts the command,
runs the handshake over stdin/stdout and logs its stderr. When the process dies the link drops
like a closed socket (RpcTransportError); leaving the block stops the process and everything it
started (its own process group: SIGTERM, then SIGKILL after a grace), so a reconnect starts a
fresh one and no wrapped server is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.stapled import StapledByteStream
from loguru import logger

from visionflow.errors import RpcTransportError

from .client import McpClient, NotificationHandler, background_tasks, open_session
from .framing import DEFAULT_MAX_LINE_BYTES

STOP_GRACE = 2.0
_STDERR_LINE_CAP = 4096  # a child's stderr line is logged up to this many bytes
# When the server exits, its last stderr lines go into the reason (a WARNING line at each
# retry): at the default level they were nowhere, as each line is logged at DEBUG.
STDERR_TAIL_LINES = 5
_TAIL_LINE_CAP = 300
EXIT_WAIT = 1.0  # how long a closed stdout waits for the process to end, and stderr with it


async def _log_stderr(
    stream: anyio.abc.ByteReceiveStream, name: str, tail: deque[str], done: anyio.Event
) -> None:
    log = logger.bind(subsystem=f"mcp:{name}")
    pending = b""
    try:
        async for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > _STDERR_LINE_CAP:  # a line without end must not grow forever
                lines.append(pending)
                pending = b""
            for line in lines:
                text = line[:_STDERR_LINE_CAP].decode("utf-8", "replace").rstrip()
                if text:
                    # Servers are chatty there (claude-flow: a line per tool call): debug level.
                    log.debug("server stderr: {}", text)
                    tail.append(text[:_TAIL_LINE_CAP])
        if pending.strip():
            tail.append(pending[:_TAIL_LINE_CAP].decode("utf-8", "replace").rstrip())
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return
    finally:
        done.set()


def exit_text(returncode: int, tail: deque[str]) -> str:
    """``the server exited with status 3 (stderr: boom)``: why a launched server went."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    said = " | ".join(tail)
    return f"the server process {how} ({f'stderr: {said}' if said else 'nothing on stderr'})"


def _signal_group(process: anyio.abc.Process, sig: signal.Signals) -> None:
    # The server runs in its own session: its group holds whatever it started (npx, sh -c
    # and the like put the real server one level down), so the group is what gets signalled.
    with contextlib.suppress(ProcessLookupError):  # nobody left in the group
        os.killpg(process.pid, sig)


async def _stop(process: anyio.abc.Process, name: str) -> None:
    with anyio.CancelScope(shield=True):
        _signal_group(process, signal.SIGTERM)
        with anyio.move_on_after(STOP_GRACE):
            await process.wait()
        if process.returncode is None:
            logger.bind(subsystem=f"mcp:{name}").warning("server ignored SIGTERM: killing it")
        _signal_group(process, signal.SIGKILL)  # and anything it left behind
        await process.wait()
        await process.aclose()


@asynccontextmanager
async def launch_mcp(
    command: list[str],
    *,
    name: str,
    call_timeout: float = 10.0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_notification: NotificationHandler | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[McpClient]:
    """Start ``command``, handshake over its pipes and yield a ready client.

    ``env`` is added to our environment (as MCP clients' ``env`` is), not a replacement: the
    server still finds ``PATH``, ``HOME`` and the like.
    """
    if not command:
        raise RpcTransportError(f"{name}: empty command")
    try:
        process = await anyio.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    except OSError as exc:
        raise RpcTransportError(f"{name}: cannot start {command[0]!r}: {exc}") from exc
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    stream = StapledByteStream(process.stdin, process.stdout)
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    stderr_done = anyio.Event()

    async def why_closed() -> str | None:
        # stdout closed: the process is (nearly always) exiting; its status and last words
        # say more than "closed the connection", whose hint about HTTP servers misled here
        with anyio.move_on_after(EXIT_WAIT):
            await process.wait()
            await stderr_done.wait()
        if process.returncode is None:
            return "the server closed its pipes (the process still runs)"
        return exit_text(process.returncode, tail)

    try:
        async with background_tasks() as tg:
            tg.start_soon(_log_stderr, process.stderr, name, tail, stderr_done)
            async with open_session(
                stream,
                f"{name} (pid {process.pid})",
                call_timeout=call_timeout,
                max_line_bytes=max_line_bytes,
                on_notification=on_notification,
                why_closed=why_closed,
            ) as client:
                yield client
    finally:
        await _stop(process, name)
