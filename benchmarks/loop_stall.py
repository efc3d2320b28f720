"""Does big work stall the event loop? ``/healthz`` latency while the service imports and exports.

A real ``visionflow serve`` (port 0, a temporary state directory, the shipped settings but for
those two) in its own process; this process polls ``GET /healthz`` every 10 ms over loopback
and records each answer's latency, while it drives one scenario at a time:

- ``idle``: nothing else (the baseline, same run);
- ``import N``: a merge import of an N-node random graph (2 edges per node) into the moving
  layout of the previous imports, while one viewer drags a node 30 times a second and another
  reads the position stream (the drag, the layout saver, the engine's sync and the import
  all want the graph);
- ``export x2``: two clients fetch ``GET /api/graph/export`` in a loop for 10 s;
- ``agents N``: an MCP server (scripted here, over loopback TCP, polled every 0.5 s) lists N
  agents, a seventh of them with a new status at every poll, for 10 s: at 10k (the default
  ``mcp.max_agents_per_endpoint``) every poll is parsed, diffed and sent to viewers; at 60k the
  reply (~15 MB) is over ``mcp.max_line_bytes`` and the link is refused and retried.

Target (issue: the event loop never waits): ``/healthz`` p99 under 100 ms in every scenario.
A request that gets no answer within 30 s counts as 30 s. Bounded: loopback only, one
server, at most a few hundred thousand requests, every wait has a deadline.

    .venv/bin/python benchmarks/loop_stall.py [--sizes 100000,300000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import websockets
from _serve import serve

from visionflow.protocol.frames import RECORD_DTYPE

POLL_S = 0.01
TIMEOUT_S = 30.0
JSON = {"content-type": "application/json"}


def document(n: int, first: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    ids = np.arange(first, first + n)
    src = np.repeat(ids[1:], 2)
    dst = first + (rng.random(src.size) * (src - first)).astype(np.int64)  # an earlier node
    return json.dumps(
        {
            "nodes": [{"id": f"n{i}"} for i in ids.tolist()],
            "edges": [
                {"source": f"n{a}", "target": f"n{b}"}
                for a, b in zip(src.tolist(), dst.tolist(), strict=True)
            ],
        }
    ).encode()


class Poller:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.samples: list[tuple[float, float]] = []  # (start, latency)

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            try:
                await self.client.get("/healthz", timeout=TIMEOUT_S)
                latency = time.perf_counter() - t0
            except httpx.TimeoutException:
                latency = TIMEOUT_S
            self.samples.append((t0, latency))
            await asyncio.sleep(max(0.0, POLL_S - latency))

    def window(self, t0: float, t1: float) -> list[float]:
        return [lat for start, lat in self.samples if t0 <= start < t1]


async def dragger(ws_url: str, node_id: int, stop: asyncio.Event) -> int:
    sent = 0
    # not subscribed: it never reads, and the server drops a viewer that does not read frames
    async with websockets.connect(ws_url + "?subscribe=false", open_timeout=30) as ws:
        rec = np.zeros(1, RECORD_DTYPE)
        rec["id"] = node_id
        while not stop.is_set():
            rec["pos"] = (np.sin(sent / 10) * 50, np.cos(sent / 10) * 50, 0.0)
            await ws.send(rec.tobytes())
            sent += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / 30)
    return sent


async def reader(ws_url: str, stop: asyncio.Event) -> int:
    frames = 0
    async with websockets.connect(ws_url, max_size=None, open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "requestInitialData"}))
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
                frames += 1
    return frames


async def exporter(client: httpx.AsyncClient, until: float) -> int:
    count = 0
    while time.perf_counter() < until:
        r = await client.get("/api/graph/export", timeout=120)
        r.raise_for_status()
        count += 1
    return count


def row(name: str, lat: list[float], note: str) -> str:
    a = np.asarray(lat) * 1e3
    if a.size == 0:
        return f"{name:<16} (no samples) {note}"
    return (
        f"{name:<16} {a.size:>6} {statistics.median(a):>8.1f} {np.percentile(a, 99):>8.1f} "
        f"{a.max():>8.1f}  {note}"
    )


class AgentServer:
    """A claude-flow-like MCP server (JSON-RPC lines over TCP) whose agent list the benchmark
    sets: empty until a scenario asks for ``count`` agents, then changing at every poll."""

    def __init__(self) -> None:
        self.count = 0
        self.polls = 0
        # the reply's result for each count and poll % 7, made before a scenario (in a thread:
        # building a 60k-agent reply here would stall this process's own /healthz poller)
        self._results: dict[int, list[bytes]] = {0: [self._result(0, 0)] * 7}

    async def prepare(self, count: int) -> None:
        self._results[count] = await asyncio.to_thread(
            lambda: [self._result(count, turn) for turn in range(7)]
        )

    async def start(self) -> int:
        server = await asyncio.start_server(self._session, "127.0.0.1", 0, limit=1 << 20)
        self._server = server
        return int(server.sockets[0].getsockname()[1])

    @staticmethod
    def _result(count: int, turn: int) -> bytes:
        agents = [
            {
                "id": f"agent_{i}",
                "name": f"coder-{i}",
                "type": "coder",
                "status": "busy" if (i + turn) % 7 == 0 else "active",
                "capabilities": ["code", "test"],
                "swarmId": f"swarm_{i % 20}",
                "metadata": {"currentTask": f"task_{i % 500}"},
            }
            for i in range(count)
        ]
        text = json.dumps({"success": True, "agents": agents})
        return json.dumps({"content": [{"type": "text", "text": text}]}).encode()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tool = {"name": "agent_list", "inputSchema": {"type": "object", "properties": {}}}
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while line := await reader.readline():
                msg = json.loads(line)
                if "id" not in msg:
                    continue  # a notification
                method, result = msg.get("method"), None
                head = b'{"jsonrpc": "2.0", "id": ' + json.dumps(msg["id"]).encode()
                if method == "tools/call":
                    self.polls += 1
                    answer = self._results[self.count][self.polls % 7]
                    writer.write(head + b', "result": ' + answer + b"}\n")
                    await writer.drain()
                    continue
                if method == "initialize":
                    result = {
                        "protocolVersion": msg["params"]["protocolVersion"],
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "claude-flow", "version": "2.7.47"},
                    }
                elif method == "tools/list":
                    result = {"tools": [tool]}
                reply: dict[str, object] = {"jsonrpc": "2.0", "id": msg["id"]}
                if result is None:
                    reply["error"] = {"code": -32601, "message": f"no method {method}"}
                else:
                    reply["result"] = result
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        writer.close()


async def main_async(sizes: list[int], agent_counts: list[int]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="vf-stall-"))
    agent_server = AgentServer()
    mcp_port = await agent_server.start()
    endpoint = f'[[mcp.endpoints]]\nname = "swarm"\nport = {mcp_port}\npoll_interval = 0.5\n'
    proc, url = serve(tmp, extra=endpoint)
    ws_url = url.replace("http", "ws", 1) + "/wss"
    rows = []
    try:
        async with (
            httpx.AsyncClient(base_url=url) as client,
            httpx.AsyncClient(base_url=url) as other,
        ):
            poller = Poller(client)
            task = asyncio.create_task(poller.run())
            t0 = time.perf_counter()
            await asyncio.sleep(5)
            rows.append(row("idle", poller.window(t0, time.perf_counter()), "5 s"))

            r = await other.post(
                "/api/graph/import", content=document(10, 0, 0), headers=JSON, timeout=60
            )
            r.raise_for_status()
            page = (await other.get("/api/graph/data?limit=1")).json()
            drag_id = int(page["nodes"][0]["id"])
            first = 10
            for n in sizes:
                stop = asyncio.Event()
                side = [
                    asyncio.create_task(dragger(ws_url, drag_id, stop)),
                    asyncio.create_task(reader(ws_url, stop)),
                ]
                body = document(n, first, n)
                first += n
                await asyncio.sleep(1)
                t0 = time.perf_counter()
                r = await other.post("/api/graph/import", content=body, headers=JSON, timeout=600)
                r.raise_for_status()
                took = time.perf_counter() - t0
                await asyncio.sleep(3)  # the engine's rebuild and placement come after
                stop.set()
                drags, frames = await asyncio.gather(*side)
                rows.append(
                    row(
                        f"import {n // 1000}k",
                        poller.window(t0, time.perf_counter()),
                        f"import answered in {took:.1f} s; {drags} drags, {frames} frames",
                    )
                )
            t0 = time.perf_counter()
            until = t0 + 10
            async with httpx.AsyncClient(base_url=url) as a, httpx.AsyncClient(base_url=url) as b:
                counts = await asyncio.gather(exporter(a, until), exporter(b, until))
            rows.append(
                row("export x2", poller.window(t0, time.perf_counter()), f"{sum(counts)} exports")
            )
            for count in agent_counts:
                stop = asyncio.Event()
                watcher = asyncio.create_task(reader(ws_url, stop))
                await agent_server.prepare(count)
                polls = agent_server.polls
                agent_server.count = count
                t0 = time.perf_counter()
                await asyncio.sleep(10)
                rows.append(
                    row(
                        f"agents {count // 1000}k",
                        poller.window(t0, time.perf_counter()),
                        f"{agent_server.polls - polls} polls answered",
                    )
                )
                agent_server.count = 0
                stop.set()
                await watcher
                await asyncio.sleep(3)
            task.cancel()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"loadavg {os.getloadavg()[0]:.2f}; /healthz every {POLL_S * 1e3:.0f} ms; ms:")
    print(f"{'scenario':<16} {'n':>6} {'p50':>8} {'p99':>8} {'max':>8}")
    for line in rows:
        print(line)
    print("target: p99 < 100 ms in every scenario")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument("--agents", default="10000,60000", help="agent list sizes ('' for none)")
    args = ap.parse_args(argv)
    agents = [int(x) for x in args.agents.split(",") if x]
    asyncio.run(main_async([int(x) for x in args.sizes.split(",")], agents))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
