"""The Streamable HTTP shell (visionflow/mcp/http.py) against a scripted MCP peer: a raw ASGI app
served by a real hypercorn on an ephemeral loopback port, recording every request it gets."""

from __future__ import annotations

import contextlib
import gc
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import msgspec
import pytest

from visionflow.errors import RpcTimeoutError, RpcTransportError
from visionflow.mcp.client import connect_mcp
from visionflow.mcp.http import connect_http_mcp
from visionflow.mcp.rpc import Notification
from visionflow.mcp.versions import LATEST, SUPPORTED, UnsupportedProtocolVersionError
from visionflow.mcpsim.http import Receive, Scope, Send, read_body, respond, serve_asgi, sse_event

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TOOLS = {"tools": [{"name": "echo", "inputSchema": {"properties": {"text": {}}}}]}
# What a slow, busy machine may need for one exchange; the deadlines under test are shorter.
OUTER = 20.0


@dataclass
class Seen:
    verb: str
    headers: dict[str, str]
    message: dict[str, Any] | None


@dataclass
class Peer:
    """A scripted Streamable HTTP MCP server.

    ``mode``: "json" answers a request with a JSON body, "sse" with an event stream (a progress
    notification first, then the reply), "batch" with a JSON array. ``answer`` may take over a
    POST of a given method (return True when it responded).
    """

    mode: str = "json"
    version: str | None = None  # None: echo what the client offered
    sessions: bool = True
    seen: list[Seen] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    get_messages: list[dict[str, Any]] = field(default_factory=list)
    get_status: int = 200
    answer: dict[str, Callable[[dict[str, Any], Send, Receive], Awaitable[bool]]] = field(
        default_factory=dict
    )
    deleted: anyio.Event = field(default_factory=anyio.Event)
    get_done: anyio.Event = field(default_factory=anyio.Event)
    count = 0

    def posts(self, method: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.verb == "POST" and (method is None or (s.message or {}).get("method") == method)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        verb = scope["method"]
        body = await read_body(receive, 1 << 20) if verb == "POST" else b""
        message = msgspec.json.decode(body) if body else None
        self.seen.append(Seen(verb, headers, message))
        sid = headers.get("mcp-session-id")
        if verb == "DELETE":
            self.live.discard(sid or "")
            self.deleted.set()
            await respond(send, 200)
            return
        if self.sessions and sid is not None and sid not in self.live:
            await respond(send, 404)
            return
        if verb == "GET":
            await self._get(send)
            return
        assert message is not None
        method = message.get("method")
        hook = self.answer.get(str(method))
        if hook is not None and await hook(message, send, receive):
            return
        if "id" not in message or method is None:
            await respond(send, 202)
            return
        extra: list[tuple[bytes, bytes]] = []
        if method == "initialize":
            result: Any = {
                "protocolVersion": self.version or message["params"]["protocolVersion"],
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "scripted", "version": "1.0"},
            }
            if self.sessions:
                self.count += 1
                new = f"session-{self.count}"
                self.live.add(new)
                extra.append((b"mcp-session-id", new.encode()))
        elif method == "tools/list":
            result = TOOLS
        else:
            result = {"content": [{"type": "text", "text": '{"ok": true}'}]}
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        if self.mode == "json":
            await respond(send, 200, msgspec.json.encode(reply), extra)
        elif self.mode == "batch":
            note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {}}
            await respond(send, 200, msgspec.json.encode([note, reply]), extra)
        else:
            head = [*extra, (b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}
            # pretty-printed over several data lines, split across writes
            data = sse_event(progress) + b"id: 7\nevent: message\n"
            data += b"data: " + msgspec.json.format(msgspec.json.encode(reply), indent=2).replace(
                b"\n", b"\ndata: "
            )
            for part in (data[:10], data[10:], b"\n\n"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _get(self, send: Send) -> None:
        if self.get_status != 200:
            await respond(send, self.get_status)
            return
        head = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for message in self.get_messages:
            await send(
                {"type": "http.response.body", "body": sse_event(message), "more_body": True}
            )
        self.get_done.set()
        await anyio.sleep_forever()


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_asgi, app)
        yield f"http://127.0.0.1:{port}/mcp"
        tg.cancel_scope.cancel()


def session_of(seen: Seen) -> str | None:
    return seen.headers.get("mcp-session-id")


async def test_json_replies_session_id_and_version_header_on_every_later_request() -> None:
    peer = Peer()
    with anyio.fail_after(OUTER):
        async with (
            served(peer) as url,
            connect_http_mcp(url, name="t", headers={"Authorization": "Bearer s3cret"}) as client,
        ):
            assert client.protocol_version == LATEST
            assert client.catalog.names == {"echo"}
            output = await client.call_tool("echo", {"text": "hi"})
            assert output is not None
    init, *later = peer.posts()
    assert init.message is not None and init.message["method"] == "initialize"
    assert init.message["params"]["protocolVersion"] == LATEST == SUPPORTED[0]
    assert session_of(init) is None and "mcp-protocol-version" not in init.headers
    assert [(s.message or {}).get("method") for s in later] == [
        "notifications/initialized",
        "tools/list",
        "tools/call",
    ]
    for seen in [init, *later]:
        assert seen.headers["accept"] == "application/json, text/event-stream"
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["authorization"] == "Bearer s3cret"
    for seen in later:
        assert session_of(seen) == "session-1"
        assert seen.headers["mcp-protocol-version"] == LATEST
    # closed: the session was DELETEd, with its id
    (delete,) = [s for s in peer.seen if s.verb == "DELETE"]
    assert session_of(delete) == "session-1"


@pytest.mark.parametrize("mode", ["sse", "batch"])
async def test_replies_as_event_streams_and_batches_with_notifications(mode: str) -> None:
    peer = Peer(mode=mode)
    notes: list[str] = []
    with anyio.fail_after(OUTER):
        async with (
            served(peer) as url,
            connect_http_mcp(
                url, name="t", on_notification=lambda n: notes.append(n.method)
            ) as client,
        ):
            assert client.catalog.names == {"echo"}
            await client.call("ping")
    expected = "notifications/progress" if mode == "sse" else "notifications/message"
    assert notes == [expected] * 3  # initialize, tools/list, ping


async def test_the_server_chooses_an_older_version_and_the_header_says_it() -> None:
    peer = Peer(version="2025-03-26")
    with anyio.fail_after(OUTER):
        async with served(peer) as url, connect_http_mcp(url, name="t") as client:
            assert client.protocol_version == "2025-03-26"
    assert {s.headers.get("mcp-protocol-version") for s in peer.posts()[1:]} == {"2025-03-26"}


async def test_an_unknown_version_is_refused_by_name_not_a_crash() -> None:
    peer = Peer(version="2099-01-01")
    with anyio.fail_after(OUTER):
        async with served(peer) as url:
            with pytest.raises(UnsupportedProtocolVersionError, match="2099-01-01") as info:
                async with connect_http_mcp(url, name="t"):
                    pass
    assert info.value.version == "2099-01-01"
    assert "2025-06-18" in str(info.value)
    assert not peer.posts("tools/list")  # nothing more was asked of it


async def test_a_404_on_the_session_ends_it_and_the_next_connect_starts_a_new_one() -> None:
    peer = Peer()
    with anyio.fail_after(OUTER):
        async with served(peer) as url:
            async with connect_http_mcp(url, name="t") as client:
                peer.live.clear()  # the server restarted: it knows no session any more
                with pytest.raises(RpcTransportError, match="ended the session"):
                    await client.refresh_tools()
                assert client.closed
            async with connect_http_mcp(url, name="t") as client:
                await client.refresh_tools()
    inits = peer.posts("initialize")
    assert len(inits) == 2 and session_of(inits[1]) is None
    assert session_of(peer.posts()[-1]) == "session-2"


async def test_the_get_stream_delivers_server_notifications() -> None:
    changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    peer = Peer(get_messages=[changed])
    notes: list[Notification] = []
    with anyio.fail_after(OUTER):
        async with (
            served(peer) as url,
            connect_http_mcp(url, name="t", on_notification=notes.append),
        ):
            await peer.get_done.wait()
            while not notes:
                await anyio.sleep(0.01)
    assert [n.method for n in notes] == ["notifications/tools/list_changed"]
    (get,) = [s for s in peer.seen if s.verb == "GET"]
    assert get.headers["accept"] == "text/event-stream"
    assert session_of(get) == "session-1" and get.headers["mcp-protocol-version"] == LATEST


async def test_a_server_without_a_get_stream_is_fine() -> None:
    peer = Peer(get_status=405, sessions=False)
    with anyio.fail_after(OUTER):
        async with served(peer) as url, connect_http_mcp(url, name="t") as client:
            for _ in range(3):
                await client.refresh_tools()
    assert len([s for s in peer.seen if s.verb == "GET"]) == 1  # asked once, not again
    assert not [s for s in peer.seen if s.verb == "DELETE"]  # no session, nothing to end


async def test_a_server_that_streams_forever_is_cut_at_the_call_deadline() -> None:
    ended = anyio.Event()

    async def forever(message: dict[str, Any], send: Send, receive: Receive) -> bool:
        head = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": head})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            while not ended.is_set():  # keep-alive comments, never the reply
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        return True

    peer = Peer(answer={"ping": forever})
    with anyio.fail_after(OUTER):
        async with served(peer) as url, connect_http_mcp(url, name="t", call_timeout=5) as client:
            start = anyio.current_time()
            with pytest.raises(RpcTimeoutError, match=r"ping got no answer in 0\.5s"):
                await client.call("ping", timeout=0.5)
            assert anyio.current_time() - start < 4
            await client.refresh_tools()  # the session goes on
    with anyio.fail_after(OUTER):
        await ended.wait()  # and the stream was closed by us at mcp.call_timeout at the latest


@pytest.mark.parametrize("kind", ["sse", "json"])
async def test_an_answer_over_the_size_limit_ends_the_session(kind: str) -> None:
    async def huge(message: dict[str, Any], send: Send, receive: Receive) -> bool:
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"pad": "x" * 5000}}
        if kind == "json":
            await respond(send, 200, msgspec.json.encode(reply))
            return True
        head = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": sse_event(reply)})
        return True

    peer = Peer(answer={"ping": huge})
    with anyio.fail_after(OUTER):
        async with (
            served(peer) as url,
            connect_http_mcp(url, name="t", max_message_bytes=4096) as client,
        ):
            with pytest.raises(RpcTransportError, match="exceeds 4096 bytes"):
                await client.call("ping")
            assert client.closed


@pytest.mark.parametrize(
    ("status", "hint"), [(401, "Authorization"), (405, "legacy HTTP\\+SSE"), (500, "boom")]
)
async def test_an_http_error_says_what_it_was(status: int, hint: str) -> None:
    async def refuse(message: dict[str, Any], send: Send, receive: Receive) -> bool:
        await respond(send, status, b'{"error": "boom"}')
        return True

    peer = Peer(answer={"initialize": refuse})
    with anyio.fail_after(OUTER):
        async with served(peer) as url:
            with pytest.raises(RpcTransportError, match=f"HTTP {status}.*{hint}"):
                async with connect_http_mcp(url, name="t"):
                    pass


async def test_nothing_listening_and_a_line_server_say_so() -> None:
    with anyio.fail_after(OUTER):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def line_server(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await stream.receive()
                await stream.send(b'{"jsonrpc":"2.0","method":"server.initialized"}\n')
                await stream.send_eof()
                # read on until the client hangs up: closing with its request unread would
                # reset the connection, and the client would see a reset, not the line
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    while True:
                        await stream.receive()

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, line_server)
            with pytest.raises(RpcTransportError, match="is it an HTTP server"):
                async with connect_http_mcp(f"http://127.0.0.1:{port}/mcp", name="t"):
                    pass
            tg.cancel_scope.cancel()
        with pytest.raises(RpcTransportError, match="POST failed"):
            async with connect_http_mcp(f"http://127.0.0.1:{port}/mcp", name="t"):
                pass


async def test_a_url_password_and_query_never_reach_an_error() -> None:
    with anyio.fail_after(OUTER):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        url = f"http://user:pw123@127.0.0.1:{port}/mcp?key=k456"
        with pytest.raises(RpcTransportError) as info:
            async with connect_http_mcp(url, name="t"):
                pass
    text = str(info.value)
    assert "pw123" not in text and "k456" not in text and f"127.0.0.1:{port}/mcp" in text


async def test_a_tcp_endpoint_at_an_http_server_is_told_to_use_url() -> None:
    async def http_server(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            await stream.send_eof()
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while True:
                    await stream.receive()

    with anyio.fail_after(OUTER):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, http_server)
            with pytest.raises(RpcTransportError, match="it answered in HTTP") as info:
                async with connect_mcp("127.0.0.1", port):
                    pass
            tg.cancel_scope.cancel()
    assert 'url = "http://host:port/mcp"' in str(info.value)


async def test_a_get_stream_that_ends_is_reopened_with_the_last_event_id() -> None:
    gets: list[Seen] = []
    reopened = anyio.Event()

    class Numbered(Peer):
        async def _get(self, send: Send) -> None:
            gets.append(self.seen[-1])
            head = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            if len(gets) == 1:  # one numbered event, then the server ends the stream
                note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {}}
                body = b"id: e1\n" + sse_event(note)
                await send({"type": "http.response.body", "body": body})
                return
            reopened.set()
            await anyio.sleep_forever()

    peer = Numbered(sessions=True)
    with anyio.fail_after(OUTER):
        async with served(peer) as url, connect_http_mcp(url, name="t", backoff_initial=0.05):
            await reopened.wait()
    first, second = gets
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "e1"
    assert session_of(second) == "session-1"


async def test_post_bodies_leave_no_async_generator_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpcore iterates a request's body and never closes the iterator: httpx's own bytes body
    # is an async generator, so a POST cancelled while writing it left one suspended, and trio
    # warned when the GC finalised it (a test failed on that warning under CPU load).
    bodies: list[tuple[str, Any]] = []
    send = httpx.AsyncClient.send

    async def recording(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
        bodies.append((request.method, request.stream))
        return await send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", recording)
    peer = Peer()
    with anyio.fail_after(OUTER):
        async with served(peer) as url, connect_http_mcp(url, name="t") as client:
            await client.call_tool("echo", {"text": "hi"})
    posts = [stream for verb, stream in bodies if verb == "POST"]
    assert len(posts) == 4  # initialize, initialized, tools/list, tools/call
    for stream in posts:
        first = aiter(stream)
        assert not inspect.isasyncgen(first)
        chunk = await anext(first)  # abandoned here, as a cancelled write leaves it
        del first
        gc.collect()
        await anyio.lowlevel.checkpoint()  # a finalised generator would warn by now
        # whole again (httpcore may resend on a new connection), with the bytes that were sent
        assert [c async for c in stream] == [chunk]
    assert peer.posts()[-1].message == msgspec.json.decode(chunk)


def test_a_refused_version_is_named_however_the_server_gave_it() -> None:
    number = UnsupportedProtocolVersionError("t", 12345)
    assert number.version == "12345"  # the status showed null for it
    assert "MCP protocol version '12345'" in str(number)
    missing = UnsupportedProtocolVersionError("t", None)
    assert missing.version is None
    assert "no MCP protocol version" in str(missing) and "None" not in str(missing)
