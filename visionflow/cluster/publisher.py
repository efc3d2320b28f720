"""The service's side of the cluster: frames and control messages to NATS, relays' requests back.

:class:`ClusterPublisher` is the hub's :class:`~visionflow.web.hub.FrameTap`. On the hub's tick
it only keeps a reference (the newest snapshot and the tick's frame cache) and sets an event;
its own task (the ``cluster`` child) encodes and publishes, so a slow or absent broker never
holds the hub up. What waits for the broker is bounded: one tick (a newer one replaces it, and
the stream then carries a keyframe, :mod:`.chain`) and ``cluster.max_pending`` control
messages (the oldest dropped first). Every drop is counted
(``visionflow_cluster_frames_dropped_total{reason}``, ``..._control_dropped_total``), and while
the broker is away the ``cluster`` health entry is degraded.

It also answers the relays (``P.rpc.*``, :mod:`.wire`):

- ``sync``: publish a keyframe now (a relay that starts or reconnected);
- ``pins``: a relay viewer's drag or release goes to the same :class:`EnginePins` as a local
  viewer's, so it is refused with the same codes (``unknown_node``, ``invalid_position``);
- ``api``: an HTTP request a relay received under ``/api/`` is run through the service's own
  ASGI app (every guard, token check and error body included) and its response sent back,
  in parts when it is over the broker's ``max_payload``.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import anyio
import anyio.abc
import numpy as np
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from starlette.types import ASGIApp, Message

from visionflow.cluster import wire
from visionflow.cluster.chain import TickEncoder, TickOut
from visionflow.cluster.link import NATS_FAILURES, NatsLink
from visionflow.cluster.metrics import ClusterMetrics
from visionflow.errors import GraphError, RemoteProtocolError
from visionflow.metrics import Metrics
from visionflow.protocol.framecache import FrameCache
from visionflow.protocol.frames import FrameKind, WireFormat
from visionflow.protocol.snapshot import NodeFilter, Snapshot
from visionflow.settings import ClusterSettings
from visionflow.supervisor import HealthRegistry
from visionflow.web.hub import PinSink

__all__ = ["ClusterPublisher", "call_app"]

log = logger.bind(subsystem="cluster")

#: Remote owners of pins get ids from here up (a local viewer's owner is its serial: small).
_REMOTE_OWNER_BASE: Final = 1 << 40
#: Relay viewers holding pins at once (one entry each while they pin something).
_MAX_REMOTE_OWNERS: Final = 100_000
#: Bytes of a reply part under the broker's max_payload (room for the headers).
_PART_HEADROOM: Final = 1024


class ClusterPublisher:
    """Publishes the hub's ticks and control messages; answers ``sync``, ``pins``, ``api``."""

    def __init__(
        self,
        settings: ClusterSettings,
        registry: HealthRegistry,
        metrics: Metrics,
        *,
        pins: PinSink | None = None,
        health_name: str = "cluster",
    ) -> None:
        self.settings = settings
        self.subjects = wire.Subjects(settings.subject_prefix)
        self.pins = pins
        #: The service's ASGI app, for ``P.rpc.api`` (set once it is built).
        self.app: ASGIApp | None = None
        self.epoch = secrets.token_hex(8)
        self.encoder = TickEncoder(self.epoch)
        self.metrics = ClusterMetrics(metrics, "service")
        self.health = registry.register(health_name)
        self.link = NatsLink(settings, self.health, self._serve, name="publisher")
        self._newest: tuple[Snapshot, FrameCache | None] | None = None
        self._control: deque[str] = deque()
        self._wake = anyio.Event()
        self._keyframe_at = -math.inf  # when the last keyframe went out (anyio clock)
        self._tick_at = -math.inf  # when the last tick went out
        self._owners: dict[tuple[str, int], int] = {}
        #: When each relay holding pins was last heard from (anyio clock).
        self._seen: dict[str, float] = {}
        self._next_owner = _REMOTE_OWNER_BASE
        self.published = 0
        self.dropped = 0
        self._too_large: str | None = None  # the health message while frames are too large

    # ---------------------------------------------------------------- FrameTap (hub's tick)

    def tick(self, snapshot: Snapshot, cache: FrameCache | None) -> None:
        if not self.link.connected:
            self.metrics.frames_dropped.labels(reason="broker_away").inc()
        self._newest = (snapshot, cache)
        self._wake.set()

    def control(self, text: str) -> None:
        if len(self._control) >= self.settings.max_pending:
            self._control.popleft()  # the oldest goes: a relay re-reads state on the next one
            self.metrics.control_dropped.inc()
        self._control.append(text)
        self._wake.set()

    # ---------------------------------------------------------------- the child

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self.link.run(task_status=task_status)

    async def _serve(self, nc: Client) -> None:
        """One connection: answer the relays and publish until it closes."""
        self.metrics.connected.set(1)
        try:
            await nc.subscribe(self.subjects.sync, cb=self._on_sync)
            await nc.subscribe(self.subjects.pins, cb=self._on_pins)
            await nc.subscribe(self.subjects.api, cb=partial(self._on_api, nc))
            await nc.subscribe(self.subjects.alive, cb=self._on_alive)
            self.encoder.want_keyframe()  # relays may have lost frames while we were away
            # Relays could not reach us while we were away: each gets a full timeout again.
            now = anyio.current_time()
            self._seen = dict.fromkeys(self._seen, now)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reap_silent_relays)
                await self._publish_loop(nc)
        finally:
            self.metrics.connected.set(0)

    async def _publish_loop(self, nc: Client) -> None:
        interval = self.settings.keyframe_interval
        while True:
            wait = self._keyframe_at + interval - anyio.current_time()
            with anyio.move_on_after(max(0.0, wait)):
                await self._wake.wait()
            self._wake = anyio.Event()
            while self._control:
                text = self._control[0]
                if not await self._publish(nc, self.subjects.control, text.encode()):
                    break
                self._control.popleft()
            # At most max_rate_hz ticks: those in between are folded into the next delta (it is
            # against the tick sent last), which halves the stream at the default 30 for 60 Hz
            # physics; relays' viewers at the default 30 Hz lose nothing.
            await anyio.sleep_until(self._tick_at + 1.0 / self.settings.max_rate_hz)
            if anyio.current_time() >= self._keyframe_at + interval:
                self.encoder.want_keyframe()  # also at rest: a late relay starts from it
                await self._publish_tick(nc, repeat=True)
            else:
                await self._publish_tick(nc, repeat=False)

    async def _publish_tick(self, nc: Client, *, repeat: bool) -> None:
        newest = self._newest
        if newest is None:
            return
        snapshot, cache = newest
        sent = self.encoder.sent
        if sent is snapshot and not repeat:
            return
        started = time.perf_counter()
        out = self.encoder.encode(snapshot, _cached_keyframe(snapshot, cache))
        self.metrics.encode_seconds.observe(time.perf_counter() - started)
        self._tick_at = anyio.current_time()
        if out.kind is FrameKind.KEYFRAME:
            self._keyframe_at = self._tick_at
        if await self._publish_frame(nc, out):
            self.published += 1
            self.metrics.frames_published.labels(kind=out.kind.name.lower()).inc()
            self.metrics.bytes_published.inc(len(out.data))
        else:
            self.encoder.lost()

    async def _publish_frame(self, nc: Client, out: TickOut) -> bool:
        if len(out.data) > nc.max_payload:
            message = (
                f"a frame of {len(out.data)} bytes is over the broker's max_payload "
                f"({nc.max_payload}): raise max_payload in the nats-server configuration"
            )
            self._drop("too_large", message)
            # no relay gets a frame: degraded, not just a last_error under "ok"
            self._too_large = message
            self.health.detail["degraded"] = True
            return False
        headers = out.headers.to_headers()
        headers[wire.SENT] = str(int(time.time() * 1000))  # a relay's lag estimate
        sent = await self._publish(nc, self.subjects.frame, out.data, headers)
        if sent and self._too_large is not None:  # frames fit again: the message goes
            if self.health.last_error == self._too_large:
                self.health.last_error = None
            if self.health.detail.get("connected"):
                self.health.detail.pop("degraded", None)
            self._too_large = None
            log.info("cluster: frames fit the broker's max_payload again")
        return sent

    async def _publish(
        self, nc: Client, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> bool:
        try:
            await nc.publish(subject, data, headers=headers)
        except NATS_FAILURES as exc:
            self._drop("broker", f"publish failed: {exc!r}")
            return False
        return True

    def _drop(self, reason: str, message: str) -> None:
        self.dropped += 1
        self.metrics.frames_dropped.labels(reason=reason).inc()
        if self.health.last_error != message:
            log.warning("cluster: {}", message)
        self.health.last_error = message

    # ---------------------------------------------------------------- relays' requests

    async def _on_sync(self, msg: Msg) -> None:
        self.encoder.want_keyframe()
        self._keyframe_at = -math.inf  # also repeats a tick at rest
        self._wake.set()
        await _respond(msg, b"ok")

    async def _on_pins(self, msg: Msg) -> None:
        try:
            request = wire.decode(msg.data, wire.PinRequest)
            reply = self._apply_pins(request)
        except RemoteProtocolError as exc:
            reply = wire.PinReply(ok=False, code="bad_drag", message=str(exc))
        self.metrics.requests.labels(rpc="pins", result="ok" if reply.ok else reply.code).inc()
        await _respond(msg, wire.encode(reply))

    def _apply_pins(self, request: wire.PinRequest) -> wire.PinReply:
        pins = self.pins
        if pins is None:
            return wire.PinReply(
                ok=False, code="unsupported", message="this server does not accept dragged nodes"
            )
        key = (request.relay, request.owner)
        self._seen[request.relay] = anyio.current_time()
        if request.op == "release_all":
            owner = self._owners.pop(key, None)
            if owner is not None:
                pins.release_all(owner)
            return wire.PinReply(ok=True)
        ids = _array(request.ids, "<u4", 1, "ids")
        owner = self._owners.get(key)
        if owner is None:
            if len(self._owners) >= _MAX_REMOTE_OWNERS:
                return wire.PinReply(ok=False, code="busy", message="too many remote viewers pin")
            owner = self._owners[key] = self._next_owner
            self._next_owner += 1
        try:
            if request.op == "pin":
                positions = _array(request.positions, "<f4", 3, "positions")
                if positions.shape[0] != ids.shape[0]:
                    raise RemoteProtocolError("ids and positions differ in length")
                pins.pin(ids.astype(np.uint32), positions.astype(np.float32), owner)
            else:
                pins.release(ids.astype(np.uint32), owner)
        except GraphError as exc:
            return wire.PinReply(ok=False, code=exc.code or "bad_drag", message=exc.message)
        return wire.PinReply(ok=True)

    async def _on_alive(self, msg: Msg) -> None:
        relay = msg.data.decode(errors="replace")[:64]
        if relay in self._seen:  # only relays holding pins are tracked (bounded by them)
            self._seen[relay] = anyio.current_time()

    async def _reap_silent_relays(self) -> None:
        """Release the pins of relays not heard from for ``ALIVE_TIMEOUT_S`` (killed, or cut
        off from the broker): their viewers are gone, and nothing else would let go."""
        while True:
            await anyio.sleep(wire.ALIVE_INTERVAL_S)
            cutoff = anyio.current_time() - wire.ALIVE_TIMEOUT_S
            for relay in [r for r, seen in self._seen.items() if seen < cutoff]:
                del self._seen[relay]
                keys = [key for key in self._owners if key[0] == relay]
                for key in keys:
                    if self.pins is not None:
                        self.pins.release_all(self._owners.pop(key))
                log.info(
                    "cluster: relay {} silent: released the pins of {} viewer(s)", relay, len(keys)
                )

    async def _on_api(self, nc: Client, msg: Msg) -> None:
        app = self.app
        try:
            request = wire.decode(msg.data, wire.ApiRequest)
        except RemoteProtocolError as exc:
            reply = _json_reply(400, "bad_request", str(exc))
        else:
            if app is None:
                reply = _json_reply(503, "not_ready", "the service is starting")
            elif not request.path.startswith("/api/"):
                reply = _json_reply(404, "not_found", "only /api/ is forwarded")
            else:
                with anyio.move_on_after(self.settings.request_timeout) as scope:
                    reply = await call_app(app, request)
                if scope.cancelled_caught:
                    reply = _json_reply(504, "timeout", "the service did not answer in time")
        self.metrics.requests.labels(rpc="api", result=str(reply.status)).inc()
        body = wire.encode(reply)
        if msg.reply:
            await _respond_in_parts(nc, msg.reply, body)


def _cached_keyframe(snapshot: Snapshot, cache: FrameCache | None) -> Callable[[], bytes] | None:
    """The hub's protocol-2 ``all`` keyframe of this tick (encoded once, shared with viewers)."""
    if cache is None or cache.snapshot is not snapshot:
        return None
    return lambda: cache.keyframe(WireFormat.PROTOCOL2, NodeFilter.ALL).data


def _array(data: bytes, dtype: str, width: int, name: str) -> np.ndarray:
    item = np.dtype(dtype).itemsize * width
    if len(data) % item:
        raise RemoteProtocolError(f"{name}: {len(data)} bytes is not a multiple of {item}")
    values = np.frombuffer(data, dtype=dtype)
    return values.reshape(-1, width) if width > 1 else values


def _json_reply(status: int, code: str, message: str) -> wire.ApiReply:
    body = json.dumps({"error": {"code": code, "message": message, "path": None}}).encode()
    return wire.ApiReply(status=status, headers=[(b"content-type", b"application/json")], body=body)


async def _respond(msg: Msg, data: bytes) -> None:
    if not msg.reply:
        return
    try:
        await msg.respond(data)
    except NATS_FAILURES as exc:  # the broker went away meanwhile: the relay times out
        log.debug("cluster: reply not sent: {!r}", exc)


async def _respond_in_parts(nc: Client, reply: str, body: bytes) -> None:
    """Send ``body`` to ``reply`` in parts of at most the broker's max_payload (headers
    ``VF-Part: i/n``): an API response can be far larger than one NATS message."""
    size = max(1, nc.max_payload - _PART_HEADROOM)
    count = max(1, -(-len(body) // size))
    try:
        for i in range(count):
            part = body[i * size : (i + 1) * size]
            await nc.publish(reply, part, headers={wire.PART: f"{i + 1}/{count}"})
    except NATS_FAILURES as exc:
        log.debug("cluster: reply not sent: {!r}", exc)


async def call_app(app: ASGIApp, request: wire.ApiRequest) -> wire.ApiReply:
    """Run one HTTP request through ``app`` in this process and collect its response."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": request.query,
        "root_path": "",
        "headers": [(bytes(k).lower(), bytes(v)) for k, v in request.headers],
        "client": (request.client or "relay", 0),
        "server": None,
        "extensions": {},
    }
    responded = anyio.Event()
    body_given = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await responded.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                responded.set()

    await app(scope, receive, send)
    return wire.ApiReply(status=status, headers=headers, body=b"".join(chunks))
