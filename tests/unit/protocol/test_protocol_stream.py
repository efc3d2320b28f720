"""Per-connection stream state and the per-tick frame cache (docs/protocol.md section 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from visionflow.errors import LocalProtocolError
from visionflow.protocol.baselines import BaselineStore
from visionflow.protocol.framecache import FrameCache
from visionflow.protocol.frames import (
    AGENT_FLAG,
    HEADER_SIZE,
    KNOWLEDGE_FLAG,
    FrameKind,
    WireFormat,
    decode_frame,
    decode_legacy,
)
from visionflow.protocol.snapshot import NodeFilter, Snapshot
from visionflow.protocol.stream import ViewerStream

DEADBAND = 0.01


def make_ids(knowledge: int, agents: int = 0) -> np.ndarray:
    k = np.arange(knowledge, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)
    a = np.arange(1000, 1000 + agents, dtype=np.uint32) | np.uint32(AGENT_FLAG)
    return np.concatenate([k, a]).astype(np.uint32)


class World:
    """A hub in miniature: one snapshot per tick, one cache per snapshot, shared baselines."""

    def __init__(self, ids: np.ndarray, capacity: int = 16) -> None:
        self.ids = ids
        self.pos = np.zeros((len(ids), 3), np.float32)
        self.tick = 0
        self.baselines = BaselineStore(capacity)
        self.cache = self._cache()

    def _cache(self) -> FrameCache:
        vel = np.ones_like(self.pos)
        snap = Snapshot.create(self.tick, self.ids.copy(), self.pos.copy(), vel)
        return FrameCache(snap, self.baselines, deadband=DEADBAND)

    def step(self, moves: dict[int, float] | None = None, ids: np.ndarray | None = None) -> None:
        """Next tick; ``moves`` shifts x of the given rows; ``ids`` replaces the node set."""
        if ids is not None:
            old = dict(zip(self.ids.tolist(), self.pos, strict=True))
            self.pos = np.array(
                [old.get(i, np.zeros(3, np.float32)) for i in ids.tolist()], np.float32
            ).reshape(-1, 3)
            self.ids = ids
        for row, dx in (moves or {}).items():
            self.pos[row, 0] += dx
        self.tick += 1
        self.cache = self._cache()


def test_first_frame_is_a_keyframe_of_everything() -> None:
    world = World(make_ids(5))
    viewer = ViewerStream()
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.KEYFRAME
    decoded = decode_frame(frame.data)
    assert decoded.kind is FrameKind.KEYFRAME and decoded.sequence == 0
    assert np.array_equal(decoded.ids, world.ids)
    assert viewer.next_frame(world.cache) is None  # same tick never twice


def test_nothing_moved_sends_nothing_then_deadband_applies_to_last_sent() -> None:
    world = World(make_ids(4))
    viewer = ViewerStream()
    assert viewer.next_frame(world.cache) is not None
    world.step({0: 0.006})
    assert viewer.next_frame(world.cache) is None  # under the deadband
    world.step({0: 0.006})  # 0.012 from last sent: now it goes, alone
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.DELTA
    decoded = decode_frame(frame.data)
    assert decoded.ids.tolist() == [world.ids[0]] and decoded.sequence == 2
    assert decoded.positions[0, 0] == pytest.approx(0.012)
    world.step({0: 0.006, 1: 0.02})  # node 0: 0.006 from last sent -> stays
    decoded = decode_frame(viewer.next_frame(world.cache).data)  # type: ignore[union-attr]
    assert decoded.ids.tolist() == [world.ids[1]]


def test_sequences_strictly_increase_across_skipped_ticks() -> None:
    world = World(make_ids(3))
    viewer = ViewerStream()
    seen = []
    for t in range(8):
        if t:
            world.step({t % 3: 0.5})
        if t % 3 == 0:  # a slower viewer: every third tick
            frame = viewer.next_frame(world.cache)
            if frame is not None:
                seen.append(decode_frame(frame.data).sequence)
    assert seen == sorted(set(seen)) and len(seen) == 3


def test_drop_forces_a_keyframe() -> None:
    world = World(make_ids(3))
    viewer = ViewerStream()
    viewer.next_frame(world.cache)
    world.step({1: 1.0})
    assert viewer.next_frame(world.cache).kind is FrameKind.DELTA  # type: ignore[union-attr]
    viewer.frame_dropped()
    world.step()  # nothing moved, but the viewer missed a frame: keyframe
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.KEYFRAME
    assert len(decode_frame(frame.data)) == 3


def test_new_node_goes_in_a_delta_and_removal_forces_a_keyframe() -> None:
    world = World(make_ids(3))
    viewer = ViewerStream()
    viewer.next_frame(world.cache)
    world.step(ids=make_ids(4))
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.DELTA
    assert decode_frame(frame.data).ids.tolist() == [world.ids[3]]
    reordered = world.ids[::-1].copy()
    world.step({0: 1.0}, ids=reordered)  # same nodes in another order: still a delta
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.DELTA
    assert decode_frame(frame.data).ids.tolist() == [reordered[0]]
    world.step(ids=reordered[1:].copy())
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.KEYFRAME
    assert sorted(decode_frame(frame.data).ids.tolist()) == sorted(reordered[1:].tolist())
    world.step(ids=make_ids(0))  # everything gone: an empty keyframe says so
    frame = viewer.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.KEYFRAME and frame.count == 0


def test_filters_select_by_flag_and_a_filter_change_sends_a_keyframe() -> None:
    world = World(make_ids(3, agents=2))
    agents = ViewerStream(node_filter=NodeFilter.AGENTS)
    knowledge = ViewerStream(node_filter=NodeFilter.KNOWLEDGE)
    got = decode_frame(agents.next_frame(world.cache).data)  # type: ignore[union-attr]
    assert all(int(i) & AGENT_FLAG for i in got.ids) and len(got) == 2
    got = decode_frame(knowledge.next_frame(world.cache).data)  # type: ignore[union-attr]
    assert all(int(i) & KNOWLEDGE_FLAG for i in got.ids) and len(got) == 3
    world.step({0: 1.0})  # a knowledge node moved: the agents viewer gets nothing
    assert agents.next_frame(world.cache) is None
    assert knowledge.next_frame(world.cache) is not None
    agents.set_filter(NodeFilter.ALL)
    world.step()
    frame = agents.next_frame(world.cache)
    assert frame is not None and frame.kind is FrameKind.KEYFRAME and frame.count == 5


def test_viewers_in_the_same_state_share_the_same_bytes() -> None:
    world = World(make_ids(50))
    viewers = [ViewerStream() for _ in range(5)]
    legacy = [ViewerStream(WireFormat.LEGACY) for _ in range(2)]
    first = [v.next_frame(world.cache) for v in viewers + legacy]
    assert all(f is not None and f.data is first[0].data for f in first[:5])  # type: ignore[union-attr]
    assert first[5].data is first[6].data  # type: ignore[union-attr]
    assert first[5].data == first[0].data[HEADER_SIZE:]  # type: ignore[union-attr]
    world.step({3: 1.0, 7: 1.0})
    deltas = [v.next_frame(world.cache) for v in viewers + legacy]
    assert all(d is not None and d.data is deltas[0].data for d in deltas[:5])  # type: ignore[union-attr]
    assert deltas[5].data is deltas[6].data  # type: ignore[union-attr]
    assert len(decode_legacy(deltas[5].data)) == 2  # type: ignore[union-attr]
    assert len({v.baseline_token for v in viewers + legacy}) == 1
    # A late joiner gets a keyframe and a baseline of its own; its later deltas are correct
    # relative to what *it* was sent.
    late = ViewerStream()
    world.step({3: 0.006})
    late.next_frame(world.cache)
    for v in viewers:
        assert v.next_frame(world.cache) is None
    world.step({3: 0.006})
    assert decode_frame(viewers[0].next_frame(world.cache).data).ids.tolist() == [world.ids[3]]  # type: ignore[union-attr]
    assert late.next_frame(world.cache) is None


def test_memory_is_bounded_and_evicted_viewers_get_a_keyframe() -> None:
    world = World(make_ids(4), capacity=2)
    viewers = [ViewerStream() for _ in range(6)]
    for i, v in enumerate(viewers):  # everyone joins on a different tick: distinct baselines
        v.next_frame(world.cache)
        world.step({i % 4: 1.0})
    kinds = []
    for v in viewers:
        frame = v.next_frame(world.cache)
        assert frame is not None
        kinds.append(frame.kind)
        decode_frame(frame.data)
    assert len(world.baselines) <= 2
    assert FrameKind.KEYFRAME in kinds
    # Everyone evicted got this tick's keyframe, so they now share one baseline.
    assert len({v.baseline_token for v in viewers}) <= 3


def test_snapshot_validation() -> None:
    ids = make_ids(2)
    pos = np.zeros((2, 3), np.float32)
    bad = pos.copy()
    bad[1, 2] = np.nan
    with pytest.raises(LocalProtocolError, match="non-finite"):
        Snapshot.create(1, ids, bad, pos)
    with pytest.raises(LocalProtocolError, match="float32"):
        Snapshot.create(1, ids, pos.astype(np.float64), pos)
    with pytest.raises(LocalProtocolError, match="uint32"):
        Snapshot.create(1, ids.astype(np.int64), pos, pos)
    snap = Snapshot.create(1, ids, pos, pos)
    assert not snap.nodes.positions.flags.writeable
    assert pos.flags.writeable  # the caller's array is not frozen


def test_a_slow_viewer_keeps_its_baseline_beside_a_fast_one() -> None:
    # Before: every tick's new baseline pushed older ones out of the LRU, so a viewer at one
    # frame a second found its baseline evicted and got a keyframe every time.
    world = World(make_ids(50), capacity=4)
    fast, slow = ViewerStream(), ViewerStream()
    kinds: list[FrameKind] = []
    for tick in range(600):  # 10 s at 60 Hz, one node moving
        fast.next_frame(world.cache)
        if tick % 60 == 0:
            frame = slow.next_frame(world.cache)
            assert frame is not None
            kinds.append(frame.kind)
        world.step({tick % 50: 0.5})
    assert kinds.count(FrameKind.KEYFRAME) == 1 and len(kinds) == 10
    assert len(world.baselines) <= 2  # what the two viewers hold, not the last 4 made


def test_a_baseline_nobody_holds_is_dropped() -> None:
    world = World(make_ids(4))
    v = ViewerStream()
    v.next_frame(world.cache)
    token = v.baseline_token
    world.step({0: 1.0})
    v.next_frame(world.cache)  # moved on to the delta's baseline
    assert token not in world.baselines and len(world.baselines) == 1
    v.release(world.baselines)  # the connection is gone
    assert len(world.baselines) == 0 and v.baseline_token is None


def test_warm_up_compiles_what_a_real_stream_uses() -> None:
    # In a fresh process (numba's dispatchers are per process): after warm_up, keyframes and
    # deltas of read-only snapshots compile nothing more. A compile there runs on the event
    # loop at a first viewer's first frame (0.5-1.4 s stalls before read-only arrays were
    # warmed too).
    script = textwrap.dedent(
        """
        import numpy as np
        from visionflow.protocol import _kernels
        from visionflow.protocol.baselines import BaselineStore
        from visionflow.protocol.framecache import FrameCache
        from visionflow.protocol.frames import KNOWLEDGE_FLAG, warm_up
        from visionflow.protocol.snapshot import Snapshot
        from visionflow.protocol.stream import ViewerStream

        warm_up()
        before = (len(_kernels._pack_all.signatures), len(_kernels._pack_rows.signatures))
        ids = np.arange(50, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)
        baselines, viewer = BaselineStore(4), ViewerStream()
        for tick in range(3):
            pos = np.full((50, 3), float(tick), np.float32)
            snap = Snapshot.create(tick, ids, pos, np.zeros_like(pos))
            assert viewer.next_frame(FrameCache(snap, baselines, deadband=0.01)) is not None
        after = (len(_kernels._pack_all.signatures), len(_kernels._pack_rows.signatures))
        print(before, after)
        assert after == before, (before, after)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
