"""The service publishing to a real nats-server, and relays serving viewers from it (loopback)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import nats
import numpy as np
import pytest
from support.natskit import Broker, relay_running
from support.servicekit import JSON, eventually, running
from support.wsharness import Client

from visionflow import settings as s
from visionflow.cluster import wire
from visionflow.errors import StartupError
from visionflow.protocol.frames import FrameKind, decode_frame
from visionflow.service import Service
from visionflow.supervisor import find_in_group

pytestmark = pytest.mark.anyio

FAST_LINK = {"keyframe_interval": 0.5, "backoff_initial": 0.05, "backoff_max": 0.3}


def cluster(broker: Broker, **extra: Any) -> dict[str, Any]:
    return {"nats_url": broker.url, **FAST_LINK, **extra}


def service_doc(broker: Broker, tmp_path: Path, **physics: Any) -> dict[str, Any]:
    return {
        "cluster": cluster(broker),
        "state": {"dir": str(tmp_path / "state")},
        "physics": physics,
    }


def relay_doc(broker: Broker, **extra: Any) -> dict[str, Any]:
    return {"cluster": cluster(broker), **extra}


def ws_url(base: object, query: str = "") -> str:
    return str(base).replace("http://", "ws://") + "/wss" + (f"?{query}" if query else "")


async def import_chain(client: httpx.AsyncClient, n: int) -> None:
    nodes = [{"id": f"n{i}"} for i in range(n)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(n - 1)]
    r = await client.post("/api/graph/import", json={"nodes": nodes, "edges": edges})
    assert r.status_code == 200, r.text


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


def resting_tick(svc: Service, nodes: int) -> int | None:
    """The tick the service's layout of ``nodes`` nodes rests at (its hub says so), or None."""
    latest = svc.engine.latest
    if latest is None or not latest.settled or len(latest.nodes) != nodes:
        return None
    return latest.sequence if svc.hub.at_rest == latest.sequence else None


async def binaries_for(viewer: Client, seconds: float) -> list[tuple[float, bytes]]:
    """Every binary message that arrives within ``seconds``, with when it arrived."""
    out: list[tuple[float, bytes]] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            message = await anyio.to_thread.run_sync(viewer.ws.recv, left)
        except TimeoutError:
            break
        if isinstance(message, bytes):
            out.append((time.monotonic(), message))
    return out


def by_sequence(frames: list[bytes]) -> dict[int, tuple[int | None, bytes]]:
    """sequence -> (the sequence of the frame before it on that connection, the bytes)."""
    out: dict[int, tuple[int | None, bytes]] = {}
    previous: int | None = None
    for data in frames:
        sequence = decode_frame(data).sequence
        out[sequence] = (previous, data)
        previous = sequence
    return out


async def test_frames_through_a_relay_are_the_services_bytes(
    broker: Broker, tmp_path: Path
) -> None:
    # 20 Hz physics and viewers at 16 ms: both sides send every tick, so each delta has the
    # same baseline on both and must be the very same bytes.
    doc = service_doc(broker, tmp_path, rate_hz=20, knowledge={"cooling_steps": 100_000})
    async with running(doc) as (svc, client):
        await import_chain(client, 300)
        async with relay_running(relay_doc(broker)) as (relay, rclient):
            await eventually(lambda: ready(rclient), timeout=20)
            streams: dict[str, list[bytes]] = {}
            async with anyio.create_task_group() as tg:
                for name, base, query in [
                    ("direct", svc.http.url, ""),
                    ("relay", relay.http.url, ""),
                    ("direct-k", svc.http.url, "graph=knowledge"),
                    ("relay-k", relay.http.url, "graph=knowledge"),
                ]:

                    async def watch(name: str = name, url: str = ws_url(base, query)) -> None:
                        viewer = await Client.connect(url)
                        await viewer.send({"type": "subscribe_position_updates", "interval": 16})
                        got = await binaries_for(viewer, 3.0)
                        streams[name] = [data for _, data in got]
                        await viewer.aclose()

                    tg.start_soon(watch)
            for direct, via in [("direct", "relay"), ("direct-k", "relay-k")]:
                assert decode_frame(streams[via][0]).kind is FrameKind.KEYFRAME
                a, b = by_sequence(streams[direct]), by_sequence(streams[via])
                compared = [q for q in a.keys() & b.keys() if a[q][0] == b[q][0]]
                assert len(compared) >= 20, (len(a), len(b), len(compared))
                for q in compared:
                    assert a[q][1] == b[q][1], f"tick {q} differs between {direct} and {via}"
                deltas = [q for q in compared if decode_frame(a[q][1]).kind is FrameKind.DELTA]
                assert deltas, "no delta was compared"


async def test_a_relay_started_before_the_service_is_ready_with_its_first_keyframe(
    broker: Broker, tmp_path: Path
) -> None:
    async with relay_running(relay_doc(broker)) as (relay, rclient):
        assert (await rclient.get("/healthz")).status_code == 200
        r = await rclient.get("/readyz")
        assert r.status_code == 503
        assert "waiting for a keyframe from the simulation (NATS)" in r.json()["reasons"]
        # The service joins later, lays a graph out and comes to rest.
        doc = service_doc(broker, tmp_path, knowledge={"cooling_steps": 20})
        async with running(doc) as (svc, client):
            await import_chain(client, 50)

            at_rest = await eventually(lambda: resting_tick(svc, 50), timeout=30)
            await eventually(lambda: ready(rclient), timeout=10)
            await eventually(lambda: relay.hub.at_rest == at_rest, timeout=10)
            # A viewer of the relay joining the layout at rest: told so, then a keyframe of the
            # resting tick, the same bytes as the service's own viewer gets.
            via = await Client.connect(ws_url(relay.http.url))
            assert (await via.json())["type"] == "connection_established"
            assert await via.json() == {"type": "settled", "sequence": at_rest}
            first = await via.binary()
            direct = await Client.connect(ws_url(svc.http.url))
            assert first == await direct.binary()
            frame = decode_frame(first)
            assert (frame.kind, frame.sequence, len(frame)) == (FrameKind.KEYFRAME, at_rest, 50)
            await via.aclose()
            await direct.aclose()


async def test_broker_restart_pause_then_keyframe_and_the_simulation_goes_on(
    broker: Broker, tmp_path: Path
) -> None:
    doc = service_doc(broker, tmp_path, knowledge={"cooling_steps": 100_000})
    async with running(doc) as (svc, client):
        await import_chain(client, 200)
        async with relay_running(relay_doc(broker)) as (relay, rclient):
            await eventually(lambda: ready(rclient), timeout=20)
            viewer = await Client.connect(ws_url(relay.http.url))
            before = await binaries_for(viewer, 1.0)
            assert len(before) >= 10
            broker.kill()
            killed_at = time.monotonic()
            tick_at_kill = svc.engine.tick
            during = await binaries_for(viewer, 2.0)
            # The simulation goes on without the broker, and says the cluster is degraded.
            assert svc.engine.tick > tick_at_kill + 30
            health = (await client.get("/api/health")).json()
            assert health["status"] == "degraded"
            assert health["subsystems"]["cluster"]["detail"]["connected"] is False
            relay_health = (await rclient.get("/api/health")).json()
            assert relay_health["subsystems"]["cluster"]["detail"]["connected"] is False
            # What was in flight may still arrive at once; then a pause.
            late = [t for t, _ in during if t > killed_at + 0.5]
            assert not late, f"{len(late)} frames arrived with the broker down"
            broker.start()
            after = await binaries_for(viewer, 3.0)
            assert len(after) >= 10, "the stream did not come back"
            first = decode_frame(after[0][1])
            assert first.kind is FrameKind.KEYFRAME and len(first) == 200
            sequences = [decode_frame(d).sequence for _, d in before + during + after]
            assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
            health = (await client.get("/api/health")).json()
            assert health["subsystems"]["cluster"]["detail"]["connected"] is True
            metrics = (await client.get("/metrics")).text
            assert 'visionflow_cluster_frames_dropped_total{reason="broker_away"}' in metrics
            await viewer.aclose()


async def test_drags_and_api_requests_through_a_relay_get_the_services_answers(
    broker: Broker, tmp_path: Path
) -> None:
    token = {"token": "s3cret"}
    doc = {**service_doc(broker, tmp_path), "server": token}
    auth = {"Authorization": "Bearer s3cret"}
    async with running(doc) as (svc, client):
        client.headers.update(auth)
        await import_chain(client, 20)
        async with relay_running({**relay_doc(broker), "server": token}) as (relay, rclient):
            await eventually(lambda: ready(rclient), timeout=20)
            # /api/ is the service's: the same body, the same refusal without the token.
            direct = (await client.get("/api/graph/data")).json()
            via = await rclient.get("/api/graph/data", headers=auth)
            assert via.status_code == 200

            def still(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [{k: v for k, v in n.items() if k != "position"} for n in nodes]

            assert still(via.json()["nodes"]) == still(direct["nodes"])  # the layout moves on
            doc = {"nodes": [{"id": "x"}], "edges": []}
            refused = await rclient.post("/api/graph/import", json=doc)
            async with httpx.AsyncClient(base_url=str(svc.http.url)) as anonymous:
                refused_direct = await anonymous.post("/api/graph/import", json=doc)
            assert refused.status_code == refused_direct.status_code == 401
            assert refused.json() == refused_direct.json()
            bad = await rclient.post("/api/graph/import", headers={**auth, **JSON}, content=b"{")
            bad_direct = await client.post("/api/graph/import", headers=JSON, content=b"{")
            assert (bad.status_code, bad.json()) == (bad_direct.status_code, bad_direct.json())
            # /wss on the relay keeps the token rule.
            nope = await Client.connect(ws_url(relay.http.url))
            assert (await nope.closed()).code == 4401
            # A drag through the relay pins the node in the simulation; an unknown id is
            # refused with the service's own error.
            node = direct["nodes"][3]
            viewer = await Client.connect(ws_url(relay.http.url, "token=s3cret"))
            record = np.zeros(1, [("id", "<u4"), ("pos", "<f4", 3), ("vel", "<f4", 3)])
            record["id"] = node["flagged_id"]
            record["pos"] = (12.5, -3.0, 4.0)
            await viewer.send(record.tobytes())

            async def pinned() -> bool:
                page = (await client.get("/api/graph/data")).json()
                return any(n["id"] == node["id"] and n["pinned"] for n in page["nodes"])

            await eventually(pinned, timeout=10)
            record["id"] = 0x3FFFFFF0
            await viewer.send(record.tobytes())
            error = await viewer.json()
            while error["type"] != "error":
                error = await viewer.json()
            assert error["code"] == "unknown_node"
            await viewer.send({"type": "release", "ids": [node["id"]]})

            async def released() -> bool:
                return not await pinned()

            await eventually(released, timeout=10)
            await viewer.aclose()


async def test_a_large_api_reply_comes_in_parts_under_the_brokers_max_payload(
    tmp_path: Path,
) -> None:
    small = Broker(tmp_path / "small", max_payload=16 * 1024)
    small.workdir.mkdir()
    small.start()
    try:  # a broker of its own: a small max_payload
        doc = service_doc(small, tmp_path, knowledge={"cooling_steps": 20})
        async with running(doc) as (svc, client):
            await import_chain(client, 400)  # /api/graph/data: ~100 KB, several parts
            await eventually(
                lambda: (
                    (snap := svc.engine.latest) is not None
                    and snap.settled
                    and len(snap.nodes) == 400
                )
            )
            async with relay_running(relay_doc(small)) as (_relay, rclient):
                await eventually(lambda: ready(rclient), timeout=20)
                direct = await client.get("/api/graph/data")
                via = await rclient.get("/api/graph/data")
                assert len(direct.content) > 4 * 16 * 1024
                assert via.status_code == 200 and via.content == direct.content
                # A body must fit one NATS message: refused by the relay, with the service's
                # own body reader and error shape.
                nodes = [{"id": f"m{i}", "label": "x" * 40} for i in range(300)]
                big = await rclient.post("/api/graph/import", json={"nodes": nodes, "edges": []})
                assert big.status_code == 413
                assert big.json()["error"]["code"] == "too_large"
    finally:
        small.kill()


async def cluster_health(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    body = (await client.get("/api/health")).json()
    return body["status"], body["subsystems"]["cluster"]


async def test_frames_too_large_for_the_broker_degrade_service_and_relays_until_they_fit(
    tmp_path: Path,
) -> None:
    small = Broker(tmp_path / "small", max_payload=16 * 1024)
    small.workdir.mkdir()
    small.start()
    try:
        doc = service_doc(small, tmp_path, knowledge={"cooling_steps": 20})
        async with running(doc) as (_svc, client):
            await import_chain(client, 50)
            async with relay_running(relay_doc(small)) as (relay, rclient):
                await eventually(lambda: ready(rclient), timeout=20)
                assert (await cluster_health(rclient))[0] == "ok"
                # each side's series, each known label at 0 before its first event (a rate()
                # missed the first drop); a relay no longer shows the publisher's at 0
                service_metrics = (await client.get("/metrics")).text
                relay_metrics = (await rclient.get("/metrics")).text
                assert 'visionflow_cluster_frames_dropped_total{reason="too_large"} 0.0' in (
                    service_metrics
                )
                assert "visionflow_cluster_frames_received_total" not in service_metrics
                assert 'visionflow_cluster_frames_received_total{outcome="gap"} 0.0' in (
                    relay_metrics
                )
                assert "visionflow_cluster_bytes_published_total" not in relay_metrics
                # 2000 nodes: a keyframe of ~40 KB, over the broker's 16 KiB. Both said "ok"
                # while no relay got a frame (only the service's last_error told).
                await import_chain(client, 2000)

                async def degraded(c: httpx.AsyncClient, needle: str) -> bool:
                    status, entry = await cluster_health(c)
                    return status == "degraded" and needle in (entry["last_error"] or "")

                await eventually(lambda: degraded(client, "max_payload"), timeout=20)
                await eventually(lambda: degraded(rclient, "no frame from the service"), 20)
                assert await ready(rclient)  # it has a picture to show, as with no broker
                r = await client.post(
                    "/api/graph/import",
                    params={"mode": "replace"},
                    json={"nodes": [{"id": "a"}, {"id": "b"}], "edges": []},
                )
                assert r.status_code == 200, r.text

                async def fine(c: httpx.AsyncClient) -> bool:
                    status, entry = await cluster_health(c)
                    return status == "ok" and entry["last_error"] is None

                await eventually(lambda: fine(client), timeout=20)  # the message went too
                await eventually(lambda: fine(rclient), timeout=20)
                # a delta against a tick it never had is a gap: the keyframe asked for follows
                await eventually(
                    lambda: (latest := relay.source.latest) is not None and len(latest.nodes) == 2,
                    timeout=20,
                )
    finally:
        small.kill()


async def test_a_relay_started_while_the_layout_rests_gets_ready_without_a_new_tick(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = False  # the frame encoder, as the relay's hub sees it (compiling in a thread)
    monkeypatch.setattr("visionflow.cluster.relay.is_warm", lambda: compiled)
    doc = service_doc(broker, tmp_path, knowledge={"cooling_steps": 20})
    async with running(doc) as (svc, client):
        await import_chain(client, 50)
        at_rest = await eventually(lambda: resting_tick(svc, 50), timeout=30)
        async with relay_running(relay_doc(broker)) as (_relay, rclient):

            async def compiling() -> bool:
                r = await rclient.get("/readyz")
                return r.status_code == 503 and "compiling the frame encoder" in r.json()["reasons"]

            await eventually(compiling, timeout=20)
            compiled = True
            # it stayed "compiling" for ever: only a new tick checked again, and at rest the
            # service repeats its tick (a keyframe every keyframe_interval)
            await eventually(lambda: ready(rclient), timeout=10)
            assert svc.engine.latest.sequence == at_rest


def test_the_publisher_refuses_trio_in_one_line(tmp_path: Path) -> None:
    settings = s.validate(
        {
            "cluster": {"nats_url": "nats://127.0.0.1:1"},
            "server": {"port": 0},
            "state": {"dir": str(tmp_path)},
            "knowledge": {"path": "none"},
        }
    )
    with pytest.raises(BaseException) as caught:  # noqa: PT011 — a group, looked into below
        anyio.run(Service(settings).run, backend="trio")
    error = find_in_group(caught.value, StartupError)
    assert error is not None
    assert "cluster.nats_url needs the asyncio backend" in str(error)


async def test_a_relay_that_vanishes_has_its_viewers_pins_released(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "ALIVE_INTERVAL_S", 0.2)
    monkeypatch.setattr(wire, "ALIVE_TIMEOUT_S", 1.0)
    async with running(service_doc(broker, tmp_path)) as (_svc, client):
        await import_chain(client, 10)
        node = (await client.get("/api/graph/data")).json()["nodes"][2]

        async def pinned() -> bool:
            page = (await client.get("/api/graph/data")).json()
            return any(n["id"] == node["id"] and n["pinned"] for n in page["nodes"])

        async with relay_running(relay_doc(broker)) as (relay, rclient):
            await eventually(lambda: ready(rclient), timeout=20)
            nc = await nats.connect(broker.url)
            alive = await nc.subscribe(wire.Subjects("visionflow").alive)
            # A relay says it is alive, and a live relay's pins stay.
            message = await alive.next_msg(timeout=5)
            assert message.data.decode() == relay.relay_id
            # A relay that pins, then goes silent (killed): its pins are let go.
            ghost = wire.PinRequest(
                op="pin",
                relay="ghost",
                owner=1,
                ids=np.array([node["id"]], "<u4").tobytes(),
                positions=np.array([[1.0, 2.0, 3.0]], "<f4").tobytes(),
            )
            reply = await nc.request("visionflow.rpc.pins", wire.encode(ghost), timeout=5)
            assert wire.decode(reply.data, wire.PinReply).ok
            assert await pinned()

            async def released() -> bool:
                return not await pinned()

            await eventually(released, timeout=10)
            await nc.close()
