"""Fakes for the hub and endpoint unit tests: settings context, snapshot source, pins, ASGI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from visionflow import __version__
from visionflow import settings as s
from visionflow.errors import GraphError
from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics
from visionflow.protocol.frames import AGENT_FLAG, KNOWLEDGE_FLAG, warm_up
from visionflow.protocol.snapshot import Snapshot
from visionflow.supervisor import HealthRegistry


@dataclass
class FakeContext:
    """What the hub and the endpoint need of the service context."""

    live: LiveSettings
    registry: HealthRegistry
    metrics: Metrics


def context(**websocket: Any) -> FakeContext:
    # Compile the frame packer here, synchronously: a hub that had to compile it in a worker
    # thread would let trio's MockClock jump ahead meanwhile (a thread counts as blocked).
    warm_up()
    settings = s.validate({"websocket": websocket, "server": {"shutdown_grace": 2.0}})
    return FakeContext(LiveSettings.from_settings(settings), HealthRegistry(__version__), Metrics())


def ids_of(knowledge: int, agents: int = 0) -> np.ndarray:
    k = np.arange(knowledge, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)
    a = np.arange(1000, 1000 + agents, dtype=np.uint32) | np.uint32(AGENT_FLAG)
    return np.concatenate([k, a]).astype(np.uint32)


def snap(sequence: int, ids: np.ndarray, shift: float = 0.0, *, settled: bool = False) -> Snapshot:
    n = len(ids)
    pos = np.arange(n * 3, dtype=np.float32).reshape(n, 3) + np.float32(shift)
    vel = np.zeros((n, 3), np.float32)
    return Snapshot.create(sequence, ids.copy(), pos, vel, settled=settled)


class FakeSource:
    def __init__(self) -> None:
        self.latest: Snapshot | None = None
        self.wakes = 0
        self._published = anyio.Event()

    def publish(self, snapshot: Snapshot) -> None:
        self.latest = snapshot
        self._published.set()
        self._published = anyio.Event()

    async def wait_snapshot(self, after: int) -> Snapshot:
        while self.latest is None or self.latest.sequence <= after:
            await self._published.wait()
        return self.latest

    def wake(self) -> None:
        self.wakes += 1  # a test publishes the next snapshot itself


@dataclass
class FakePins:
    fail_with: Exception | None = None
    calls: list[tuple[str, list[int], int]] = field(default_factory=list)

    def pin(self, node_ids: np.ndarray, positions: np.ndarray, owner: int) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if 999 in node_ids.tolist():
            raise GraphError("unknown_node", "no node 999", "ids")
        self.calls.append(("pin", node_ids.tolist(), owner))

    def release(self, node_ids: np.ndarray, owner: int) -> None:
        self.calls.append(("release", node_ids.tolist(), owner))

    def release_all(self, owner: int) -> None:
        self.calls.append(("release_all", [], owner))


class FakeASGI:
    """The server side of one WebSocket as an ASGI app sees it."""

    def __init__(self, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None):
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/wss",
            "query_string": query,
            "headers": headers if headers is not None else [(b"host", b"127.0.0.1:4000")],
            "client": ("203.0.113.9", 50000),
        }
        self._inbox_tx, self._inbox_rx = anyio.create_memory_object_stream[dict[str, Any]](64)
        self.sent: list[dict[str, Any]] = []
        self.stall_frames = False  # a peer that stops reading: frame sends never complete
        self.activity = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self._inbox_rx.receive()

    async def send(self, message: dict[str, Any]) -> None:
        if self.stall_frames and message.get("bytes") is not None:
            await anyio.sleep_forever()
        self.sent.append(message)
        self.activity.set()
        self.activity = anyio.Event()

    async def client_sends(self, message: dict[str, Any]) -> None:
        await self._inbox_tx.send(message)

    def close(self) -> None:
        self._inbox_tx.close()
        self._inbox_rx.close()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m.get("text") is not None]

    def closes(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == "websocket.close"]
