"""The hub's per-tick fan-out, outboxes and rates, with a fake snapshot source."""

from __future__ import annotations

import itertools

import anyio
import pytest
from loguru import logger
from support.hubfakes import FakePins, FakeSource, context, ids_of, snap

from visionflow.protocol.frames import FrameKind, WireFormat, decode_frame
from visionflow.protocol.messages import GraphChanged
from visionflow.protocol.snapshot import NodeFilter
from visionflow.web.hub import (
    CONTROL_QUEUE_LIMIT,
    REPEAT_BURST,
    CloseRequest,
    Hub,
    HubFullError,
    Viewer,
)

pytestmark = pytest.mark.anyio

IDS = ids_of(20, 5)


def make_hub(**websocket: object) -> tuple[Hub, FakeSource]:
    source = FakeSource()
    return Hub(context(**websocket), source, pins=FakePins()), source


def frame_of(viewer: Viewer) -> bytes:
    item = viewer.take()
    assert isinstance(item, bytes), item
    return item


async def test_each_frame_kind_is_encoded_once_per_tick() -> None:
    hub, _ = make_hub()
    a, b = hub.connect(), hub.connect()
    legacy = hub.connect(WireFormat.LEGACY)
    agents = hub.connect(node_filter=NodeFilter.AGENTS)
    for v in (a, b, legacy, agents):
        hub.subscribe(v)
    hub.offer(snap(1, IDS))
    assert hub.tick(now=0.0) == 4
    fa, fb, fl, fg = (frame_of(v) for v in (a, b, legacy, agents))
    assert fa is fb  # one encode, the same bytes object for both viewers
    assert fl == fa[16:]  # legacy: the records without the header
    assert len(decode_frame(fg).ids) == 5
    hub.offer(snap(2, IDS, shift=1.0))
    hub.tick(now=1.0)
    da, db = frame_of(a), frame_of(b)
    assert da is db and decode_frame(da).kind is FrameKind.DELTA


async def test_a_newer_frame_replaces_an_unsent_one_and_is_a_keyframe() -> None:
    hub, _ = make_hub()
    v = hub.connect()
    hub.subscribe(v)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    assert frame_of(v)  # delivered
    hub.offer(snap(2, IDS, 1.0))
    hub.tick(now=1.0)  # a delta, left unsent
    hub.offer(snap(3, IDS, 2.0))
    hub.tick(now=2.0)
    assert v.frames_dropped == 1
    assert hub.ctx.metrics.frames_dropped._value.get() == 1
    frame = decode_frame(frame_of(v))
    assert (frame.kind, frame.sequence) == (FrameKind.KEYFRAME, 3)
    assert v.take() is None  # the outbox held one frame, never two
    hub.offer(snap(4, IDS, 3.0))
    hub.tick(now=3.0)
    assert decode_frame(frame_of(v)).kind is FrameKind.DELTA


async def test_rate_follows_a_shared_grid_of_slots() -> None:
    hub, _ = make_hub()
    fast, slow, slow2 = hub.connect(), hub.connect(), hub.connect()
    assert hub.subscribe(fast, 16) == 16
    hub.subscribe(slow, 100)
    hub.subscribe(slow2, 100)
    counts = {id(v): 0 for v in (fast, slow, slow2)}
    for seq in range(1, 101):  # 1 s of ticks at 100 Hz
        hub.offer(snap(seq, IDS, shift=seq))
        hub.tick(now=seq * 0.01 + 0.005)
        frames = {id(v): v.take() for v in (fast, slow, slow2)}
        for key, item in frames.items():
            counts[key] += item is not None
        assert frames[id(slow)] is frames[id(slow2)]  # same ticks, same state, same bytes
    assert 55 <= counts[id(fast)] <= 63
    assert 9 <= counts[id(slow)] <= 11


@pytest.mark.parametrize(("before", "after"), [(33, 100), (100, 500), (33, 34), (100, 33)])
async def test_a_re_rate_keeps_the_stream_going_at_the_new_rate(before: int, after: int) -> None:
    # Before: the last slot stayed in units of the old interval, so after a re-rate to a slower
    # one the new slots did not pass it for (old/new) times the uptime: no frame at all.
    hub, _ = make_hub()
    v = hub.connect()
    hub.subscribe(v, before)
    seq, now, step = 0, 100.0, 0.01  # the service has been up a while: large slot numbers
    for _ in range(50):  # 0.5 s of ticks at 100 Hz at the first rate
        seq, now = seq + 1, now + step
        hub.offer(snap(seq, IDS, shift=seq))
        hub.tick(now=now)
        v.take()
    hub.subscribe(v, after)
    got = []
    for _ in range(300):  # 3 s at the new rate
        seq, now = seq + 1, now + step
        hub.offer(snap(seq, IDS, shift=seq))
        hub.tick(now=now)
        if v.take() is not None:
            got.append(now)
    expected = 3.0 / (after / 1000)
    assert expected - 2 <= len(got) <= expected + 1, (len(got), expected)
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert min(gaps) >= after / 1000 - 0.011  # no faster than the new rate (one tick of slack)


async def test_a_viewer_behind_the_last_tick_gets_it_when_due() -> None:
    hub, _ = make_hub()
    v = hub.connect()
    hub.subscribe(v, 100)
    hub.offer(snap(1, IDS))
    hub.tick(now=10.00)
    frame_of(v)
    hub.offer(snap(2, IDS, 1.0))  # the layout's last tick, arriving mid-slot
    hub.tick(now=10.03)
    assert v.take() is None
    assert hub._wake_at == pytest.approx(10.1 - 0.002)
    hub.tick(now=10.1)
    assert decode_frame(frame_of(v)).sequence == 2


async def test_a_viewer_that_stays_behind_is_closed_1013() -> None:
    hub, _ = make_hub(max_lag=0.5)
    v = hub.connect()
    hub.subscribe(v)
    for seq, now in enumerate((0.0, 0.2, 0.4, 0.6), start=1):
        hub.offer(snap(seq, IDS, seq))
        hub.tick(now=now)
    assert v.close_request == CloseRequest(1013, "more than 0.5s behind")
    assert v.take() == v.close_request  # a close goes before anything else
    assert v.interval is None


async def test_the_frame_being_written_counts_for_lag() -> None:
    # A write to a peer that stopped reading does not complete: its frame's age is the lag,
    # though the outbox behind it is refilled with fresh frames.
    hub, _ = make_hub(max_lag=0.5)
    v = hub.connect()
    hub.subscribe(v)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    frame_of(v)  # taken by the sender, never reported sent
    for seq, now in enumerate((0.2, 0.4, 0.6), start=2):
        hub.offer(snap(seq, IDS, seq))
        hub.tick(now=now)
    assert v.lag(0.6) == pytest.approx(0.6)
    assert v.close_request == CloseRequest(1013, "more than 0.5s behind")


async def test_control_queue_is_bounded() -> None:
    hub, _ = make_hub()
    v = hub.connect()
    for revision in range(CONTROL_QUEUE_LIMIT):
        hub.publish(GraphChanged(revision=revision))
    assert v.control_pending == CONTROL_QUEUE_LIMIT and not v.closing
    hub.publish(GraphChanged(revision=999))
    assert v.control_pending == CONTROL_QUEUE_LIMIT
    assert v.close_request is not None and v.close_request.code == 1013


async def test_unsubscribe_withdraws_the_frame_and_resubscribing_sends_a_keyframe() -> None:
    hub, _ = make_hub()
    v = hub.connect()
    hub.subscribe(v)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    frame_of(v)
    hub.offer(snap(2, IDS, 1.0))
    hub.tick(now=1.0)
    hub.unsubscribe(v)
    assert v.take() is None
    hub.offer(snap(3, IDS, 2.0))
    hub.tick(now=2.0)
    assert v.take() is None
    hub.subscribe(v)
    hub.tick(now=2.001)  # urgent: no need to wait for the slot
    assert decode_frame(frame_of(v)).kind is FrameKind.KEYFRAME


async def test_a_keyframe_withdrawn_unsent_is_resent_while_the_layout_rests() -> None:
    # Before: the withdrawn frame's tick counted as given, and a layout at rest makes no
    # newer one, so the viewer never got any positions.
    hub, _ = make_hub()
    v = hub.connect()
    hub.subscribe(v)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)  # the keyframe, not yet taken by the sender
    hub.unsubscribe(v)
    hub.subscribe(v)
    hub.tick(now=0.001)  # no new snapshot
    frame = decode_frame(frame_of(v))
    assert (frame.kind, frame.sequence) == (FrameKind.KEYFRAME, 1)


async def test_request_initial_data_at_rest_repeats_the_newest_tick_without_a_step() -> None:
    hub, source = make_hub()
    v = hub.connect()
    hub.subscribe(v)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    assert decode_frame(frame_of(v)).sequence == 1
    hub.request_keyframe(v, now=0.5)
    assert source.wakes == 0  # no physics step: the keyframe of tick 1 is in the frame cache
    hub.tick(now=0.501)
    frame = decode_frame(frame_of(v))
    assert (frame.kind, frame.sequence) == (FrameKind.KEYFRAME, 1)
    hub.tick(now=0.6)
    assert v.take() is None  # once: tick 1 does not go out a third time by itself
    hub.offer(snap(3, IDS, 1.0))
    hub.tick(now=1.0)  # a delta, left unsent
    hub.request_keyframe(v, now=1.0)  # replaces it: tick 3 never went out
    hub.tick(now=1.001)
    frame = decode_frame(frame_of(v))
    assert (frame.kind, frame.sequence) == (FrameKind.KEYFRAME, 3)
    assert source.wakes == 0


async def test_repeated_keyframes_are_budgeted_per_viewer() -> None:
    # A viewer at 90 requestInitialData a second on a layout at rest once forced 429 physics
    # steps and 241 MB of keyframes in 10 s: now REPEAT_BURST at once, then REPEATS_PER_S.
    hub, source = make_hub()
    v, other = hub.connect(), hub.connect()
    hub.subscribe(v)
    hub.subscribe(other)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    frame_of(v), frame_of(other)
    sent = 0
    for k in range(90):  # one second of requests
        now = k / 90
        hub.request_keyframe(v, now=now)
        hub.tick(now=now + 0.0001)
        while (item := v.take()) is not None:
            if isinstance(item, bytes):
                sent += 1
    assert sent == int(REPEAT_BURST)  # the burst; the next token comes at t = 1 s
    assert hub._wake_at == pytest.approx(1.0, abs=0.02)  # the hub wakes up for it
    hub.tick(now=1.0)
    assert decode_frame(frame_of(v)).sequence == 1  # the waiting request is answered
    assert source.wakes == 0
    assert other.take() is None  # the other viewer got nothing it did not ask for


async def test_a_new_tick_answers_a_request_waiting_for_budget() -> None:
    hub, _ = make_hub()
    v = hub.connect()
    hub.subscribe(v)
    hub.offer(snap(1, IDS))
    hub.tick(now=0.0)
    frame_of(v)
    for _ in range(int(REPEAT_BURST)):
        hub.request_keyframe(v, now=0.1)
        hub.tick(now=0.1)
        frame_of(v)
    hub.request_keyframe(v, now=0.2)  # over budget: waits
    hub.offer(snap(2, IDS, 3.0))
    hub.tick(now=0.25)
    frame = decode_frame(frame_of(v))
    assert (frame.kind, frame.sequence) == (FrameKind.KEYFRAME, 2)
    hub.tick(now=5.0)
    assert v.take() is None  # answered by tick 2: no repeat of it later


async def test_a_closed_viewer_stops_counting_at_once() -> None:
    hub, _ = make_hub(max_connections=1)
    v = hub.connect()
    hub.close(v, 1013, "too slow")
    assert hub.connections == 0 and v.take() == CloseRequest(1013, "too slow")
    hub.connect()  # its slot is free though its socket may linger


async def test_connection_limit_and_pins_released_on_disconnect() -> None:
    hub, _ = make_hub(max_connections=2)
    a, b = hub.connect(), hub.connect()
    with pytest.raises(HubFullError):
        hub.connect()
    assert hub.ctx.metrics.ws_connections._value.get() == 2
    hub.disconnect(a)
    hub.disconnect(a)
    assert hub.pins.calls == [("release_all", [], a.serial)]  # type: ignore[union-attr]
    assert hub.connections == 1 and hub.ctx.metrics.ws_connections._value.get() == 1
    assert hub.ctx.registry.get("hub").detail["connections"] == 1  # type: ignore[union-attr]
    hub.connect()
    assert b.client_id != a.client_id


async def test_connections_per_address_are_capped_and_freed_by_close_or_disconnect() -> None:
    hub, _ = make_hub(max_connections=10, max_connections_per_client=2)
    a, b = hub.connect(address="10.0.0.1"), hub.connect(address="10.0.0.1")
    with pytest.raises(HubFullError, match=r"from 10\.0\.0\.1 \(limit 2\)"):
        hub.connect(address="10.0.0.1")
    hub.connect(address="10.0.0.2")
    hub.connect()  # an unknown address counts only against max_connections
    hub.close(a, 1013, "too slow")
    c = hub.connect(address="10.0.0.1")  # a closed viewer's place is free at once
    hub.disconnect(b)
    hub.disconnect(b)  # once only
    hub.connect(address="10.0.0.1")
    with pytest.raises(HubFullError):
        hub.connect(address="10.0.0.1")
    for v in hub.viewers():
        hub.disconnect(v)
    assert hub.connections == 0 and c.address == "10.0.0.1"
    assert hub._per_address == {}  # nothing kept for addresses that left


async def test_intervals_are_clamped() -> None:
    hub, _ = make_hub(min_interval_ms=20, max_interval_ms=500, default_interval_ms=40)
    assert hub.clamp_interval_ms(None) == 40
    assert hub.clamp_interval_ms(1) == 20
    assert hub.clamp_interval_ms(10_000) == 500
    assert hub.clamp_interval_ms(float("inf")) == 40


async def test_run_follows_the_source_announces_settling_and_closes_1001_on_stop() -> None:
    hub, source = make_hub()
    v = hub.connect()
    hub.subscribe(v)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            source.publish(snap(1, IDS))
            while not v.has_frame:
                await anyio.sleep(0.01)
            frame_of(v)
            source.publish(snap(2, IDS, settled=True))  # the tick that came to rest says so
            while not v.control_pending:
                await anyio.sleep(0.01)
            assert v.take() == '{"type":"settled","sequence":2}'
            source.publish(snap(3, IDS, 1.0))
            while v.control_pending == 0:
                await anyio.sleep(0.01)
            assert v.take() == '{"type":"moving","sequence":3}'
            hub.stopping.set()
        assert v.close_request == CloseRequest(1001, "server shutting down")
        assert hub.ticks >= 2


async def test_the_stop_line_counts_viewers_their_handlers_closed_first() -> None:
    """Each viewer's handler closes it on the same event the hub waits for, often first: the
    hub's line said 0 viewers told to reconnect when two were."""
    hub, _ = make_hub()
    viewers = [hub.connect() for _ in range(3)]
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(hub.run)
                hub.stopping.set()
                for v in viewers[:2]:  # as web/ws.py's _watch_stopping does
                    hub.close(v, 1001, "server shutting down")
                hub.close(viewers[2], 1000, "idle")  # closed, but not told to come back
    finally:
        logger.remove(sink)
    assert "hub stopped; 2 viewer(s) told to reconnect later" in lines
