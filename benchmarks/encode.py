"""Frame encoder benchmark: ``python benchmarks/encode.py``.

Prints microseconds per frame (median of many runs) for keyframe, delta (10% of nodes, scattered
rows) and legacy frames at 10k and 100k nodes, next to two copies of the same number of bytes
measured in the same run, interleaved with the encode so that both see the same machine load:

- ``bytes copy`` (the baseline of the ratio): ``bytes(buffer)``, i.e. a new ``bytes`` object and
  one memcpy into it. That is the least work that hands out a new immutable ``bytes`` of the
  frame's size, which is what the encoder must return; it pays the same allocation (and any page
  faults) as the encoder.
- ``memcpy``: ``np.copyto`` into a buffer allocated once: memory bandwidth alone, no allocation.

``flt/frame`` is the minor page faults per call over the timed runs (``getrusage``), for the
encoder and for the bytes copy: 0 means the allocator served the frame from memory already
mapped; a 100k-node frame touched fresh would take ~680 faults (one per 4 KiB).

Medians and ratios, because the machine is shared and absolute numbers are noisy. Bandwidth over
a real layout is ``benchmarks/bandwidth.py``.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np

from visionflow.protocol.frames import (
    HEADER_SIZE,
    KNOWLEDGE_FLAG,
    RECORD_SIZE,
    encode_delta,
    encode_keyframe,
    encode_legacy,
    warm_up,
)

RUNS = 300


def timed(fn: Callable[[], object], runs: int = RUNS) -> tuple[float, float]:
    """Median microseconds per call, and minor page faults per call."""
    fn()
    samples = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return statistics.median(samples) / 1000, faults / runs


def nodes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = (np.arange(n, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)).astype(np.uint32)
    pos = rng.standard_normal((n, 3)).astype(np.float32)
    vel = rng.standard_normal((n, 3)).astype(np.float32)
    return ids, pos, vel


def speed_table() -> None:
    print(
        f"encode: median of {RUNS} runs, microseconds per frame; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'frame':<11}{'nodes':>7}{'bytes':>9}{'encode us':>11}{'bytes copy':>12}{'ratio':>7}"
        f"{'memcpy':>8}{'ratio':>7}{'flt/frame enc/copy':>20}"
    )
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
            target = np.empty(size, np.uint8)

            def copy(src: np.ndarray = source) -> bytes:
                return bytes(src)

            def memcpy(src: np.ndarray = source, dst: np.ndarray = target) -> None:
                np.copyto(dst, src)

            # Interleaved: copy, encode, copy again (the faster copy median is kept).
            copy_us, copy_flt = timed(copy)
            enc_us, enc_flt = timed(fn)
            copy_us = min(copy_us, timed(copy)[0])
            mem_us = timed(memcpy)[0]
            print(
                f"{name:<11}{n:>7}{size:>9}{enc_us:>11.1f}{copy_us:>12.1f}"
                f"{enc_us / copy_us:>6.2f}x{mem_us:>8.1f}{enc_us / mem_us:>6.2f}x"
                f"{enc_flt:>11.1f} / {copy_flt:<6.1f}"
            )


def main() -> None:
    warm_up()
    speed_table()


if __name__ == "__main__":
    main()
