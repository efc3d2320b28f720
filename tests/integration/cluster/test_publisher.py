"""The publisher alone against a real nats-server: what a relay reads, and a broker that is away."""

from __future__ import annotations

import time
from typing import Any

import anyio
import nats
import numpy as np
import pytest
from support.hubfakes import context, ids_of
from support.natskit import Broker
from support.servicekit import eventually

from visionflow import settings as s
from visionflow.cluster import wire
from visionflow.cluster.chain import Outcome, TickAssembler
from visionflow.cluster.publisher import ClusterPublisher
from visionflow.protocol.snapshot import Snapshot

pytestmark = pytest.mark.anyio

IDS = ids_of(500, 10)


def tick(sequence: int) -> Snapshot:
    n = len(IDS)
    pos = np.full((n, 3), sequence * 0.01, np.float32)
    pos[: n // 2] = 0.0  # half the graph rests: the deltas carry the other half
    return Snapshot.create(sequence, IDS.copy(), pos, np.zeros((n, 3), np.float32))


def publisher(url: str, **cluster: Any) -> ClusterPublisher:
    settings = s.validate(
        {"cluster": {"nats_url": url, "backoff_initial": 0.05, "backoff_max": 0.2, **cluster}}
    )
    ctx = context()
    return ClusterPublisher(settings.cluster, ctx.registry, ctx.metrics)


async def test_a_relay_reads_an_ordered_chain_at_most_max_rate_hz(broker: Broker) -> None:
    pub = publisher(broker.url, max_rate_hz=20, keyframe_interval=10)
    nc = await nats.connect(broker.url)
    got: list[tuple[str, bytes, dict[str, str] | None]] = []

    async def on_msg(msg: Any) -> None:
        got.append((msg.subject, msg.data, msg.headers))

    await nc.subscribe(wire.Subjects("visionflow").stream, cb=on_msg)
    async with anyio.create_task_group() as tg:
        await tg.start(pub.run)
        await eventually(lambda: pub.link.connected, timeout=10)
        started = time.monotonic()
        for sequence in range(1, 121):  # 120 ticks at ~120 Hz
            if sequence == 60:
                pub.control('{"type":"graph_changed","revision":2}')
            pub.tick(tick(sequence), None)
            await anyio.sleep(1 / 120)
        await anyio.sleep(0.3)
        elapsed = time.monotonic() - started
        tg.cancel_scope.cancel()
    await nc.close()
    frames = [(data, headers) for subject, data, headers in got if subject.endswith(".frame")]
    assert 5 <= len(frames) <= 20 * elapsed + 2, (len(frames), elapsed)
    relay = TickAssembler()
    outcomes = [relay.apply(data, headers).outcome for data, headers in frames]
    assert outcomes[0] is Outcome.KEYFRAME
    assert set(outcomes[1:]) == {Outcome.DELTA}  # one exact chain, nothing lost
    assert relay.held is not None and relay.held.sequence == 120  # the newest went out
    held = relay.held.nodes.positions
    assert held.tobytes() == tick(120).nodes.positions.tobytes()
    subjects = [subject.rsplit(".", 1)[1] for subject, _, _ in got]
    control_at = subjects.index("control")
    before = [h for (sub, _, h) in got[:control_at] if sub.endswith(".frame")]
    assert before and all(int(h[wire.BASE]) < 60 for h in before if h and wire.BASE in h)


async def test_with_the_broker_away_the_hub_is_never_held_and_drops_are_counted(
    broker: Broker,
) -> None:
    pub = publisher(broker.url)
    async with anyio.create_task_group() as tg:
        await tg.start(pub.run)
        await eventually(lambda: pub.link.connected, timeout=10)
        broker.kill()
        await eventually(lambda: not pub.link.connected, timeout=10)
        assert pub.health.detail["degraded"] is True and pub.health.last_error
        started = time.perf_counter()
        for sequence in range(1, 2001):
            pub.tick(tick(sequence), None)
            pub.control('{"type":"graph_changed","revision":1}')
        assert time.perf_counter() - started < 1.0  # 2000 ticks: references, no waiting
        assert len(pub._control) == pub.settings.max_pending  # bounded: the oldest dropped
        metrics = pub.metrics
        assert metrics.frames_dropped.labels(reason="broker_away")._value.get() == 2000
        assert metrics.control_dropped._value.get() == 2000 - pub.settings.max_pending
        broker.start()
        await eventually(lambda: pub.link.connected, timeout=10)
        assert "degraded" not in pub.health.detail
        await eventually(lambda: not pub._control, timeout=10)  # sent once it is back
        tg.cancel_scope.cancel()
