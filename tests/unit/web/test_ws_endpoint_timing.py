"""The endpoint against a fake ASGI server, on trio's MockClock: timers cost no real time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest
from support.clock import anyio_backend  # noqa: F401  (every test here runs on trio's MockClock)
from support.hubfakes import FakeASGI, FakePins, FakeSource, context, ids_of, snap

from visionflow.protocol.frames import RECORD_DTYPE
from visionflow.protocol.messages import GraphChanged
from visionflow.web.hub import Hub
from visionflow.web.ws import DRAG_NODES_PER_S, HEARTBEAT, MAX_DRAG_RECORDS, WebSocketEndpoint

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connected(
    pins: FakePins | None = None, query: bytes = b"", **websocket: Any
) -> AsyncIterator[tuple[Hub, FakeSource, FakeASGI]]:
    ctx = context(**websocket)
    source = FakeSource()
    hub = Hub(ctx, source, pins=pins or FakePins())
    endpoint = WebSocketEndpoint(ctx, hub)
    peer = FakeASGI(query)
    async with anyio.create_task_group() as tg:
        await tg.start(hub.run)
        tg.start_soon(endpoint, peer.scope, peer.receive, peer.send)
        await peer.client_sends({"type": "websocket.connect"})
        try:
            yield hub, source, peer
        finally:
            tg.cancel_scope.cancel()
            peer.close()


async def until(peer: FakeASGI, predicate: Any) -> None:
    while not predicate():  # polling costs nothing on the MockClock
        await anyio.sleep(0.01)


async def test_heartbeat_every_quiet_interval_and_idle_close_at_60s() -> None:
    async with connected() as (hub, _, peer):
        started = anyio.current_time()
        await until(peer, lambda: peer.closes())
        elapsed = anyio.current_time() - started
        assert 60 <= elapsed < 61
        assert peer.sent[0] == {"type": "websocket.accept"}
        assert json.loads(peer.texts()[0])["type"] == "connection_established"
        assert peer.texts()[1:4] == [HEARTBEAT] * 3  # at 15, 30 and 45 s (60 s races the close)
        assert set(peer.texts()[1:]) == {HEARTBEAT}
        close = peer.closes()[0]
        assert close["code"] == 1000 and "idle" in close["reason"]
        await until(peer, lambda: hub.connections == 0)


async def test_client_messages_keep_the_connection_alive() -> None:
    async with connected() as (hub, _, peer):
        for _ in range(5):
            await anyio.sleep(40)
            await peer.client_sends({"type": "websocket.receive", "text": '{"type":"ping"}'})
        assert not peer.closes() and hub.connections == 1


async def test_a_send_that_never_completes_is_abandoned_after_send_timeout() -> None:
    async with connected(max_lag=30) as (hub, source, peer):
        await until(peer, lambda: len(peer.texts()) == 1)
        peer.stall_frames = True
        source.publish(snap(1, ids_of(10)))
        started = anyio.current_time()
        await until(peer, lambda: hub.connections == 0)
        assert 10 <= anyio.current_time() - started < 11  # websocket.send_timeout
        assert hub.ctx.metrics.frames_dropped._value.get() == 1
        # a close frame is still tried (it was skipped, and hypercorn then closed with 1011)
        with anyio.fail_after(30):  # mock time: fails at once instead of hanging
            await until(peer, lambda: peer.closes())
        assert peer.closes()[0]["code"] == 1013


async def test_a_frame_write_that_does_not_complete_within_max_lag_closes_1013() -> None:
    # Lag is judged by the age of the frame being written, so a viewer that stopped reading is
    # closed after max_lag (5 s) even at rest, when no newer frame would show the backlog.
    async with connected() as (hub, source, peer):
        await until(peer, lambda: len(peer.texts()) == 1)
        peer.stall_frames = True
        source.publish(snap(1, ids_of(10), settled=True))  # the last tick: none queues behind
        started = anyio.current_time()
        with anyio.fail_after(60):  # mock time: fails at once instead of hanging
            await until(peer, lambda: hub.connections == 0)
        assert 5 <= anyio.current_time() - started < 5.5
        with anyio.fail_after(60):
            await until(peer, lambda: peer.closes())
        close = peer.closes()[0]
        assert close["code"] == 1013 and "more than 5s behind" in close["reason"]


async def test_the_welcome_is_first_even_if_a_broadcast_lands_during_the_accept() -> None:
    class SlowAccept(FakeASGI):
        release = anyio.Event()

        async def send(self, message: dict[str, Any]) -> None:
            if message["type"] == "websocket.accept":
                await self.release.wait()
            await super().send(message)

    ctx = context()
    hub = Hub(ctx, FakeSource(), pins=FakePins())
    peer = SlowAccept()
    async with anyio.create_task_group() as tg:
        await tg.start(hub.run)
        tg.start_soon(WebSocketEndpoint(ctx, hub), peer.scope, peer.receive, peer.send)
        await peer.client_sends({"type": "websocket.connect"})
        await until(peer, lambda: hub.connections == 1)
        hub.publish(GraphChanged(revision=7))  # while the accept is still being written
        peer.release.set()
        with anyio.fail_after(30):  # mock time: fails at once instead of hanging
            await until(peer, lambda: len(peer.texts()) == 2)
        kinds = [json.loads(t)["type"] for t in peer.texts()]
        assert kinds == ["connection_established", "graph_changed"]
        tg.cancel_scope.cancel()
        peer.close()


async def test_shutdown_closes_with_1001() -> None:
    async with connected() as (hub, _, peer):
        await until(peer, lambda: len(peer.texts()) == 1)
        hub.stopping.set()
        await until(peer, lambda: peer.closes())
        assert peer.closes()[0]["code"] == 1001
        await until(peer, lambda: hub.connections == 0)


async def test_an_unexpected_error_closes_1011_without_details() -> None:
    drag = np.zeros(1, dtype=[("id", "<u4"), ("p", "<f4", 6)]).tobytes()
    pins = FakePins(fail_with=RuntimeError("secret internals"))
    async with connected(pins) as (hub, _, peer):
        await peer.client_sends({"type": "websocket.receive", "bytes": drag})
        await until(peer, lambda: peer.closes())
        assert peer.closes() == [{"type": "websocket.close", "code": 1011, "reason": ""}]
        assert all("secret" not in text for text in peer.texts())
        await until(peer, lambda: hub.connections == 0)
        assert pins.calls == [("release_all", [], 1)]


async def test_oversize_message_closes_1009_even_without_the_server_limit() -> None:
    async with connected(max_inbound_bytes=100) as (_hub, _, peer):
        await peer.client_sends({"type": "websocket.receive", "text": "é" * 60})  # 120 bytes
        await until(peer, lambda: peer.closes())
        assert peer.closes()[0]["code"] == 1009


async def test_drags_are_pinned_without_flags_and_refusals_are_reported() -> None:
    records = np.zeros(2, dtype=[("id", "<u4"), ("p", "<f4", 6)])
    records["id"] = [0x40000005, 7]
    pins = FakePins()
    async with connected(pins, query=b"subscribe=false") as (_, _, peer):
        await peer.client_sends({"type": "websocket.receive", "bytes": records.tobytes()})
        records["id"][1] = 999
        await peer.client_sends({"type": "websocket.receive", "bytes": records.tobytes()})
        await peer.client_sends(
            {"type": "websocket.receive", "text": '{"type":"release","ids":[5]}'}
        )
        await until(peer, lambda: len(peer.texts()) == 2)
        assert json.loads(peer.texts()[1])["code"] == "unknown_node"
        assert pins.calls == [("pin", [5, 7], 1), ("release", [5], 1)]


async def test_drags_are_limited_by_the_nodes_they_touch_not_the_messages() -> None:
    # 4096-node drags at 20 messages a second pass the message limit (100/s) but touch 82k
    # nodes a second: the drag budget (DRAG_NODES_PER_S, 2 s of burst) refuses the excess,
    # tells the viewer once, and closes it (1008) when the excess goes on.
    pins = FakePins()
    async with connected(pins=pins) as (_, _, peer):
        await until(peer, lambda: len(peer.texts()) == 1)
        records = np.zeros(MAX_DRAG_RECORDS, RECORD_DTYPE)
        records["id"] = 2000 + np.arange(MAX_DRAG_RECORDS)  # FakePins refuses id 999
        data = records.tobytes()
        sent = 0
        while not peer.closes() and sent < 200:
            await peer.client_sends({"type": "websocket.receive", "bytes": data})
            sent += 1
            await anyio.sleep(0.05)
        pinned = sum(len(ids) for kind, ids, _ in pins.calls if kind == "pin")
        elapsed = sent * 0.05
        # the burst (2 s worth) plus the refill over the run, never the 82k/s sent
        assert pinned <= 2 * DRAG_NODES_PER_S + DRAG_NODES_PER_S * elapsed + MAX_DRAG_RECORDS
        assert pinned >= 2 * DRAG_NODES_PER_S - MAX_DRAG_RECORDS
        errors = [json.loads(t) for t in peer.texts() if '"error"' in t]
        assert [e["code"] for e in errors] == ["rate_limited"]  # told once
        close = peer.closes()[0]
        assert close["code"] == 1008 and "drag rate limit" in close["reason"]


async def test_one_release_of_too_many_ids_is_refused_and_the_viewer_stays() -> None:
    # 40001 ids in one message were more than the drag budget could ever hold, and closed the
    # connection at once (1008); a release names at most as many ids as a drag pins.
    pins = FakePins()
    async with connected(pins=pins) as (_, _, peer):
        await until(peer, lambda: len(peer.texts()) == 1)
        ids = list(range(40001))
        await peer.client_sends(
            {"type": "websocket.receive", "text": json.dumps({"type": "release", "ids": ids})}
        )
        await until(peer, lambda: len(peer.texts()) == 2)
        error = json.loads(peer.texts()[1])
        assert error["code"] == "bad_message" and "length <= 4096" in error["message"]
        for part in range(0, 8192, 4096):  # in parts, as the viewer sends them
            chunk = ids[part : part + 4096]
            await peer.client_sends(
                {"type": "websocket.receive", "text": json.dumps({"type": "release", "ids": chunk})}
            )
        await until(peer, lambda: len(pins.calls) == 2)
        assert not peer.closes() and [len(ids) for _, ids, _ in pins.calls] == [4096, 4096]


async def test_a_single_node_drag_at_60_hz_is_never_limited() -> None:
    pins = FakePins()
    async with connected(pins=pins) as (_, _, peer):
        await until(peer, lambda: len(peer.texts()) == 1)
        record = np.zeros(1, RECORD_DTYPE).tobytes()
        for _ in range(600):  # ten seconds of dragging one node
            await peer.client_sends({"type": "websocket.receive", "bytes": record})
            await anyio.sleep(1 / 60)
        await until(peer, lambda: len(pins.calls) == 600)
        assert not peer.closes() and '"error"' not in "".join(peer.texts())
