"""Chaos: a real service while its MCP server dies, a viewer stalls, the disk fills and it is
stopped or killed in the middle of its work. What keeps working, what survives, how long back?

Every scenario starts real processes on loopback (``visionflow serve`` on port 0 with its own
state dir and no notes vault, ``visionflow mcp-sim`` over TCP) and prints its rows:

- ``mcp``: the simulator (the service's one MCP endpoint, polled every 0.5 s, the shipped
  ``[mcp]`` backoff and breaker) is SIGKILLed and restarted on the same port after 1, 5 and 20 s
  down. Measured: from the kill to health ``degraded``; from the simulator listening again to
  the endpoint ``running`` and health ``ok`` (the agents live again).
- ``stall``: a 5000-node layout kept moving, 5 viewers reading every frame and one that stops
  reading after 5 s (4 KiB receive buffer). Measured: the others' frame rate before and during
  the stall, how the server closed the stalled one and when.
- ``disk``: ``state.dir`` on a 2 MiB tmpfs (``mount -t tmpfs``, needs root; else the directory
  is replaced by a file while the service runs), filled up by a file. Measured: an import's
  answer (applied, ``saved: false``), a settings patch's, health going ``degraded`` with the
  layout's error, ``/healthz`` and frames meanwhile, and health back to ``ok`` once space is
  freed.
- ``signals``: SIGTERM during an import (one small enough to finish within the shutdown grace,
  one not), as a 150k-node import is answered (while the physics thread places it), during
  the save of ``graph.json`` and during a layout save; SIGKILL during each
  save; each time a restart on the same state dir. The saves are caught by watching the state
  dir for the atomic write's temporary file (``.graph.json.*.tmp``, ``.layout.json.*.tmp``).
  Measured: the import's answer, the exit code and time, the time to ``ready`` again, and what
  survived: every node of every import answered 200 with ``saved: true`` (the acknowledged
  ones) must be there; positions compared with the ``layout.json`` left on disk.

Targets (issue 15): nothing acknowledged is lost; the service keeps serving; no traceback or
ERROR line in its log; it always comes back.

    python benchmarks/chaos.py [--only mcp,stall,disk,signals]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _procstat import problem_lines
from _serve import free_port, mcp_sim, serve, stop
from _viewers import Seen, Stalled, stalled, watch
from loop_stall import document
from soak import scrape

JSON = {"content-type": "application/json"}
NO_VAULT = '[knowledge]\npath = "none"\n'
GRACE_S = 5.0  # server.shutdown_grace as shipped
EXIT_MARGIN_S = 0.5
Row = tuple[str, str, str]  # what, figure, verdict or note


def endpoint(port: int) -> str:
    return (
        f'[[mcp.endpoints]]\nname = "sim"\nhost = "127.0.0.1"\nport = {port}\npoll_interval = 0.5\n'
    )


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    try:
        r = await client.get("/api/health", timeout=10)
        body: dict[str, Any] = r.json()
        return body
    except (httpx.HTTPError, ValueError):
        return {}


async def wait_for(
    check: Callable[[], Any], deadline_s: float, every: float = 0.05
) -> float | None:
    """Seconds until ``await check()`` is true, or None after ``deadline_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if await check():
            return time.monotonic() - t0
        await asyncio.sleep(every)
    return None


def log_verdict(tmp: Path, names: list[str]) -> Row:
    problems = [line for name in names for line in problem_lines(tmp / name)]
    for line in problems[:10]:
        print("  log:", line)
    return ("log: ERROR/Traceback lines", str(len(problems)), "met" if not problems else "MISSED")


# ---------------------------------------------------------------------------------------- mcp


async def scenario_mcp(tmp: Path) -> list[Row]:
    port = free_port()
    sim = mcp_sim(tmp, port, "--tick", "0.5")
    proc, url = serve(tmp, extra=NO_VAULT + endpoint(port))
    rows: list[Row] = []
    try:
        async with httpx.AsyncClient(base_url=url) as client:

            async def mcp_ok() -> bool:
                h = await health(client)
                sub = h.get("subsystems", {}).get("mcp:sim", {})
                return bool(
                    h.get("status") == "ok"
                    and sub.get("state") == "running"
                    and sub.get("detail", {}).get("connected")
                )

            async def degraded() -> bool:
                return (await health(client)).get("status") == "degraded"

            async def live_agents() -> bool:
                r = await client.get("/api/bots/data", timeout=10)
                return any(a.get("live") for a in r.json()["agents"])

            if await wait_for(mcp_ok, 30) is None:
                raise SystemExit("the MCP endpoint never came up")
            for down in (1, 5, 20):
                sim.kill()
                sim.wait()
                went = await wait_for(degraded, 30)
                await asyncio.sleep(max(0.0, down - (went or 0)))
                sim = mcp_sim(tmp, port, "--tick", "0.5")
                back = await wait_for(mcp_ok, 90)
                agents = await wait_for(live_agents, 30) if back is not None else None
                rows.append(
                    (
                        f"MCP down {down} s: degraded after; back after",
                        f"{went:.2f} s; {back:.2f} s"
                        if went is not None and back is not None
                        else f"{went}; {back}",
                        "reconnected, agents live again"
                        if agents is not None
                        else "NOT reconnected in 90 s",
                    )
                )
    finally:
        code = stop(proc)
        stop(sim)
    rows.append(("exit code on SIGTERM", str(code), "met" if code == 0 else "MISSED"))
    rows.append(log_verdict(tmp, ["serve.log"]))
    return rows


# -------------------------------------------------------------------------------------- stall


async def scenario_stall(tmp: Path) -> list[Row]:
    moving = "[physics.knowledge]\ncooling_steps = 100000\n"  # stays warm: frames all along
    proc, url = serve(tmp, extra=NO_VAULT + moving)
    ws_url = url.replace("http", "ws", 1) + "/wss"
    rows: list[Row] = []
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/api/graph/import", content=document(5000, 0, 0), headers=JSON, timeout=120
            )
            r.raise_for_status()
            await asyncio.sleep(3)
            metrics0 = (await client.get("/metrics")).text
            t0 = time.monotonic()
            read_s, stall_s, total = 5.0, 20.0, 30.0
            seen = [Seen() for _ in range(5)]
            stuck = Stalled()
            closes: list[tuple[float, float]] = []

            async def closed_count() -> None:
                while time.monotonic() - t0 < total:
                    text = (await client.get("/metrics")).text
                    n = scrape(text, "visionflow_viewers_closed_total") - scrape(
                        metrics0, "visionflow_viewers_closed_total"
                    )
                    closes.append((time.monotonic() - t0, n))
                    await asyncio.sleep(0.25)

            await asyncio.gather(
                *(watch(ws_url, total, record=True, seen=s) for s in seen),
                stalled(ws_url, read_s, stall_s, stuck),
                closed_count(),
            )
            metrics1 = (await client.get("/metrics")).text
    finally:
        code = stop(proc)
    stall_at = stuck.connected_at + read_s

    def fps(s: Seen, a: float, b: float) -> float:
        return sum(a <= t < b for _, t in s.arrivals) / (b - a)

    before = [fps(s, t0 + 1, stall_at) for s in seen]
    during = [fps(s, stall_at, t0 + total - 1) for s in seen]
    closed_at = next((t for t, n in closes if n >= 1), None)
    codes = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^visionflow_viewers_closed_total{code="(\d+)"} (\S+)$', metrics1, re.M
        )
    }
    codes0 = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^visionflow_viewers_closed_total{code="(\d+)"} (\S+)$', metrics0, re.M
        )
    }
    by_code = {c: n - codes0.get(c, 0) for c, n in codes.items() if n - codes0.get(c, 0)}
    rows.append(
        (
            "5 viewers' fps before / during the stall",
            f"{statistics.median(before):.1f} / {statistics.median(during):.1f} "
            f"(min {min(during):.1f})",
            "met" if min(during) >= 0.8 * statistics.median(before) else "MISSED",
        )
    )
    rows.append(
        (
            "stalled viewer closed by the server",
            f"{closed_at - (stall_at - t0):.1f} s after it stopped reading"
            if closed_at is not None
            else "not closed",
            f"client saw: {stuck.ended}; server's count by code {by_code}",
        )
    )
    rows.append(
        (
            "other viewers' errors",
            str(sum(s.error is not None for s in seen)),
            "met" if all(s.error is None for s in seen) else "MISSED",
        )
    )
    rows.append(("exit code on SIGTERM", str(code), "met" if code == 0 else "MISSED"))
    rows.append(log_verdict(tmp, ["serve.log"]))
    return rows


# --------------------------------------------------------------------------------------- disk


async def scenario_disk(tmp: Path) -> list[Row]:
    state = tmp / "small-state"
    state.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)]
        done = await asyncio.to_thread(subprocess.run, mount, capture_output=True)
        mounted = done.returncode == 0
    how = "2 MiB tmpfs, filled" if mounted else "state dir replaced by a file"
    moving = "[physics.knowledge]\ncooling_steps = 100000\n"
    proc, url = serve(tmp, extra=NO_VAULT + moving, state_dir=state)
    ws_url = url.replace("http", "ws", 1) + "/wss"
    rows: list[Row] = []
    filler = state / "filler"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/api/graph/import", content=document(2000, 0, 0), headers=JSON, timeout=60
            )
            first = r.json()
            rows.append(
                ("import before the fill", f"{r.status_code} saved={first.get('saved')}", "")
            )
            t_fill = time.monotonic()
            if mounted:
                with filler.open("wb") as f, contextlib.suppress(OSError):  # every byte left
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            else:
                state.rename(tmp / "state-moved")
                state.write_text("not a directory\n")

            async def layout_degraded() -> bool:
                h = await health(client)
                layout = h.get("subsystems", {}).get("layout", {})
                return bool(
                    h.get("status") == "degraded" and layout.get("detail", {}).get("degraded")
                )

            went = await wait_for(layout_degraded, 60, 0.25)
            h = await health(client)
            layout_error = h.get("subsystems", {}).get("layout", {}).get("detail", {}).get("error")
            rows.append(
                (
                    "health degraded (layout) after the fill",
                    f"{went:.1f} s" if went is not None else "never (60 s)",
                    f"{str(layout_error)[:70]!r}",
                )
            )
            r = await client.post(
                "/api/graph/import", content=document(2000, 10_000, 1), headers=JSON, timeout=60
            )
            body = r.json()
            rows.append(
                (
                    "import while full",
                    f"{r.status_code} saved={body.get('saved')}",
                    "met: applied, saved false"
                    if r.status_code == 200 and not body.get("saved")
                    else "see figure",
                )
            )
            r = await client.patch(
                "/api/settings", json={"physics": {"knowledge": {"repel_k": 1.5}}}, timeout=30
            )
            rows.append(("settings patch while full", str(r.status_code), r.text[:80]))
            polls = []
            for _ in range(20):
                t = time.perf_counter()
                ok = (await client.get("/healthz", timeout=10)).status_code == 200
                polls.append((ok, time.perf_counter() - t))
            frames = await watch(ws_url, 3)
            rows.append(
                (
                    "/healthz and a viewer while full",
                    f"{sum(ok for ok, _ in polls)}/20 ok; {frames.frames} frames in 3 s",
                    "met" if all(ok for ok, _ in polls) and frames.frames else "MISSED",
                )
            )
            if mounted:
                filler.unlink()
            else:
                state.unlink()
                (tmp / "state-moved").rename(state)
            t_free = time.monotonic()

            async def healthy() -> bool:
                return (await health(client)).get("status") == "ok"

            back = await wait_for(healthy, 330, 0.5)
            rows.append(
                (
                    "health ok after space freed",
                    f"{back:.1f} s" if back is not None else "never (330 s)",
                    "the layout saver's retry backoff (state.save_interval doubling, cap 300 s)",
                )
            )
            del t_fill, t_free
    finally:
        code = stop(proc)
        if mounted:
            await asyncio.to_thread(subprocess.run, ["umount", str(state)], check=False)
    rows.append(("exit code on SIGTERM", str(code), "met" if code == 0 else "MISSED"))
    rows.append(log_verdict(tmp, ["serve.log"]))
    return [(f"[{how}] {a}", b, c) for a, b, c in rows]


# ------------------------------------------------------------------------------------ signals


async def knowledge(client: httpx.AsyncClient) -> dict[str, list[float] | None]:
    """Every knowledge node's key and position."""
    out: dict[str, list[float] | None] = {}
    offset = 0
    while True:
        r = await client.get(
            "/api/graph/data",
            params={"kind": "knowledge", "offset": offset, "limit": 100000},
            timeout=120,
        )
        r.raise_for_status()
        page = r.json()
        for node in page["nodes"]:
            out[node["key"]] = node["position"]
        offset += len(page["nodes"])
        if not page["nodes"] or offset >= page["node_count"]:
            return out


def saved_positions(state: Path) -> dict[str, list[float]]:
    try:
        data = json.loads((state / "layout.json").read_text())
    except (OSError, ValueError):
        return {}
    return {n["id"]: n["p"] for n in data.get("nodes", []) if n.get("kind") == "knowledge"}


async def watch_tmp(state: Path, prefix: str, deadline_s: float) -> float | None:
    """When a temporary file of an atomic write of ``prefix`` shows in ``state``."""

    def poll() -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < deadline_s:
            with contextlib.suppress(OSError):
                for name in os.listdir(state):
                    if name.startswith(prefix) and name.endswith(".tmp"):
                        return time.monotonic()
            time.sleep(0.0005)
        return None

    return await asyncio.to_thread(poll)


class Signals:
    """One state dir; each case stops or kills the service and starts it again on it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.acked: set[str] = set()  # keys of nodes in imports answered 200, saved
        self.next_first = 0
        self.rows: list[Row] = []
        self.logs: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> float:
        name = f"serve{len(self.logs)}.log"
        t0 = time.monotonic()
        self.proc, self.url = serve(self.tmp, extra=NO_VAULT, log_name=name)
        self.logs.append(name)
        return time.monotonic() - t0

    async def layout_saved(self) -> bool:
        return bool(saved_positions(self.state))

    def doc(self, n: int) -> tuple[bytes, set[str]]:
        first = self.next_first
        self.next_first += n
        return document(n, first, first), {f"n{i}" for i in range(first, first + n)}

    async def imported(self, client: httpx.AsyncClient, n: int) -> None:
        body, keys = self.doc(n)
        r = await client.post("/api/graph/import", content=body, headers=JSON, timeout=300)
        r.raise_for_status()
        if r.json().get("saved"):
            self.acked |= keys

    async def case(self, name: str, n: int, sig: signal.Signals, when: str) -> None:
        """Import ``n`` nodes; send ``sig`` at ``when``: ``import+S`` (S s after the request was
        sent), ``answered`` (as soon as it is answered: the multilevel placement of the new
        nodes and the first steps run then), ``graph`` or ``layout`` (that file's save seen in
        progress)."""
        assert self.proc is not None
        body, keys = self.doc(n)
        answer: list[str] = []
        async with httpx.AsyncClient(base_url=self.url) as client:

            async def send() -> None:
                sent_at = time.monotonic()
                try:
                    r = await client.post(
                        "/api/graph/import", content=body, headers=JSON, timeout=300
                    )
                    saved = r.status_code == 200 and r.json().get("saved")
                    answer.append(
                        f"{r.status_code}{' saved' if saved else ''} at "
                        f"{time.monotonic() - sent_at:.1f} s"
                    )
                    if saved:
                        self.acked |= keys
                except httpx.HTTPError as exc:
                    answer.append(f"{type(exc).__name__} at {time.monotonic() - sent_at:.1f} s")

            task = asyncio.create_task(send())
            if when.startswith("import+"):
                await asyncio.sleep(float(when[7:]))
                seen: float | None = time.monotonic()
            elif when == "answered":  # the step that places the new nodes runs now
                await task
                seen = time.monotonic()
            else:
                seen = await watch_tmp(self.state, f".{when}.json.", 120)
            t_sig = time.monotonic()
            if seen is not None:
                self.proc.send_signal(sig)
            code = await asyncio.to_thread(self.proc.wait, 60)
            exit_s = time.monotonic() - t_sig
            await task
        on_disk = saved_positions(self.state)
        ready_s = self.start()
        async with httpx.AsyncClient(base_url=self.url) as client:
            nodes = await knowledge(client)
        lost = self.acked - nodes.keys()
        got_new = len(keys & nodes.keys())
        same = sum(
            1
            for key, p in on_disk.items()
            if nodes.get(key) is not None
            and max(abs(a - b) for a, b in zip(p, nodes[key] or p, strict=True)) < 1e-3
        )
        # the grace, and a margin for the process's end and this script noticing it
        slow = sig == signal.SIGTERM and exit_s > GRACE_S + EXIT_MARGIN_S
        self.rows.append(
            (
                f"{sig.name} {name}",
                f"answer {answer[0] if answer else '-'}; exit {code} in {exit_s:.1f} s; "
                f"ready in {ready_s:.1f} s",
                f"acked lost {len(lost)}/{len(self.acked)}; this import's nodes there "
                f"{got_new}/{len(keys)}; positions as in layout.json {same}/{len(on_disk)}"
                + ("" if seen is not None else "; SAVE NOT SEEN, no signal sent")
                + (
                    f"; exit MISSED: over the {GRACE_S:g} s grace + {EXIT_MARGIN_S:g} s"
                    if slow
                    else ""
                ),
            )
        )

    async def run(self) -> list[Row]:
        self.start()
        try:
            async with httpx.AsyncClient(base_url=self.url) as client:
                await self.imported(client, 20_000)
            # the kernels compiled, the layout moved and was saved once: each case then has a
            # layout.json to compare with
            if await wait_for(self.layout_saved, 120, 0.5) is None:
                raise SystemExit("no layout.json after 120 s")
            await self.case(
                "during an import of 20k (fits in the grace)", 20_000, signal.SIGTERM, "import+0.2"
            )
            await self.case("during an import of 150k", 150_000, signal.SIGTERM, "import+0.5")
            await self.case(
                "as a 150k import is answered (its placement runs)",
                150_000,
                signal.SIGTERM,
                "answered",
            )
            await self.case("during the graph.json save", 50_000, signal.SIGTERM, "graph")
            await self.case("during a layout.json save", 20_000, signal.SIGTERM, "layout")
            await self.case("during the graph.json save", 50_000, signal.SIGKILL, "graph")
            await self.case("during a layout.json save", 20_000, signal.SIGKILL, "layout")
        finally:
            code = stop(self.proc) if self.proc is not None else None
        self.rows.append(
            ("exit code of the last start on SIGTERM", str(code), "met" if code == 0 else "MISSED")
        )
        lost = sum(
            int(r[2].split("acked lost ")[1].split("/")[0])
            for r in self.rows
            if "acked lost" in r[2]
        )
        self.rows.append(
            ("acknowledged nodes lost, all cases", str(lost), "met" if lost == 0 else "MISSED")
        )
        self.rows.append(log_verdict(self.tmp, self.logs))
        return self.rows


async def scenario_signals(tmp: Path) -> list[Row]:
    return await Signals(tmp).run()


SCENARIOS = {
    "mcp": scenario_mcp,
    "stall": scenario_stall,
    "disk": scenario_disk,
    "signals": scenario_signals,
}


async def main_async(only: list[str], keep: bool) -> int:
    started = datetime.datetime.now(datetime.UTC)
    load0 = os.getloadavg()
    results: list[tuple[str, list[Row]]] = []
    for name in only:
        tmp = Path(tempfile.mkdtemp(prefix=f"vf-chaos-{name}-"))
        t0 = time.monotonic()
        rows = await SCENARIOS[name](tmp)
        results.append((f"{name} ({time.monotonic() - t0:.0f} s)", rows))
        if not keep and not any("MISSED" in r[2] for r in rows):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"{name}: kept: {tmp}")
    load1 = os.getloadavg()
    print(
        f"chaos: {started:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; loadavg "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} before, "
        f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} after"
    )
    for title, rows in results:
        print(f"\n{title}")
        for what, figure, note in rows:
            print(f"  {what:<52} {figure:<40} {note}")
    return 1 if any("MISSED" in r[2] for _, rows in results for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--keep", action="store_true", help="keep every scenario's dir and logs")
    args = ap.parse_args(argv)
    only = args.only.split(",")
    unknown = [n for n in only if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {unknown[0]!r}: one of {', '.join(SCENARIOS)}")
    return asyncio.run(main_async(only, args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
