"""What a backup costs: the store's lock, time and size; and the event loop while one runs.

Part 1, in this process, per graph size (N knowledge nodes, 2 edges per node, all placed):

- ``lock: save``: how long ``save_graph`` (what every import already does) holds the store's
  lock: the baseline, same run;
- ``lock: backup``: how long a backup of a running service holds it (``service_members``: the
  same export plus the keys and the id state, in one hold);
- ``backup``: ``service_backup`` end to end (export, encode, gzip) and its size;
- ``files``: ``files_backup`` of the same state on disk (read, check, gzip);
- ``restore``: ``unpack`` + ``restore_backup`` (checksums, every member read as the service
  reads it, written atomically).

Part 2 (``--served``): a real ``visionflow serve`` holding an N-node graph; this process polls
``GET /healthz`` every 10 ms while (a) nothing else runs (baseline), (b) a client runs
``visionflow state backup`` against it in a loop for 10 s (the route's work in the service's
worker thread), (c) a client fetches ``GET /api/graph/export`` in a loop (the existing costly
read, for comparison). Target: ``/healthz`` p99 under 100 ms. Loopback only, bounded in time.

    .venv/bin/python benchmarks/state_backup.py [--sizes 10000,100000] [--served 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _serve import serve

from visionflow import settings as s
from visionflow.graph.store import GraphStore
from visionflow.protocol.snapshot import Snapshot
from visionflow.state import backup as bk
from visionflow.state import save_graph
from visionflow.state.archive import unpack
from visionflow.state.layout import layout_path, save_layout

REPEATS = 5
BASE: dict[str, Any] = s.to_dict(s.Settings())


def document(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(1, n), 2)
    dst = (rng.random(src.size) * src).astype(np.int64)
    return {
        "nodes": [{"id": f"n{i}", "label": f"node {i}"} for i in range(n)],
        "edges": [
            {"source": f"n{a}", "target": f"n{b}"}
            for a, b in zip(src.tolist(), dst.tolist(), strict=True)
        ],
    }


class TimedLock:
    """The store's RLock, timing each outermost hold."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.depth, self.t0, self.holds = inner, 0, 0.0, []

    def __enter__(self) -> None:
        self.inner.acquire()
        self.depth += 1
        if self.depth == 1:
            self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.holds.append(time.perf_counter() - self.t0)
        self.inner.release()

    def acquire(self, blocking: bool = True) -> bool:
        return bool(self.inner.acquire(blocking))

    def release(self) -> None:
        self.inner.release()


def longest_hold(store: GraphStore, work: Callable[[], object]) -> float:
    timed = TimedLock(store.lock)
    store.lock = timed  # type: ignore[assignment]
    try:
        work()
    finally:
        store.lock = timed.inner
    return max(timed.holds)


def median_ms(work: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def part1(n: int, tmp: Path) -> list[str]:
    store = GraphStore()
    store.import_document(document(n), "replace")
    d = store.sync()
    pos = np.random.default_rng(1).random((d.n, 3)).astype(np.float32) * 100
    snap = Snapshot.create(1, d.flagged.astype(np.uint32), pos, np.zeros_like(pos))
    state = tmp / f"state-{n}"
    save_graph(store, str(state))
    save_layout(layout_path(state), store.keys(), snap.nodes.ids, pos, None, store.id_state())

    saves, backups = [], []
    for _ in range(REPEATS):  # alternated, so that a busy moment hurts both alike
        saves.append(longest_hold(store, lambda: save_graph(store, str(state))))
        backups.append(longest_hold(store, lambda: bk.service_members(store, snap, {}, {})))
    save_hold, backup_hold = statistics.median(saves), statistics.median(backups)
    data = bk.service_backup(store, snap, {}, {})
    backup_ms = median_ms(lambda: bk.service_backup(store, snap, {}, {}))
    files_ms = median_ms(lambda: bk.files_backup(str(state), BASE))
    raw = sum(p.stat().st_size for p in state.glob("*.json"))
    restored = tmp / f"restored-{n}"
    restore_ms = median_ms(lambda: bk.restore_backup(unpack(data), str(restored), BASE))
    shutil.rmtree(restored, ignore_errors=True)
    k = f"{n // 1000}k"
    return [
        f"{k:>6} {'lock: save (baseline)':<24} {save_hold * 1e3:>9.1f}",
        f"{k:>6} {'lock: backup':<24} {backup_hold * 1e3:>9.1f}"
        f"   {backup_hold / save_hold:.2f}x the baseline",
        f"{k:>6} {'backup (service)':<24} {backup_ms:>9.1f}"
        f"   {len(data) / 1e6:.1f} MB from {raw / 1e6:.1f} MB of state files",
        f"{k:>6} {'backup (files)':<24} {files_ms:>9.1f}",
        f"{k:>6} {'restore':<24} {restore_ms:>9.1f}",
    ]


def poll(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                c.get("/healthz")
                out.append(time.perf_counter() - t0)
            except httpx.TimeoutException:
                out.append(30.0)
            stop.wait(max(0.0, 0.01 - (time.perf_counter() - t0)))


def scenario(
    url: str, seconds: float, load: Callable[[], object] | None
) -> tuple[list[float], int]:
    stop, lat = threading.Event(), []
    poller = threading.Thread(target=poll, args=(url, stop, lat))
    poller.start()
    count = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if load is None:
            time.sleep(0.1)
        else:
            load()
            count += 1
    stop.set()
    poller.join(60)
    return lat, count


def part2(n: int, tmp: Path) -> list[str]:
    tmp.mkdir()
    proc, url = serve(tmp)
    rows = []
    try:
        with httpx.Client(base_url=url, timeout=600) as c:
            c.post("/api/graph/import", json=document(n), timeout=600).raise_for_status()
        time.sleep(3)  # the engine's rebuild and placement come after the answer
        exe = [sys.executable, "-m", "visionflow", "state", "backup"]
        cfg = ["--config", str(tmp / "settings.toml")]

        def backup() -> None:
            subprocess.run(
                [*exe, str(tmp / "b.tar.gz"), *cfg], check=True, capture_output=True, timeout=300
            )

        def export() -> None:
            httpx.get(f"{url}/api/graph/export", timeout=300).raise_for_status()

        for name, load in (("idle", None), ("state backup loop", backup), ("export loop", export)):
            lat, count = scenario(url, 10, load)
            a = np.asarray(lat) * 1e3
            rows.append(
                f"{name:<18} {a.size:>6} {statistics.median(a):>8.1f} "
                f"{np.percentile(a, 99):>8.1f} {a.max():>8.1f}  {count} runs"
            )
        rows.append(f"backup file: {(tmp / 'b.tar.gz').stat().st_size / 1e6:.1f} MB")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--served", type=int, default=0, help="graph size of part 2 (0: skip it)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vf-backup-"))
    try:
        print(f"loadavg {os.getloadavg()[0]:.2f}; medians of {REPEATS}; ms")
        print(f"{'nodes':>6} {'what':<24} {'ms':>9}")
        for n in (int(x) for x in args.sizes.split(",")):
            for line in part1(n, tmp):
                print(line, flush=True)
        if args.served:
            print(f"\nserved, {args.served} nodes; /healthz every 10 ms for 10 s each; ms")
            print(f"{'scenario':<18} {'n':>6} {'p50':>8} {'p99':>8} {'max':>8}")
            for line in part2(args.served, tmp / "served"):
                print(line, flush=True)
            print("target: /healthz p99 < 100 ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
