"""Frame encoder benchmark: ``python benchmarks/encode.py``.

Prints microseconds per frame (median of many runs) for keyframe, delta (10% of nodes moved) and
legacy frames at 10k and 100k nodes, next to a plain copy of the same number of bytes measured in
the same run, with the ratio; then the bandwidth of deltas over a layout settling from scratch.
Medians and ratios, because the machine is shared and absolute numbers are noisy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from visionflow.protocol.baselines import BaselineStore
from visionflow.protocol.framecache import DEFAULT_DEADBAND, FrameCache
from visionflow.protocol.frames import (
    HEADER_SIZE,
    KNOWLEDGE_FLAG,
    RECORD_SIZE,
    FrameKind,
    encode_delta,
    encode_keyframe,
    encode_legacy,
    warm_up,
)
from visionflow.protocol.snapshot import Snapshot
from visionflow.protocol.stream import ViewerStream

RUNS = 200


def median_us(fn: Callable[[], object], runs: int = RUNS) -> float:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def nodes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = (np.arange(n, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)).astype(np.uint32)
    pos = rng.standard_normal((n, 3)).astype(np.float32)
    vel = rng.standard_normal((n, 3)).astype(np.float32)
    return ids, pos, vel


def speed_table() -> None:
    print(f"encode: median of {RUNS} runs, microseconds per frame")
    print(f"{'frame':<16}{'nodes':>8}{'bytes':>10}{'encode us':>12}{'copy us':>10}{'ratio':>8}")
    for n in (10_000, 100_000):
        ids, pos, vel = nodes(n)
        rng = np.random.default_rng(1)
        rows = np.sort(rng.choice(n, n // 10, replace=False)).astype(np.intp)

        def keyframe(ids: np.ndarray = ids, pos: np.ndarray = pos, vel: np.ndarray = vel) -> bytes:
            return encode_keyframe(ids, pos, vel, 1)

        def delta(
            ids: np.ndarray = ids,
            pos: np.ndarray = pos,
            vel: np.ndarray = vel,
            rows: np.ndarray = rows,
        ) -> bytes:
            return encode_delta(ids, pos, vel, 1, rows=rows)

        def legacy(ids: np.ndarray = ids, pos: np.ndarray = pos, vel: np.ndarray = vel) -> bytes:
            return encode_legacy(ids, pos, vel)

        cases: list[tuple[str, int, Callable[[], bytes]]] = [
            ("keyframe", HEADER_SIZE + RECORD_SIZE * n, keyframe),
            ("delta 10%", HEADER_SIZE + RECORD_SIZE * len(rows), delta),
            ("legacy", RECORD_SIZE * n, legacy),
        ]
        for name, size, fn in cases:
            assert len(fn()) == size
            source = np.ones(size, np.uint8)
            # Interleave the two measurements so both see the same machine load.
            copy_us = median_us(lambda src=source: bytes(src))  # type: ignore[misc]
            enc_us = median_us(fn)
            copy_us = min(copy_us, median_us(lambda src=source: bytes(src)))  # type: ignore[misc]
            print(
                f"{name:<16}{n:>8}{size:>10}{enc_us:>12.1f}{copy_us:>10.1f}"
                f"{enc_us / copy_us:>7.2f}x"
            )
    print("copy = bytes(np.ndarray) of the same size (one memcpy into a new bytes object)")


def bandwidth(n: int = 10_000, ticks: int = 500, tau: float = 40.0) -> None:
    """A damped random walk settling from scratch, streamed to one viewer."""
    rng = np.random.default_rng(2)
    ids = (np.arange(n, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)).astype(np.uint32)
    pos = (rng.standard_normal((n, 3)) * 10).astype(np.float32)
    vel = np.zeros((n, 3), np.float32)
    store = BaselineStore()
    viewer = ViewerStream()
    sent = frames = deltas = records = 0
    settled_at = None
    start = time.perf_counter()
    for tick in range(ticks):
        step = 0.5 * np.exp(-tick / tau)
        vel = (0.8 * vel + rng.standard_normal((n, 3)) * step).astype(np.float32)
        pos = (pos + vel).astype(np.float32)
        cache = FrameCache(Snapshot.create(tick, ids, pos, vel), store, deadband=DEFAULT_DEADBAND)
        frame = viewer.next_frame(cache)
        if frame is None:
            settled_at = tick if settled_at is None else settled_at
            continue
        settled_at = None
        frames += 1
        deltas += frame.kind is FrameKind.DELTA
        records += frame.count
        sent += len(frame.data)
    elapsed = time.perf_counter() - start
    per_node = sent / (n * ticks)
    print()
    print(
        f"bandwidth: {n} nodes, {ticks} ticks of a damped random walk (step 0.5 * exp(-t/{tau:g}),"
        f" velocity damping 0.8): motion decays exponentially, steps fall under the deadband"
        f" ({DEFAULT_DEADBAND}) around tick {tau * np.log(0.5 / DEFAULT_DEADBAND):.0f}"
    )
    print(f"{'':<34}{'bytes/node/tick':>16}")
    print(f"{'keyframe every tick':<34}{RECORD_SIZE + HEADER_SIZE / n:>16.2f}")
    print(f"{'keyframe + deltas (this stream)':<34}{per_node:>16.2f}")
    print(
        f"frames sent {frames} ({deltas} deltas, avg {records / max(frames, 1):.0f} records),"
        f" nothing sent from tick {settled_at}; {per_node / RECORD_SIZE:.1%} of full frames;"
        f" simulated in {elapsed:.1f} s"
    )


def main() -> None:
    warm_up()
    speed_table()
    bandwidth()


if __name__ == "__main__":
    main()
