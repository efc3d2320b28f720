"""Bandwidth benchmark: ``python benchmarks/bandwidth.py [--nodes 10000] [--max-ticks 7200]``.

The real stack, no event loop: a Barabasi-Albert graph (average degree 4) imported into a
GraphStore, a PhysicsEngine with the default settings stepped from scratch with
``step_blocking()`` until its layout settles (or ``--max-ticks``), and every snapshot it
publishes fed through the protocol the way the hub does it (one ``BaselineStore``, one
``FrameCache`` per tick, a ``ViewerStream`` per viewer) to two protocol-2 viewers:

- one at the default 30 Hz (``websocket.default_interval_ms`` = 33 ms): every other 60 Hz tick,
- one at every tick (60 Hz).

Each viewer gets a keyframe first and deltas after (nodes that moved more than the deadband,
0.01, since last sent to it); a settled layout sends nothing. Reported per viewer: frames sent,
average bytes per node per frame sent (vs 28 + 16/N for a keyframe), average bytes per node per
tick the viewer was due (what the link carries), and when it stopped sending.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _graph import ba_store  # noqa: E402

from visionflow import settings as s  # noqa: E402
from visionflow.physics.engine import PhysicsEngine  # noqa: E402
from visionflow.protocol.baselines import BaselineStore  # noqa: E402
from visionflow.protocol.framecache import FrameCache  # noqa: E402
from visionflow.protocol.frames import HEADER_SIZE, RECORD_SIZE, FrameKind, warm_up  # noqa: E402
from visionflow.protocol.stream import ViewerStream  # noqa: E402


@dataclass
class Tally:
    name: str
    every: int
    stream: ViewerStream = field(default_factory=ViewerStream)
    due: int = 0
    frames: int = 0
    keyframes: int = 0
    records: int = 0
    sent: int = 0
    last_frame_tick: int = 0
    #: bytes per node of each frame, for the phase table
    per_frame: list[tuple[int, float]] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--max-ticks", type=int, default=7200, help="2 min of layout at 60 Hz")
    args = parser.parse_args()
    n = args.nodes
    settings = s.validate({})
    deadband = settings.websocket.deadband
    physics = settings.physics
    warm_up()
    PhysicsEngine(ba_store(2000), physics).step_blocking()  # compile the kernels elsewhere
    store = ba_store(n)
    engine = PhysicsEngine(store, physics)
    baselines = BaselineStore()
    viewers = [Tally("30 Hz (every 2nd tick)", 2), Tally("60 Hz (every tick)", 1)]
    step_ms: list[float] = []
    protocol_ms: list[float] = []
    settled_at: int | None = None
    energy = math.nan
    energies: list[float] = []
    started = time.perf_counter()
    for _ in range(args.max_ticks):
        snap, result, elapsed = engine.step_blocking()
        energy = result.kinetic_energy
        energies.append(energy)
        step_ms.append(elapsed * 1e3)
        t0 = time.perf_counter()
        cache = FrameCache(snap, baselines, deadband=deadband)
        for v in viewers:
            if snap.sequence % v.every:
                continue
            v.due += 1
            frame = v.stream.next_frame(cache)
            if frame is None:
                continue
            v.frames += 1
            v.keyframes += frame.kind is FrameKind.KEYFRAME
            v.records += frame.count
            v.sent += len(frame.data)
            v.last_frame_tick = snap.sequence
            v.per_frame.append((snap.sequence, len(frame.data) / n))
        protocol_ms.append((time.perf_counter() - t0) * 1e3)
        if snap.settled:
            settled_at = snap.sequence
            break
    wall = time.perf_counter() - started
    ticks = len(step_ms)
    keyframe_per_node = RECORD_SIZE + HEADER_SIZE / n
    print(
        f"bandwidth: BA graph, {n} nodes, {store.edge_count} edges, real PhysicsEngine (cpu, "
        f"default settings: settle_energy {physics.settle_energy:g}, warm-up "
        f"{physics.knowledge.warmup_iterations} steps) from scratch, deadband {deadband:g}"
    )
    if settled_at is not None:
        print(
            f"settled at tick {settled_at} ({settled_at / physics.rate_hz:.1f} s of 60 Hz layout)"
        )
    else:
        print(
            f"NOT settled after {ticks} ticks: kinetic energy/node {energy:.3g}, "
            f"settles below {physics.settle_energy:g}"
        )
    print(
        f"physics step median {statistics.median(step_ms):.2f} ms, protocol work (snapshot, "
        f"cache, both viewers) median {statistics.median(protocol_ms):.2f} ms/tick; "
        f"simulated in {wall:.0f} s"
    )
    print()
    print(
        f"{'viewer':<24}{'due':>6}{'frames':>8}{'keyfr':>7}{'avg recs':>10}"
        f"{'B/node/frame':>14}{'vs 28':>8}{'B/node/due tick':>17}{'last frame':>12}"
    )
    for v in viewers:
        per_frame = v.sent / (n * max(v.frames, 1))
        print(
            f"{v.name:<24}{v.due:>6}{v.frames:>8}{v.keyframes:>7}"
            f"{v.records / max(v.frames, 1):>10.0f}"
            f"{per_frame:>14.2f}{per_frame / keyframe_per_node:>8.1%}{v.sent / (n * v.due):>17.2f}"
            f"{'tick ' + str(v.last_frame_tick):>12}"
        )
    print(f"{'keyframe every frame':<24}{'':>6}{'':>8}{'':>7}{n:>10}{keyframe_per_node:>14.2f}")
    print()
    print("by phase of the layout: bytes per node per frame sent (frames), kinetic energy per node")
    print(f"{'ticks':<14}{'30 Hz viewer':>18}{'60 Hz viewer':>18}{'KE/node at end':>16}")
    bounds = [0, 60, 300, 600, 1200, 2400, 4800, 9600, 19200]
    bounds = [b for b in bounds if b < ticks] + [ticks]
    for lo, hi in itertools.pairwise(bounds):
        cells = []
        for v in viewers:
            got = [b for t, b in v.per_frame if lo < t <= hi]
            cells.append(f"{statistics.mean(got):7.2f} ({len(got):>5})" if got else "")
        print(f"{f'{lo + 1}-{hi}':<14}{cells[0]:>18}{cells[1]:>18}{energies[hi - 1]:>16.3g}")


if __name__ == "__main__":
    main()
