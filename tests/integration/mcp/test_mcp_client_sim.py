"""The MCP client against the simulator over real loopback TCP (port 0), both flavours."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from loguru import logger

from visionflow.errors import (
    RemoteProtocolError,
    RpcRemoteError,
    RpcTimeoutError,
    RpcTransportError,
)
from visionflow.mcp.claudeflow import ToolError
from visionflow.mcp.client import SKIP_LOG_FIRST, McpClient, connect_mcp
from visionflow.mcp.rpc import Notification
from visionflow.mcpsim.model import Flavor
from visionflow.mcpsim.server import SimFaults, serve_simulator

pytestmark = pytest.mark.anyio

BOUND = 10  # seconds any one test may take before it counts as hung


@asynccontextmanager
async def simulator(
    flavor: Flavor = "v2",
    faults: SimFaults | None = None,
    *,
    tick_interval: float = 0.0,
    autopilot: bool = False,
) -> AsyncIterator[int]:
    # The server runs in a task group, which wraps whatever the test body raises in an
    # exception group: unwrap a lone exception so tests can use plain pytest.raises.
    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            port: int = await tg.start(_serve, flavor, faults, tick_interval, autopilot)
            try:
                yield port
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = group.exceptions[0] if len(group.exceptions) == 1 else group
        if error is group:
            raise
    if error is not None:
        raise error


async def _serve(
    flavor: Flavor,
    faults: SimFaults | None,
    tick_interval: float,
    autopilot: bool,
    *,
    task_status: anyio.abc.TaskStatus[int],
) -> None:
    await serve_simulator(
        "127.0.0.1",
        0,
        flavor=flavor,
        faults=faults,
        seed=7,
        tick_interval=tick_interval,
        autopilot=autopilot,
        task_status=task_status,
    )


@asynccontextmanager
async def session(
    flavor: Flavor = "v2",
    faults: SimFaults | None = None,
    **client_kw: Any,
) -> AsyncIterator[McpClient]:
    async with (
        simulator(flavor, faults) as port,
        connect_mcp("127.0.0.1", port, **client_kw) as client,
    ):
        yield client


FLAVORS = pytest.mark.parametrize("flavor", ["v2", "v3"])


@FLAVORS
async def test_handshake_and_swarm_lifecycle(flavor: Flavor) -> None:
    with anyio.fail_after(BOUND):
        async with session(flavor) as client:
            assert client.protocol_version == "2024-11-05"
            assert client.server_info["name"] == "claude-flow"
            assert client.catalog.dialect == flavor
            assert await client.swarm_status() is None
            assert await client.list_agents() == []  # v2: the placeholders are filtered out
            swarm_id = await client.init_swarm("hierarchical", max_agents=5)
            spawned = await client.spawn_agent("analyst", name="a1")
            task = await client.submit_task("index the notes", priority="high")
            assert task.data["taskId"]
            agents = await client.list_agents()
            assert [a.id for a in agents] == [spawned.agent_id]
            assert agents[0].kind == "analyst"  # 2.x's code-analyzer mapped back
            status = await client.swarm_status()
            assert status is not None and status.swarm_id == swarm_id and status.agent_count == 1


@FLAVORS
async def test_unknown_tool(flavor: Flavor) -> None:
    with anyio.fail_after(BOUND):
        async with session(flavor) as client:
            if flavor == "v2":
                assert (await client.call_tool("no_such_tool")).stub
            else:
                with pytest.raises(RpcRemoteError) as info:
                    await client.call_tool("no_such_tool")
                assert info.value.code == -32601


async def test_unknown_method_is_remote_error() -> None:
    with anyio.fail_after(BOUND):
        async with session("v2") as client:
            with pytest.raises(RpcRemoteError) as info:
                await client.call("resources/list")
            assert info.value.code == -32601
            # The connection is still usable afterwards.
            await client.refresh_tools()


async def test_concurrent_calls_out_of_order_with_garbage_and_chatter() -> None:
    faults = SimFaults(
        out_of_order=True, hold_s=0.02, garbage_every=3, chatter=True, banner="Claude-Flow v2 ready"
    )
    seen: list[str] = []

    def on_note(note: Notification) -> None:
        seen.append(note.method)

    with anyio.fail_after(BOUND):
        async with session("v2", faults, on_notification=on_note) as client:
            results: dict[int, Any] = {}

            async def one(i: int) -> None:
                results[i] = await client.call_tool(client.catalog.agent_list(swarm_id=f"s{i}"))

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(one, i)
            assert {i: r.data["swarmId"] for i, r in results.items()} == {
                i: f"s{i}" for i in range(8)
            }
            assert "server.initialized" in seen and "notifications/progress" in seen


async def test_callback_failure_does_not_kill_link() -> None:
    def bad(note: Notification) -> None:
        raise ValueError("handler bug")

    with anyio.fail_after(BOUND):
        async with session("v2", SimFaults(chatter=True), on_notification=bad) as client:
            await client.refresh_tools()
            assert not client.closed


async def test_drip_and_delay() -> None:
    faults = SimFaults(drip_bytes=7, drip_interval=0.0, reply_delay=0.01)
    with anyio.fail_after(BOUND):
        async with session("v3", faults) as client:
            assert len(client.catalog) >= 6


async def test_huge_line_within_cap_is_fine() -> None:
    with anyio.fail_after(BOUND):
        async with session("v3", SimFaults(huge_line_bytes=400_000)) as client:
            await client.refresh_tools()


async def test_huge_line_over_cap_closes_link() -> None:
    faults = SimFaults(huge_line_bytes=300_000)
    with anyio.fail_after(BOUND), pytest.raises(RpcTransportError) as info:
        async with session("v3", faults, max_line_bytes=100_000):
            pass
    assert isinstance(info.value.__cause__, RemoteProtocolError)


async def test_drop_fails_every_pending_call_at_once() -> None:
    # Handshake sends 3 messages; the 4th message kills the link.
    with anyio.fail_after(BOUND):
        async with session("v3", SimFaults(drop_after_messages=4, reply_delay=0.05)) as client:
            errors: list[BaseException] = []

            async def one() -> None:
                try:
                    await client.call("tools/list", timeout=5)
                except RpcTransportError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(one)
            assert len(errors) == 5
            assert isinstance(await client.wait_closed(), RpcTransportError)
            with pytest.raises(RpcTransportError):
                await client.call("tools/list")


async def test_call_deadline() -> None:
    with anyio.fail_after(BOUND):
        async with session("v3", SimFaults(reply_delay=0.15), call_timeout=5) as client:
            with pytest.raises(RpcTimeoutError, match="tools/list"):
                await client.call("tools/list", timeout=0.05)
            # The late reply is dropped as unknown; the link stays up for the next call.
            await client.call("tools/list", timeout=5)


async def test_handshake_timeout() -> None:
    with anyio.fail_after(BOUND), pytest.raises(RpcTimeoutError):
        async with session("v2", SimFaults(reply_delay=0.5), call_timeout=0.05):
            pass


async def test_connect_refused_is_transport_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    await listener.aclose()
    with anyio.fail_after(BOUND), pytest.raises(RpcTransportError, match="connect failed"):
        async with connect_mcp("127.0.0.1", port, connect_timeout=2):
            pass


async def test_body_exception_is_not_wrapped_in_a_group() -> None:
    with anyio.fail_after(BOUND), pytest.raises(ToolError):
        async with session("v3") as client:
            await client.call_tool("agent_terminate", {"agentId": "ghost"})


async def test_living_swarm_is_seen_by_client() -> None:
    with anyio.fail_after(BOUND):
        async with (
            simulator("v3", tick_interval=0.01, autopilot=True) as port,
            connect_mcp("127.0.0.1", port) as client,
        ):
            agents: list[Any] = []
            while len(agents) < 3:
                await anyio.sleep(0.02)
                agents = await client.list_agents()
            assert all(a.health is not None for a in agents)


async def test_two_clients_share_one_swarm() -> None:
    with anyio.fail_after(BOUND):
        async with simulator("v2") as port:
            async with connect_mcp("127.0.0.1", port) as a:
                spawned = await a.spawn_agent("coder")
            async with connect_mcp("127.0.0.1", port) as b:
                assert [x.id for x in await b.list_agents()] == [spawned.agent_id]


async def test_server_survives_garbage_client() -> None:
    with anyio.fail_after(BOUND):
        async with simulator("v3") as port:
            raw = await anyio.connect_tcp("127.0.0.1", port)
            await raw.send(b"hello\n" + b"x" * (2 * 1024 * 1024))  # over the sim's request cap
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                while True:
                    await raw.receive()
            await raw.aclose()
            async with connect_mcp("127.0.0.1", port) as client:
                await client.refresh_tools()


async def test_a_stream_of_garbage_is_not_a_stream_of_warnings() -> None:
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING", format="{message}")
    try:
        with anyio.fail_after(BOUND):
            async with session("v2", SimFaults(garbage_every=1)) as client:
                for _ in range(30):
                    await client.refresh_tools()
    finally:
        logger.remove(sink)
    skipped = [w for w in warnings if "skipped non-JSON-RPC line" in w]
    assert len(skipped) == SKIP_LOG_FIRST, skipped
    assert skipped[-1].rstrip().endswith(f"{SKIP_LOG_FIRST} so far)")


async def test_a_large_agent_list_is_parsed_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Parsing is Python code, O(agents): on the event loop, 10k agents held it ~300 ms.
    from visionflow.mcp import client as client_module

    threads: list[int] = []
    parse = client_module._agents_of

    def recording(tool: str, result: Any) -> list[Any]:
        threads.append(threading.get_ident())
        return parse(tool, result)

    monkeypatch.setattr(client_module, "_agents_of", recording)
    loop_thread = threading.get_ident()
    with anyio.fail_after(BOUND):
        async with session("v3") as client:
            await client.init_swarm("mesh", max_agents=8)
            for i in range(3):
                await client.spawn_agent("coder", name=f"c{i}")
            small = await client.list_agents()
            monkeypatch.setattr(client_module, "PARSE_OFF_LOOP_BYTES", 1)  # "large" from 1 byte
            large = await client.list_agents()
    assert [a.id for a in small] == [a.id for a in large] and len(large) == 3
    assert threads[0] == loop_thread  # a small list: not worth a thread
    assert threads[1] != loop_thread


async def test_several_link_errors_at_once_come_out_as_one_of_them() -> None:
    # An HTTP session's POST and its GET stream can both fail to connect: one failure of the
    # link, which must reach the endpoint's retry as a link error, not as a group.
    from visionflow.mcp.client import background_tasks

    async def fail(message: str) -> None:
        raise RpcTransportError(message)

    with pytest.raises(RpcTransportError, match=r"^(first|second)$"):  # trio's order varies
        async with background_tasks() as tg:
            tg.start_soon(fail, "first")
            tg.start_soon(fail, "second")
            await anyio.sleep_forever()

    async def bug() -> None:
        raise KeyError("a bug")

    # a bug beside a link error stays a group: it is not ours to flatten
    with pytest.raises(BaseExceptionGroup):
        async with background_tasks() as tg:
            tg.start_soon(fail, "link")
            tg.start_soon(bug)
            await anyio.sleep_forever()


async def test_a_link_error_while_cancelled_from_outside_is_the_cancellation(
    anyio_backend: str,
) -> None:
    # An endpoint stopped while its handshake's POST fails: the task's cancellation and the
    # link error meet in the session's task group. On trio the group [Cancelled, link error]
    # lost its Cancelled to the outer scope, and the link error escaped that scope as a
    # group, which the endpoint's retry took for a bug: the stopped task failed.
    from visionflow.mcp.client import background_tasks

    escaped: BaseException | None = None
    with anyio.CancelScope() as outer:
        try:
            async with background_tasks() as tg:
                tg.start_soon(anyio.sleep_forever)
                await anyio.lowlevel.checkpoint()  # the task is running
                outer.cancel()
                raise RpcTransportError("POST failed")
        except RpcTransportError as exc:
            escaped = exc
    if anyio_backend == "trio":
        assert escaped is None and outer.cancelled_caught  # the cancellation went on
    else:
        # anyio's asyncio task group does not collect its tasks' cancellations: the link
        # error comes out as itself (the endpoint retries, and its wait takes the cancel)
        assert isinstance(escaped, RpcTransportError)

    # a bug in the block is not moot: it still comes out, cancelled or not
    with pytest.raises((KeyError, BaseExceptionGroup)) as caught, anyio.CancelScope() as outer:
        async with background_tasks() as tg:
            tg.start_soon(anyio.sleep_forever)
            await anyio.lowlevel.checkpoint()
            outer.cancel()
            raise KeyError("a bug")
    bug = caught.value
    if isinstance(bug, BaseExceptionGroup):
        assert bug.subgroup(KeyError) is not None
    else:
        assert isinstance(bug, KeyError)
