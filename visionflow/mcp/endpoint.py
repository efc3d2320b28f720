"""One watched MCP endpoint: a supervised child that keeps a session alive and polls agents.

Connects (TCP, or by launching ``command`` on stdio), polls the agent list and swarm status
every ``poll_interval``, and reports every change through ``on_agents``. When the link drops it
reconnects with stamina (exponential backoff with jitter, capped at ``mcp.backoff_max``) behind a
circuit breaker: after ``mcp.breaker_threshold`` consecutive failures it waits
``mcp.breaker_cooldown`` and then lets one probe through. Its state, last error, breaker and
agent count go to health and metrics; a dead server makes health degraded, never failing.
When the server announces ``notifications/tools/list_changed`` the tool catalog is re-read
before the next poll (which is brought forward), so the watcher calls what the server now offers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import stamina
from loguru import logger

from visionflow import logs
from visionflow.errors import (
    GraphError,
    RemoteProtocolError,
    RpcError,
    RpcRemoteError,
    RpcTransportError,
)
from visionflow.metrics import Metrics
from visionflow.settings import McpEndpoint as EndpointSettings
from visionflow.settings import McpSettings, redact_url
from visionflow.supervisor import SubsystemHealth

from .breaker import CircuitBreaker
from .claudeflow import Agent, SwarmStatus
from .client import McpClient, connect_mcp
from .http import connect_http_mcp
from .rpc import Notification
from .stdio import launch_mcp
from .versions import UnsupportedProtocolVersionError

# (endpoint name, agents, live): live=False means the server is unreachable and what it runs
# is unknown; the agents list is then empty.
# A listener may be a coroutine function (the service's, which applies the list in a worker
# thread) or a plain function (tests).
AgentsListener = Callable[[str, list[Agent], bool], Awaitable[None] | None]

# Failures that end a session and make us reconnect. A JSON-RPC error answer to a poll
# (RpcRemoteError) does not: the server is alive, it just refused that call.
_LINK_FAILURES = (RpcError, RemoteProtocolError)

#: How ``last_error`` starts while the graph has no room for the endpoint's agents.
_NOT_SHOWN = "agents not shown: "

#: The server's tool set changed: re-read ``tools/list`` before the next poll.
TOOLS_CHANGED = "notifications/tools/list_changed"
#: Polls the server refuses in a row (a tool error each) before the link counts as down: its
#: agents were shown live, their status frozen, and health said ok for as long as it refused.
REFUSED_POLLS_DOWN = 3
#: What a launched server wrote to stderr, as a reason quotes it (stdio.exit_text).
_STDERR_SAID = re.compile(r"\(stderr: .*\)", re.DOTALL)
_MASKED_MIN = 3  # shorter parts of a command line ("sh", "-c") are masked nowhere


class BreakerOpenError(RpcError):
    """Not an I/O failure: the breaker refused the attempt (stamina then waits its cool-down)."""


@dataclass
class EndpointStatus:
    """What ``GET /api/bots/status`` shows for one endpoint."""

    name: str
    target: str
    transport: str = "tcp"  # http, stdio or tcp
    # connecting (never yet), connected, backoff (waiting to reconnect), or unsupported_version
    # (the server answered a protocol version we do not speak: protocol_version says which)
    state: str = "connecting"
    connected: bool = False
    breaker: str = "closed"
    server_name: str | None = None
    server_version: str | None = None
    protocol_version: str | None = None
    tools: list[str] = field(default_factory=list)
    last_poll: float | None = None  # wall-clock seconds
    last_error: str | None = None
    agent_count: int = 0
    swarm: dict[str, Any] | None = None
    connects: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "transport": self.transport,
            "state": self.state,
            "connected": self.connected,
            "breaker": self.breaker,
            "server": {
                "name": self.server_name,
                "version": self.server_version,
                "protocol_version": self.protocol_version,
            },
            "tools": self.tools,
            "last_poll": self.last_poll,
            "last_error": self.last_error,
            "agents": self.agent_count,
            "swarm": self.swarm,
            "connects": self.connects,
        }


def _swarm_json(status: SwarmStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    doc = msgspec.to_builtins(status)
    return doc if isinstance(doc, dict) else None


class EndpointWatcher:
    def __init__(
        self,
        endpoint: EndpointSettings,
        mcp: McpSettings,
        health: SubsystemHealth,
        metrics: Metrics,
        on_agents: AgentsListener,
        *,
        cwd: str | Path | None = None,
    ) -> None:
        """``cwd``: working directory of a launched (``command``) server; ignored for TCP."""
        self.settings = endpoint
        self.cwd = cwd
        self.mcp = mcp
        self.health = health
        self.metrics = metrics
        self.on_agents = on_agents
        self.breaker = CircuitBreaker(mcp.breaker_threshold, mcp.breaker_cooldown)
        self.status = EndpointStatus(endpoint.name, _target(endpoint), endpoint.transport)
        self.client: McpClient | None = None
        self.agents: list[Agent] = []
        self._live = False
        self._poll_now = anyio.Event()
        self._tools_stale = False
        self._refused = 0  # polls refused in a row
        self.log = logger.bind(subsystem=f"mcp:{endpoint.name}")
        self._metric_labels = {"endpoint": endpoint.name}
        # Every endpoint has its samples from the start (a scrape before its first publish
        # would miss the series, and a missing series reads as "no data", not as "down").
        metrics.mcp_connected.labels(**self._metric_labels).set(0)
        metrics.mcp_agents.labels(**self._metric_labels).set(0)

    # -- health ---------------------------------------------------------------------------

    def public_error(self) -> str | None:
        """``last_error`` as anyone may see it (health; ``/api/bots/status`` without the
        token): a launched server's command line, working directory and stderr masked, as its
        ``target`` is (``cannot start '/opt/run-with-key-...'`` said them in clear)."""
        error = self.status.last_error
        if error is None or not self.settings.command:
            return error
        error = _STDERR_SAID.sub("(stderr: shown with the token)", error)
        said = {*self.settings.argv, *self.settings.env.values(), self.settings.cwd}
        said.add(str(self.cwd or ""))
        for secret in sorted(said, key=len, reverse=True):
            if len(secret) >= _MASKED_MIN:
                error = error.replace(secret, "***")
        return error

    def _publish(self) -> None:
        now = anyio.current_time()
        self.status.breaker = self.breaker.state(now)
        connected = self.client is not None
        self.status.connected = connected
        self.health.state = "running" if connected else "backoff"
        self.health.last_error = self.public_error()
        self.health.detail.update(
            state=self.status.state,
            connected=connected,
            breaker=self.status.breaker,
            agents=self.status.agent_count,
            connects=self.status.connects,
        )
        self.metrics.mcp_connected.labels(**self._metric_labels).set(1 if connected else 0)
        self.metrics.mcp_agents.labels(**self._metric_labels).set(self.status.agent_count)

    def _cap(self, agents: list[Agent]) -> list[Agent]:
        """The first ``mcp.max_agents_per_endpoint`` agents as the server listed them; a cut is
        logged once per size and shown in health (degraded: not everything is on screen)."""
        limit = self.mcp.max_agents_per_endpoint
        if len(agents) <= limit:
            if self.health.detail.pop("agents_listed", None) is not None:
                self.health.detail.pop("degraded", None)
            return agents
        if self.health.detail.get("agents_listed") != len(agents):
            self.log.warning(
                "the server lists {} agents; showing the first {} (mcp.max_agents_per_endpoint)",
                len(agents),
                limit,
            )
        self.health.detail.update(agents_listed=len(agents), degraded=True)
        return agents[:limit]

    async def _report(self, agents: list[Agent], live: bool) -> None:
        outcome = self.on_agents(self.settings.name, agents, live)
        if outcome is not None:
            await outcome

    async def _set_agents(self, agents: list[Agent]) -> None:
        agents = self._cap(agents)
        if agents == self.agents and self._live:
            return
        try:
            await self._report(agents, True)
        except GraphError as exc:
            if exc.code == "graph_busy":
                # an import or export holds the graph: nothing applied, the next poll retries
                self.log.debug("agents not applied this poll: {}", exc.message)
                return
            # No room in the graph (physics.max_nodes / max_edges): nothing was applied, the
            # link is fine, and the next poll tries again.
            message = f"{_NOT_SHOWN}{exc.message}"
            if self.status.last_error != message:
                self.log.warning(message)
            self.status.last_error = message
            self._publish()
            return
        self.agents = agents
        self._live = True
        self.status.agent_count = len(agents)
        if (self.status.last_error or "").startswith(_NOT_SHOWN):
            self.status.last_error = None  # they are shown now
        self._publish()

    async def _lost_agents(self) -> None:
        # What a dead server runs is unknown: report that, rather than stale data as live.
        self.agents = []
        self._live = False
        self.status.agent_count = 0
        # now, not at the next attempt: a hung server's next attempt takes call_timeout, and
        # the gauge said the old count meanwhile where a refused one said 0 at once
        self._publish()
        await self._report([], False)

    # -- connection -------------------------------------------------------------------------

    def _on_notification(self, event: Notification) -> None:
        """Called by the client's reader (sync, on the event loop): only flags, never awaits."""
        if event.method == TOOLS_CHANGED:
            self._tools_stale = True
            self._poll_now.set()

    def _open(self) -> AbstractAsyncContextManager[McpClient]:
        mcp = self.mcp
        if self.settings.transport == "http":
            return connect_http_mcp(
                self.settings.url,
                name=self.settings.name,
                headers=dict(self.settings.headers),
                connect_timeout=mcp.connect_timeout,
                call_timeout=mcp.call_timeout,
                max_message_bytes=mcp.max_line_bytes,
                backoff_initial=mcp.backoff_initial,
                backoff_max=mcp.backoff_max,
                on_notification=self._on_notification,
            )
        if self.settings.transport == "stdio":
            return launch_mcp(
                self.settings.argv,
                name=self.settings.name,
                call_timeout=mcp.call_timeout,
                max_line_bytes=mcp.max_line_bytes,
                on_notification=self._on_notification,
                cwd=self.cwd,
                env=dict(self.settings.env),
            )
        host, port = self.settings.tcp_address
        return connect_mcp(
            host,
            port,
            connect_timeout=mcp.connect_timeout,
            call_timeout=mcp.call_timeout,
            max_line_bytes=mcp.max_line_bytes,
            on_notification=self._on_notification,
        )

    def _backoff_hook(self, exc: Exception) -> bool | float:
        """stamina's ``on``: retry every link failure; while the breaker is open, wait it out."""
        if not isinstance(exc, _LINK_FAILURES):
            return False
        wait = self.breaker.retry_in(anyio.current_time())
        return wait if wait > 0 else True

    async def _connect(self, stack: AsyncExitStack) -> McpClient:
        what = f"MCP endpoint {self.settings.name} ({self.status.target})"
        with logs.retrying(what, f"mcp:{self.settings.name}"):
            return await self._connect_retrying(stack)

    async def _connect_retrying(self, stack: AsyncExitStack) -> McpClient:
        async for attempt in stamina.retry_context(
            on=self._backoff_hook,
            attempts=None,
            timeout=None,
            wait_initial=self.mcp.backoff_initial,
            wait_max=self.mcp.backoff_max,
            wait_jitter=self.mcp.backoff_initial,
        ):
            with attempt:
                now = anyio.current_time()
                if not self.breaker.allow(now):
                    self._publish()
                    raise BreakerOpenError(
                        f"circuit open: next probe in {self.breaker.retry_in(now):.1f}s"
                    )
                # A fresh handshake reads tools/list: earlier announcements are moot.
                self._tools_stale = False
                judged = False
                try:
                    client = await stack.enter_async_context(self._open())
                    self.status.last_error = None  # connected; a refused first poll sets it again
                    await self._poll(client)
                    judged = True
                except _LINK_FAILURES as exc:
                    judged = True
                    self.breaker.record_failure(anyio.current_time())
                    self.status.last_error = str(exc)
                    self.status.state = "backoff"
                    if isinstance(exc, UnsupportedProtocolVersionError):
                        self.status.state = "unsupported_version"
                        self.status.protocol_version = exc.version
                    self._publish()
                    # No line of its own: the retry hook (logs.log_retry) logs the attempt with
                    # its cause and the delay before the next one.
                    await stack.aclose()
                    raise
                finally:
                    if not judged:  # cancelled, or a bug: a half-open probe must not hang
                        self.breaker.abandon_probe(anyio.current_time())
                return client
        raise AssertionError("unreachable: stamina retries forever")  # pragma: no cover

    async def _poll_once(self, client: McpClient) -> None:
        if self._tools_stale:
            self._tools_stale = False  # cleared first: a change announced meanwhile re-flags
            await client.refresh_tools()
            self._tools_refreshed(client)
        catalog = client.catalog
        if "agent_list" in catalog.names:
            agents = await client.list_agents()
        else:
            # An MCP server that is not an orchestrator: alive, with no agents to show.
            # tools/list is the liveness probe (2.x has no ping) and catches added tools.
            await client.refresh_tools()
            if client.catalog.names != catalog.names:
                self._tools_refreshed(client)
            agents = []
        swarm: SwarmStatus | None = None
        if "swarm_status" in catalog.names:
            try:
                swarm = await client.swarm_status()
            except (RpcRemoteError, RemoteProtocolError) as exc:
                # optional detail: a refusal or an odd reply must not cost the agent list
                self.log.debug("swarm_status not used: {}", exc)
        self.status.swarm = _swarm_json(swarm)
        self.status.last_poll = time.time()
        await self._set_agents(agents)

    def _tools_refreshed(self, client: McpClient) -> None:
        names = sorted(client.catalog.names)
        if names != self.status.tools:
            self.log.info("tool catalog changed: now {} tools", len(names))
            self.status.tools = names

    def poll_soon(self) -> None:
        """Poll now instead of at the next interval (after a spawn, say)."""
        self._poll_now.set()

    async def _session(self, client: McpClient) -> None:
        """Poll until the link fails (returns by raising)."""
        while True:
            with anyio.move_on_after(self.settings.poll_interval):
                await self._poll_now.wait()
            self._poll_now = anyio.Event()
            await self._poll(client)

    async def _poll(self, client: McpClient) -> None:
        try:
            await self._poll_once(client)
        except RpcRemoteError as exc:
            # The server is up but refused this poll (a tool error): keep the link, a while.
            self._refused += 1
            if self._refused >= REFUSED_POLLS_DOWN:
                raise RpcTransportError(
                    f"{self._refused} polls in a row refused, the last: {exc}"
                ) from exc
            self.status.last_error = str(exc)
            self.log.warning("poll refused: {}", exc)
            self._publish()
        else:
            self._refused = 0

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # Usable at once: a server that is down is a health state, not a start-up failure.
        self._publish()
        task_status.started()
        try:
            while True:
                async with AsyncExitStack() as stack:
                    client = await self._connect(stack)
                    self.breaker.record_success()
                    self.client = client
                    self.status.connects += 1
                    info = client.server_info
                    self.status.server_name = _str_or_none(info.get("name"))
                    self.status.server_version = _str_or_none(info.get("version"))
                    self.status.protocol_version = client.protocol_version
                    self.status.state = "connected"
                    self.status.tools = sorted(client.catalog.names)
                    self.log.info(
                        "connected to {} {} ({} tools, {} agents)",
                        self.status.server_name or "MCP server",
                        self.status.server_version or "",
                        len(self.status.tools),
                        len(self.agents),
                    )
                    self._publish()
                    try:
                        await self._session(client)
                    except _LINK_FAILURES as exc:
                        self.status.last_error = str(exc)
                        self.log.warning("link lost: {}", exc)
                    finally:
                        self.client = None
                    self.status.state = "backoff"
                    self.breaker.record_failure(anyio.current_time())
                    # health says so before the agents are marked (that waits for a thread)
                    self._publish()
                    await self._lost_agents()
        finally:
            self.client = None
            self.metrics.mcp_connected.labels(**self._metric_labels).set(0)


def _target(endpoint: EndpointSettings) -> str:
    """What the status shows as the endpoint's address (a URL's secrets redacted)."""
    if endpoint.transport == "http":
        return redact_url(endpoint.url)
    if endpoint.transport == "stdio":
        return " ".join(endpoint.argv)
    host, port = endpoint.tcp_address
    return f"{host}:{port}"


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
