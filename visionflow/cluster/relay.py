"""``visionflow relay``: more viewers for one simulation, fed from NATS (docs/cluster.md).

A relay is the service's own web side without the graph: the same :class:`Hub` (per-viewer
outbox, rates, deltas against what each viewer has, keyframe on drop), the same ``/wss``
endpoint (token, Host and Origin rules, limits, heartbeat), the same probes, metrics and viewer
page. Only the hub's two interfaces are implemented differently:

- its ``SnapshotSource`` is :class:`StreamSource`: the ticks rebuilt from ``P.stream.frame``
  (:class:`~visionflow.cluster.chain.TickAssembler`), bit for bit the engine's snapshots, so
  the frames a viewer gets here are byte for byte those it would get from the service;
- its ``PinSink`` is :class:`RemotePins`: drags and releases go to the simulation over NATS
  request/reply, one at a time in order, and a refusal comes back as the same ``error``.

Requests under ``/api/`` (other than ``/api/health``, the relay's own) are forwarded to the
service over NATS and answered with its response: the page's graph data, notes, swarm
requests and settings, and their errors, are the service's.

Control messages from ``P.stream.control`` go to every viewer as they are, except ``settled``
and ``moving``, which the relay's hub announces itself from the ticks' ``settled`` flag (as the
service's does), so a relay that joins a layout at rest knows it too. After a gap in the stream
(the broker went away, a frame was lost) every viewer's next frame is a keyframe, and a
``graph_changed`` is sent if the topology revision moved meanwhile.

``/readyz`` is not ready until the first keyframe arrived. nats-py is asyncio only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections import deque
from typing import Final

import anyio
import anyio.abc
import nats.errors
import numpy as np
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from visionflow import __version__
from visionflow.cluster import wire
from visionflow.cluster.chain import Backlog, Outcome, TickAssembler
from visionflow.cluster.link import NATS_FAILURES, NatsLink, require_asyncio
from visionflow.cluster.metrics import ClusterMetrics
from visionflow.errors import GraphError, RemoteProtocolError
from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics
from visionflow.protocol.frames import is_warm
from visionflow.protocol.messages import ErrorMessage, GraphChanged, encode_server_text
from visionflow.protocol.snapshot import Snapshot
from visionflow.settings import ClusterSettings, Settings
from visionflow.supervisor import HealthRegistry, RestartPolicy, Supervisor
from visionflow.web import viewer as viewer_page
from visionflow.web.app import build_app
from visionflow.web.context import Foundations
from visionflow.web.errors import error_response
from visionflow.web.guards import read_body
from visionflow.web.hub import Hub
from visionflow.web.server import HttpServer
from visionflow.web.ws import UpgradeRequiredRoute, websocket_route

__all__ = ["Relay", "RemotePins", "StreamSource"]

log = logger.bind(subsystem="cluster")

#: Drags and releases waiting to go to the simulation; beyond it a drag is refused (`busy`).
MAX_PIN_REQUESTS: Final = 256
#: Hop-by-hop headers are not forwarded (RFC 9110 section 7.6.1); the rest are, so the
#: service checks the token, Host and Origin itself.
_HOP_BY_HOP: Final = frozenset(
    (b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"trailer")
)
#: A frame queued longer than this on its way in is skipped (then a keyframe is asked for).
MAX_BEHIND_S: Final = 1.0
#: Bytes one read of the NATS socket may take (see link._widen_reads): a few 10k-node frames.
READ_CHUNK: Final = 1 << 20
_COMPILING: Final = "compiling the frame encoder"
_NOT_READY: Final = "waiting for a keyframe from the simulation (NATS)"
#: The service sends a keyframe every ``cluster.keyframe_interval`` even at rest: this many
#: intervals (at least SILENT_MIN_S) without a frame, and ``cluster`` is degraded (the viewers
#: see a picture that no longer changes; it was "ok" for ever after the service stopped).
SILENT_KEYFRAMES: Final = 5
SILENT_MIN_S: Final = 3.0


class StreamSource:
    """The relay hub's ``SnapshotSource``: the newest tick rebuilt from the stream."""

    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._published = anyio.Event()

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    def offer(self, snapshot: Snapshot) -> None:
        self._latest = snapshot
        self._published.set()
        self._published = anyio.Event()

    async def wait_snapshot(self, after: int) -> Snapshot:
        while True:
            latest = self._latest
            if latest is not None and latest.sequence > after:
                return latest
            await self._published.wait()

    def wake(self) -> None:
        """Nothing to wake here: the simulation publishes, and a keyframe is asked for on
        every (re)connection."""


class RemotePins:
    """The relay hub's ``PinSink``: drags go to the simulation (``P.rpc.pins``), in order.

    ``pin`` and ``release`` queue the request and return; a refusal (``unknown_node``,
    ``invalid_position``) arrives a moment later as the viewer's ``error`` message, the same
    one a viewer of the service gets. With the broker away a drag is refused at once
    (``unavailable``).
    """

    def __init__(self, relay_id: str, settings: ClusterSettings, metrics: ClusterMetrics) -> None:
        self.relay_id = relay_id
        self.subjects = wire.Subjects(settings.subject_prefix)
        self.timeout = settings.request_timeout
        self.metrics = metrics
        self.hub: Hub | None = None
        self.nc: Client | None = None
        self._queue: deque[wire.PinRequest] = deque()
        self._more = anyio.Event()

    def pin(self, node_ids: np.ndarray, positions: np.ndarray, owner: int) -> None:
        ids = np.ascontiguousarray(node_ids, "<u4").tobytes()
        pos = np.ascontiguousarray(positions, "<f4").tobytes()
        self._put(
            wire.PinRequest(op="pin", relay=self.relay_id, owner=owner, ids=ids, positions=pos)
        )

    def release(self, node_ids: np.ndarray, owner: int) -> None:
        ids = np.ascontiguousarray(node_ids, "<u4").tobytes()
        self._put(wire.PinRequest(op="release", relay=self.relay_id, owner=owner, ids=ids))

    def release_all(self, owner: int) -> None:
        # a viewer leaving while the broker is away: nothing to tell anyone
        with contextlib.suppress(GraphError):
            self._put(wire.PinRequest(op="release_all", relay=self.relay_id, owner=owner))

    def _put(self, request: wire.PinRequest) -> None:
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise GraphError("unavailable", "the simulation is not reachable from this relay")
        if len(self._queue) >= MAX_PIN_REQUESTS:
            raise GraphError("busy", "too many drags waiting for the simulation: try again")
        self._queue.append(request)
        self._more.set()

    async def run(self, nc: Client) -> None:
        """Send the queued requests over ``nc``, one at a time (a drag's order is kept)."""
        self.nc = nc
        while True:
            while not self._queue:
                self._more = anyio.Event()
                await self._more.wait()
            request = self._queue.popleft()
            try:
                msg = await nc.request(self.subjects.pins, wire.encode(request), self.timeout)
                reply = wire.decode(msg.data, wire.PinReply)
            except (*NATS_FAILURES, RemoteProtocolError) as exc:
                reply = wire.PinReply(
                    ok=False,
                    code="unavailable",
                    message=f"the simulation did not answer: {_failure_text(exc)}",
                )
            self.metrics.requests.labels(rpc="pins", result="ok" if reply.ok else reply.code).inc()
            if not reply.ok and request.op != "release_all":
                self._tell(request.owner, reply)

    def _tell(self, owner: int, reply: wire.PinReply) -> None:
        hub = self.hub
        if hub is None:
            return
        text = encode_server_text(ErrorMessage(code=reply.code, message=reply.message))
        for viewer in hub.viewers():
            if viewer.serial == owner:
                hub.send_control(viewer, text)


class Relay:
    """One relay process: hub, ``/wss``, probes, viewer page, API forwarding, NATS link.

    ``run`` / ``request_stop`` / ``stop_requested`` as :class:`visionflow.service.Service`,
    so ``service.serve_relay`` runs it with the service's signal handling and graceful drain.
    """

    http: HttpServer  # made in run(), like the service's

    def __init__(self, settings: Settings, *, policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or RestartPolicy()
        self.stop_requested = anyio.Event()
        self.relay_id = secrets.token_hex(6)
        self.ctx = Foundations(
            live=LiveSettings.from_settings(settings),
            registry=HealthRegistry(__version__),
            metrics=Metrics(),
        )
        self.cluster_metrics = ClusterMetrics(self.ctx.metrics, "relay")
        self.source = StreamSource()
        self.pins = RemotePins(self.relay_id, settings.cluster, self.cluster_metrics)
        self.hub = Hub(self.ctx, self.source, pins=self.pins)
        self.pins.hub = self.hub
        self.assembler = TickAssembler()
        self.backlog = Backlog()
        self.subjects = wire.Subjects(settings.cluster.subject_prefix)
        self.link = NatsLink(
            settings.cluster,
            self.ctx.registry.register("cluster"),
            self._serve,
            name="relay",
            read_chunk=READ_CHUNK,
        )
        self.revision = 0
        self._announced_revision: int | None = None
        self._gap = False
        self._last_frame = 0.0  # anyio time of the last frame from NATS
        self._silent: str | None = None  # the health message while no frame comes
        self.app = build_app(
            self.ctx,
            [
                websocket_route(self.ctx, self.hub, graph_revision=lambda: self.revision),
                UpgradeRequiredRoute(),
                *viewer_page.routes(),
                *self.api_routes(),
            ],
        )

    def request_stop(self) -> None:
        self.stop_requested.set()

    # ---------------------------------------------------------------- the task tree

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        require_asyncio("visionflow relay")
        registry = self.ctx.registry
        registry.starting = _NOT_READY
        grace = self.settings.server.shutdown_grace
        async with anyio.create_task_group() as tg:
            supervisor = Supervisor(
                tg, registry, self.policy, on_restart=self.ctx.metrics.on_restart
            )
            await supervisor.start("hub", self.hub.run)
            self.http = HttpServer(self.app, self.settings, supervisor.stopping)
            await supervisor.start("http", self.http.run, critical=True)
            await supervisor.start("cluster", self.link.run)
            log.info(
                "relay {} at {}, reading NATS at {} (subjects {}.*)",
                self.relay_id,
                self.http.url,
                self.settings.cluster.nats_url,
                self.settings.cluster.subject_prefix,
            )
            task_status.started()
            await self.stop_requested.wait()
            log.info("relay shutting down (grace {:g}s)", grace)
            supervisor.begin_shutdown()
            self.hub.stopping.set()
            with anyio.move_on_after(grace):
                await supervisor.wait_stopped("http")
            tg.cancel_scope.cancel()
        log.info("relay stopped")

    async def _serve(self, nc: Client) -> None:
        """One connection to the broker: read the stream, send drags, ask for a keyframe."""
        self.cluster_metrics.connected.set(1)
        try:
            await nc.subscribe(self.subjects.stream, cb=self._on_stream)
            self._gap = True  # whatever was missed while away: a keyframe for every viewer
            await self._ask_keyframe(nc)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._say_alive, nc)
                tg.start_soon(self._watch_silence)
                await self.pins.run(nc)
        finally:
            self.pins.nc = None
            self.cluster_metrics.connected.set(0)

    async def _say_alive(self, nc: Client) -> None:
        """So that the service releases our viewers' pins if we vanish (wire.ALIVE_TIMEOUT_S)."""
        while True:
            try:
                await nc.publish(self.subjects.alive, self.relay_id.encode())
            except NATS_FAILURES as exc:
                log.debug("relay: alive not sent: {!r}", exc)
            await anyio.sleep(wire.ALIVE_INTERVAL_S)

    async def _watch_silence(self) -> None:
        """Degrade ``cluster`` while no frame comes from the service (stopped, or its frames
        too large for the broker): a relay that still shows its last picture says so."""
        interval = self.settings.cluster.keyframe_interval
        limit = max(SILENT_MIN_S, SILENT_KEYFRAMES * interval)
        self._last_frame = anyio.current_time()  # the clock starts with the connection
        while True:
            await anyio.sleep(limit / 4)
            quiet = anyio.current_time() - self._last_frame
            if quiet >= limit and self._silent is None:
                self._silent = (
                    f"no frame from the service for {quiet:.0f} s (it sends one every "
                    f"{interval:g} s at least): is it running, and are its frames within the "
                    "broker's max_payload?"
                )
                health = self.link.health
                health.last_error = self._silent
                health.detail["degraded"] = True
                log.warning("relay: {}", self._silent)

    def _frame_seen(self) -> None:
        self._last_frame = anyio.current_time()
        if self._silent is None:
            return
        health = self.link.health
        if health.last_error == self._silent:
            health.last_error = None
        if health.detail.get("connected"):
            health.detail.pop("degraded", None)
        self._silent = None
        log.info("relay: frames from the service again")

    def _check_ready(self) -> None:
        """Ready once it can serve: a tick to show, and the frame encoder compiled (the hub
        compiles it in a thread at start: seconds when several relays start together). Checked
        on every frame, repeated ticks of a layout at rest included: on new ticks only, a relay
        started while the layout rested said "compiling" until the layout moved again."""
        registry = self.ctx.registry
        latest = self.source.latest
        if registry.starting not in (_NOT_READY, _COMPILING) or latest is None:
            return
        if is_warm():
            registry.starting = None
            log.info("relay ready (tick {})", latest.sequence)
        else:
            registry.starting = _COMPILING

    async def _ask_keyframe(self, nc: Client) -> None:
        try:
            await nc.publish(self.subjects.sync, b"")
        except NATS_FAILURES as exc:
            log.debug("relay: keyframe request not sent: {!r}", exc)

    # ---------------------------------------------------------------- the stream

    async def _on_stream(self, msg: Msg) -> None:
        if msg.subject == self.subjects.frame:
            self._frame_seen()
            await self._on_frame(msg)
            self._check_ready()
        elif msg.subject == self.subjects.control:
            self._on_control(msg.data)

    async def _on_frame(self, msg: Msg) -> None:
        if self._late(msg.headers) and wire.BASE in (msg.headers or {}):
            # A delta queued too long (a relay short of CPU): skip deltas, cheaply, until the
            # fresh keyframe asked for now, rather than show a picture seconds old. A keyframe
            # is always taken: under lasting overload viewers get keyframes, never nothing.
            self.cluster_metrics.frames_received.labels(outcome="late").inc()
            if not self._gap:
                self._gap = True
                nc = self.link.nc
                if nc is not None:
                    await self._ask_keyframe(nc)
            return
        applied = self.assembler.apply(msg.data, msg.headers)
        self.cluster_metrics.frames_received.labels(outcome=applied.outcome.value).inc()
        snapshot = applied.snapshot
        if snapshot is None:
            if applied.outcome is Outcome.BAD:
                log.warning("relay: a frame from NATS was refused: {}", applied.error)
            if applied.outcome in (Outcome.GAP, Outcome.BAD) and not self._gap:
                self._gap = True
                nc = self.link.nc
                if nc is not None:
                    await self._ask_keyframe(nc)
            return
        self.revision = max(self.revision, snapshot.revision)
        self.source.offer(snapshot)
        if applied.outcome is Outcome.KEYFRAME and (self._gap or applied.new_epoch):
            self._gap = False
            self.hub.restart_streams()
            if self._announced_revision is not None and self._announced_revision != self.revision:
                self._broadcast(encode_server_text(GraphChanged(revision=self.revision)))
        self._announced_revision = self.revision

    def _late(self, headers: dict[str, str] | None) -> bool:
        sent = (headers or {}).get(wire.SENT, "")
        if not sent.isdigit():
            return False
        behind = self.backlog.observe(int(sent), time.time())
        self.link.health.detail["behind_ms"] = round(behind * 1000)
        return behind > MAX_BEHIND_S

    def _on_control(self, data: bytes) -> None:
        try:
            text = data.decode()
            message = json.loads(text)
            kind = message.get("type")
        except (UnicodeDecodeError, ValueError, AttributeError):
            log.warning("relay: a control message from NATS is not a JSON object")
            return
        if kind in ("settled", "moving"):
            return  # announced by our own hub from the ticks' settled flag
        if kind == "graph_changed" and isinstance(message.get("revision"), int):
            self.revision = max(self.revision, message["revision"])
            self._announced_revision = self.revision
        self._broadcast(text)

    def _broadcast(self, text: str) -> None:
        for viewer in self.hub.viewers():
            self.hub.send_control(viewer, text)

    # ---------------------------------------------------------------- /api/ forwarding

    def api_routes(self) -> list[BaseRoute]:
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        return [Route("/api/{rest:path}", self._forward, methods=methods)]

    async def _forward(self, request: Request) -> Response:
        """Answer with the service's response to the same request (over ``P.rpc.api``)."""
        nc = self.link.nc
        if nc is None or not nc.is_connected:
            self.cluster_metrics.requests.labels(rpc="api", result="unavailable").inc()
            return _unavailable("the simulation is not reachable from this relay (NATS is away)")
        # The service's own body reader: size, pace and concurrent-upload limits; a body must
        # also fit one NATS message (8 KiB of it kept for the rest of the request).
        limit = min(self.settings.server.max_request_bytes, max(0, nc.max_payload - 8192))
        body = await read_body(request, limit)
        if isinstance(body, Response):
            return body
        client = request.client
        payload = wire.encode(
            wire.ApiRequest(
                method=request.method,
                path=request.url.path,
                query=request.scope.get("query_string", b""),
                headers=[(k, v) for k, v in request.scope["headers"] if k not in _HOP_BY_HOP],
                body=body,
                client=client.host if client else "",
            )
        )
        if len(payload) > nc.max_payload:
            return error_response(
                413,
                "too_large",
                f"the request with its headers ({len(payload)} bytes) is over the broker's "
                f"max_payload ({nc.max_payload}): send it to the service itself",
            )
        try:
            with anyio.fail_after(self.settings.cluster.request_timeout):
                data = await _request_in_parts(nc, self.subjects.api, payload)
            reply = wire.decode(data, wire.ApiReply)
        except TimeoutError:
            self.cluster_metrics.requests.labels(rpc="api", result="timeout").inc()
            return error_response(
                504, "timeout", "the simulation did not answer in time", headers=_RETRY
            )
        except (*NATS_FAILURES, RemoteProtocolError) as exc:
            self.cluster_metrics.requests.labels(rpc="api", result="unavailable").inc()
            return _unavailable(f"the simulation did not answer: {_failure_text(exc)}")
        self.cluster_metrics.requests.labels(rpc="api", result=str(reply.status)).inc()
        response = Response(reply.body, status_code=reply.status)
        response.raw_headers = [(k, v) for k, v in reply.headers if k not in _HOP_BY_HOP]
        return response


_RETRY: Final = {"Retry-After": "1"}


def _failure_text(exc: BaseException) -> str:
    """Why a request over NATS got no answer, in words (a drag said ``NoRespondersError()``)."""
    if isinstance(exc, nats.errors.NoRespondersError):
        return "nothing answers on NATS: is the service running?"
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _unavailable(message: str) -> Response:
    return error_response(503, "unavailable", message, headers=_RETRY)


async def _request_in_parts(nc: Client, subject: str, payload: bytes) -> bytes:
    """A request whose reply may come in parts (``VF-Part: i/n``); their bodies joined.

    Raises ``NoRespondersError`` (a NATS failure) when nothing answers on ``subject``.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, payload, reply=inbox)
        parts: dict[int, bytes] = {}
        async for msg in sub.messages:
            headers = msg.headers or {}
            if headers.get("Status") == "503":
                raise RemoteProtocolError("nothing answers on NATS: is the service running?")
            index, _, count = headers.get(wire.PART, "1/1").partition("/")
            if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
                raise RemoteProtocolError(f"bad {wire.PART} header {headers.get(wire.PART)!r}")
            parts[int(index)] = msg.data
            if len(parts) == int(count):
                return b"".join(parts[i] for i in range(1, int(count) + 1))
        raise RemoteProtocolError("the reply ended early")
    finally:
        # a connection that is gone took the subscription with it
        with anyio.CancelScope(shield=True), contextlib.suppress(*NATS_FAILURES):
            await sub.unsubscribe()
