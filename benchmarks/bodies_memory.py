"""Memory after big request bodies: 16 concurrent ~53 MiB imports against a real service.

After one import alone (what a first import sets up stays, and so does an applied graph),
three rounds each of documents that are refused (a valid JSON graph whose last edge names a
missing node: the whole body is read and parsed before the refusal) and of the same valid
300k-node document applied again and again. Prints the process's RSS before the load (the
baseline), at its peak during each round and 8 s after it, next to the target: memory back
within 10 % of its level before the load (issue 17).

Each level is also read as the lowest of 20 samples over the next 10 s ("settled"): while the
layout of a fresh 300k-node graph still moves, the layout saver encodes it every 5 s and the
RSS swings by ~90 MiB with it (seen: 873-966 MiB within 10 s, no import running), so one
sample can land on either side. The ratio of the settled levels is the one to compare.

``--compare`` runs it all twice in one go: once with the service as it is, once with glibc's
mmap threshold left to glibc (``benchmarks/_glibc_default.py``; visionflow/memory.py says why it
is fixed). Loopback only; about 4 minutes, 8 with ``--compare``.

    python benchmarks/bodies_memory.py [--rounds 3] [--concurrent 16] [--compare]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _procstat import rss_mib
from _serve import serve

NODES = 300_000
SETTLE_SAMPLES = 20  # every 0.5 s: the lowest is the settled level


def document(refused: bool) -> bytes:
    nodes = [
        {"id": f"node-{i:07d}", "label": f"label {i}", "metadata": {"note": "y" * 80}}
        for i in range(NODES)
    ]
    edges = [
        {"source": f"node-{i:07d}", "target": f"node-{(i * 7 + 1) % NODES:07d}"}
        for i in range(NODES)
    ]
    if refused:
        edges.append({"source": "node-0000000", "target": "missing"})
    return json.dumps({"nodes": nodes, "edges": edges}).encode()


def one_round(url: str, pid: int, body: bytes, concurrent: int) -> tuple[dict[int, int], float]:
    """Post ``body`` ``concurrent`` times at once; the answers by status and the peak RSS."""
    peak = 0.0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(pid))
            time.sleep(0.05)

    codes: dict[int, int] = {}
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(timeout=600) as client:
            r = client.post(
                url + "/api/graph/import",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        with lock:
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    posts = [threading.Thread(target=post) for _ in range(concurrent)]
    for t in posts:
        t.start()
    for t in posts:
        t.join()
    done.set()
    watcher.join()
    return codes, peak


def wait_for_physics(url: str) -> None:
    """Until the physics subsystem has compiled and runs (its compile holds memory of its own)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        health = httpx.get(url + "/api/health", timeout=10).json()
        if health["subsystems"].get("physics", {}).get("state") == "running":
            return
        time.sleep(0.5)
    raise SystemExit("physics did not start in 180 s")


def settled(pid: int) -> float:
    """The lowest RSS over the next 10 s (see the module's docstring)."""
    samples = []
    for _ in range(SETTLE_SAMPLES):
        samples.append(rss_mib(pid))
        time.sleep(0.5)
    return min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument(
        "--compare", action="store_true", help="also with glibc's own mmap threshold"
    )
    args = parser.parse_args()
    allocators = ("glibc default", "as shipped") if args.compare else ("as shipped",)
    print(
        "| mmap threshold | load | round | answers | RSS before (MiB) | peak | 8 s after "
        "| after / before | settled before | settled after | settled after / before |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for allocator in allocators:
        for kind in ("refused", "applied"):
            body = document(refused=kind == "refused")
            with tempfile.TemporaryDirectory() as tmp:
                default = allocator == "glibc default"
                proc, url = serve(Path(tmp), wrapper="_glibc_default.py" if default else None)
                try:
                    wait_for_physics(url)
                    # One import first, alone: the baseline then holds what a first import
                    # sets up for good (worker threads, the parser's and the heat kernel's
                    # code) and, when applied, the graph itself, which the service keeps.
                    one_round(url, proc.pid, body, 1)
                    time.sleep(8)
                    before = rss_mib(proc.pid)
                    before_settled = settled(proc.pid)
                    for n in range(args.rounds):
                        codes, peak = one_round(url, proc.pid, body, args.concurrent)
                        time.sleep(8)
                        after = rss_mib(proc.pid)
                        after_settled = settled(proc.pid)
                        answers = ", ".join(f"{c}x{s}" for s, c in sorted(codes.items()))
                        print(
                            f"| {allocator} | {args.concurrent} x {len(body) / 2**20:.0f} MiB "
                            f"{kind} | {n + 1} | {answers} | {before:.0f} | {peak:.0f} | "
                            f"{after:.0f} | {after / before:.2f} | {before_settled:.0f} | "
                            f"{after_settled:.0f} | {after_settled / before_settled:.2f} |",
                            flush=True,
                        )
                finally:
                    proc.terminate()
                    proc.wait(60)
    print("\ntarget: after / before <= 1.10")


if __name__ == "__main__":
    main()
