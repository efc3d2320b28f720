"""An MCP server over Streamable HTTP: the thin shell that carries :class:`McpClient`'s lines.

``async with connect_http_mcp("http://127.0.0.1:3001/mcp", name="x") as client:`` runs the same
handshake and session as the TCP and stdio shells (``client.py`` over ``rpc.py``, both
untouched by HTTP): :class:`HttpTransport` is the byte stream they read and write. Each line
written is POSTed (``Accept: application/json, text/event-stream``); the answer, a JSON body or
an event stream, comes back as lines to read, as do the events of the optional GET stream
(server-initiated notifications such as ``notifications/tools/list_changed``).

Kept from the TCP path: every JSON body and every event is bounded by ``max_message_bytes``
(``mcp.max_line_bytes``), and every POST by ``call_timeout`` (headers, body, stream). A failure
(connection refused, an HTTP error, an oversize event) ends the session with an
:class:`RpcTransportError` that says why, so the watcher's backoff and breaker apply as to a
dropped socket. ``Mcp-Session-Id`` is kept and resent; a 404 on it ends the session (the watcher
then starts a new one at once); the session is DELETEd when the client closes. After
``initialize`` every request carries ``MCP-Protocol-Version``.
"""

from __future__ import annotations

import contextlib
import http
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec
from loguru import logger

from visionflow import jsonsafe
from visionflow.errors import RemoteProtocolError, RpcError, RpcTransportError
from visionflow.settings import redact_url

from .client import McpClient, NotificationHandler, background_tasks, open_session
from .framing import DEFAULT_MAX_LINE_BYTES
from .sse import SseParser

__all__ = ["HttpTransport", "connect_http_mcp"]

log = logger.bind(subsystem="mcp")

#: POST answers read at once; a further send waits for one to finish (within its deadline).
MAX_STREAMS = 16
#: Messages read but not yet taken by the client's reader: a flood backs up the streams.
INBOX_SIZE = 64
#: The DELETE that ends a session at close: best effort, never holding up a shutdown long.
DELETE_TIMEOUT = 2.0
_PREVIEW_BYTES = 200
_JSON, _SSE = "application/json", "text/event-stream"
#: Visible ASCII, as the spec requires of a session id; bounded so it cannot bloat headers.
_SESSION_ID_MAX = 1024


class _Peek(msgspec.Struct):
    """What the shell needs of a message: is it a request, a reply, and to what."""

    id: int | str | msgspec.UnsetType | None = msgspec.UNSET
    method: str | msgspec.UnsetType = msgspec.UNSET
    result: msgspec.Raw = msgspec.Raw(b"")
    error: msgspec.Raw = msgspec.Raw(b"")


class _InitResult(msgspec.Struct):
    protocolVersion: Any = None  # noqa: N815 — the wire name


_peek_decoder = msgspec.json.Decoder(_Peek)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_init_decoder = msgspec.json.Decoder(_InitResult)


def _peek(data: bytes) -> _Peek | None:
    try:
        return jsonsafe.decode(data, _peek_decoder)
    except msgspec.DecodeError:
        return None  # not ours to judge: the client's framer reports it


def _messages(body: bytes) -> list[bytes]:
    """One JSON body (or event data) as the lines of the messages it holds.

    A batch array (allowed up to 2025-03-26) is split; raw CR and LF can only be whitespace
    between tokens in valid JSON, so they become spaces and each message stays one line.
    """
    body = body.strip()
    if not body:
        return []
    if body[:1] == b"[":
        try:
            items = [bytes(raw) for raw in jsonsafe.decode(body, _batch_decoder)]
        except msgspec.DecodeError:
            items = [body]  # the client's framer skips it, with the reason
    else:
        items = [body]
    return [item.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n" for item in items]


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "(no reason phrase)"


def _content_type(response: httpx.Response) -> str:
    kind: str = response.headers.get("content-type", "")
    return kind.partition(";")[0].strip().lower()


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (check the endpoint's headers, e.g. Authorization)"
    if status in (404, 405):
        return (
            " (is this the MCP path of a Streamable HTTP server? the legacy HTTP+SSE transport "
            "is not supported)"
        )
    if status in (406, 415):
        return " (the server refuses JSON-RPC over Streamable HTTP)"
    if 300 <= status < 400:
        return " (redirects are not followed: use the final URL)"
    return ""


def _describe(exc: BaseException, *, first: bool = False) -> str:
    """``first``: nothing this server said has been HTTP yet, so garbage hints at a line server."""
    text = str(exc) or type(exc).__name__
    if first and isinstance(exc, httpx.RemoteProtocolError):
        text += " (is it an HTTP server? a JSON-RPC line server over TCP takes host/port)"
    return text


class _Body(httpx.AsyncByteStream):
    """A POST's body, which httpcore iterates without an async generator.

    httpx's own bytes body (``ByteStream.__aiter__``) is an async generator. httpcore never
    closes it, so a POST cancelled while its body was being written left the generator
    suspended, and trio warned when the garbage collector finalised it. Each iteration gets
    a new ``_Once``: httpcore may send a request again on a new connection.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


class _Once:
    """An async iterator over one chunk: nothing is left suspended when it is dropped."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


async def _each_chunk(response: httpx.Response, take: Callable[[bytes], Awaitable[bool]]) -> None:
    """Hand each body chunk to ``take`` until it returns True, raises, or the body ends.

    Stopped by cancelling, never by leaving the loop: a cancellation unwinds httpx's and
    httpcore's body generators at once, while generators left suspended are finalised later by
    the GC (trio then warns, and the connection is not released in the meantime).
    """
    error: Exception | None = None
    with anyio.CancelScope() as reading:
        async for chunk in response.aiter_bytes():
            try:
                done = await take(chunk)
            except RemoteProtocolError as exc:
                error, done = exc, True
            if done:
                reading.cancel()
    if error is not None:
        raise error


class HttpTransport(anyio.abc.ByteStream):
    """Streamable HTTP as the byte stream of JSON-RPC lines that :class:`McpClient` speaks."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        label: str,
        task_group: anyio.abc.TaskGroup,
        headers: Mapping[str, str] | None = None,
        call_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_LINE_BYTES,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.url = url
        self.label = label
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.call_timeout = call_timeout
        self.max_message_bytes = max_message_bytes
        self._http = http
        self._tg = task_group
        self._headers = dict(headers or {})
        self._backoff = (backoff_initial, backoff_max)
        self._inbox_writer, self._inbox = anyio.create_memory_object_stream[bytes](INBOX_SIZE)
        self._streams = anyio.CapacityLimiter(MAX_STREAMS)
        self._failure: RpcError | None = None
        self._listening = False
        self._answered = False  # a response came: the server speaks HTTP
        self._last_event_id: str | None = None

    # -- what the client sees ----------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        if self._failure is not None:
            raise self._fresh_failure()
        peek = _peek(item)
        method = peek.method if peek is not None else msgspec.UNSET
        request_id = None
        if peek is not None and method is not msgspec.UNSET and isinstance(peek.id, int | str):
            request_id = peek.id
        if method == "initialize":  # a new session: nothing of the old one is sent
            self.session_id = self.protocol_version = None
        token = object()  # this POST's slot among MAX_STREAMS
        await self._streams.acquire_on_behalf_of(token)
        handed_off = False
        try:
            handed_off = await self._post(item, token, method, request_id)
        finally:
            if not handed_off:
                self._streams.release_on_behalf_of(token)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            return await self._inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._failure is not None:
                raise self._fresh_failure() from None
            raise anyio.EndOfStream from None

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        # No I/O here (the client closes us forcefully): end_session() sends the DELETE.
        self._inbox_writer.close()
        self._inbox.close()

    async def end_session(self) -> None:
        """DELETE the session, if there is one; a server may refuse (405): that is fine."""
        if self.session_id is None:
            return
        try:
            response = await self._http.delete(self.url, headers=self._request_headers())
        except httpx.HTTPError as exc:
            log.debug("{}: DELETE of the session failed: {}", self.label, _describe(exc))
            return
        log.debug("{}: session ended (DELETE answered {})", self.label, response.status_code)
        self.session_id = None

    # -- POST --------------------------------------------------------------------------------

    def _request_headers(self, accept: str = f"{_JSON}, {_SSE}") -> dict[str, str]:
        headers = {**self._headers, "Accept": accept, "Accept-Encoding": "identity"}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    async def _post(
        self, item: bytes, token: object, method: Any, request_id: int | str | None
    ) -> bool:
        """POST one message; True when a reader task took over the response (and the slot)."""
        headers = self._request_headers()
        headers["Content-Type"] = _JSON
        request = self._http.build_request("POST", self.url, content=item, headers=headers)
        request.stream = _Body(item)  # same bytes and Content-Length, no async generator
        deadline = anyio.current_time() + self.call_timeout
        try:
            with anyio.fail_after(self.call_timeout):
                response = await self._http.send(request, stream=True)
        except TimeoutError:
            raise self._fail(
                f"POST got no response in {self.call_timeout:g}s (mcp.call_timeout)"
            ) from None
        except httpx.HTTPError as exc:
            raise self._fail(f"POST failed: {_describe(exc, first=not self._answered)}") from exc
        self._answered = True
        status = response.status_code
        if not 200 <= status < 300:
            preview = await self._preview(response)
            if status == 404 and self.session_id is not None and method != "initialize":
                self.session_id = None  # gone: nothing to DELETE
                raise self._fail("the server ended the session (HTTP 404): starting a new one")
            reason = response.reason_phrase or _phrase(status)  # HTTP/2 and some servers send none
            raise self._fail(f"POST answered HTTP {status} {reason}{_hint(status)}: {preview}")
        if method == "initialize":
            self._take_session_id(response)
        if status == 202 or request_id is None:
            # Accepted, nothing to read (a notification or our reply to the server).
            await response.aclose()
            if method == "notifications/initialized" and not self._listening:
                self._listening = True
                self._tg.start_soon(self._listen)
            return False
        kind = _content_type(response)
        if kind not in (_JSON, _SSE):
            await response.aclose()
            raise self._fail(f"POST answered Content-Type {kind!r}, not JSON or an event stream")
        self._tg.start_soon(self._read_answer, response, token, kind, request_id, deadline)
        return True

    def _take_session_id(self, response: httpx.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid is None:
            return  # a stateless server
        if not (0 < len(sid) <= _SESSION_ID_MAX and sid.isascii() and sid.isprintable()):
            raise self._fail("the server sent an invalid Mcp-Session-Id")
        if " " in sid:
            raise self._fail("the server sent an invalid Mcp-Session-Id")
        self.session_id = sid

    async def _preview(self, response: httpx.Response) -> str:
        data = bytearray()

        async def take(chunk: bytes) -> bool:
            data.extend(chunk)
            return len(data) >= _PREVIEW_BYTES

        try:
            with anyio.move_on_after(1.0):
                await _each_chunk(response, take)
        except httpx.HTTPError:
            pass  # only a preview
        finally:
            await response.aclose()
        text = data[:_PREVIEW_BYTES].decode("utf-8", "replace").strip()
        return " ".join(text.split()) or "(no body)"

    async def _read_answer(
        self,
        response: httpx.Response,
        token: object,
        kind: str,
        request_id: int | str,
        deadline: float,
    ) -> None:
        """Read one POST's answer into the inbox, until our reply, the deadline or the end."""
        try:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
                if kind == _JSON:
                    if not await self._read_json(response, request_id):
                        # nothing more will come for it: say so now, not after call_timeout
                        # as "got no answer" (a 200 of garbage, null or [] waited it out)
                        self._fail(
                            f"answered the POST of request {request_id!r} with a JSON "
                            "body holding no reply to it (see the skipped line above)"
                        )
                else:
                    await self._read_events(response, request_id)
            if scope.cancelled_caught:
                # The call has given up by now (its own deadline is the same): stop reading.
                log.debug("{}: answer stream cut at mcp.call_timeout", self.label)
        except httpx.HTTPError as exc:
            self._fail(f"reading the answer failed: {_describe(exc)}")
        except RemoteProtocolError as exc:
            self._fail(str(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            self._streams.release_on_behalf_of(token)

    async def _read_json(self, response: httpx.Response, request_id: int | str) -> bool:
        """The JSON answer's messages into the inbox; whether our reply was among them."""
        limit = self.max_message_bytes
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise RemoteProtocolError(f"a JSON answer of {length} bytes exceeds {limit} bytes")
        body = bytearray()

        async def take(chunk: bytes) -> bool:
            body.extend(chunk)
            if len(body) > limit:
                raise RemoteProtocolError(f"a JSON answer exceeds {limit} bytes")
            return False

        await _each_chunk(response, take)
        answered = False
        for line in _messages(bytes(body)):
            answered |= self._note(line, request_id)
            await self._push(line)
        return answered

    async def _read_events(self, response: httpx.Response, request_id: int | str) -> None:
        parser = SseParser(self.max_message_bytes)

        async def take(chunk: bytes) -> bool:
            answered = False
            for event in parser.feed(chunk):
                if event.event == "message":
                    for line in _messages(event.data):
                        answered |= self._note(line, request_id)
                        await self._push(line)
            return answered  # our reply: the server should close now; we need not wait

        await _each_chunk(response, take)

    def _note(self, line: bytes, request_id: int | str | None = None) -> bool:
        """Remember the negotiated version; is this the reply to ``request_id``?"""
        peek = _peek(line)
        if peek is None or peek.method is not msgspec.UNSET or peek.id is msgspec.UNSET:
            return False
        if peek.result and self.protocol_version is None:
            try:
                version = _init_decoder.decode(peek.result).protocolVersion
            except msgspec.DecodeError:
                version = None
            if isinstance(version, str) and version.isprintable() and len(version) <= 64:
                self.protocol_version = version  # only initialize's reply comes before this
        return request_id is not None and str(peek.id) == str(request_id)

    async def _push(self, line: bytes) -> None:
        # closed meanwhile: nobody reads any more
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._inbox_writer.send(line)

    # -- the GET stream ----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Server-initiated messages; reopened after a drop (with ``Last-Event-ID`` where the
        server numbers its events) until the session ends. A server without it answers 405."""
        initial, most = self._backoff
        delay = initial
        while self._failure is None:
            parser = SseParser(self.max_message_bytes)
            headers = self._request_headers(accept=_SSE)
            if self._last_event_id is not None:
                headers["Last-Event-ID"] = self._last_event_id
            try:
                async with self._http.stream("GET", self.url, headers=headers) as response:
                    status = response.status_code
                    if status == 404 and self.session_id is not None:
                        self.session_id = None
                        self._fail("the server ended the session (HTTP 404): starting a new one")
                        return
                    if status != 200 or _content_type(response) != _SSE:
                        log.debug("{}: no GET stream (HTTP {})", self.label, status)
                        return
                    delay = initial

                    async def take(chunk: bytes, parser: SseParser = parser) -> bool:
                        for event in parser.feed(chunk):
                            if event.event == "message":
                                for line in _messages(event.data):
                                    await self._push(line)
                        self._last_event_id = parser.last_event_id or self._last_event_id
                        return False

                    await _each_chunk(response, take)
            except httpx.HTTPError as exc:
                log.debug("{}: GET stream lost: {}", self.label, _describe(exc))
            except RemoteProtocolError as exc:
                self._fail(f"GET stream: {exc}")
                return
            wait = parser.retry / 1000 if parser.retry is not None else delay
            await anyio.sleep(min(wait, most))
            delay = min(delay * 2, most)

    # -- failure -----------------------------------------------------------------------------

    def _fail(self, reason: str) -> RpcTransportError:
        """End the session: the reader sees this error once the inbox is drained."""
        if self._failure is None:
            self._failure = RpcTransportError(f"{self.label}: {reason}")
            self._inbox_writer.close()
        return self._fresh_failure()

    def _fresh_failure(self) -> RpcTransportError:
        assert self._failure is not None
        return RpcTransportError(str(self._failure))


@asynccontextmanager
async def connect_http_mcp(
    url: str,
    *,
    name: str = "mcp",
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 5.0,
    call_timeout: float = 10.0,
    max_message_bytes: int = DEFAULT_MAX_LINE_BYTES,
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
    client_name: str = "visionflow",
    on_notification: NotificationHandler | None = None,
) -> AsyncIterator[McpClient]:
    """Open an MCP session over Streamable HTTP at ``url`` and yield a ready client.

    Raises what :func:`~visionflow.mcp.client.connect_mcp` raises; the session is DELETEd on
    exit (bounded by ``DELETE_TIMEOUT``, even when the exit is a cancellation).
    """
    label = redact_url(url)
    timeout = httpx.Timeout(
        connect=connect_timeout, read=None, write=call_timeout, pool=call_timeout
    )
    limits = httpx.Limits(max_connections=MAX_STREAMS + 2, max_keepalive_connections=4)
    async with (
        httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as http,
        background_tasks() as tg,
    ):
        transport = HttpTransport(
            http,
            url,
            label=label,
            task_group=tg,
            headers=headers,
            call_timeout=call_timeout,
            max_message_bytes=max_message_bytes,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        try:
            async with open_session(
                transport,
                label,
                call_timeout=call_timeout,
                max_line_bytes=max_message_bytes,
                client_name=client_name,
                on_notification=on_notification,
            ) as client:
                yield client
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(DELETE_TIMEOUT):
                await transport.end_session()
