"""What one poll costs over each MCP transport: TCP lines (the baseline) and Streamable HTTP with
JSON answers and with event-stream answers, against the simulator over loopback.

One poll is what the endpoint watcher does each ``poll_interval`` for an orchestrator:
``agent_list`` then ``swarm_status`` (two ``tools/call``). The three transports take turns in
rounds (so each sees the same load), each round timing ``--polls`` polls on one open session;
the table gives the median per poll over the rounds and the ratio to TCP. Also the handshake
(connect, ``initialize``, ``tools/list``) of each, median over the rounds.

    .venv/bin/python benchmarks/mcp_transports.py [--rounds 7] [--polls 200] [--agents 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
from loguru import logger

from visionflow.mcp.client import McpClient, connect_mcp
from visionflow.mcp.http import connect_http_mcp
from visionflow.mcpsim.http import HttpSimulator, serve_asgi
from visionflow.mcpsim.server import Simulator

Opener = Callable[[], AbstractAsyncContextManager[McpClient]]


@asynccontextmanager
async def servers(agents: int) -> AsyncIterator[dict[str, Opener]]:
    sim = Simulator(flavor="v2", tick_interval=0, autopilot=False)
    for i in range(agents):
        sim.model.spawn("coder", f"agent-{i}")
    async with anyio.create_task_group() as tg:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        tcp = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        tg.start_soon(listener.serve, sim.handle)
        json_port = await tg.start(serve_asgi, HttpSimulator(sim))
        sse_port = await tg.start(serve_asgi, HttpSimulator(sim, sse=True))
        yield {
            "tcp (baseline)": lambda: connect_mcp("127.0.0.1", tcp),
            "http, JSON answers": lambda: connect_http_mcp(f"http://127.0.0.1:{json_port}/mcp"),
            "http, SSE answers": lambda: connect_http_mcp(f"http://127.0.0.1:{sse_port}/mcp"),
        }
        tg.cancel_scope.cancel()


async def main(rounds: int, polls: int, agents: int) -> None:
    logger.remove()  # the client's debug lines would be timed too
    per_poll: dict[str, list[float]] = {}
    handshake: dict[str, list[float]] = {}
    async with servers(agents) as openers:
        for _ in range(rounds):
            for name, opener in openers.items():
                start = time.perf_counter()
                async with opener() as client:
                    handshake.setdefault(name, []).append(time.perf_counter() - start)
                    assert len(await client.list_agents()) == agents
                    start = time.perf_counter()
                    for _ in range(polls):
                        await client.list_agents()
                        await client.swarm_status()
                    per_poll.setdefault(name, []).append((time.perf_counter() - start) / polls)
    base = statistics.median(per_poll["tcp (baseline)"])
    load = os.getloadavg()[0]
    print(f"MCP poll (agent_list + swarm_status, {agents} agents), loopback, 1-min load {load:.1f}")
    print(f"{'transport':<22} {'ms/poll':>9} {'x tcp':>7} {'handshake ms':>13}")
    for name, times in per_poll.items():
        median = statistics.median(times)
        shake = statistics.median(handshake[name]) * 1000
        print(f"{name:<22} {median * 1000:>9.2f} {median / base:>7.2f} {shake:>13.1f}")
    print(f"medians of {rounds} rounds of {polls} polls each")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, args.rounds, args.polls, args.agents)
