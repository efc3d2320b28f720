"""Fan-out benchmark: ``python benchmarks/fanout.py [--viewers 10,50,100] [--nodes 10000]``.

Loopback only, bounded in viewers and time (each run: warm-up + a fixed window; the server and
the viewers stop by themselves even if this script dies). Three processes:

- the **server**: the real hub, ``/wss`` endpoint and HTTP listener (hypercorn, as the service
  builds it), fed by one of two sources (``--source``):

  - ``physics`` (default): the real ``PhysicsEngine`` (cpu backend, ``physics.rate_hz`` =
    ``--hz``) laying out a ``--nodes`` Barabasi-Albert graph (average degree 4) from scratch in
    a real ``GraphStore``, with ``cooling_steps`` = 100000 so it stays warm (a layout rests
    300 steps after an import with the shipped settings, sooner than the window), served
    straight to the hub with the real ``EnginePins``, exactly as ``Service`` wires them;
  - ``synthetic``: every node orbits its own point, so *every* node passes the deadband every
    tick (the worst case for deltas: each frame carries every node), with no physics CPU;

- the **viewers**: ``websockets`` asyncio clients in one process, subscribed at the default rate
  (``websocket.default_interval_ms`` = 33 ms, 30 Hz), each reading every frame;
- this script, which marks the measurement window in both over their stdin.

Measured over the window: frames per second received per viewer; server CPU per delivered frame
(CPU of the event-loop thread, which runs the hub, the encoder, hypercorn and the socket sends,
divided by frames sent; the synthetic source's own work is taken out) and as a share of a core;
the CPU of the server's other threads (the physics step and numba's worker pool; ~0 for the
synthetic source); physics ticks per second and the median step time in the window; frames
dropped by the hub; and lag = receive time - publish time of that frame's tick (the engine's
``board.publish`` is wrapped to record it; one monotonic clock for all processes on Linux),
which is how far the viewer is behind the newest tick when its frame arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARMUP_S = 3.0
WINDOW_S = 8.0
#: Hard limit for any one process of a run: they exit on their own after this.
PROCESS_LIMIT_S = 60.0


# =========================================================================== server process


def serve(nodes: int, hz: float, backend: str, source_kind: str) -> None:
    import anyio
    import numpy as np
    from loguru import logger
    from starlette.applications import Starlette

    from visionflow import __version__
    from visionflow import settings as s
    from visionflow.live_settings import LiveSettings
    from visionflow.metrics import Metrics
    from visionflow.protocol.frames import KNOWLEDGE_FLAG, warm_up
    from visionflow.protocol.snapshot import Snapshot
    from visionflow.supervisor import HealthRegistry
    from visionflow.web.hub import Hub
    from visionflow.web.server import HttpServer
    from visionflow.web.ws import websocket_route

    @dataclass
    class Context:
        live: LiveSettings
        registry: HealthRegistry
        metrics: Metrics

    class MovingSource:
        """Every node orbits its own point, fast enough to pass the deadband every frame."""

        def __init__(self) -> None:
            rng = np.random.default_rng(7)
            self.ids = (np.arange(nodes, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)).astype(
                np.uint32
            )
            self.base = rng.uniform(-500, 500, (nodes, 3)).astype(np.float32)
            self.phase = rng.uniform(0, 2 * math.pi, (nodes, 3)).astype(np.float32)
            self.latest: Snapshot | None = None
            self.cpu = 0.0
            self.published: deque[tuple[int, float]] = deque(maxlen=int(hz * PROCESS_LIMIT_S))
            self._event = anyio.Event()

        async def run(self) -> None:
            start = anyio.current_time()
            for seq in range(1, 1 << 62):
                await anyio.sleep_until(start + seq / hz)
                began = time.thread_time()
                t = np.float32(seq / hz)
                angle = 2.0 * t + self.phase
                pos = self.base + 5.0 * np.sin(angle)
                vel = 10.0 * np.cos(angle)
                self.latest = Snapshot.create(seq, self.ids, pos, vel)
                self.cpu += time.thread_time() - began  # the physics' work, not the hub's
                self.published.append((seq, time.monotonic()))
                self._event.set()
                self._event = anyio.Event()

        async def wait_snapshot(self, after: int) -> Snapshot:
            while self.latest is None or self.latest.sequence <= after:
                await self._event.wait()
            return self.latest

        def wake(self) -> None:
            pass  # it publishes every tick anyway

    class PhysicsSource:
        """The real engine and EnginePins; publish times recorded at ``board.publish``."""

        def __init__(self) -> None:
            from _graph import ba_store

            from visionflow.physics.engine import PhysicsEngine
            from visionflow.web.pins import EnginePins

            self.engine = PhysicsEngine(
                ba_store(nodes),
                settings.physics,
                metrics=ctx.metrics,
                health=ctx.registry.register("physics"),
            )
            self.pins = EnginePins(self.engine)
            self.cpu = 0.0  # the physics runs in other threads: nothing to take out of the loop's
            self.published: deque[tuple[int, float]] = deque(maxlen=int(hz * PROCESS_LIMIT_S))
            self.steps: list[float] = []
            self.engine.on_step = self.steps.append
            board = self.engine.board
            publish = board.publish

            def recorded(snapshot: Snapshot) -> None:
                self.published.append((snapshot.sequence, time.monotonic()))
                publish(snapshot)

            board.publish = recorded  # type: ignore[method-assign]

        async def run(self) -> None:
            await self.engine.run()

    logger.remove()
    logger.add(sys.stderr, level="WARNING")  # a line per viewer would drown the table
    settings = s.validate(
        {
            "server": {"port": 0, "shutdown_grace": 2.0},
            "websocket": {"max_connections": 1000},
            "physics": {
                "backend": "cpu",
                "rate_hz": hz,
                "knowledge": {"cooling_steps": 100_000},  # warm for the whole window
            },
        }
    )
    ctx = Context(LiveSettings.from_settings(settings), HealthRegistry(__version__), Metrics())
    warm_up()

    async def main() -> None:
        stopping = anyio.Event()
        source: MovingSource | PhysicsSource
        if source_kind == "physics":
            source = PhysicsSource()
            hub = Hub(ctx, source.engine, pins=source.pins, stopping=stopping)
        else:
            source = MovingSource()
            hub = Hub(ctx, source, stopping=stopping)
        app = Starlette(routes=[websocket_route(ctx, hub)])
        http = HttpServer(app, settings, stopping)

        def mark() -> dict[str, Any]:
            m = ctx.metrics
            return {
                "t": time.monotonic(),
                # mark() runs on the event loop's thread: its CPU is the hub's and hypercorn's
                "cpu": time.thread_time() - source.cpu,
                "other_cpu": time.process_time() - time.thread_time(),
                "source_cpu": source.cpu,
                "last_tick": source.published[-1][0] if source.published else 0,
                "steps": len(source.steps) if isinstance(source, PhysicsSource) else 0,
                "sent": m.frames_sent._value.get(),
                "dropped": m.frames_dropped._value.get(),
                "bytes": m.bytes_sent._value.get(),
            }

        http_done = anyio.Event()

        async def run_http(*, task_status: Any) -> None:
            try:
                await http.run(task_status=task_status)
            finally:
                http_done.set()

        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(PROCESS_LIMIT_S):
                port = await tg.start(run_http)
                await tg.start(hub.run)
                tg.start_soon(source.run)
                print(json.dumps({"port": port}), flush=True)
                while True:
                    command = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
                    if command == "mark":
                        print(json.dumps(mark()), flush=True)
                    else:  # "stop" or EOF
                        break
            steps = source.steps if isinstance(source, PhysicsSource) else []
            print(json.dumps({"published": list(source.published), "steps": steps}), flush=True)
            stopping.set()  # viewers get 1001, the listener drains
            with anyio.move_on_after(5):
                await http_done.wait()
            tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)


# =========================================================================== viewer process


def view(url: str, viewers: int) -> None:
    import websockets

    async def main() -> None:
        received: list[list[tuple[int, float]]] = [[] for _ in range(viewers)]
        recording = False
        ready = 0
        all_ready = asyncio.Event()

        async def viewer(i: int) -> None:
            nonlocal ready
            async with websockets.connect(
                url, compression=None, max_size=None, open_timeout=20, close_timeout=1
            ) as ws:
                first = True
                next_ping = time.monotonic() + 10
                async for message in ws:
                    if isinstance(message, str):
                        continue
                    now = time.monotonic()
                    if first:
                        first = False
                        ready += 1
                        if ready == viewers:
                            all_ready.set()
                    if recording:
                        received[i].append((int.from_bytes(message[8:16], "little"), now))
                    if now > next_ping:  # stay clear of the idle timeout
                        next_ping = now + 10
                        await ws.send('{"type":"ping"}')

        async def connect_all() -> list[asyncio.Task[None]]:
            tasks = []
            for i in range(viewers):
                tasks.append(asyncio.create_task(viewer(i)))
                await asyncio.sleep(0.005)  # don't overflow the listen backlog
            return tasks

        loop = asyncio.get_running_loop()
        tasks = await connect_all()
        await asyncio.wait_for(all_ready.wait(), 30)
        print(json.dumps({"ready": viewers}), flush=True)
        marks = []
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "mark":
                recording = not recording
                marks.append(time.monotonic())
                print(json.dumps({"cpu": time.process_time()}), flush=True)
            else:
                break
        print(json.dumps({"received": received, "marks": marks}), flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # The viewers exit by themselves if the orchestrator goes away.
    threading.Timer(PROCESS_LIMIT_S, lambda: os._exit(3)).start()
    asyncio.run(main())


# =========================================================================== orchestrator


class Child:
    """A process of this script (or of ``script``) driven over its stdin and stdout."""

    def __init__(self, *args: str, script: str = __file__) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args[2:]} exited with {self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(viewers: int, nodes: int, hz: float, backend: str, source: str) -> dict[str, Any]:
    server = Child(
        "--serve", "--nodes", str(nodes), "--hz", str(hz), "--backend", backend, "--source", source
    )
    clients: Child | None = None
    try:
        port = server.read()["port"]
        clients = Child("--view", f"ws://127.0.0.1:{port}/wss", "--viewers", str(viewers))
        clients.read()  # every viewer has its first keyframe
        time.sleep(WARMUP_S)
        s0, c0 = server.ask("mark"), clients.ask("mark")
        time.sleep(WINDOW_S)
        s1, c1 = server.ask("mark"), clients.ask("mark")
        record = server.ask("stop")
        published = dict(map(tuple, record["published"]))
        got = clients.ask("stop")
    finally:
        server.finish()
        if clients is not None:
            clients.finish()
    window = s1["t"] - s0["t"]
    fps = [len(frames) / window for frames in got["received"]]
    lags = [
        (t - published[seq]) * 1000
        for frames in got["received"]
        for seq, t in frames
        if seq in published
    ]
    worst = [
        max(((t - published[seq]) * 1000 for seq, t in frames if seq in published), default=0)
        for frames in got["received"]
    ]
    sent = s1["sent"] - s0["sent"]
    steps = record["steps"][s0["steps"] : s1["steps"]]
    return {
        "viewers": viewers,
        "fps_min": min(fps),
        "fps_med": statistics.median(fps),
        "cpu_us": (s1["cpu"] - s0["cpu"]) / max(sent, 1) * 1e6,
        "server_cpu": (s1["cpu"] - s0["cpu"]) / window,
        "source_cpu": (s1["source_cpu"] - s0["source_cpu"]) / window,
        "other_cpu": (s1["other_cpu"] - s0["other_cpu"]) / window,
        "tick_hz": (s1["last_tick"] - s0["last_tick"]) / window,
        "step_ms": statistics.median(steps) * 1e3 if steps else math.nan,
        "viewer_cpu": (c1["cpu"] - c0["cpu"]) / window,
        "dropped": s1["dropped"] - s0["dropped"],
        "sent": sent,
        "mb_s": (s1["bytes"] - s0["bytes"]) / window / 1e6,
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "lag_max": max(lags, default=math.nan),
        "over_100": sum(w > 100 for w in worst),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", default="10,50,100")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--hz", type=float, default=60.0, help="snapshots per second")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--source", default="physics", choices=["physics", "synthetic"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--view", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.nodes, args.hz, args.backend, args.source)
        return
    if args.view:
        view(args.view, int(args.viewers))
        return
    counts = [int(v) for v in args.viewers.split(",")]
    if max(counts) > 200:
        parser.error("at most 200 viewers: this is a loopback benchmark on a small machine")
    what = (
        "real PhysicsEngine on a BA graph (avg degree 4), cooling_steps 100000 (stays warm)"
        if args.source == "physics"
        else "synthetic source, every node moving every tick"
    )
    print(
        f"fan-out: {args.nodes} nodes, {what}, {args.hz:g} Hz; viewers at the default 30 Hz; "
        f"{args.backend}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; window "
        f"{WINDOW_S:g}s after {WARMUP_S:g}s warm-up"
    )
    header = (
        f"{'viewers':>7} {'fps/viewer':>12} {'srv us/frame':>12} {'loop CPU':>8} "
        f"{'physics CPU':>11} {'ticks/s':>7} {'step ms':>7} {'viewers CPU':>11} {'MB/s':>7} "
        f"{'dropped':>7} {'lag p50':>7} {'p99':>6} {'max ms':>6} {'>100ms':>6}"
    )
    print(header)
    for viewers in counts:
        r = run(viewers, args.nodes, args.hz, args.backend, args.source)
        physics_cpu = r["other_cpu"] if args.source == "physics" else r["source_cpu"]
        print(
            f"{r['viewers']:>7} {r['fps_min']:>5.1f}/{r['fps_med']:<6.1f} {r['cpu_us']:>12.0f} "
            f"{r['server_cpu']:>8.0%} {physics_cpu:>11.0%} {r['tick_hz']:>7.1f} "
            f"{r['step_ms']:>7.2f} {r['viewer_cpu']:>11.0%} {r['mb_s']:>7.1f} "
            f"{r['dropped']:>7.0f} {r['lag_p50']:>7.1f} {r['lag_p99']:>6.1f} "
            f"{r['lag_max']:>6.1f} {r['over_100']:>6}",
            flush=True,
        )
    print(
        "fps/viewer: min/median over viewers. srv us/frame: CPU of the server's event-loop "
        "thread (hub, encode, hypercorn, socket sends) per frame delivered to one viewer; loop "
        "CPU: the same per second (share of one core). physics CPU: the server's other threads "
        "(physics step + numba pool; for --source synthetic, the source's own work). ticks/s, "
        "step ms: physics ticks published per second, median step time. lag: receive time - "
        "publish time of the frame's tick; >100ms: viewers whose worst lag passed 100 ms"
    )


if __name__ == "__main__":
    main()
