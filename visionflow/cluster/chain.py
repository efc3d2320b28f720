"""The frame stream on ``P.stream.frame``: the publisher's choice per tick, and a relay's rebuild.

Sans-IO. The service publishes the ``all`` filter only: a relay selects ``knowledge`` and
``agents`` from it exactly as the service does (a mask on the id flags), so one stream carries
every filter.

Deltas on this stream are *exact*, unlike a viewer's: a node is in one when any bit of its
position or velocity changed since the tick published last (no deadband), so the relay's copy
of every tick is bit for bit the engine's snapshot, and the frames its hub builds from it are
byte for byte the service's. Everything else is a keyframe: the first tick, the first after a
frame that did not go out (broker away, buffer full), after the node set changed, after a
relay asked (``P.rpc.sync``), and at least every ``cluster.keyframe_interval``.

A relay applies a delta only on top of the very tick it names as its base (same epoch, same
sequence); anything else is a gap, and it waits for the next keyframe. Sequences it hands its
hub are the publisher's plus an offset that only grows when the service restarts (a new epoch
starts again at 1), so a relay's viewers see them increase across a service restart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from visionflow.cluster.wire import TickHeaders
from visionflow.errors import FrameDecodeError, LocalProtocolError, RemoteProtocolError
from visionflow.protocol.frames import FrameKind, WireFormat, decode_frame, encode_frame
from visionflow.protocol.snapshot import Snapshot

__all__ = ["Applied", "Backlog", "Outcome", "TickAssembler", "TickEncoder", "TickOut"]


def _bits(values: np.ndarray) -> np.ndarray:
    """float32 rows as their bit patterns: -0.0 differs from 0.0, as it does on the wire."""
    return values.view(np.uint32)


@dataclass(frozen=True, slots=True, eq=False)
class TickOut:
    data: bytes
    headers: TickHeaders
    kind: FrameKind
    sequence: int


class TickEncoder:
    """The publisher's side: the frame for a new snapshot, relative to the last one sent."""

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self._sent: Snapshot | None = None
        self._keyframe_due = True

    @property
    def sent(self) -> Snapshot | None:
        """The tick a relay following the stream holds now (None before the first)."""
        return self._sent

    def want_keyframe(self) -> None:
        """The next frame is a keyframe (a relay asked, the interval is up, a frame was lost)."""
        self._keyframe_due = True

    def encode(self, snapshot: Snapshot, keyframe: Callable[[], bytes] | None = None) -> TickOut:
        """The frame for ``snapshot``; ``keyframe`` gives its protocol-2 ``all`` keyframe when
        one is needed (the hub's frame cache: encoded once, shared with its viewers).

        Call :meth:`lost` if it is not published after all.
        """
        sent = self._sent
        nodes = snapshot.nodes
        headers_base: int | None = None
        rows: np.ndarray | None = None
        if (
            not self._keyframe_due
            and sent is not None
            and sent.sequence < snapshot.sequence
            and (sent.nodes.ids is nodes.ids or np.array_equal(sent.nodes.ids, nodes.ids))
        ):
            changed = (_bits(nodes.positions) != _bits(sent.nodes.positions)).any(axis=1)
            changed |= (_bits(nodes.velocities) != _bits(sent.nodes.velocities)).any(axis=1)
            rows = np.flatnonzero(changed)
            headers_base = sent.sequence
        if rows is None:
            kind = FrameKind.KEYFRAME
            data = keyframe() if keyframe is not None else self._encode(snapshot, kind, None)
        else:
            kind = FrameKind.DELTA
            data = self._encode(snapshot, kind, rows)
        self._sent = snapshot
        self._keyframe_due = False
        headers = TickHeaders(self.epoch, headers_base, snapshot.revision, snapshot.settled)
        return TickOut(data, headers, kind, snapshot.sequence)

    @staticmethod
    def _encode(snapshot: Snapshot, kind: FrameKind, rows: np.ndarray | None) -> bytes:
        nodes = snapshot.nodes
        return encode_frame(
            WireFormat.PROTOCOL2,
            kind,
            nodes.ids,
            nodes.positions,
            nodes.velocities,
            snapshot.sequence,
            rows=rows,
        )

    def lost(self) -> None:
        """The last frame did not reach the broker: relays may not have it, so a keyframe."""
        self._keyframe_due = True


class Outcome(Enum):
    KEYFRAME = "keyframe"
    DELTA = "delta"
    #: A delta whose base is not the tick held (a frame was lost): wait for a keyframe.
    GAP = "gap"
    #: A keyframe of a tick not newer than the one held (repeated for a late relay): ignored.
    STALE = "stale"
    #: A frame that does not decode, or headers that do not parse: counted, then like a gap.
    BAD = "bad"


@dataclass(frozen=True, slots=True, eq=False)
class Applied:
    outcome: Outcome
    #: The rebuilt tick (KEYFRAME, DELTA), numbered for the relay's hub.
    snapshot: Snapshot | None = None
    #: A keyframe of another epoch: the service restarted since the tick held.
    new_epoch: bool = False
    error: str = ""


class TickAssembler:
    """A relay's side: rebuilds each tick's :class:`Snapshot` from the stream."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.held: Snapshot | None = None  # numbered as published (not offset)
        self._offset = 0
        self._last_out = 0  # the newest sequence handed out (offset applied)
        self._order: np.ndarray | None = None  # argsort of held ids, for delta rows

    @property
    def has_keyframe(self) -> bool:
        return self.held is not None

    def apply(self, data: bytes, headers: dict[str, str] | None) -> Applied:
        try:
            tick = TickHeaders.from_headers(headers)
            frame = decode_frame(data)
        except (RemoteProtocolError, FrameDecodeError) as exc:
            return Applied(Outcome.BAD, error=str(exc))
        if frame.kind is FrameKind.KEYFRAME:
            return self._keyframe(
                tick, frame.sequence, frame.ids, frame.positions, frame.velocities
            )
        held = self.held
        if held is None or tick.epoch != self.epoch or tick.base != held.sequence:
            return Applied(Outcome.GAP)
        if frame.sequence <= held.sequence:
            return Applied(Outcome.BAD, error=f"delta {frame.sequence} not after its base")
        ids = held.nodes.ids
        order = self._order
        if order is None:
            order = self._order = np.argsort(ids, kind="stable")
        at = np.searchsorted(ids[order], frame.ids)
        at = np.minimum(at, max(ids.shape[0] - 1, 0))
        if frame.ids.size and (ids.size == 0 or not np.array_equal(ids[order][at], frame.ids)):
            return Applied(Outcome.BAD, error="delta names a node its base does not hold")
        rows = order[at]
        positions = held.nodes.positions.copy()
        velocities = held.nodes.velocities.copy()
        positions[rows] = frame.positions
        velocities[rows] = frame.velocities
        return self._hold(tick, frame.sequence, ids, positions, velocities, Outcome.DELTA)

    def _keyframe(
        self,
        tick: TickHeaders,
        sequence: int,
        ids: np.ndarray,
        positions: np.ndarray,
        velocities: np.ndarray,
    ) -> Applied:
        held = self.held
        new_epoch = held is not None and tick.epoch != self.epoch
        if held is not None and not new_epoch and sequence <= held.sequence:
            return Applied(Outcome.STALE)
        if new_epoch:
            # The service restarted: its ticks start again at 1; ours keep increasing.
            self._offset = self._last_out
        self._order = None
        applied = self._hold(tick, sequence, ids, positions, velocities, Outcome.KEYFRAME)
        return Applied(applied.outcome, applied.snapshot, new_epoch, applied.error)

    def _hold(
        self,
        tick: TickHeaders,
        sequence: int,
        ids: np.ndarray,
        positions: np.ndarray,
        velocities: np.ndarray,
        outcome: Outcome,
    ) -> Applied:
        try:
            # The decoder refused every non-finite float already.
            held = Snapshot.create(
                sequence, ids, positions, velocities, revision=tick.revision,
                settled=tick.settled, check_finite=False,
            )  # fmt: skip
            out = Snapshot(sequence + self._offset, held.nodes, held.revision, held.settled)
            if out.sequence >= 2**64:
                raise LocalProtocolError("sequence over u64 after a service restart")
        except LocalProtocolError as exc:
            return Applied(Outcome.BAD, error=str(exc))
        self.epoch = tick.epoch
        self.held = held
        self._last_out = out.sequence
        return Applied(outcome, out)


class Backlog:
    """How far behind the stream a relay reads: a frame's transit time (receive clock minus the
    publisher's ``VF-Sent``) less the least transit seen lately.

    The least transit stands for the network plus the clocks' offset, so two hosts' clocks need
    not agree: what is left is time spent queued (in the broker, the socket, this process).
    The least is kept over two windows of ``window_s`` so that a clock step is forgotten.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._current = math.inf
        self._previous = math.inf
        self._window_ends: float | None = None
        self.last_s = 0.0

    def observe(self, sent_ms: int, now_s: float) -> float:
        """Seconds behind for a frame sent at ``sent_ms`` and received at ``now_s`` (epoch)."""
        transit = now_s - sent_ms / 1000.0
        if self._window_ends is None or now_s >= self._window_ends:
            self._previous, self._current = self._current, math.inf
            self._window_ends = now_s + self.window_s
        self._current = min(self._current, transit)
        self.last_s = max(0.0, transit - min(self._current, self._previous))
        return self.last_s
