"""Slow clients against the header timeout (docs/operations.md section 10): how long a connection
that drips its headers a byte a second lives, and whether ``/healthz`` keeps answering.

A real ``visionflow serve`` (port 0, a temporary state directory) in its own process, once per
``server.header_timeout`` (the default 5 s is the baseline, same run). Against each, at once:
``--conns`` HTTP/1.1 connections dripping a request line and headers, as many cleartext HTTP/2
connections (prior knowledge: the preface, then a HEADERS frame a byte a second), and a poller
of ``GET /healthz`` every 100 ms. Each connection's life is from connecting to the server's
close. Bounded: loopback only, every wait has a deadline (a connection never cut counts as the
deadline, shown as "never").

    .venv/bin/python benchmarks/slowloris.py [--timeouts 5,2] [--conns 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _serve import serve

H1 = (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200)
H2 = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"),
    bytes.fromhex("004000010400000001") + b"\x00" * 200,
)
EXTRA_S = 20.0  # how long past the timeout a connection may live before it counts as never cut


async def drip(host: str, port: int, first: bytes, body: bytes, limit: float) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    closed = asyncio.Event()

    async def read() -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        closed.set()

    task = asyncio.create_task(read())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                if first:
                    writer.write(first)
                for byte in body:
                    if closed.is_set():
                        break
                    writer.write(bytes([byte]))
                    with contextlib.suppress(OSError):
                        await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), 1.0)
                await closed.wait()
        return time.perf_counter() - start if closed.is_set() else float("inf")
    finally:
        task.cancel()
        writer.close()


async def poll(client: httpx.AsyncClient, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            r = await client.get("/healthz", timeout=30)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append((time.perf_counter() - t0) * 1000 if ok else 30_000.0)
        await asyncio.sleep(0.1)
    return latencies


def summary(values: list[float]) -> str:
    if any(v == float("inf") for v in values):
        return f"{'never':>8} {'never':>8} {'never':>8}"
    values = sorted(values)
    return f"{values[0]:>8.2f} {statistics.median(values):>8.2f} {values[-1]:>8.2f}"


async def one(header_timeout: float, conns: int) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="vf-slowloris-"))
    proc, url = serve(tmp, f"header_timeout = {header_timeout}")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            stop = asyncio.Event()
            poller = asyncio.create_task(poll(client, stop))
            limit = header_timeout + EXTRA_S
            h1 = [drip(host, int(port), *H1, limit) for _ in range(conns)]
            h2 = [drip(host, int(port), *H2, limit) for _ in range(conns)]
            lives = await asyncio.gather(*h1, *h2)
            stop.set()
            health = sorted(await poller)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    p99 = health[min(len(health) - 1, int(len(health) * 0.99))]
    note = (
        f"/healthz: {len(health)} polls, p50 {statistics.median(health):.1f} ms, p99 {p99:.1f} ms"
    )
    label = f"{header_timeout:g} s" + (" (default)" if header_timeout == 5.0 else "")
    return [
        f"{label:<14} HTTP/1.1 {conns:>5} {summary(lives[:conns])}  {note}",
        f"{label:<14} HTTP/2   {conns:>5} {summary(lives[conns:])}",
    ]


async def main_async(timeouts: list[float], conns: int) -> None:
    rows = []
    for timeout in timeouts:
        rows += await one(timeout, conns)
    print(
        f"{'header_timeout':<14} {'protocol':<8} {'conns':>5} {'min s':>8} {'median':>8} "
        f"{'max s':>8}  (life of a dripping connection)"
    )
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeouts", default="5,2", help="header_timeout values, s")
    parser.add_argument("--conns", type=int, default=50, help="connections per protocol")
    args = parser.parse_args()
    timeouts = [float(t) for t in args.timeouts.split(",")]
    asyncio.run(main_async(timeouts, args.conns))


if __name__ == "__main__":
    main()
