"""``/wss`` over a real hypercorn on port 0 with ``websockets`` clients, on asyncio and trio."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import numpy as np
import pytest
from support.wsharness import (
    Client,
    client_frame,
    graph,
    header_sequence,
    read_server_frames,
    running,
    snapshot,
    stalled_viewer,
)
from websockets.exceptions import ConnectionClosed

from visionflow.protocol.frames import (
    AGENT_FLAG,
    KNOWLEDGE_FLAG,
    RECORD_SIZE,
    FrameKind,
    decode_legacy,
)
from visionflow.protocol.messages import GraphChanged
from visionflow.web.ws import MAX_DRAG_RECORDS

pytestmark = pytest.mark.anyio


async def welcome(client: Client) -> dict[str, object]:
    hello = await client.json()
    assert hello["type"] == "connection_established"
    return hello


async def test_viewers_receive_the_published_positions() -> None:
    with anyio.fail_after(20):
        async with running() as h:
            ids = graph(40, 8)
            first = snapshot(1, ids)
            h.source.publish(first)
            clients = [await Client.connect(h.url) for _ in range(3)]
            hellos = [await welcome(c) for c in clients]
            assert len({hello["client_id"] for hello in hellos}) == 3
            for hello in hellos:
                assert hello["protocol"] == "2"
                assert hello["graph_revision"] == 7
                assert abs(int(hello["timestamp"]) - time.time() * 1000) < 10_000  # type: ignore[call-overload]
            # permessage-deflate was offered by the client (its default) and not negotiated
            assert all(c.ws.protocol.extensions == [] for c in clients)
            for c in clients:
                frame = await c.frame()
                assert frame.kind is FrameKind.KEYFRAME and frame.sequence == 1
                np.testing.assert_array_equal(frame.ids, first.nodes.ids)
                np.testing.assert_array_equal(frame.positions, first.nodes.positions)
                np.testing.assert_array_equal(frame.velocities, first.nodes.velocities)
            moved = np.array(first.nodes.positions)
            moved[5] += 1.0
            moved[44] -= 2.0
            second = snapshot(2, ids)
            second = type(second).create(2, ids.copy(), moved, np.array(first.nodes.velocities))
            h.source.publish(second)
            for c in clients:
                delta = await c.frame()
                assert delta.kind is FrameKind.DELTA and delta.sequence == 2
                assert sorted(delta.ids.tolist()) == sorted(ids[[5, 44]].tolist())
                state = dict(zip(first.nodes.ids.tolist(), first.nodes.positions, strict=True))
                state.update(zip(delta.ids.tolist(), delta.positions, strict=True))
                np.testing.assert_array_equal(np.array([state[i] for i in ids.tolist()]), moved)
            assert h.ctx.metrics.ws_connections._value.get() == 3
            for c in clients:
                await c.aclose()


async def test_compression_is_negotiated_only_when_enabled() -> None:
    with anyio.fail_after(15):
        async with running({"websocket": {"compression": True}}) as h:
            c = await Client.connect(h.url)
            assert [e.name for e in c.ws.protocol.extensions] == ["permessage-deflate"]
            await c.aclose()
        async with running() as h:
            c = await Client.connect(h.url)
            assert c.ws.protocol.extensions == []
            await c.aclose()


async def test_legacy_format_and_graph_filters() -> None:
    with anyio.fail_after(15):
        async with running() as h:
            ids = graph(30, 6)
            snap = snapshot(4, ids)
            h.source.publish(snap)
            legacy = await Client.connect(h.url + "?protocol=legacy&graph=agents")
            knowledge = await Client.connect(h.url + "?graph=knowledge")
            assert (await welcome(legacy))["protocol"] == "legacy"
            await welcome(knowledge)
            data = await legacy.binary()
            assert len(data) == 6 * RECORD_SIZE  # no header: the records alone
            records = decode_legacy(data)
            assert np.all(records.ids & np.uint32(AGENT_FLAG))
            np.testing.assert_array_equal(records.positions, snap.nodes.positions[30:])
            frame = await knowledge.frame()
            assert len(frame.ids) == 30 and np.all(frame.ids & np.uint32(KNOWLEDGE_FLAG))
            await legacy.aclose()
            await knowledge.aclose()


async def test_refused_upgrades_carry_code_and_reason() -> None:
    overrides = {
        "server": {"token": "s3cret", "allowed_origins": ["http://ok.example"]},
        "websocket": {"max_connections": 1},
    }
    origin = {"origin": "http://ok.example"}  # type: ignore[dict-item]
    with anyio.fail_after(20):
        async with running(overrides) as h:
            cases = [
                (h.url, origin, 4401),
                (h.url + "?token=wrong", origin, 4401),
                (h.url + "?token=s3cret", {"origin": "http://evil.example"}, 1008),
                (h.url + "?token=s3cret&protocol=3", origin, 4400),
                (h.url + "?token=s3cret&graph=everything", origin, 4400),
                (h.url + "?token=s3cret&subscribe=maybe", origin, 4400),
            ]
            for url, kwargs, code in cases:
                c = await Client.connect(url, **kwargs)
                close = await c.closed()
                assert close.code == code, (url, close)
                assert close.reason
            bearer = await Client.connect(
                h.url, additional_headers={"Authorization": "Bearer s3cret"}, **origin
            )
            await welcome(bearer)
            full = await Client.connect(h.url + "?token=s3cret", **origin)
            close = await full.closed()
            assert close.code == 1013 and "too many" in close.reason
            await bearer.aclose()
            await assert_healthy(h.http.url)


async def assert_healthy(base: str | None) -> None:
    async with httpx.AsyncClient(base_url=str(base), timeout=5) as http:
        body = (await http.get("/api/health")).json()
    assert body["status"] == "ok", body
    assert body["subsystems"]["hub"]["state"] == "running"


async def test_bad_messages_get_errors_and_the_connection_stays() -> None:
    with anyio.fail_after(20):
        async with running({"websocket": {"max_inbound_bytes": 1024}}) as h:
            h.source.publish(snapshot(1, graph(10)))
            c = await Client.connect(h.url + "?subscribe=false")
            await welcome(c)
            await c.send("{not json")
            assert (await c.json())["code"] == "bad_message"
            await c.send({"type": "teleport"})
            error = await c.json()
            assert error["type"] == "error" and "teleport" in error["message"]
            await c.send("[" * 1000)  # was a RecursionError: 1011 and a traceback
            assert (await c.json())["code"] == "bad_message"
            await c.send(b"\x00" * 27)
            assert (await c.json())["code"] == "bad_drag"
            nan = np.zeros(1, dtype=[("id", "<u4"), ("p", "<f4", 6)])
            nan["id"], nan["p"][0, 0] = 3, np.nan
            await c.send(nan.tobytes())
            assert (await c.json())["code"] == "bad_drag"
            drag = np.zeros(2, dtype=[("id", "<u4"), ("p", "<f4", 6)])
            drag["id"] = [2 | KNOWLEDGE_FLAG, 999]
            await c.send(drag.tobytes())
            assert (await c.json())["code"] == "unknown_node"
            assert h.pins.pinned == {}  # refused as a whole
            drag["id"][1] = 3 | KNOWLEDGE_FLAG
            drag["p"][:, :3] = [[1, 2, 3], [4, 5, 6]]
            await c.send(drag.tobytes())
            await c.send({"type": "ping", "timestamp": 42})
            assert await c.json() == {"type": "pong", "timestamp": 42}
            assert {k: v[1] for k, v in h.pins.pinned.items()} == {2: (1, 2, 3), 3: (4, 5, 6)}
            await c.send({"type": "release", "ids": [2]})
            await c.send({"type": "ping"})
            await c.json()
            assert list(h.pins.pinned) == [3]
            await c.send("x" * 2000)  # over max_inbound_bytes
            assert (await c.closed()).code == 1009
            with anyio.fail_after(5):
                while h.hub.connections:  # the server drops it once the client hangs up
                    await anyio.sleep(0.02)
            assert h.pins.pinned == {}  # a closed connection's pins are released
            await assert_healthy(h.http.url)


async def test_a_message_far_over_the_limit_closes_1009_at_once_and_stops_the_frames() -> None:
    # Before: hypercorn refused it itself (close 1009) but never told the endpoint, which went
    # on sending frames, and waited for the client's answer: a client busy sending (or one that
    # never answers) held the connection in CLOSING (~10 s with a `websockets` client).
    with anyio.fail_after(30):
        async with running({"websocket": {"max_inbound_bytes": 65536}}) as h:
            ids = graph(50)
            h.source.publish(snapshot(1, ids))
            sock = await anyio.to_thread.run_sync(stalled_viewer, h.url, None)
            with sock:
                while not any(v.frames_sent for v in h.hub.viewers()):
                    await anyio.sleep(0.01)
                started = time.monotonic()
                message = client_frame(0x2, b"\0" * 300_000)  # never answers the close frame
                await anyio.to_thread.run_sync(sock.sendall, message)

                async def publish() -> None:
                    for seq in range(2, 1000):  # frames keep coming for anyone still there
                        h.source.publish(snapshot(seq, ids, seq * 0.5))
                        await anyio.sleep(0.02)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(publish)
                    frames, eof = await anyio.to_thread.run_sync(read_server_frames, sock, 5.0)
                    tg.cancel_scope.cancel()
                took = time.monotonic() - started
            opcodes = [op for op, _ in frames]
            assert 0x8 in opcodes, opcodes
            close = frames[opcodes.index(0x8)][1]
            assert int.from_bytes(close[:2], "big") == 1009
            assert opcodes[opcodes.index(0x8) :] == [0x8]  # no frame after the close
            assert eof and took < 3.0  # generous: it is immediate
            assert h.hub.connections == 0
            await assert_healthy(h.http.url)


async def test_a_drag_of_too_many_nodes_is_refused() -> None:
    # Pinning runs on the event loop: a 1 MiB drag (37k records) held it for ~300 ms.
    with anyio.fail_after(20):
        async with running({}) as h:
            h.source.publish(snapshot(1, graph(10)))
            c = await Client.connect(h.url + "?subscribe=false")
            await welcome(c)
            many = np.zeros(MAX_DRAG_RECORDS + 1, dtype=[("id", "<u4"), ("p", "<f4", 6)])
            await c.send(many.tobytes())  # 114 KiB, under max_inbound_bytes
            error = await c.json()
            assert error["code"] == "bad_drag" and str(MAX_DRAG_RECORDS) in error["message"]
            assert h.pins.pinned == {}
            await c.aclose()


async def test_repeated_excess_over_the_rate_limit_closes_1008() -> None:
    with anyio.fail_after(20):
        async with running({"websocket": {"max_messages_per_second": 10}}) as h:
            c = await Client.connect(h.url + "?subscribe=false")
            await welcome(c)
            ping = json.dumps({"type": "ping"})
            for _ in range(25):  # the burst allowance (2 s worth) and a few more
                await c.send(ping)
            pongs = 0
            while (reply := await c.json())["type"] == "pong":
                pongs += 1
            # 20 from the burst, and the bucket refills at 10/s while a busy machine sends
            assert 20 <= pongs < 25
            assert reply["code"] == "rate_limited"
            with pytest.raises(ConnectionClosed):  # closed before the last ones go out
                for _ in range(40):
                    await c.send(ping)
            assert (await c.closed()).code == 1008
            await assert_healthy(h.http.url)


async def test_subscription_control() -> None:
    with anyio.fail_after(20):
        async with running() as h:
            ids = graph(20)
            h.source.publish(snapshot(1, ids))
            c = await Client.connect(h.url + "?subscribe=false")
            await welcome(c)
            await c.send({"type": "subscribe_position_updates", "interval": 1})
            assert await c.json() == {"type": "subscribed", "interval": 16}
            assert (await c.frame()).kind is FrameKind.KEYFRAME
            await c.send({"type": "subscribe_position_updates", "interval": 10**7})
            assert await c.json() == {"type": "subscribed", "interval": 1000}
            await c.send({"type": "unsubscribe_position_updates"})
            await c.send({"type": "ping"})
            await c.json()
            h.source.publish(snapshot(2, ids, 5.0))
            await c.send({"type": "requestInitialData"})
            assert await c.json() == {"type": "subscribed", "interval": 33}
            frame = await c.frame()
            assert frame.kind is FrameKind.KEYFRAME and frame.sequence == 2
            await c.aclose()


async def test_settled_moving_and_published_messages() -> None:
    with anyio.fail_after(20):
        async with running() as h:
            ids = graph(20)
            h.source.publish(snapshot(3, ids))
            c = await Client.connect(h.url)
            await welcome(c)
            assert (await c.frame()).sequence == 3
            h.source.publish(snapshot(4, ids, settled=True))  # came to rest at tick 4
            assert await c.json() == {"type": "settled", "sequence": 4}
            late = await Client.connect(h.url)  # joins a layout at rest: keyframe + settled
            await welcome(late)
            assert await late.json() == {"type": "settled", "sequence": 4}
            assert (await late.frame()).kind is FrameKind.KEYFRAME
            h.source.publish(snapshot(5, ids, 1.0))
            for viewer in (c, late):
                assert await viewer.json() == {"type": "moving", "sequence": 5}
            h.hub.publish(GraphChanged(revision=8))
            for viewer in (c, late):
                assert await viewer.json() == {"type": "graph_changed", "revision": 8}
            await c.aclose()
            await late.aclose()


async def test_heartbeat_and_idle_timeout() -> None:
    settings = {"websocket": {"heartbeat_interval": 0.2, "idle_timeout": 0.8}}
    with anyio.fail_after(40):
        async with running(settings) as h:
            # The idle timer starts at the connect: measured from there, a close sooner than
            # half the timeout is a real early close whatever the load.
            started = time.monotonic()
            c = await Client.connect(h.url)
            await welcome(c)
            assert await c.json() == {"type": "pong", "timestamp": None}  # nothing else to say
            pinger = await Client.connect(h.url)
            await welcome(pinger)
            close = await c.closed()
            assert close.code == 1000 and "idle" in close.reason
            assert 0.4 < time.monotonic() - started < 15  # idle_timeout 0.8 s; generous when busy
            for _ in range(5):  # a client that pings stays
                await pinger.send({"type": "ping", "timestamp": 1})
                await anyio.sleep(0.2)
            await pinger.send({"type": "ping", "timestamp": 2})
            while (await pinger.json()) != {"type": "pong", "timestamp": 2}:
                pass
            await pinger.aclose()


async def test_shutdown_closes_viewers_with_1001_within_the_grace() -> None:
    with anyio.fail_after(20):
        async with running({"server": {"shutdown_grace": 3.0}}) as h:
            ids = graph(50)
            h.source.publish(snapshot(1, ids))
            clients = [await Client.connect(h.url) for _ in range(4)]
            for c in clients:
                await c.frame()
            stalled = await anyio.to_thread.run_sync(stalled_viewer, h.url)
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(h.shutdown)
                closes = [await c.closed() for c in clients]
            assert time.monotonic() - started < 3.0
            assert {(close.code, close.reason) for close in closes} == {
                (1001, "server shutting down")
            }
            assert h.ctx.registry.get("hub").state == "stopped"  # type: ignore[union-attr]
            stalled.close()


async def test_a_stalled_viewer_slows_nobody_and_holds_at_most_one_frame() -> None:
    # 4000 nodes: 112 KB keyframes, so a viewer that does not read backs up within a second.
    with anyio.fail_after(30):
        async with running({"websocket": {"max_lag": 1.0, "min_interval_ms": 5}}) as h:
            ids = graph(4000)
            h.source.publish(snapshot(1, ids))
            stalled = await anyio.to_thread.run_sync(stalled_viewer, h.url)
            readers = [await Client.connect(h.url) for _ in range(2)]
            for r in readers:
                await r.send({"type": "subscribe_position_updates", "interval": 5})
            worst_outbox = 0
            received = [0, 0]

            async def read(i: int) -> None:
                while received[i] < 199:  # threads can't be cancelled: stop by ourselves
                    received[i] = header_sequence(await readers[i].binary())

            async with anyio.create_task_group() as tg:
                for i in range(2):
                    tg.start_soon(read, i)
                stalled_hub = next(v for v in h.hub.viewers() if v.serial == 1)
                for seq in range(2, 200):
                    h.source.publish(snapshot(seq, ids, seq * 0.5))  # every node moves
                    await anyio.sleep(0.01)
                    worst_outbox = max(worst_outbox, int(stalled_hub.has_frame))
                    assert stalled_hub.control_pending <= 2
            assert worst_outbox == 1
            assert stalled_hub.frames_dropped > 0
            assert stalled_hub.closing and stalled_hub.close_request.code == 1013  # type: ignore[union-attr]
            assert h.ctx.metrics.frames_dropped._value.get() >= stalled_hub.frames_dropped
            readers_hub = [v for v in h.hub.viewers() if v.serial != 1]
            assert all(v.frames_dropped <= 5 for v in readers_hub)
            stalled.close()  # what TCP_USER_TIMEOUT does to a peer that is really gone
            for r in readers:
                await r.aclose()


@pytest.mark.slow
async def test_a_stalled_viewer_of_a_small_graph_is_closed_1013_by_age() -> None:
    # 50 nodes: 1.4 KB frames. Before, kernel buffers absorbed ~1000 of them, so a viewer that
    # stopped reading was never judged behind; TCP dropped it after ~40 s with a traceback.
    with anyio.fail_after(60):
        async with running({"websocket": {"max_lag": 1.0}}) as h:
            ids = graph(50)
            h.source.publish(snapshot(1, ids))
            stalled = await anyio.to_thread.run_sync(stalled_viewer, h.url)
            reader = await Client.connect(h.url)
            viewer = next(v for v in h.hub.viewers() if v.serial == 1)
            started = time.monotonic()
            seq = 1
            while not viewer.closing and time.monotonic() - started < 30:
                seq += 1
                h.source.publish(snapshot(seq, ids, seq * 0.5))  # every node moves
                await anyio.sleep(0.02)
                await reader.frame()  # a reading viewer keeps up meanwhile
            took = time.monotonic() - started
            assert viewer.close_request is not None, f"not closed in {took:.0f}s"
            assert viewer.close_request.code == 1013
            assert "behind" in viewer.close_request.reason
            assert h.hub.connections == 1  # the reader stays
            print(f"stalled viewer closed after {took:.1f}s")
            stalled.close()
            await reader.aclose()
