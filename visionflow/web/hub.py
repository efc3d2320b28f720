"""The fan-out hub: one frame encode per tick, newest-wins delivery to every viewer.

The hub is a supervised child (``run(*, task_status)``). It follows the physics engine's newest
snapshot (waking on each publication, and announcing ``settled``/``moving`` when the snapshot's
``settled`` flips) and, per tick, builds one :class:`FrameCache` and asks each *due* viewer's
:class:`ViewerStream` for its frame, so every frame kind is encoded once per tick however many
viewers there are. What a viewer is given goes into its :class:`Viewer` outbox, which holds:

- at most ONE position frame: a newer frame replaces an unsent one (counted as dropped, and the
  viewer's stream is told, so what replaces it is a keyframe);
- at most :data:`CONTROL_QUEUE_LIMIT` JSON control messages (a viewer that lets more pile up is
  closed with 1013 rather than silently losing a ``graph_changed``);
- a close request, which takes priority over everything.

So the hub's memory is bounded whatever viewers do: per viewer one shared ``bytes`` frame and a
few control strings; baselines live in a bounded :class:`BaselineStore`.

Rates: a viewer subscribed at interval ``I`` gets a frame on the first tick of each ``I``-long
slot of a clock grid shared by every viewer, so viewers at the same rate receive the same ticks
and share one delta encode. A viewer whose oldest undelivered frame (queued, or being written) is
older than ``websocket.max_lag`` is closed with 1013: lag is judged by age, not bytes (see the
endpoint's sender for what "delivered" means).

The endpoint (:mod:`visionflow.web.ws`) owns the socket: it drains the outbox with one sender
task per connection. Everything here runs on the event loop; call :meth:`Hub.publish` from it
too (from a thread, go through ``anyio.from_thread.run_sync``).
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

import anyio
import anyio.abc
import numpy as np
from loguru import logger

from visionflow.errors import VisionflowError
from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics
from visionflow.protocol.baselines import BaselineStore
from visionflow.protocol.framecache import FrameCache
from visionflow.protocol.frames import FrameKind, WireFormat, is_warm, warm_up
from visionflow.protocol.messages import Moving, ServerMessage, Settled, encode_server_text
from visionflow.protocol.snapshot import NodeFilter, Snapshot
from visionflow.protocol.stream import ViewerStream
from visionflow.protocol.wire import CLOSE_NORMAL, CLOSE_SHUTDOWN, CLOSE_TRY_AGAIN
from visionflow.settings import WebSocketSettings
from visionflow.supervisor import HealthRegistry
from visionflow.threads import run_abandonable

__all__ = [
    "CONTROL_QUEUE_LIMIT",
    "CloseRequest",
    "FrameTap",
    "Hub",
    "HubContext",
    "HubFullError",
    "PinSink",
    "SnapshotSource",
    "Viewer",
]

log = logger.bind(subsystem="ws")

#: Control messages a viewer may leave unread before it is closed with 1013.
CONTROL_QUEUE_LIMIT: Final = 64
#: A tick this early for a slot boundary still counts as in it (scheduling jitter).
SLOT_TOLERANCE_S: Final = 0.002
#: Distinct viewer states whose baselines are kept (each one: ids + positions of a tick). Only
#: baselines some viewer holds stay, so this caps the distinct states before keyframes.
DEFAULT_BASELINES: Final = 64
#: Keyframes of a tick a viewer already has (``requestInitialData`` on a layout at rest) it may
#: get: REPEAT_BURST at once, then REPEATS_PER_S a second; a request beyond that is answered
#: when the budget allows. One viewer asking 90 times a second once forced 429 physics steps
#: and 241 MB of keyframes in 10 s; now it costs no step and at most a keyframe a second.
REPEATS_PER_S: Final = 1.0
REPEAT_BURST: Final = 2.0


# --------------------------------------------------------------------------- interfaces


class SnapshotSource(Protocol):
    """What the hub needs from the physics engine (``PhysicsEngine`` fits)."""

    @property
    def latest(self) -> Snapshot | None:
        """The newest snapshot (``sequence`` = physics tick), or None before the first."""
        ...

    async def wait_snapshot(self, after: int) -> Snapshot:
        """The first snapshot with ``sequence > after`` (waits for it). Its ``settled`` says
        whether the layout is at rest (the engine then publishes nothing until woken)."""
        ...

    def wake(self) -> None:
        """Publish a new snapshot soon even while at rest (a viewer needs a keyframe, and a
        connection's sequence numbers must strictly increase)."""
        ...


class PinSink(Protocol):
    """Where viewers' drags go. Ids carry no flag bits; unknown ids raise ``GraphError``."""

    def pin(self, node_ids: np.ndarray, positions: np.ndarray, owner: int) -> None: ...

    def release(self, node_ids: np.ndarray, owner: int) -> None: ...

    def release_all(self, owner: int) -> None: ...


class FrameTap(Protocol):
    """Sees what the hub sends, to pass it on elsewhere (``cluster.ClusterPublisher``: NATS).

    Both calls run on the hub's tick and must not block: keep a reference, hand it to a task.
    """

    def tick(self, snapshot: Snapshot, cache: FrameCache | None) -> None:
        """A new newest snapshot, once each; ``cache`` is this tick's frame cache, if the hub
        built one (its keyframes are then shared rather than encoded again)."""
        ...

    def control(self, text: str) -> None:
        """A control message every viewer is sent (encoded once, as the viewers get it)."""
        ...


class HubContext(Protocol):
    """The part of the service context the hub and the endpoint use (``ServiceContext`` fits)."""

    @property
    def live(self) -> LiveSettings: ...

    @property
    def registry(self) -> HealthRegistry: ...

    @property
    def metrics(self) -> Metrics: ...


class HubFullError(VisionflowError):
    """``websocket.max_connections`` viewers are connected already, or
    ``websocket.max_connections_per_client`` from the same address."""


class CloseRequest(NamedTuple):
    code: int
    reason: str


# --------------------------------------------------------------------------- one viewer


@dataclass(eq=False)
class Viewer:
    """One connection as the hub sees it: its stream state, its rate and its outbox."""

    serial: int
    client_id: str
    stream: ViewerStream
    #: The client's address (host), counted against ``max_connections_per_client``.
    address: str | None = None
    #: Seconds between frames, or None while not subscribed.
    interval: float | None = None
    #: Serve on the next tick whatever the rate: a (re)subscription wants its keyframe now.
    urgent: bool = False
    #: Index of the last clock slot (``floor(now / interval)``) this viewer was given a frame in.
    last_slot: int = -1
    #: When it was last given a frame: a re-rate recomputes ``last_slot`` on the new grid.
    served_at: float | None = None
    close_request: CloseRequest | None = None
    #: The in-flight send's cancel scope (set by the endpoint's sender), cut short on close.
    send_scope: anyio.CancelScope | None = None
    #: How long an in-flight send may still run once a close is requested.
    close_flush: float = 1.0
    frames_queued: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    bytes_sent: int = 0
    #: Sequence of the last frame the sender took (None before the first).
    sent_sequence: int | None = None
    #: ``requestInitialData`` budget (REPEATS_PER_S), and a request waiting for it.
    repeat_tokens: float = REPEAT_BURST
    repeat_refilled_at: float | None = None
    repeat_wanted: bool = False
    #: When the frame the sender is writing now was queued (None while none is in flight).
    in_flight_since: float | None = None
    _frame: bytes | None = None
    _frame_sequence: int | None = None
    _frame_since: float = 0.0
    _control: deque[str] = field(default_factory=deque)
    _wake: anyio.Event = field(default_factory=anyio.Event)

    # -- producer side (the hub)

    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    @property
    def control_pending(self) -> int:
        return len(self._control)

    @property
    def closing(self) -> bool:
        return self.close_request is not None

    def lag(self, now: float) -> float:
        """How long the oldest undelivered frame has waited: the one being written (a write
        to a peer that stopped reading does not complete) or the queued one (through
        replacements)."""
        oldest = self.in_flight_since
        if self._frame is not None and (oldest is None or self._frame_since < oldest):
            oldest = self._frame_since
        return 0.0 if oldest is None else now - oldest

    def put_frame(self, data: bytes, now: float, sequence: int) -> bool:
        """Queue ``data``; True when it replaced an unsent frame (which is then dropped)."""
        replaced = self._frame is not None
        if not replaced:
            self._frame_since = now
        self._frame = data
        self._frame_sequence = sequence
        self.frames_queued += 1
        self._wake.set()
        return replaced

    def take_frame_back(self) -> bool:
        """Withdraw the unsent frame (unsubscribe); True if there was one."""
        had, self._frame = self._frame is not None, None
        return had

    def push_control(self, text: str) -> bool:
        """Queue a control message; False (and nothing queued) when the queue is full."""
        if len(self._control) >= CONTROL_QUEUE_LIMIT:
            return False
        self._control.append(text)
        self._wake.set()
        return True

    def request_close(self, code: int, reason: str) -> bool:
        """Ask the sender to close; the first request wins. True if this one was taken."""
        if self.close_request is not None:
            return False
        self.close_request = CloseRequest(code, reason)
        self._wake.set()
        scope = self.send_scope
        if scope is not None:  # don't let one slow send hold the close back for send_timeout
            scope.deadline = min(scope.deadline, anyio.current_time() + self.close_flush)
        return True

    # -- consumer side (the endpoint's sender task)

    def take(self) -> CloseRequest | str | bytes | None:
        """The next thing to send: a close request, then control messages, then the frame."""
        if self.close_request is not None:
            return self.close_request
        if self._control:
            return self._control.popleft()
        frame, self._frame = self._frame, None
        if frame is not None:
            self.sent_sequence = self._frame_sequence
            self.in_flight_since = self._frame_since
        return frame

    async def wait(self) -> None:
        """Return once :meth:`take` has something (at once if it has already)."""
        if self.close_request is None and not self._control and self._frame is None:
            self._wake = anyio.Event()
            await self._wake.wait()


# --------------------------------------------------------------------------- the hub


class Hub:
    """Fans the physics snapshots out to every connected viewer. See the module docstring."""

    def __init__(
        self,
        ctx: HubContext,
        source: SnapshotSource,
        *,
        pins: PinSink | None = None,
        stopping: anyio.Event | None = None,
        health_name: str = "hub",
        baseline_capacity: int = DEFAULT_BASELINES,
        tap: FrameTap | None = None,
    ) -> None:
        self.ctx = ctx
        self.source = source
        self.pins = pins
        #: Set when the service shuts down (the supervisor's ``stopping``): viewers get 1001.
        self.stopping = stopping if stopping is not None else anyio.Event()
        self._told_to_reconnect = 0  # viewers closed with 1001 (CLOSE_SHUTDOWN)
        self._health_name = health_name
        self._baselines = BaselineStore(baseline_capacity)
        self._viewers: dict[int, Viewer] = {}
        #: Viewers per client address (no entry at 0): bounded by the viewers.
        self._per_address: dict[str, int] = {}
        self._serials = itertools.count(1)
        self._newest: Snapshot | None = None
        self._cache: FrameCache | None = None
        self._kick = anyio.Event()
        self._settled: bool | None = None
        #: When the next viewer that is behind the newest tick becomes due (a timer wake-up).
        self._wake_at = math.inf
        self.ticks = 0
        self.tap = tap
        self._tapped: Snapshot | None = None

    # ---------------------------------------------------------------- connections

    @property
    def settings(self) -> WebSocketSettings:
        return self.ctx.live.current.websocket

    @property
    def connections(self) -> int:
        return len(self._viewers)

    def viewers(self) -> Iterator[Viewer]:
        return iter(list(self._viewers.values()))

    def connect(
        self,
        fmt: WireFormat = WireFormat.PROTOCOL2,
        node_filter: NodeFilter = NodeFilter.ALL,
        address: str | None = None,
    ) -> Viewer:
        """Register a new viewer (not subscribed yet) from ``address`` (the client's host, if
        known); raises :class:`HubFullError`."""
        limit = self.settings.max_connections
        if len(self._viewers) >= limit:
            raise HubFullError(f"too many connections (limit {limit}); try again later")
        per_client = self.settings.max_connections_per_client
        if address is not None and self._per_address.get(address, 0) >= per_client:
            raise HubFullError(
                f"too many connections from {address[:64]} (limit {per_client}); try again later"
            )
        serial = next(self._serials)
        stream = ViewerStream(fmt, node_filter)
        viewer = Viewer(serial, f"{serial}-{secrets.token_hex(4)}", stream, address=address)
        self._viewers[serial] = viewer
        if address is not None:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        self.ctx.metrics.ws_connections.set(len(self._viewers))
        self._update_health()
        return viewer

    def disconnect(self, viewer: Viewer) -> None:
        """Forget ``viewer`` and release its pins. Idempotent."""
        if self._viewers.pop(viewer.serial, None) is None:
            return
        address = viewer.address
        if address is not None:
            left = self._per_address.pop(address) - 1
            if left:
                self._per_address[address] = left
        viewer.interval = None
        viewer.stream.release(self._baselines)
        self.ctx.metrics.ws_connections.set(len(self._viewers))
        self._update_health()
        if self.pins is not None:
            self.pins.release_all(viewer.serial)

    def clamp_interval_ms(self, requested_ms: float | None) -> float:
        ws = self.settings
        if requested_ms is None or not math.isfinite(requested_ms):
            requested_ms = ws.default_interval_ms
        return float(min(max(requested_ms, ws.min_interval_ms), ws.max_interval_ms))

    def subscribe(self, viewer: Viewer, interval_ms: float | None = None) -> float:
        """Start (keyframe next) or re-rate the viewer's stream; returns the interval in ms."""
        ms = self.clamp_interval_ms(interval_ms)
        interval = ms / 1000.0
        if viewer.interval is None:
            viewer.stream.restart()
            viewer.urgent = True
            self._kick.set()
        elif interval != viewer.interval and viewer.served_at is not None:
            # A slot index means nothing on another grid: left in old units, a slower rate's
            # slots would not pass it for (old/new) times the uptime, and the stream stopped.
            viewer.last_slot = math.floor((viewer.served_at + SLOT_TOLERANCE_S) / interval)
            self._kick.set()  # a viewer behind the newest tick may be due at another time now
        viewer.interval = interval
        return ms

    def request_keyframe(self, viewer: Viewer, now: float | None = None) -> None:
        """``requestInitialData``: the next frame is a keyframe, sent as soon as possible.

        Of the newest tick, even one this viewer was given already (from the frame cache: no
        physics step is taken for it), within the viewer's REPEATS_PER_S budget.
        """
        self._withdraw(viewer)  # it is replaced by the keyframe
        viewer.stream.restart()
        viewer.repeat_wanted = True
        self._grant_repeat(viewer, anyio.current_time() if now is None else now)
        self._kick.set()

    def _grant_repeat(self, viewer: Viewer, now: float) -> None:
        """Let a waiting ``requestInitialData`` repeat the last tick if the budget allows;
        else note when it will, for the hub's timer."""
        if not viewer.repeat_wanted:
            return
        if viewer.repeat_refilled_at is not None:
            elapsed = max(0.0, now - viewer.repeat_refilled_at)
            viewer.repeat_tokens = min(REPEAT_BURST, viewer.repeat_tokens + elapsed * REPEATS_PER_S)
        viewer.repeat_refilled_at = now
        if viewer.repeat_tokens >= 1.0:
            viewer.repeat_tokens -= 1.0
            viewer.repeat_wanted = False
            viewer.stream.restart(again=True)
            viewer.urgent = True
        else:
            self._wake_at = min(self._wake_at, now + (1.0 - viewer.repeat_tokens) / REPEATS_PER_S)

    def restart_streams(self) -> None:
        """Every subscribed viewer's next frame is a keyframe, sent at once (a relay that lost
        its stream for a while: its viewers start again from a whole state)."""
        for viewer in self.viewers():
            if viewer.interval is not None and not viewer.closing:
                self._withdraw(viewer)
                viewer.stream.restart()
                viewer.urgent = True
        self._kick.set()

    def unsubscribe(self, viewer: Viewer) -> None:
        viewer.interval = None
        viewer.urgent = False
        self._withdraw(viewer)

    @staticmethod
    def _withdraw(viewer: Viewer) -> None:
        """Take back the unsent frame. It never left, so its tick may go out again (as a
        keyframe): otherwise a layout at rest would never send this viewer any positions."""
        if viewer.take_frame_back():
            viewer.stream.rewind(viewer.sent_sequence)

    # ---------------------------------------------------------------- control messages

    def publish(self, message: ServerMessage) -> None:
        """Send a control message to every viewer (encoded once)."""
        text = encode_server_text(message)
        if self.tap is not None:
            self.tap.control(text)
        for viewer in self.viewers():
            self.send_control(viewer, text)

    def send_control(self, viewer: Viewer, text: str) -> None:
        """Queue ``text`` for one viewer; one that lets the queue fill up is closed with 1013."""
        if viewer.closing:
            return
        if not viewer.push_control(text):
            self.close(viewer, CLOSE_TRY_AGAIN, "too many unread control messages")

    def close(self, viewer: Viewer, code: int, reason: str) -> None:
        """Have ``viewer`` closed with ``code``; it gets no more frames or messages and no
        longer counts against ``max_connections`` (its socket may take a while to go: up to
        ``send_timeout`` when the peer stopped reading, then it is reset, see web/hyperws.py)."""
        if viewer.request_close(code, reason):
            if code == CLOSE_SHUTDOWN:
                self._told_to_reconnect += 1
            elif code != CLOSE_NORMAL:
                log.warning("closing viewer {} with {}: {}", viewer.client_id, code, reason)
            self.disconnect(viewer)

    def close_all(self, code: int, reason: str) -> None:
        for viewer in self.viewers():
            self.close(viewer, code, reason)

    # ---------------------------------------------------------------- delivery accounting

    def frame_sent(self, viewer: Viewer, nbytes: int) -> None:
        viewer.in_flight_since = None
        viewer.frames_sent += 1
        viewer.bytes_sent += nbytes
        self.ctx.metrics.frames_sent.inc()
        self.ctx.metrics.bytes_sent.inc(nbytes)

    def frame_lost(self, viewer: Viewer) -> None:
        """A frame taken from the outbox was not delivered after all."""
        viewer.in_flight_since = None
        viewer.stream.frame_dropped()
        viewer.frames_dropped += 1
        self.ctx.metrics.frames_dropped.inc()

    # ---------------------------------------------------------------- the tick

    def offer(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the newest (if it is newer) and wake the tick loop."""
        if self._newest is None or snapshot.sequence > self._newest.sequence:
            self._newest = snapshot
            self._kick.set()

    def tick(self, now: float | None = None) -> int:
        """Give every due viewer its frame of the newest snapshot; returns frames queued."""
        snapshot = self._newest
        if snapshot is None:
            return 0
        now = anyio.current_time() if now is None else now
        ws = self.settings
        cache = self._cache
        if cache is not None and cache.snapshot is not snapshot:
            cache = None
        queued = 0
        self._wake_at = math.inf
        for viewer in self.viewers():
            if viewer.closing:
                continue
            self._grant_repeat(viewer, now)
            if viewer.lag(now) > ws.max_lag:
                self.close(viewer, CLOSE_TRY_AGAIN, f"more than {ws.max_lag:g}s behind")
                continue
            slot = self._due_slot(viewer, snapshot.sequence, now)
            if slot is None:
                if viewer.interval is not None and viewer.stream.wants(snapshot.sequence):
                    # Not due yet, but must not miss this tick if it turns out to be the last.
                    due_at = (viewer.last_slot + 1) * viewer.interval - SLOT_TOLERANCE_S
                    self._wake_at = min(self._wake_at, due_at)
                continue
            if cache is None:
                cache = self._cache = FrameCache(snapshot, self._baselines, deadband=ws.deadband)
            if viewer.has_frame:
                # Newest wins: what we build now replaces the unsent frame, so it is a keyframe.
                viewer.stream.frame_dropped()
            frame = viewer.stream.next_frame(cache)
            viewer.urgent = False
            if frame is not None and frame.kind is FrameKind.KEYFRAME:
                viewer.repeat_wanted = False  # whatever it asked for, it has it now
            viewer.last_slot = slot
            viewer.served_at = now
            if frame is None:
                continue
            if viewer.put_frame(frame.data, now, frame.sequence):
                viewer.frames_dropped += 1
                self.ctx.metrics.frames_dropped.inc()
            queued += 1
        self.ticks += 1
        if self.tap is not None and self._tapped is not snapshot:
            self._tapped = snapshot
            self.tap.tick(snapshot, cache)
        return queued

    def _due_slot(self, viewer: Viewer, sequence: int, now: float) -> int | None:
        """The clock slot to serve ``viewer`` in now, or None when it is not due."""
        if viewer.interval is None:
            return None
        if not viewer.stream.wants(sequence):
            return None  # this tick was given already
        slot = math.floor((now + SLOT_TOLERANCE_S) / viewer.interval)
        if viewer.urgent or slot > viewer.last_slot:
            return slot
        return None

    # ---------------------------------------------------------------- the child

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the source and tick until the service stops; then close viewers with 1001."""
        self._kick = anyio.Event()
        latest = self.source.latest
        if latest is not None:
            self.offer(latest)
        self._settled = latest is not None and latest.settled
        async with anyio.create_task_group() as tg:
            self._update_health()
            task_status.started()
            with anyio.CancelScope() as ticking:
                tg.start_soon(_cancel_when, self.stopping, ticking)
                # The frame packer is numba: compile it in a thread, never on the event loop at
                # a first viewer's first frame (and without holding readiness). A stop during a
                # cold compile abandons it rather than waiting for it.
                if not is_warm():
                    await run_abandonable(warm_up, name="frame-warmup")
                tg.start_soon(self._follow_source)
                while True:
                    with anyio.move_on_after(self._wake_at - anyio.current_time()):
                        await self._kick.wait()
                    self._kick = anyio.Event()
                    self.tick()
                    self._update_health()
            tg.cancel_scope.cancel()
        self.close_all(CLOSE_SHUTDOWN, "server shutting down")
        # counted as closed: each viewer's handler may have closed it first, on the same event
        log.info("hub stopped; {} viewer(s) told to reconnect later", self._told_to_reconnect)

    async def _follow_source(self) -> None:
        # `settled` changes only with a published tick (the engine's wake() asks for a step
        # and leaves it alone), so waking on publication is enough: no polling.
        while True:
            newest = self._newest
            after = newest.sequence if newest is not None else -1
            snapshot = await self.source.wait_snapshot(after)
            latest = self.source.latest
            if latest is not None and latest.sequence > snapshot.sequence:
                snapshot = latest  # we were slower than the engine: skip to its newest
            self.offer(snapshot)
            self._check_settled()

    @property
    def at_rest(self) -> int | None:
        """The sequence the layout rests at, as last announced (None while moving)."""
        if not self._settled or self._newest is None:
            return None
        return self._newest.sequence

    def _check_settled(self) -> None:
        newest = self._newest
        settled = newest is not None and newest.settled
        if settled == self._settled:
            return
        self._settled = settled
        sequence = newest.sequence if newest is not None else 0
        self.publish(Settled(sequence=sequence) if settled else Moving(sequence=sequence))

    def _update_health(self) -> None:
        newest = self._newest
        self.ctx.registry.register(self._health_name).detail.update(
            connections=len(self._viewers),
            ticks=self.ticks,
            sequence=newest.sequence if newest is not None else None,
            settled=bool(self._settled),
        )


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
