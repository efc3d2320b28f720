"""One MCP connection over TCP: the thin async shell around :class:`RpcSession`.

``async with connect_mcp(host, port) as client:`` connects, performs the MCP handshake
(``initialize``, ``notifications/initialized``, ``tools/list`` into a :class:`ToolCatalog`) and
runs a reader task. Every call has a deadline (:class:`RpcTimeoutError`); when the link drops,
every pending call fails at once with :class:`RpcTransportError`. Reconnecting, backoff and
circuit breaking belong to the caller: this object lives and dies with one connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.abc
from loguru import logger

from visionflow import __version__
from visionflow.errors import (
    RemoteProtocolError,
    RpcError,
    RpcRemoteError,
    RpcTimeoutError,
    RpcTransportError,
)
from visionflow.supervisor import sole_exception

from .claudeflow import (
    Agent,
    SpawnedAgent,
    SwarmStatus,
    ToolCall,
    ToolCatalog,
    ToolError,
    ToolOutput,
    is_no_swarm,
    parse_agent_list,
    parse_spawn,
    parse_swarm_id,
    parse_swarm_status,
    unwrap_tool_result,
)
from .framing import DEFAULT_MAX_LINE_BYTES, PROTOCOL_VERSION
from .rpc import (
    ErrorResponse,
    IncomingRequest,
    InvalidMessage,
    Notification,
    Response,
    RpcEvent,
    RpcSession,
    SkippedLine,
    StrayError,
    UnknownResponse,
)
from .versions import LATEST, negotiated

__all__ = ["PROTOCOL_VERSION", "McpClient", "connect_mcp", "open_session"]

log = logger.bind(subsystem="mcp")

SKIP_LOG_FIRST = 5  # skipped lines logged one by one per connection, then every
SKIP_LOG_EVERY = 1000  # thousandth

NotificationHandler = Callable[[Notification], None]
#: Asked when the server's stream ends: why, in a few words, or None to say it generically.
WhyClosed = Callable[[], Awaitable[str | None]]

_USE_URL = 'an HTTP server takes url = "http://host:port/mcp"'

_LINK_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(slots=True)
class _Waiter:
    event: anyio.Event
    result: Any = None
    error: RpcError | None = None


class McpClient:
    """A connected, initialised MCP session. Build it with :func:`connect_mcp`."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        endpoint: str,
        call_timeout: float,
        max_line_bytes: int,
        on_notification: NotificationHandler | None,
        why_closed: WhyClosed | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._why_closed = why_closed
        self.call_timeout = call_timeout
        self._stream = stream
        self._session = RpcSession(max_line_bytes=max_line_bytes)
        self._waiters: dict[int, _Waiter] = {}
        self._send_lock = anyio.Lock()
        self._on_notification = on_notification
        self._closed = anyio.Event()
        self.close_reason: RpcError | None = None
        self.server_info: dict[str, Any] = {}
        self.protocol_version: str | None = None
        self.catalog = ToolCatalog(())
        self._skipped = 0  # lines that were not JSON-RPC, for the log's rate limit
        self._spoke_http = False  # a line read "HTTP/1.1 400 ...": an HTTP server on a TCP port
        self._heard = False  # any byte from the server yet

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> RpcError:
        """Wait until the link is gone; returns why."""
        await self._closed.wait()
        assert self.close_reason is not None
        return self.close_reason

    def _abort(self, reason: RpcError) -> None:
        """Mark the link dead and fail every pending call at once. Idempotent."""
        if self.close_reason is None:
            self.close_reason = reason
        for failed in self._session.fail_all(self.close_reason):
            waiter = self._waiters.get(failed.id)
            if waiter is not None:
                waiter.error = _fresh(failed.error)
                waiter.event.set()
        self._closed.set()

    # -- calls ------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 — expiry must raise RpcTimeoutError
    ) -> Any:
        """Send a request and wait for its result.

        Raises RpcTimeoutError after ``timeout`` (default ``call_timeout``) seconds,
        RpcTransportError when the link is or goes down, RpcRemoteError for an error reply.
        """
        limit = self.call_timeout if timeout is None else timeout
        request_id, data = self._session.send_request(method, params)
        waiter = _Waiter(anyio.Event())
        self._waiters[request_id] = waiter
        try:
            with anyio.fail_after(limit):
                await self._send(data)
                await waiter.event.wait()
        except TimeoutError:
            raise RpcTimeoutError(
                f"{self.endpoint}: {method} got no answer in {limit:g}s"
            ) from None
        finally:
            del self._waiters[request_id]
            self._session.forget(request_id)  # a late reply becomes an UnknownResponse
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    async def notify(self, method: str, params: Any = None) -> None:
        await self._send(self._session.send_notification(method, params))

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            if self.close_reason is not None:
                raise _fresh(self.close_reason)
            try:
                await self._stream.send(data)
            except _LINK_ERRORS as exc:
                said = await self._why_closed() if self._why_closed is not None else None
                error = RpcTransportError(f"{self.endpoint}: {said or f'write failed: {exc!r}'}")
                self._abort(error)
                raise error from exc
            except RpcTransportError as exc:  # the HTTP shell says why itself
                self._abort(exc)
                raise _fresh(exc) from None
            except anyio.get_cancelled_exc_class():
                # A half-written line would corrupt every later message: drop the link.
                self._abort(RpcTransportError(f"{self.endpoint}: write interrupted"))
                raise

    # -- tools ------------------------------------------------------------------------------

    async def call_tool(
        self,
        name: str | ToolCall,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 — see call()
    ) -> ToolOutput:
        """``tools/call``, unwrapped. Raises ToolError for a tool-level failure."""
        if isinstance(name, ToolCall):
            tool, arguments = name.name, name.arguments
        else:
            tool = name
        return unwrap_tool_result(tool, await self._tool_result(tool, arguments, timeout))

    async def _tool_result(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """The raw ``tools/call`` result (not unwrapped)."""
        params = {"name": tool, "arguments": arguments or {}}
        return await self.call("tools/call", params, timeout=timeout)

    async def list_agents(self, *, swarm_id: str | None = None) -> list[Agent]:
        """Live agents, placeholders dropped.

        A large list is unwrapped and parsed in a worker thread: that is Python code, O(agents)
        (10k agents: ~300 ms), and a worker yields the GIL to the event loop every switch
        interval, which one long call on the loop would not.
        """
        call = self.catalog.agent_list(swarm_id=swarm_id)
        result = await self._tool_result(call.name, call.arguments)
        parse = partial(_agents_of, call.name, result)
        if _text_size(result) < PARSE_OFF_LOOP_BYTES:
            return parse()
        return await anyio.to_thread.run_sync(parse)

    async def swarm_status(self, *, swarm_id: str | None = None) -> SwarmStatus | None:
        """The swarm's status, or None when the server has none (either dialect)."""
        try:
            output = await self.call_tool(self.catalog.swarm_status(swarm_id=swarm_id))
        except ToolError as exc:
            if is_no_swarm(exc):
                return None
            raise
        return parse_swarm_status(output)

    async def init_swarm(
        self, topology: str, *, max_agents: int | None = None, strategy: str | None = None
    ) -> str:
        call = self.catalog.swarm_init(topology, max_agents=max_agents, strategy=strategy)
        return parse_swarm_id(await self.call_tool(call))

    async def spawn_agent(
        self,
        agent_type: str,
        *,
        name: str | None = None,
        capabilities: list[str] | None = None,
        swarm_id: str | None = None,
    ) -> SpawnedAgent:
        call = self.catalog.agent_spawn(
            agent_type, name=name, capabilities=capabilities, swarm_id=swarm_id
        )
        return parse_spawn(await self.call_tool(call))

    async def submit_task(
        self,
        description: str,
        *,
        priority: str | None = None,
        strategy: str | None = None,
        swarm_id: str | None = None,
    ) -> ToolOutput:
        return await self.call_tool(
            self.catalog.task(description, priority=priority, strategy=strategy, swarm_id=swarm_id)
        )

    # -- handshake and reader -----------------------------------------------------------------

    async def _handshake(self, client_name: str) -> None:
        result = await self.call(
            "initialize",
            {
                "protocolVersion": LATEST,
                "capabilities": {},
                "clientInfo": {"name": client_name, "version": __version__},
            },
        )
        if not isinstance(result, dict):
            raise RemoteProtocolError(f"{self.endpoint}: initialize result is not an object")
        info = result.get("serverInfo")
        self.server_info = info if isinstance(info, dict) else {}
        version = result.get("protocolVersion")
        # Recorded before it is judged: the status shows what an incompatible server wanted.
        self.protocol_version = version if isinstance(version, str) else None
        negotiated(self.endpoint, version)
        await self.notify("notifications/initialized")
        self.catalog = ToolCatalog.from_tools_list(await self.call("tools/list"))

    async def refresh_tools(self) -> ToolCatalog:
        """Re-read ``tools/list`` (also a liveness probe: 2.x has no ``ping``)."""
        self.catalog = ToolCatalog.from_tools_list(await self.call("tools/list"))
        return self.catalog

    async def _read_loop(self) -> None:
        reason: RpcError = RpcTransportError(f"{self.endpoint}: connection closed")
        try:
            while True:
                try:
                    chunk = await self._stream.receive()
                except anyio.EndOfStream:
                    said = await self._why_closed() if self._why_closed is not None else None
                    if said is not None:  # the transport knows (a launched server's exit)
                        reason = RpcTransportError(f"{self.endpoint}: {said}")
                        return
                    hint = ""
                    if self._spoke_http:
                        hint = f" (it answered in HTTP: {_USE_URL})"
                    elif not self._heard:  # an HTTP server may hang up on a JSON line unanswered
                        hint = f" before saying anything ({_USE_URL}?)"
                    reason = RpcTransportError(
                        f"{self.endpoint}: server closed the connection{hint}"
                    )
                    return
                self._heard = True
                for event in self._session.receive_data(chunk):
                    await self._dispatch(event)
        except _LINK_ERRORS as exc:
            reason = RpcTransportError(f"{self.endpoint}: read failed: {exc!r}")
            reason.__cause__ = exc
        except RpcError as exc:  # answering a server ping failed: the link is already gone
            reason = exc
        except RemoteProtocolError as exc:
            log.warning("{}: closing connection: {}", self.endpoint, exc)
            reason = RpcTransportError(f"{self.endpoint}: {exc}")
            reason.__cause__ = exc
        finally:
            self._abort(reason)

    async def _dispatch(self, event: RpcEvent) -> None:
        match event:
            case Response(id=request_id, result=result):
                self._resolve(request_id, result, None)
            case ErrorResponse(id=request_id, error=error):
                self._resolve(request_id, None, error)
            case Notification():
                self._notify_handler(event)
            case IncomingRequest(id=request_id, method=method):
                # MCP lets the server ping us; we serve nothing else.
                reply = (
                    self._session.send_result(request_id, {})
                    if method == "ping"
                    else self._session.send_error(request_id, -32601, f"Method not found: {method}")
                )
                await self._send(reply)
            case StrayError(error=error):
                # 2.x answers our notifications/initialized this way on every connect.
                level = "DEBUG" if error.code == -32601 else "WARNING"
                log.log(level, "{}: error reply without id: {}", self.endpoint, error)
            case UnknownResponse(id=request_id):
                log.debug("{}: reply to unknown or abandoned id {!r}", self.endpoint, request_id)
            case InvalidMessage(reason=reason):
                # JSON, but not JSON-RPC (a server sending these in a loop made 179 warnings a
                # second): rate-limited like skipped lines
                if self._count_skipped():
                    log.warning(
                        "{}: ignored message: {} ({} skipped so far)",
                        self.endpoint,
                        reason,
                        self._skipped,
                    )
            case SkippedLine(preview=preview, reason=reason):
                self._spoke_http |= preview.startswith("HTTP/1.")
                if self._count_skipped():
                    log.warning(
                        "{}: skipped non-JSON-RPC line {!r} ({}; {} so far)",
                        self.endpoint,
                        preview,
                        reason,
                        self._skipped,
                    )

    def _count_skipped(self) -> bool:
        """Count a message we skip; whether to log it. A server may print banners, or garbage
        by the megabyte: the first SKIP_LOG_FIRST are logged, then one per SKIP_LOG_EVERY."""
        self._skipped += 1
        return self._skipped <= SKIP_LOG_FIRST or self._skipped % SKIP_LOG_EVERY == 0

    def _resolve(self, request_id: int, result: Any, error: RpcRemoteError | None) -> None:
        waiter = self._waiters.get(request_id)
        if waiter is None:  # pragma: no cover — session and waiters are kept in step
            return
        waiter.result, waiter.error = result, error
        waiter.event.set()

    def _notify_handler(self, event: Notification) -> None:
        log.debug("{}: notification {}", self.endpoint, event.method)
        if self._on_notification is None:
            return
        try:
            self._on_notification(event)
        except Exception as exc:  # noqa: BLE001 — boundary: a bad callback must not kill the link
            log.opt(exception=exc).error(
                "{}: notification handler failed on {}", self.endpoint, event.method
            )


@asynccontextmanager
async def open_session(
    stream: anyio.abc.ByteStream,
    endpoint: str,
    *,
    call_timeout: float = 10.0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    client_name: str = "visionflow",
    on_notification: NotificationHandler | None = None,
    why_closed: WhyClosed | None = None,
) -> AsyncIterator[McpClient]:
    """Run the MCP handshake over any byte stream and yield a ready :class:`McpClient`.

    The stream is closed on exit. Errors come out unwrapped (not as exception groups).
    """
    client = McpClient(
        stream,
        endpoint=endpoint,
        call_timeout=call_timeout,
        max_line_bytes=max_line_bytes,
        on_notification=on_notification,
        why_closed=why_closed,
    )
    try:
        async with background_tasks() as tg:
            tg.start_soon(client._read_loop)
            await client._handshake(client_name)
            yield client
    finally:
        client._abort(RpcTransportError(f"{endpoint}: client closed"))
        await anyio.aclose_forcefully(stream)


@asynccontextmanager
async def connect_mcp(
    host: str,
    port: int,
    *,
    connect_timeout: float = 5.0,
    call_timeout: float = 10.0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    client_name: str = "visionflow",
    on_notification: NotificationHandler | None = None,
) -> AsyncIterator[McpClient]:
    """Connect over TCP, handshake and yield a ready :class:`McpClient`; closes on exit.

    Raises RpcTransportError (connect failed, link lost), RpcTimeoutError (handshake too
    slow), RpcRemoteError or RemoteProtocolError (the server refused or spoke garbage).
    """
    endpoint = f"{host}:{port}"
    try:
        with anyio.fail_after(connect_timeout):
            stream = await anyio.connect_tcp(host, port)
    except TimeoutError:
        raise RpcTransportError(
            f"{endpoint}: connect timed out after {connect_timeout:g}s"
        ) from None
    except OSError as exc:
        raise RpcTransportError(f"{endpoint}: connect failed: {exc}") from exc
    async with open_session(
        stream,
        endpoint,
        call_timeout=call_timeout,
        max_line_bytes=max_line_bytes,
        client_name=client_name,
        on_notification=on_notification,
    ) as client:
        yield client


#: An agent list whose text is at least this long is parsed in a worker thread.
PARSE_OFF_LOOP_BYTES = 64 * 1024


def _text_size(result: Any) -> int:
    """The length of a ``tools/call`` result's text (0 when it has none: unwrapping says why)."""
    content = result.get("content") if isinstance(result, dict) else None
    first = content[0] if isinstance(content, list) and content else None
    text = first.get("text") if isinstance(first, dict) else None
    return len(text) if isinstance(text, str) else 0


def _agents_of(tool: str, result: Any) -> list[Agent]:
    return parse_agent_list(unwrap_tool_result(tool, result))


def _fresh(error: RpcError) -> RpcTransportError:
    """A new exception per failed caller (one instance raised in many tasks would collect
    every task's traceback), keeping the original as its cause."""
    fresh = RpcTransportError(str(error))
    fresh.__cause__ = error.__cause__ or error
    return fresh


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for inner in group.exceptions:
        out.extend(_leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner])
    return out


@asynccontextmanager
async def background_tasks() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group whose tasks are cancelled when the block ends, raising what the block
    raised as itself rather than wrapped in an exception group (the tasks here never raise;
    they may be cancelled by an outer scope while the block fails).
    """
    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            try:
                yield tg
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # unwrapped below, not handled
        error = sole_exception(group)
        if isinstance(error, BaseExceptionGroup):
            leaves = _leaves(error)
            stop = anyio.get_cancelled_exc_class()
            links = [leaf for leaf in leaves if not isinstance(leaf, stop)]
            if all(isinstance(leaf, RpcError | RemoteProtocolError) for leaf in links):
                # Several link errors at once (an HTTP session's POST and its GET stream
                # both failing to connect) are one failure of the link: the first says it.
                # A group would not be recognised as a link failure and would end the
                # endpoint's task. A cancellation among them is an outer scope's (our own
                # scope's stay in the nursery): the link failed while the task was being
                # cancelled, so the failure is moot and the cancellation is what goes on.
                # Left in the group, trio's cancelled scope would take out only the
                # Cancelled, and the link error would escape it as the task's error.
                error = next((leaf for leaf in leaves if isinstance(leaf, stop)), links[0])
        if error is group:
            raise
    if error is not None:
        raise error  # outside the handler, so it is not chained onto the group
