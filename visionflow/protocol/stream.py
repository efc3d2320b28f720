"""Per-connection stream state: which frame (if any) a viewer gets this tick. Sans-IO.

A :class:`ViewerStream` holds O(1) state per connection: its wire format, its filter, the
sequence of the last frame it was given, a "needs keyframe" flag and the *token* of its baseline
(the positions it was last sent, kept in the hub's bounded :class:`BaselineStore`). All the
arrays and bytes live in the per-tick :class:`FrameCache`, so viewers in the same state share
one encode and the very same ``bytes`` object.

Rules (docs/protocol.md section 2):

- the first frame, the first after :meth:`ViewerStream.frame_dropped`, after a filter change or
  :meth:`ViewerStream.restart`, and whenever the baseline was evicted, is a keyframe;
- otherwise a delta: nodes that moved more than the deadband since last sent here, plus new
  nodes; a node that disappeared forces a keyframe instead;
- nothing when nothing moved; sequences never go back, and a tick already given is skipped,
  except by the keyframe that answers ``requestInitialData`` (:meth:`ViewerStream.restart` with
  ``again``): on a layout at rest the newest tick may be the one the viewer has, and it gets
  that tick again from the frame cache rather than a physics step of its own.

How the hub uses it, per tick::

    cache = FrameCache(snapshot, baselines, deadband=settings.websocket.deadband)
    for viewer in subscribed_viewers_due_this_tick:
        if viewer.has_unsent_frame():       # newest wins: the queued frame will be replaced,
            viewer.stream.frame_dropped()   # so what we send now must be a keyframe
        frame = viewer.stream.next_frame(cache)
        if frame is not None:
            viewer.enqueue(frame.data)
        # if the frame can't be delivered after all: viewer.stream.frame_dropped()
"""

from __future__ import annotations

from visionflow.protocol.baselines import BaselineStore
from visionflow.protocol.framecache import DeltaOutcome, Encoded, FrameCache
from visionflow.protocol.frames import WireFormat
from visionflow.protocol.snapshot import NodeFilter

__all__ = ["ViewerStream"]


class ViewerStream:
    """Keyframe/delta state of one connection. Not thread-safe; one per connection."""

    __slots__ = ("_again", "_baseline", "_filter", "_format", "_last_sequence", "_needs_keyframe")

    def __init__(
        self, fmt: WireFormat = WireFormat.PROTOCOL2, node_filter: NodeFilter = NodeFilter.ALL
    ) -> None:
        self._format = fmt
        self._filter = node_filter
        self._last_sequence: int | None = None
        self._baseline: int | None = None
        self._needs_keyframe = True
        self._again = False  # the next keyframe may repeat the last sequence

    @property
    def format(self) -> WireFormat:
        return self._format

    @property
    def node_filter(self) -> NodeFilter:
        return self._filter

    @property
    def last_sequence(self) -> int | None:
        """Sequence of the last frame handed out, or None before the first."""
        return self._last_sequence

    @property
    def baseline_token(self) -> int | None:
        """Token of this connection's baseline (connections with equal tokens share deltas)."""
        return self._baseline

    def wants(self, sequence: int) -> bool:
        """Whether tick ``sequence`` may be given to this connection (it is newer than the
        last one given, or the same one again as the keyframe ``restart(again=True)`` asked)."""
        last = self._last_sequence
        if last is None or sequence > last:
            return True
        return sequence == last and self._again and self._needs_keyframe

    def next_frame(self, cache: FrameCache) -> Encoded | None:
        """The frame to send for ``cache``'s tick, or None to send nothing.

        The returned frame is assumed delivered; call :meth:`frame_dropped` if it is not.
        """
        if not self.wants(cache.sequence):
            return None
        if not self._needs_keyframe and self._baseline is not None:
            baseline = cache.baselines.get(self._baseline)
            if baseline is not None and baseline.node_filter is self._filter:
                outcome = cache.delta(self._format, baseline)
                if outcome is DeltaOutcome.NOTHING_MOVED:
                    return None
                if isinstance(outcome, Encoded):
                    return self._sent(cache.baselines, outcome)
        return self._sent(cache.baselines, cache.keyframe(self._format, self._filter))

    def _sent(self, store: BaselineStore, frame: Encoded) -> Encoded:
        token = frame.baseline.token
        if token != self._baseline:
            store.hold(token)
            self.release(store)
            self._baseline = token
        self._last_sequence = frame.sequence
        self._needs_keyframe = False
        self._again = False
        return frame

    def frame_dropped(self) -> None:
        """The last frame given out was not delivered: the next frame must be a keyframe."""
        self._needs_keyframe = True

    def restart(self, *, again: bool = False) -> None:
        """(Re)subscription or ``requestInitialData``: send a keyframe next; ``again``: it may
        be of the tick last given (the viewer asks for the state it may already have)."""
        self._needs_keyframe = True
        self._again = self._again or again

    def release(self, store: BaselineStore) -> None:
        """Let go of the baseline (the connection is gone, or moves to another one)."""
        if self._baseline is not None:
            store.release(self._baseline)
            self._baseline = None

    def rewind(self, delivered: int | None) -> None:
        """Frames handed out after sequence ``delivered`` never left (withdrawn unsent): a
        keyframe next, which may carry any tick after ``delivered`` again."""
        self._last_sequence = delivered
        self._needs_keyframe = True

    def set_filter(self, node_filter: NodeFilter) -> None:
        """Change the subscription; a different filter needs a keyframe."""
        if node_filter is not self._filter:
            self._filter = node_filter
            self._needs_keyframe = True
