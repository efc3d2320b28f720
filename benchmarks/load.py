"""Load: how many viewers, and how many read requests a second, while the layout runs?

A real ``visionflow serve`` (port 0, its own state dir, no notes vault) with ``visionflow
mcp-sim`` as its MCP endpoint (agents for ``/api/bots/data``) and a ``--nodes`` graph imported
whose layout never rests (``physics.knowledge.cooling_steps = 100000``: every frame carries
moving nodes). Settings changed for the benchmark, and why: ``websocket.max_connections_per_client
= 1000`` (every viewer here comes from 127.0.0.1; the shipped 32 would refuse the 33rd) and
``websocket.max_connections = 1000``. ``server.rate_limit`` is left as shipped: it counts
mutating requests only, and this benchmark sends reads.

1. Viewers: steps of N viewers (protocol 2, the default 30 Hz, each reading every frame) in
   ``_viewers.py`` processes of at most 50 viewers each, 3 s warm-up, then an 8 s window.
   Per step: frames per second per viewer (min, median), lag (how long after the first viewer
   that got a tick the others got it: there is no publish time outside the server, so this is
   the spread between viewers, not the time from the physics step), the service's CPU in all
   (``/proc``: all its threads, physics included) and what each viewer adds to it (over the
   same service with no viewer, measured first), the viewers' processes' CPU, and the physics
   steps per second (``/api/health``; 60 while the physics keeps up). The steps go on past
   the first that misses the target, to show the slope, until the median viewer gets under
   20 fps, a viewer fails, or 200 viewers.
2. REST: ``GET`` of each read route by ``--clients`` keep-alive connections for 8 s (with no
   viewer connected, the layout moving): requests per second, latency p50/p99, the service's
   CPU. ``/healthz`` (no work) is the baseline of the same run.

Targets (issue 15 asks for the figures; these are ours): a viewer step passes when the median
viewer gets at least 27 fps (90 % of 30) and p99 lag is under 100 ms; no REST error.
The machine has 2 cores: the service, its physics threads and the clients share them.

    python benchmarks/load.py [--nodes 5000] [--steps 10,25,50,100,150,200] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _procstat import cpu_s
from _serve import free_port, mcp_sim, serve, stop
from chaos import JSON, NO_VAULT, endpoint
from fanout import percentile
from loop_stall import document

WARMUP_S, WINDOW_S = 3.0, 8.0
PER_PROCESS = 50
FPS_TARGET, LAG_TARGET_MS = 27.0, 100.0
FPS_FLOOR = 20.0  # the steps go on past the target's limit, to show how it degrades, until this
ROUTES = [
    "/healthz",
    "/api/health",
    "/api/bots/data",
    "/api/graph/data?limit=100",
    "/api/graph/data",  # the default page: 10000 nodes, i.e. the whole graph here
]


def physics_tick(url: str) -> int:
    body = httpx.get(url + "/api/health", timeout=30).json()
    return int(body["subsystems"]["physics"]["detail"]["tick"])


def viewer_step(url: str, pid: int, n: int, idle: float) -> dict[str, float]:
    ws_url = url.replace("http", "ws", 1) + "/wss"
    sizes = [PER_PROCESS] * (n // PER_PROCESS) + ([n % PER_PROCESS] if n % PER_PROCESS else [])
    script = str(Path(__file__).with_name("_viewers.py"))
    children = [
        subprocess.Popen(
            [sys.executable, script, ws_url, str(k), str(WARMUP_S + 0.02 * k), str(WINDOW_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in sizes
    ]
    time.sleep(WARMUP_S + 0.02 * max(sizes))
    cpu0, t0, ticks0 = cpu_s(pid), time.monotonic(), physics_tick(url)
    time.sleep(WINDOW_S)
    cpu1, t1, ticks1 = cpu_s(pid), time.monotonic(), physics_tick(url)
    results = []
    for child in children:
        out, _ = child.communicate(timeout=WINDOW_S + 90)
        results.append(json.loads(out))
    viewers = [v for r in results for v in r["viewers"]]
    first: dict[int, float] = {}
    for v in viewers:
        for seq, t in v["arrivals"]:
            first[seq] = min(first.get(seq, t), t)
    lags = [(t - first[seq]) * 1e3 for v in viewers for seq, t in v["arrivals"]]
    fps = [
        sum(r["window"][0] <= t < r["window"][1] for _, t in v["arrivals"]) / WINDOW_S
        for r in results
        for v in r["viewers"]
    ]
    server = (cpu1 - cpu0) / (t1 - t0)
    return {
        "viewers": n,
        "ticks": (ticks1 - ticks0) / (t1 - t0),
        "fps_min": min(fps),
        "fps_med": statistics.median(fps),
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "server_cpu": server,
        "per_viewer": (server - idle) / n,
        "clients_cpu": sum(r["cpu_s"] for r in results) / WINDOW_S,
        "errors": sum(v["error"] is not None for v in viewers),
    }


async def rest_route(url: str, pid: int, route: str, clients: int) -> dict[str, float | str]:
    latencies: list[float] = []
    errors = 0
    until = time.monotonic() + WINDOW_S

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < until:
            t = time.perf_counter()
            try:
                r = await client.get(route, timeout=30)
                errors += r.status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        await client.get(route)  # warm (first page build, connections)
        cpu0, own0, t0 = cpu_s(pid), time.process_time(), time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        cpu1, own1, t1 = cpu_s(pid), time.process_time(), time.monotonic()
    ms = [x * 1e3 for x in latencies]
    return {
        "route": route,
        "rps": len(latencies) / (t1 - t0),
        "p50": percentile(ms, 0.5),
        "p99": percentile(ms, 0.99),
        "server_cpu": (cpu1 - cpu0) / (t1 - t0),
        "client_cpu": (own1 - own0) / (t1 - t0),
        "errors": errors,
    }


async def main_async(nodes: int, steps: list[int], clients: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="vf-load-"))
    sim_port = free_port()
    sim = mcp_sim(tmp, sim_port, "--tick", "0.5")
    proc = None
    extra = (
        NO_VAULT
        + "[websocket]\nmax_connections = 1000\nmax_connections_per_client = 1000\n"
        + "[physics.knowledge]\ncooling_steps = 100000\n"
        + endpoint(sim_port)
    )
    started = datetime.datetime.now(datetime.UTC)
    load0 = os.getloadavg()
    try:
        proc, url = serve(tmp, extra=extra)
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/api/graph/import", content=document(nodes, 0, 0), headers=JSON, timeout=120
            )
            r.raise_for_status()
        await asyncio.sleep(5)  # the kernels compile, the placement is done
        idle0, t0 = cpu_s(proc.pid), time.monotonic()
        await asyncio.sleep(WINDOW_S)
        idle = (cpu_s(proc.pid) - idle0) / (time.monotonic() - t0)
        view_rows = []
        for n in steps:
            row = await asyncio.to_thread(viewer_step, url, proc.pid, n, idle)
            view_rows.append(row)
            if row["fps_med"] < FPS_FLOOR or row["errors"]:
                break
        rest_rows = [await rest_route(url, proc.pid, route, clients) for route in ROUTES]
        load1 = os.getloadavg()
    finally:
        code = stop(proc) if proc is not None else None
        stop(sim)
    print(
        f"load: {started:%Y-%m-%d %H:%M} UTC; {nodes} nodes moving (cooling_steps 100000), 60 Hz"
        f" physics; {os.cpu_count()} CPUs; loadavg {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
        f" before, {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} after"
    )
    print(f"service CPU with no viewer (layout running): {idle * 100:.0f} % of a core")
    print(
        f"{'viewers':>7} {'steps/s':>7} {'fps min':>7} {'median':>6} {'lag p50':>7} {'p99 ms':>6} "
        f"{'svc CPU':>7} {'+/viewer':>10} {'viewers CPU':>11} {'errors':>6}  target"
    )
    for v in view_rows:
        met = v["fps_med"] >= FPS_TARGET and v["lag_p99"] <= LAG_TARGET_MS
        print(
            f"{v['viewers']:>7} {v['ticks']:>7.1f} {v['fps_min']:>7.1f} {v['fps_med']:>6.1f} "
            f"{v['lag_p50']:>7.1f} "
            f"{v['lag_p99']:>6.1f} {v['server_cpu'] * 100:>6.0f}% "
            f"{v['per_viewer'] * 100:>9.2f}% {v['clients_cpu'] * 100:>10.0f}% "
            f"{v['errors']:>6.0f}  {'met' if met else 'MISSED'}"
        )
    print(f"\nREST, {clients} keep-alive clients, {WINDOW_S:g} s per route, layout moving:")
    print(
        f"{'route':<26} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'svc CPU':>7} "
        f"{'client CPU':>10} {'errors':>6}"
    )
    for q in rest_rows:
        print(
            f"{q['route']:<26} {q['rps']:>7.0f} {q['p50']:>7.1f} {q['p99']:>7.1f} "
            f"{float(q['server_cpu']) * 100:>6.0f}% {float(q['client_cpu']) * 100:>9.0f}% "
            f"{q['errors']:>6}"
        )
    print(f"exit code on SIGTERM: {code}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if code == 0 and not any(q["errors"] for q in rest_rows) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--steps", default="10,25,50,100,150,200")
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args(argv)
    steps = [int(x) for x in args.steps.split(",")]
    if max(steps) > 200 or args.clients > 64 or args.nodes > 200_000:
        ap.error("at most 200 viewers, 64 clients, 200k nodes: a loopback benchmark")
    return asyncio.run(main_async(args.nodes, steps, args.clients))


if __name__ == "__main__":
    raise SystemExit(main())
