"""The frame stream on NATS: the publisher's keyframe/delta choice and a relay's rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.hubfakes import ids_of
from visionflow.cluster import wire
from visionflow.cluster.chain import Backlog, Outcome, TickAssembler, TickEncoder
from visionflow.errors import RemoteProtocolError
from visionflow.protocol.baselines import BaselineStore
from visionflow.protocol.framecache import FrameCache
from visionflow.protocol.frames import FrameKind, WireFormat, decode_frame
from visionflow.protocol.snapshot import NodeFilter, Snapshot
from visionflow.protocol.stream import ViewerStream


def make(
    sequence: int, ids: np.ndarray, pos: np.ndarray, vel: np.ndarray, **kw: object
) -> Snapshot:
    return Snapshot.create(sequence, ids.copy(), pos.copy(), vel.copy(), **kw)  # type: ignore[arg-type]


def walk(rng: np.random.Generator, n: int, ticks: int) -> list[Snapshot]:
    """A layout where some nodes move each tick and others rest (exactly still)."""
    ids = ids_of(n - 3, 3)
    rng.shuffle(ids)  # the store's order is not sorted by id
    pos = rng.normal(size=(n, 3)).astype(np.float32)
    vel = np.zeros((n, 3), np.float32)
    out = []
    for seq in range(1, ticks + 1):
        moving = rng.random(n) < 0.3
        vel[moving] = rng.normal(size=(int(moving.sum()), 3)).astype(np.float32) * 0.01
        vel[~moving & (rng.random(n) < 0.1)] = 0.0  # come to rest: velocity only changes
        pos[moving] += vel[moving]
        out.append(make(seq, ids, pos, vel, revision=3, settled=seq == ticks))
    return out


def test_first_frame_is_a_keyframe_then_exact_deltas() -> None:
    enc = TickEncoder("e1")
    snaps = walk(np.random.default_rng(1), 50, 3)
    first = enc.encode(snaps[0])
    assert first.kind is FrameKind.KEYFRAME and first.headers.base is None
    second = enc.encode(snaps[1])
    assert second.kind is FrameKind.DELTA and second.headers.base == 1
    frame = decode_frame(second.data)
    a, b = snaps[0].nodes, snaps[1].nodes
    changed = (a.positions != b.positions).any(axis=1) | (a.velocities != b.velocities).any(axis=1)
    assert sorted(frame.ids.tolist()) == sorted(b.ids[changed].tolist())


def test_a_velocity_or_sign_of_zero_change_alone_is_in_the_delta() -> None:
    ids = ids_of(2)
    pos = np.zeros((2, 3), np.float32)
    vel = np.zeros((2, 3), np.float32)
    enc = TickEncoder("e")
    enc.encode(make(1, ids, pos, vel))
    vel2 = vel.copy()
    vel2[0, 1] = 0.5
    pos2 = pos.copy()
    pos2[1, 2] = -0.0  # equal as a float, another frame byte
    delta = decode_frame(enc.encode(make(2, ids, pos2, vel2)).data)
    assert delta.ids.tolist() == ids.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_relay_rebuilds_every_tick_bit_for_bit(seed: int) -> None:
    enc, asm = TickEncoder("e"), TickAssembler()
    for snapshot in walk(np.random.default_rng(seed), 200, 30):
        out = enc.encode(snapshot)
        applied = asm.apply(out.data, out.headers.to_headers())
        assert applied.snapshot is not None
        got = applied.snapshot
        assert got.sequence == snapshot.sequence
        assert (got.revision, got.settled) == (snapshot.revision, snapshot.settled)
        assert got.nodes.ids.tobytes() == snapshot.nodes.ids.tobytes()
        assert got.nodes.positions.tobytes() == snapshot.nodes.positions.tobytes()
        assert got.nodes.velocities.tobytes() == snapshot.nodes.velocities.tobytes()


def test_viewer_frames_from_the_rebuilt_ticks_are_the_services_bytes() -> None:
    """The relay's hub encodes from the rebuilt ticks: a viewer's keyframes and deltas match
    those of the same viewer on the service, byte for byte."""
    snaps = walk(np.random.default_rng(5), 300, 12)
    enc, asm = TickEncoder("e"), TickAssembler()
    rebuilt = []
    for snapshot in snaps:
        out = enc.encode(snapshot)
        applied = asm.apply(out.data, out.headers.to_headers())
        assert applied.snapshot is not None
        rebuilt.append(applied.snapshot)
    for node_filter in NodeFilter:
        direct_store, relay_store = BaselineStore(8), BaselineStore(8)
        direct, relay = ViewerStream(node_filter=node_filter), ViewerStream(node_filter=node_filter)
        for a, b in zip(snaps, rebuilt, strict=True):
            fa = direct.next_frame(FrameCache(a, direct_store, deadband=0.005))
            fb = relay.next_frame(FrameCache(b, relay_store, deadband=0.005))
            assert (fa is None) == (fb is None)
            if fa is not None and fb is not None:
                assert fa.data == fb.data


def test_a_missed_frame_is_a_gap_until_the_next_keyframe() -> None:
    snaps = walk(np.random.default_rng(3), 40, 4)
    enc, asm = TickEncoder("e"), TickAssembler()
    out = [enc.encode(s) for s in snaps[:3]]
    assert asm.apply(out[0].data, out[0].headers.to_headers()).outcome is Outcome.KEYFRAME
    # out[1] lost on the way
    assert asm.apply(out[2].data, out[2].headers.to_headers()).outcome is Outcome.GAP
    enc.want_keyframe()
    key = enc.encode(snaps[3])
    assert key.kind is FrameKind.KEYFRAME
    applied = asm.apply(key.data, key.headers.to_headers())
    assert applied.outcome is Outcome.KEYFRAME
    assert applied.snapshot is not None and applied.snapshot.sequence == 4


def test_lost_publish_and_a_changed_node_set_give_keyframes() -> None:
    snaps = walk(np.random.default_rng(4), 30, 3)
    enc = TickEncoder("e")
    enc.encode(snaps[0])
    enc.lost()
    assert enc.encode(snaps[1]).kind is FrameKind.KEYFRAME
    n = snaps[2].nodes
    fewer = make(3, n.ids[:-1], n.positions[:-1], n.velocities[:-1])
    assert enc.encode(fewer).kind is FrameKind.KEYFRAME


def test_a_repeated_keyframe_is_stale_and_a_late_relay_starts_from_it() -> None:
    snaps = walk(np.random.default_rng(6), 20, 2)
    enc = TickEncoder("e")
    first = enc.encode(snaps[0])
    enc.want_keyframe()
    again = enc.encode(snaps[0])  # at rest: the same tick, repeated for a late relay
    assert again.kind is FrameKind.KEYFRAME
    early, late = TickAssembler(), TickAssembler()
    assert early.apply(first.data, first.headers.to_headers()).outcome is Outcome.KEYFRAME
    assert early.apply(again.data, again.headers.to_headers()).outcome is Outcome.STALE
    assert late.apply(again.data, again.headers.to_headers()).outcome is Outcome.KEYFRAME
    delta = enc.encode(snaps[1])
    assert late.apply(delta.data, delta.headers.to_headers()).outcome is Outcome.DELTA


def test_a_service_restart_keeps_sequences_increasing() -> None:
    snaps = walk(np.random.default_rng(7), 20, 5)
    asm = TickAssembler()
    old = TickEncoder("old")
    for s in snaps:
        out = old.encode(s)
        asm.apply(out.data, out.headers.to_headers())
    new = TickEncoder("new")  # ticks start again at 1
    out = new.encode(snaps[0])
    applied = asm.apply(out.data, out.headers.to_headers())
    assert applied.outcome is Outcome.KEYFRAME and applied.new_epoch
    assert applied.snapshot is not None and applied.snapshot.sequence == 6
    out = new.encode(snaps[1])
    applied = asm.apply(out.data, out.headers.to_headers())
    assert applied.snapshot is not None and applied.snapshot.sequence == 7


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        (b"VF\x02\x00\x01\x00\x00\x00", {wire.EPOCH: "e", wire.REVISION: "1"}),  # truncated
        (None, {wire.REVISION: "1"}),  # no epoch
        (None, {wire.EPOCH: "e", wire.REVISION: "x"}),  # bad revision
        (None, None),
    ],
)
def test_a_bad_frame_or_header_is_refused_not_applied(
    data: bytes | None, headers: dict[str, str] | None
) -> None:
    snaps = walk(np.random.default_rng(8), 5, 1)
    good = TickEncoder("e").encode(snaps[0])
    asm = TickAssembler()
    applied = asm.apply(good.data if data is None else data, headers)
    assert applied.outcome is Outcome.BAD and applied.error
    assert not asm.has_keyframe


def test_a_delta_naming_an_unknown_node_is_refused() -> None:
    snaps = walk(np.random.default_rng(9), 10, 2)
    enc, asm = TickEncoder("e"), TickAssembler()
    out = enc.encode(snaps[0])
    asm.apply(out.data, out.headers.to_headers())
    n = snaps[1].nodes
    ids = n.ids.copy()
    ids[0] = ids.max() + 1  # same count, one node the base does not hold
    bogus = TickEncoder("e")._encode(make(2, ids, n.positions, n.velocities), FrameKind.DELTA, None)
    headers = wire.TickHeaders("e", 1, 0, False).to_headers()
    applied = asm.apply(bogus, headers)
    assert applied.outcome is Outcome.BAD


def test_the_hubs_cached_keyframe_is_what_is_published() -> None:
    snapshot = walk(np.random.default_rng(10), 10, 1)[0]
    cache = FrameCache(snapshot, BaselineStore(4))
    shared = cache.keyframe(WireFormat.PROTOCOL2, NodeFilter.ALL).data
    out = TickEncoder("e").encode(snapshot, lambda: shared)
    assert out.data is shared


def test_request_bodies_round_trip_and_refuse_garbage() -> None:
    ids, positions = b"\x01\x00\x00\x00", b"\0" * 12
    req = wire.PinRequest(op="pin", relay="r", owner=3, ids=ids, positions=positions)
    assert wire.decode(wire.encode(req), wire.PinRequest) == req
    with pytest.raises(RemoteProtocolError, match="bad PinReply"):
        wire.decode(b"\xc1", wire.PinReply)


def test_backlog_is_queueing_time_whatever_the_clocks_offset() -> None:
    backlog = Backlog(window_s=10.0)
    skew = 3600.0  # the publisher's clock an hour behind: transit looks like an hour
    now = 1_000_000.0
    for _ in range(50):  # 20 ms of network each
        now += 0.033
        assert backlog.observe(round((now - skew - 0.02) * 1000), now) == pytest.approx(0, abs=2e-3)
    now += 0.033
    assert backlog.observe(round((now - skew - 1.52) * 1000), now) == pytest.approx(1.5, abs=2e-3)
    for _ in range(700):  # 23 s of a new, larger offset (a clock step): forgotten
        now += 0.033
        backlog.observe(round((now - skew - 5.0) * 1000), now)
    assert backlog.last_s == pytest.approx(0, abs=2e-3)
