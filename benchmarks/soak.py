"""Soak: a real service under churn for minutes; does anything grow, fail or stop flowing?

Processes (loopback only): ``visionflow mcp-sim`` over TCP (the claude-flow simulator, ``--tick
0.2``: its autopilot spawns agents up to its swarm's 12 and retires idle ones, so agents appear
and leave all the time) and ``visionflow serve`` (port 0, its own state dir, no notes vault,
the simulator as its one MCP endpoint polled every 0.5 s, ``server.rate_limit = 0``: one client
address sends all the patches and imports here; started under ``_probe.py`` for its task
count). This process, for ``--minutes`` after a warm-up:

- 20 viewer slots over ``/wss`` (protocol 2), each connecting, reading every frame for 5-30 s,
  leaving and coming back;
- a graph import every minute: ``mode=replace`` with a new 2000-node document (new node ids,
  2 edges per node), so the graph's size stays the same while every node is replaced;
- ``PATCH /api/settings`` on a physics key (``physics.knowledge.repel_k``, alternating) every
  10 s, which also rewrites ``settings-overrides.toml``;
- ``GET /api/bots/data`` every 2 s, to see the agents come and go;
- the RSS once a minute under churn (the slope between the two quiet measurements).

Before and after the churn, at a quiet moment (no viewer connected, nothing in flight, 5 s
settled): the process's RSS, open fds (``/proc/PID/fd``), threads (``/proc/PID/status``) and
live asyncio tasks (``_probe.py``). Target (issue 15): each grows less than 5 %; every import
answered 200 and saved; frames delivered all along; no line with ERROR or Traceback in the
service's log; the service stops with 0 on SIGTERM.

    python benchmarks/soak.py [--minutes 10] [--viewers 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _procstat import open_fds, problem_lines, rss_mib, threads
from _serve import free_port, mcp_sim, serve, stop
from _viewers import Seen, watch
from loop_stall import document

NODES = 2000
JSON = {"content-type": "application/json"}


@dataclass
class Tally:
    sessions: int = 0
    refused: list[str] = field(default_factory=list)  # viewer sessions that ended in an error
    frames: int = 0
    bytes: int = 0
    imports: list[tuple[int, bool]] = field(default_factory=list)  # (status, saved)
    import_s: list[float] = field(default_factory=list)
    patches: list[int] = field(default_factory=list)
    agents_seen: set[str] = field(default_factory=set)
    agents_left: set[str] = field(default_factory=set)
    polls_failed: int = 0
    rss: list[float] = field(default_factory=list)  # MiB, every minute, under churn


def snapshot(pid: int, tmp: Path) -> dict[str, float]:
    lines = (tmp / "probe.jsonl").read_text().splitlines()
    tasks = json.loads(lines[-1]).get("tasks") if lines else None
    return {
        "rss MiB": rss_mib(pid),
        "open fds": open_fds(pid),
        "threads": threads(pid),
        "asyncio tasks": float(tasks) if tasks is not None else float("nan"),
    }


def scrape(text: str, name: str) -> float:
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


async def viewer_slot(ws_url: str, until: float, rng: random.Random, tally: Tally) -> None:
    await asyncio.sleep(rng.uniform(0, 3))
    while (left := until - time.monotonic()) > 1:
        seen = await watch(ws_url, min(rng.uniform(5, 30), left), seen=Seen())
        tally.sessions += 1
        tally.frames += seen.frames
        tally.bytes += seen.bytes
        if seen.error is not None:
            tally.refused.append(seen.error)
        await asyncio.sleep(rng.uniform(0, 1))


async def importer(client: httpx.AsyncClient, until: float, first: int, tally: Tally) -> None:
    k = 1
    while time.monotonic() + 60 < until:
        await asyncio.sleep(60)
        body = document(NODES, first + k * NODES, k)
        t0 = time.perf_counter()
        r = await client.post(
            "/api/graph/import?mode=replace", content=body, headers=JSON, timeout=120
        )
        tally.import_s.append(time.perf_counter() - t0)
        tally.imports.append((r.status_code, r.status_code == 200 and r.json().get("saved")))
        k += 1


async def patcher(client: httpx.AsyncClient, until: float, tally: Tally) -> None:
    i = 0
    while time.monotonic() + 10 < until:
        await asyncio.sleep(10)
        value = 1.0 + 0.25 * (i % 2)
        r = await client.patch(
            "/api/settings", json={"physics": {"knowledge": {"repel_k": value}}}, timeout=30
        )
        tally.patches.append(r.status_code)
        i += 1


async def agent_poller(client: httpx.AsyncClient, until: float, tally: Tally) -> None:
    live: set[str] = set()
    while time.monotonic() < until:
        try:
            r = await client.get("/api/bots/data", timeout=30)
            now = {a["agent_id"] for a in r.json()["agents"] if a.get("live")}
            tally.agents_left |= live - now
            tally.agents_seen |= now
            live = now
        except (httpx.HTTPError, ValueError, KeyError):
            tally.polls_failed += 1
        await asyncio.sleep(2)


async def rss_sampler(pid: int, until: float, tally: Tally) -> None:
    """RSS once a minute, 30 s after each import: the slope, not just the two ends."""
    await asyncio.sleep(30)
    while time.monotonic() < until:
        tally.rss.append(rss_mib(pid))
        await asyncio.sleep(min(60, max(0.0, until - time.monotonic())))


async def churn(url: str, pid: int, seconds: float, viewers: int, first: int, tally: Tally) -> None:
    until = time.monotonic() + seconds
    ws_url = url.replace("http", "ws", 1) + "/wss"
    rng = random.Random(seconds)
    async with httpx.AsyncClient(base_url=url) as client:
        await asyncio.gather(
            *(
                viewer_slot(ws_url, until, random.Random(rng.random()), tally)
                for _ in range(viewers)
            ),
            importer(client, until, first, tally),
            patcher(client, until, tally),
            agent_poller(client, until, tally),
            rss_sampler(pid, until, tally),
        )


async def main_async(minutes: float, viewers: int, warmup: float) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="vf-soak-"))
    sim_port = free_port()
    sim = mcp_sim(tmp, sim_port, "--tick", "0.2", "--seed", "1")
    proc = None
    try:
        proc, url = serve(
            tmp,
            "rate_limit = 0",
            extra=(
                '[knowledge]\npath = "none"\n[[mcp.endpoints]]\nname = "sim"\n'
                f'host = "127.0.0.1"\nport = {sim_port}\npoll_interval = 0.5\n'
            ),
            probe=True,
        )
        started = datetime.datetime.now(datetime.UTC)
        load0 = os.getloadavg()
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/api/graph/import", content=document(NODES, 0, 0), headers=JSON, timeout=120
            )
            r.raise_for_status()
        warm = Tally()
        await churn(url, proc.pid, warmup, viewers, 10 * NODES, warm)
        await asyncio.sleep(5)
        before = snapshot(proc.pid, tmp)
        async with httpx.AsyncClient(base_url=url) as client:
            metrics0 = (await client.get("/metrics")).text
        tally = Tally()
        t0 = time.monotonic()
        await churn(url, proc.pid, minutes * 60, viewers, 1000 * NODES, tally)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(5)
        after = snapshot(proc.pid, tmp)
        async with httpx.AsyncClient(base_url=url) as client:
            metrics1 = (await client.get("/metrics")).text
            health = (await client.get("/api/health")).json()
        load1 = os.getloadavg()
        code = stop(proc)
    finally:
        if proc is not None:
            stop(proc)
        stop(sim)
    problems = problem_lines(tmp / "serve.log")

    def delta(name: str) -> float:
        return scrape(metrics1, name) - scrape(metrics0, name)

    sent, dropped = delta("visionflow_frames_sent_total"), delta("visionflow_frames_dropped_total")
    closed = delta("visionflow_viewers_closed_total")
    ok_imports = sum(status == 200 and saved for status, saved in tally.imports)
    print(
        f"soak: {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min after {warmup:.0f} s warm-up;"
        f" {os.cpu_count()} CPUs; loadavg {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} before,"
        f" {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} after"
    )
    print(
        f"churn: {viewers} viewer slots, {tally.sessions} sessions; {len(tally.imports)} imports"
        f" (replace, {NODES} new nodes each); {len(tally.patches)} settings patches; agents:"
        f" {len(tally.agents_seen)} seen, {len(tally.agents_left)} left"
    )
    print(f"{'measure':<16} {'start':>9} {'end':>9} {'growth':>8}  target")
    failed = False
    for key in before:
        a, b = before[key], after[key]
        growth = (b - a) / a * 100 if a else float("nan")
        met = growth < 5
        failed |= not met
        print(f"{key:<16} {a:>9.1f} {b:>9.1f} {growth:>7.1f}%  < 5 %: {'met' if met else 'MISSED'}")
    rows = [
        ("frames delivered", f"{tally.frames}", f"{tally.frames / elapsed:.0f}/s to viewers"),
        ("frames sent", f"{sent:.0f}", f"server's count; {dropped:.0f} replaced unsent (dropped)"),
        ("viewer sessions", f"{tally.sessions}", f"{len(tally.refused)} ended in an error"),
        ("viewers closed", f"{closed:.0f}", "by the server, any code"),
        (
            "imports",
            f"{ok_imports}/{len(tally.imports)}",
            "200 and saved; "
            + (f"median {statistics.median(tally.import_s):.2f} s" if tally.import_s else ""),
        ),
        ("patches", f"{tally.patches.count(200)}/{len(tally.patches)}", "200"),
        ("agent polls", f"{tally.polls_failed}", "failed"),
        ("log problems", f"{len(problems)}", "lines with ERROR or Traceback: target 0"),
        ("exit code", f"{code}", "on SIGTERM: target 0"),
        ("health at end", health["status"], ""),
    ]
    for name, value, note in rows:
        print(f"{name:<16} {value:>9}  {note}")
    if tally.rss:
        print("rss MiB each minute under churn:", " ".join(f"{x:.0f}" for x in tally.rss))
    for line in problems[:20]:
        print("  log:", line)
    for error in sorted(set(tally.refused))[:10]:
        print("  viewer:", error, f"x{tally.refused.count(error)}")
    failed |= bool(problems) or code != 0 or ok_imports != len(tally.imports) or not tally.frames
    if not failed:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept for a look: {tmp}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of churn before 'start'")
    args = ap.parse_args(argv)
    if not 0 < args.minutes <= 120 or not 1 <= args.viewers <= 100:
        ap.error("--minutes in (0, 120], --viewers in [1, 100]: a bounded loopback benchmark")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main_async(args.minutes, args.viewers, args.warmup))
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
