"""``/wss``: the viewer WebSocket endpoint (docs/protocol.md sections 4-8), as a raw ASGI app.

One connection = one handler with four small tasks:

- the *receiver* reads client messages (size limit -> 1009, token-bucket rate limit -> ``error``
  then 1008, JSON control messages, binary drags -> pins);
- the *sender* is the only task that writes: it drains the connection's outbox in the hub
  (close request, then control messages, then the newest frame), bounds every send by
  ``websocket.send_timeout`` and sends the heartbeat;
- two watchers: the service's ``stopping`` event (close 1001) and the idle timeout (no inbound
  message for ``websocket.idle_timeout`` -> close 1000).

Refused upgrades are accepted and closed at once with the code and reason of docs/protocol.md
section 6: a close frame is the only refusal a browser (or a ``websockets`` client) can read;
hypercorn answers a close before accept with a bare HTTP 403.

Heartbeat: ASGI cannot send WebSocket pings, so the server's heartbeat is a JSON message: an
unsolicited ``{"type": "pong", "timestamp": null}`` (the JSON analogue of RFC 6455's unsolicited
Pong), sent when the connection has been silent for ``websocket.heartbeat_interval``. ``pong`` is
in the server message set, so every client decodes it; a null timestamp matches no ``ping``.
Clients keep the connection from idling out by sending ``ping`` (the original VisionFlow client
does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

import anyio
import anyio.abc
import numpy as np
from loguru import logger
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send

from visionflow.errors import FrameDecodeError, GraphError, RemoteProtocolError
from visionflow.protocol.frames import WireFormat, decode_client_records
from visionflow.protocol.messages import (
    MAX_RELEASE_IDS,
    ConnectionEstablished,
    ErrorMessage,
    Ping,
    Pong,
    Release,
    RequestInitialData,
    ServerMessage,
    Settled,
    Subscribed,
    SubscribePositionUpdates,
    UnsubscribePositionUpdates,
    decode_client_message,
    encode_server_text,
)
from visionflow.protocol.snapshot import NodeFilter
from visionflow.protocol.wire import (
    CLOSE_BAD_PARAM,
    CLOSE_BAD_TOKEN,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SHUTDOWN,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    ID_MASK,
)
from visionflow.settings import Settings
from visionflow.web.auth import presented_token, token_ok
from visionflow.web.errors import error_response
from visionflow.web.hub import CloseRequest, Hub, HubContext, HubFullError, Viewer
from visionflow.web.security import websocket_refusal

__all__ = [
    "HEARTBEAT",
    "Admission",
    "ConnectParams",
    "InboundLimiter",
    "WebSocketEndpoint",
    "parse_connect",
    "websocket_route",
]

log = logger.bind(subsystem="ws")

#: The server heartbeat (see the module docstring).
HEARTBEAT: Final = encode_server_text(Pong(timestamp=None))
#: Nodes one drag message may pin: pinning runs on the event loop (4096 take ~8 ms).
MAX_DRAG_RECORDS: Final = MAX_RELEASE_IDS  # one bound for the nodes pinned or released at once
#: Dragged plus released nodes a viewer may send per second (a second InboundLimiter: the
#: cost is the node count, not the message): within the message rate limit, three viewers
#: sending 4096-node drags cut a healthy viewer to 3.6-12.9 fps. 20k a second is ~40 ms of
#: the loop; a person dragging one node at 60 Hz uses 60.
DRAG_NODES_PER_S: Final = 20_000
#: A close frame's reason holds at most 123 bytes of UTF-8.
_MAX_REASON: Final = 123
#: Upper bound on how long an in-flight send may delay a requested close.
_CLOSE_FLUSH_MAX_S: Final = 1.0


# --------------------------------------------------------------------------- sans-IO parts


@dataclass(frozen=True, slots=True)
class ConnectParams:
    fmt: WireFormat
    node_filter: NodeFilter
    subscribe: bool


_BOOLS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_connect(
    settings: Settings, headers: Headers, query: QueryParams
) -> ConnectParams | CloseRequest:
    """Check an upgrade request (Host, Origin, token, query); the params, or how to refuse it."""
    server = settings.server
    refused = websocket_refusal(server, headers.get("host"), headers.get("origin"))
    if refused is not None:  # a foreign Host (DNS rebinding) or a cross-site page
        return CloseRequest(CLOSE_POLICY, refused)
    if not token_ok(server.token, presented_token(headers, query)):
        return CloseRequest(CLOSE_BAD_TOKEN, "missing or wrong token (?token= or Bearer header)")
    protocol = query.get("protocol", "2")
    if protocol not in ("2", "legacy"):
        return CloseRequest(CLOSE_BAD_PARAM, f"protocol={protocol!r}: expected 2 or legacy")
    graph = query.get("graph", "all")
    try:
        node_filter = NodeFilter(graph)
    except ValueError:
        return CloseRequest(CLOSE_BAD_PARAM, f"graph={graph!r}: expected all, knowledge or agents")
    subscribe = _BOOLS.get(query.get("subscribe", "true").lower())
    if subscribe is None:
        return CloseRequest(CLOSE_BAD_PARAM, "subscribe: expected true or false")
    fmt = WireFormat.LEGACY if protocol == "legacy" else WireFormat.PROTOCOL2
    return ConnectParams(fmt, node_filter, subscribe)


class Admission(Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"  # drop this message silently
    REFUSE_AND_TELL = "refuse and tell"  # drop it and send one `error`
    CLOSE = "close"  # the excess went on too long: 1008


class InboundLimiter:
    """Token bucket over inbound messages (or another cost), with a tolerance for excess.

    Bursts up to two seconds' worth pass. Beyond that a message is refused (the first refusal
    of an episode is reported to the client); once more than one second's worth has been
    refused before the bucket filled up again, the connection is to be closed (1008).
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        self.capacity = max(2.0 * self.rate, 1.0)
        self._tokens = self.capacity
        self._last = now
        self.refused = 0.0

    def admit(self, now: float, cost: float = 1.0) -> Admission:
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= self.capacity:
            self.refused = 0.0  # calm again: a fresh episode
        if self._tokens >= cost:
            self._tokens -= cost
            return Admission.ACCEPT
        first = self.refused == 0.0
        self.refused += cost
        if self.refused > max(self.rate, 1.0):
            return Admission.CLOSE
        return Admission.REFUSE_AND_TELL if first else Admission.REFUSE


def _reason(text: str) -> str:
    raw = text.encode()
    if len(raw) <= _MAX_REASON:
        return text
    return raw[: _MAX_REASON - 3].decode(errors="ignore") + "..."


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- the endpoint


@dataclass(eq=False)
class _Connection:
    viewer: Viewer
    send: Send
    peer: str
    limiter: InboundLimiter
    drags: InboundLimiter  # nodes dragged or released (DRAG_NODES_PER_S)
    last_inbound: float
    last_sent: float


class WebSocketEndpoint:
    """The ``/wss`` ASGI app. Mount with :func:`websocket_route`."""

    def __init__(
        self,
        ctx: HubContext,
        hub: Hub,
        *,
        graph_revision: Callable[[], int] = lambda: 0,
    ) -> None:
        self.ctx = ctx
        self.hub = hub
        self.graph_revision = graph_revision

    # ---------------------------------------------------------------- ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        if (await receive())["type"] != "websocket.connect":
            return
        settings = self.ctx.live.current
        peer = _peer(scope)
        if self.hub.stopping.is_set():
            await self._refuse(send, CloseRequest(CLOSE_SHUTDOWN, "server shutting down"), peer)
            return
        params = parse_connect(settings, Headers(scope=scope), QueryParams(scope["query_string"]))
        if isinstance(params, CloseRequest):
            await self._refuse(send, params, peer)
            return
        client = scope.get("client")
        try:
            viewer = self.hub.connect(params.fmt, params.node_filter, client[0] if client else None)
        except HubFullError as exc:
            await self._refuse(send, CloseRequest(CLOSE_TRY_AGAIN, str(exc)), peer)
            return
        viewer.close_flush = min(_CLOSE_FLUSH_MAX_S, max(0.1, settings.server.shutdown_grace / 2))
        now = anyio.current_time()
        conn = _Connection(
            viewer,
            send,
            peer,
            InboundLimiter(settings.websocket.max_messages_per_second, now),
            InboundLimiter(DRAG_NODES_PER_S, now),
            last_inbound=now,
            last_sent=now,
        )
        log.info(
            "viewer {} connected from {} (protocol {}, graph {})",
            viewer.client_id,
            peer,
            params.fmt.value,
            params.node_filter.value,
        )
        try:
            await self._serve(conn, params, receive)
        except Exception as exc:  # noqa: BLE001 — boundary: per-WebSocket handler
            log.opt(exception=exc).error("viewer {} failed: {!r}", viewer.client_id, exc)
            self.ctx.metrics.viewers_closed.labels(code=str(CLOSE_INTERNAL)).inc()
            with anyio.move_on_after(viewer.close_flush):
                await send({"type": "websocket.close", "code": CLOSE_INTERNAL, "reason": ""})
        finally:
            self.hub.disconnect(viewer)
            log.info(
                "viewer {} gone ({} frames, {} dropped)",
                viewer.client_id,
                viewer.frames_sent,
                viewer.frames_dropped,
            )

    async def _refuse(self, send: Send, refusal: CloseRequest, peer: str) -> None:
        log.info("refused a viewer from {} with {}: {}", peer, refusal.code, refusal.reason)
        self.ctx.metrics.viewers_refused.labels(code=str(refusal.code)).inc()
        with anyio.move_on_after(self.ctx.live.current.websocket.send_timeout):
            await send({"type": "websocket.accept"})
            await send(
                {"type": "websocket.close", "code": refusal.code, "reason": _reason(refusal.reason)}
            )

    async def _serve(self, conn: _Connection, params: ConnectParams, receive: Receive) -> None:
        viewer = conn.viewer
        # Queued before the first await: nothing broadcast meanwhile can get ahead of it.
        self._control(
            conn,
            ConnectionEstablished(
                timestamp=_now_ms(),
                protocol="legacy" if params.fmt is WireFormat.LEGACY else "2",
                client_id=viewer.client_id,
                graph_revision=int(self.graph_revision()),
            ),
        )
        at_rest = self.hub.at_rest  # the hub's view: it announces changes of it to everyone
        if at_rest is not None:
            self._control(conn, Settled(sequence=at_rest))
        if not await self._send(conn, {"type": "websocket.accept"}):
            return
        if params.subscribe:
            self.hub.subscribe(viewer)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._receiver, conn, receive, tg.cancel_scope)
            tg.start_soon(self._sender, conn, tg.cancel_scope)
            tg.start_soon(self._watch_stopping, conn)
            tg.start_soon(self._watch_idle, conn)

    # ---------------------------------------------------------------- sending

    async def _send(
        self, conn: _Connection, message: Message, *, deadline: float = math.inf
    ) -> bool:
        """One ASGI send, bounded by ``send_timeout`` and ``deadline`` (less once a close was
        requested)."""
        viewer = conn.viewer
        now = anyio.current_time()
        deadline = min(deadline, now + self.ctx.live.current.websocket.send_timeout)
        if viewer.closing:
            deadline = min(deadline, now + viewer.close_flush)
        with anyio.CancelScope(deadline=deadline) as scope:
            viewer.send_scope = scope
            try:
                await conn.send(message)
            finally:
                viewer.send_scope = None
        if scope.cancelled_caught:  # cut short: the peer is not reading
            return False
        conn.last_sent = anyio.current_time()
        return True

    async def _sender(self, conn: _Connection, cancel: anyio.CancelScope) -> None:
        viewer = conn.viewer
        heartbeat = self.ctx.live.current.websocket.heartbeat_interval
        while True:
            item = viewer.take()
            if item is None:
                quiet_left = conn.last_sent + heartbeat - anyio.current_time()
                if quiet_left > 0:
                    with anyio.move_on_after(quiet_left):
                        await viewer.wait()
                    continue
                item = HEARTBEAT
            if isinstance(item, CloseRequest):
                # Even behind a stuck send: on asyncio the close frame is queued after it (and
                # without one hypercorn closes with 1011); the try is bounded by close_flush.
                self.ctx.metrics.viewers_closed.labels(code=str(item.code)).inc()
                await self._send(conn, {"type": "websocket.close", **item._asdict()})
                # Returning makes hypercorn close the TCP connection. Done at once, inbound data
                # still unread (a flooding client) makes the kernel reset the connection, which
                # can discard our close frame before the client reads it. So, as RFC 6455 has
                # it, wait for the client's answering close (the receiver then ends this), for
                # close_flush at most.
                await anyio.sleep(conn.viewer.close_flush)
                cancel.cancel()
                return
            if isinstance(item, bytes):
                # Lag is judged by age: a frame counts as delivered once its write completes,
                # and it may take until it is max_lag old (from when it was queued). The kernel
                # buffers would absorb ~1000 small frames of a viewer that stopped reading, but
                # the unsent part of the socket's send queue is capped (TCP_NOTSENT_LOWAT, see
                # server.py) and hypercorn's own buffer is 64 KiB, so beyond the peer's receive
                # window a write soon stops completing and the frame being written ages.
                max_lag = self.ctx.live.current.websocket.max_lag
                since = viewer.in_flight_since
                aged_at = (anyio.current_time() if since is None else since) + max_lag
                message = {"type": "websocket.send", "bytes": item}
                if await self._send(conn, message, deadline=aged_at):
                    self.hub.frame_sent(viewer, len(item))
                    continue
                self.hub.frame_lost(viewer)
                if anyio.current_time() >= aged_at and not viewer.closing:
                    reason = f"more than {max_lag:g}s behind: the viewer is not reading"
                    self.hub.close(viewer, CLOSE_TRY_AGAIN, reason)
            elif await self._send(conn, {"type": "websocket.send", "text": item}):
                continue
            if not viewer.closing:
                self.hub.close(viewer, CLOSE_TRY_AGAIN, "send timed out: the viewer is not reading")

    def _control(self, conn: _Connection, message: ServerMessage) -> None:
        self.hub.send_control(conn.viewer, encode_server_text(message))

    def _error(self, conn: _Connection, code: str, message: str) -> None:
        self._control(conn, ErrorMessage(code=code, message=message))

    # ---------------------------------------------------------------- watchers

    async def _watch_stopping(self, conn: _Connection) -> None:
        await self.hub.stopping.wait()
        self.hub.close(conn.viewer, CLOSE_SHUTDOWN, "server shutting down")

    async def _watch_idle(self, conn: _Connection) -> None:
        timeout = self.ctx.live.current.websocket.idle_timeout
        while True:
            left = conn.last_inbound + timeout - anyio.current_time()
            if left <= 0:
                self.hub.close(conn.viewer, CLOSE_NORMAL, f"idle: no message for {timeout:g}s")
                return
            await anyio.sleep(left)

    # ---------------------------------------------------------------- receiving

    async def _receiver(
        self, conn: _Connection, receive: Receive, cancel: anyio.CancelScope
    ) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                break
            if kind == "websocket.receive" and not conn.viewer.closing:
                self._on_message(conn, message.get("bytes"), message.get("text"))
        cancel.cancel()  # the client is gone: nothing left to send to

    def _on_message(self, conn: _Connection, data: bytes | None, text: str | None) -> None:
        viewer = conn.viewer
        ws = self.ctx.live.current.websocket
        now = anyio.current_time()
        conn.last_inbound = now
        limit = ws.max_inbound_bytes
        size = len(data) if data is not None else _utf8_len(text or "", limit)
        if size > limit:
            self.hub.close(viewer, CLOSE_TOO_BIG, f"message of {size} bytes over {limit}")
            return
        admission = conn.limiter.admit(now)
        if admission is Admission.CLOSE:
            self.hub.close(viewer, CLOSE_POLICY, "message rate limit exceeded repeatedly")
            return
        if admission is not Admission.ACCEPT:
            if admission is Admission.REFUSE_AND_TELL:
                rate = ws.max_messages_per_second
                self._error(conn, "rate_limited", f"over {rate:g} messages/s: messages dropped")
            return
        if data is not None:
            self._on_drag(conn, data)
        else:
            self._on_text(conn, text or "")

    def _on_text(self, conn: _Connection, text: str) -> None:
        viewer = conn.viewer
        try:
            message = decode_client_message(text)
        except RemoteProtocolError as exc:
            self._error(conn, "bad_message", str(exc))
            return
        if isinstance(message, Ping):
            self._control(conn, Pong(timestamp=message.timestamp))
        elif isinstance(message, RequestInitialData):
            self._subscribed(conn, self.hub.subscribe(viewer))
            self.hub.request_keyframe(viewer)
        elif isinstance(message, SubscribePositionUpdates):
            self._subscribed(conn, self.hub.subscribe(viewer, message.interval))
        elif isinstance(message, UnsubscribePositionUpdates):
            self.hub.unsubscribe(viewer)
        elif isinstance(message, Release):
            self._release(conn, message.ids)

    def _subscribed(self, conn: _Connection, interval_ms: float) -> None:
        interval: int | float = int(interval_ms) if interval_ms.is_integer() else interval_ms
        self._control(conn, Subscribed(interval=interval))

    def _drag_budget(self, conn: _Connection, nodes: int) -> bool:
        """Charge ``nodes`` to the viewer's drag budget; False (told once, or closed on
        repeated excess like the message limit) when it is spent."""
        admission = conn.drags.admit(conn.last_inbound, nodes)
        if admission is Admission.ACCEPT:
            return True
        if admission is Admission.CLOSE:
            self.hub.close(conn.viewer, CLOSE_POLICY, "drag rate limit exceeded repeatedly")
        elif admission is Admission.REFUSE_AND_TELL:
            self._error(
                conn,
                "rate_limited",
                f"over {DRAG_NODES_PER_S} dragged or released nodes/s: messages dropped",
            )
        return False

    def _release(self, conn: _Connection, ids: list[int]) -> None:
        pins = self.hub.pins
        if pins is None or not ids or not self._drag_budget(conn, len(ids)):
            return
        try:
            pins.release(np.asarray(ids, dtype=np.uint32), conn.viewer.serial)
        except GraphError as exc:
            self._error(conn, exc.code or "bad_release", exc.message)

    def _on_drag(self, conn: _Connection, data: bytes) -> None:
        pins = self.hub.pins
        if pins is None:
            self._error(conn, "unsupported", "this server does not accept dragged nodes")
            return
        try:
            records = decode_client_records(data)
        except FrameDecodeError as exc:
            self._error(conn, "bad_drag", str(exc))
            return
        if records.ids.size == 0:
            return
        if records.ids.size > MAX_DRAG_RECORDS:  # pinning runs on the event loop
            self._error(conn, "bad_drag", f"at most {MAX_DRAG_RECORDS} nodes per drag message")
            return
        if not self._drag_budget(conn, int(records.ids.size)):
            return
        ids = records.ids & np.uint32(ID_MASK)  # records may carry the type flags; pins do not
        try:
            pins.pin(ids, records.positions, conn.viewer.serial)
        except GraphError as exc:
            self._error(conn, exc.code or "bad_drag", exc.message)


def _utf8_len(text: str, limit: int) -> int:
    # Encoding copies the text: only do it when the character count leaves the answer open.
    return len(text) if len(text) * 4 <= limit else len(text.encode())


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


def websocket_route(
    ctx: HubContext,
    hub: Hub,
    *,
    path: str = "/wss",
    graph_revision: Callable[[], int] = lambda: 0,
) -> WebSocketRoute:
    """The ``/wss`` route for ``create_app(ctx, extra_routes=[...])``."""
    return WebSocketRoute(path, WebSocketEndpoint(ctx, hub, graph_revision=graph_revision))


class UpgradeRequiredRoute(Route):
    """Plain HTTP at the WebSocket path: GET gets 426 naming the upgrade it needs, any other
    method 405 (``Allow: GET``), where no HTTP route used to answer 404 to a path the API
    document lists. Not in /openapi.json itself: the WebSocket route documents the path."""

    undocumented = True

    def __init__(self, path: str = "/wss") -> None:
        super().__init__(path, _upgrade_required, methods=["GET"])


async def _upgrade_required(request: Request) -> Response:
    return error_response(
        426,
        "upgrade_required",
        "this is the WebSocket endpoint: connect with a WebSocket client (docs/protocol.md)",
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )
