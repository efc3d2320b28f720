"""The hub's hooks for the cluster: its FrameTap (the publisher) and restart_streams (a relay)."""

from __future__ import annotations

import pytest
from support.hubfakes import FakePins, FakeSource, context, ids_of, snap

from visionflow.protocol.framecache import FrameCache
from visionflow.protocol.frames import FrameKind, decode_frame
from visionflow.protocol.messages import GraphChanged
from visionflow.protocol.snapshot import Snapshot
from visionflow.web.hub import Hub, Viewer

pytestmark = pytest.mark.anyio

IDS = ids_of(10, 2)


class RecordingTap:
    def __init__(self) -> None:
        self.ticks: list[tuple[Snapshot, FrameCache | None]] = []
        self.texts: list[str] = []

    def tick(self, snapshot: Snapshot, cache: FrameCache | None) -> None:
        self.ticks.append((snapshot, cache))

    def control(self, text: str) -> None:
        self.texts.append(text)


def frame_of(viewer: Viewer) -> bytes:
    item = viewer.take()
    assert isinstance(item, bytes), item
    return item


async def test_the_tap_sees_each_snapshot_once_with_the_ticks_cache() -> None:
    tap = RecordingTap()
    hub = Hub(context(), FakeSource(), pins=FakePins(), tap=tap)
    viewer = hub.connect()
    hub.subscribe(viewer)
    first = snap(1, IDS)
    hub.offer(first)
    hub.tick(now=0.0)
    hub.tick(now=0.01)  # a timer wake-up on the same snapshot: not a new tick for the tap
    assert [s for s, _ in tap.ticks] == [first]
    cache = tap.ticks[0][1]
    assert cache is not None and cache.snapshot is first  # the viewers' cache, shared
    hub.unsubscribe(viewer)
    second = snap(2, IDS, 1.0)
    hub.offer(second)
    hub.tick(now=1.0)  # no viewer due: no cache built, the tap still sees the tick
    assert tap.ticks[1] == (second, None)


async def test_the_tap_gets_every_broadcast_control_message_as_viewers_do() -> None:
    tap = RecordingTap()
    hub = Hub(context(), FakeSource(), tap=tap)
    viewer = hub.connect()
    hub.publish(GraphChanged(revision=4))
    assert tap.texts == [viewer.take()]
    assert tap.texts == ['{"type":"graph_changed","revision":4}']


async def test_restart_streams_sends_every_subscribed_viewer_a_keyframe_next() -> None:
    hub = Hub(context(), FakeSource())
    a, b, idle = hub.connect(), hub.connect(), hub.connect()
    hub.subscribe(a)
    hub.subscribe(b)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    frame_of(a)
    frame_of(b)
    hub.offer(snap(2, IDS, 1.0))
    hub.tick(now=1.0)
    frame_of(a)  # b leaves its delta unsent
    hub.restart_streams()
    assert b.take() is None  # the unsent delta was taken back
    hub.offer(snap(3, IDS, 2.0))
    hub.tick(now=1.001)  # urgent: within the same slot
    for viewer in (a, b):
        frame = decode_frame(frame_of(viewer))
        assert (frame.kind, frame.sequence) == (FrameKind.KEYFRAME, 3)
    assert idle.take() is None  # not subscribed: nothing
