"""The simulator's swarm (sans-IO): agents, tasks and swarms that live, work and leave.

:class:`SwarmModel` is one living swarm driven by a seeded :class:`random.Random`, so a given
seed and sequence of calls and ticks always gives the same swarm. ``dialect.py`` answers
JSON-RPC messages about it; ``server.py`` serves those over TCP or stdio.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "MAX_AGENTS",
    "MAX_OPEN_TASKS",
    "BadArgsError",
    "Flavor",
    "SimAgent",
    "SimTask",
    "SwarmModel",
]

Flavor = Literal["v2", "v3"]

AGENT_TYPES = (
    "coordinator",
    "coder",
    "architect",
    "analyst",
    "tester",
    "researcher",
    "reviewer",
    "optimizer",
    "documenter",
)
#: What 2.x does to some types on spawn (docs/architecture.md section 10).
V2_RENAMES = {
    "coordinator": "task-orchestrator",
    "analyst": "code-analyzer",
    "optimizer": "perf-analyzer",
    "documenter": "api-docs",
    "architect": "system-architect",
}
TOPOLOGIES = ("hierarchical", "mesh", "ring", "star")
#: Live agents the autopilot keeps, at most; tool calls may go up to the swarm's maxAgents.
MAX_SIM_AGENTS = 64
#: Finished tasks remembered; older ones are forgotten so a long run stays bounded.
MAX_DONE_TASKS = 256
#: Hard limits for what tool calls can create (the simulator must stay bounded whoever calls).
MAX_AGENTS = 1000
MAX_OPEN_TASKS = 1000


class BadArgsError(ValueError):
    """A call the swarm refuses (bad arguments, a limit reached); the dialect reports it as a tool
    failure."""


@dataclass(slots=True)
class SimAgent:
    id: str
    type: str
    name: str
    swarm_id: str
    created_ms: int
    capabilities: list[str] = field(default_factory=list)
    status: str = "idle"  # idle | busy | terminated
    health: float = 1.0
    task_count: int = 0
    current_task: str | None = None
    last_active_ms: int = 0


@dataclass(slots=True)
class SimTask:
    id: str
    description: str
    priority: str
    status: str = "pending"  # pending | in_progress | completed
    assigned_to: str | None = None
    created_ms: int = 0


@dataclass(slots=True)
class SimSwarm:
    id: str
    topology: str
    max_agents: int
    strategy: str


class SwarmModel:
    """One swarm shared by every connection, as the TCP bridge shares one server process."""

    def __init__(
        self,
        flavor: Flavor,
        *,
        seed: int = 0,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.flavor: Flavor = flavor
        self.rng = random.Random(seed)
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.swarm: SimSwarm | None = None
        self.agents: dict[str, SimAgent] = {}
        self.tasks: dict[str, SimTask] = {}
        self.ticks = 0

    # -- ids and time -----------------------------------------------------------------------

    def now_ms(self) -> int:
        return self._clock_ms()

    def _suffix(self) -> str:
        return "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=9))

    def live_agents(self) -> list[SimAgent]:
        return [a for a in self.agents.values() if a.status != "terminated"]

    # -- state changes (tools and the autopilot both use these) ------------------------------

    def init_swarm(self, topology: str, max_agents: int, strategy: str) -> SimSwarm:
        prefix = "swarm_" if self.flavor == "v2" else "swarm-"
        self.swarm = SimSwarm(
            f"{prefix}{self.now_ms()}_{self._suffix()}", topology, max_agents, strategy
        )
        return self.swarm

    def spawn(
        self, agent_type: str, name: str | None = None, capabilities: list[str] | None = None
    ) -> SimAgent:
        if len(self.agents) >= MAX_AGENTS:
            raise BadArgsError(f"the simulator holds at most {MAX_AGENTS} agents")
        if self.swarm is None:
            self.init_swarm("mesh", 8, "balanced")
        assert self.swarm is not None
        now = self.now_ms()
        if self.flavor == "v2":
            agent_id = f"agent_{now}_{self._suffix()}"
            agent_type = V2_RENAMES.get(agent_type, agent_type)
        else:
            agent_id = f"agent-{now}-{self._suffix()[:6]}"
        agent = SimAgent(
            id=agent_id,
            type=agent_type,
            name=name or f"{agent_type}-{len(self.agents) + 1}",
            swarm_id=self.swarm.id,
            created_ms=now,
            capabilities=list(capabilities or ()),
            last_active_ms=now,
        )
        self.agents[agent_id] = agent
        return agent

    def terminate(self, agent_id: str) -> SimAgent | None:
        agent = self.agents.get(agent_id)
        if agent is None or agent.status == "terminated":
            return None
        if agent.current_task and agent.current_task in self.tasks:
            task = self.tasks[agent.current_task]
            task.status, task.assigned_to = "pending", None
        agent.status, agent.current_task = "terminated", None
        if self.flavor == "v2":
            # 2.x forgets terminated agents; 3.x keeps them, shown with includeTerminated.
            del self.agents[agent_id]
        return agent

    def add_task(self, description: str, priority: str = "medium") -> SimTask:
        if sum(t.status != "completed" for t in self.tasks.values()) >= MAX_OPEN_TASKS:
            raise BadArgsError(f"the simulator holds at most {MAX_OPEN_TASKS} open tasks")
        task = SimTask(
            f"task_{self.now_ms()}_{self._suffix()}",
            description,
            priority,
            created_ms=self.now_ms(),
        )
        self.tasks[task.id] = task
        return task

    def tick(self, *, autopilot: bool = True) -> None:
        """Advance the swarm one step. With ``autopilot`` it also sets up a swarm, spawns,
        files tasks and retires agents by itself; without, it only works the tasks it was given.
        """
        self.ticks += 1
        rng = self.rng
        now = self.now_ms()
        if autopilot:
            if self.swarm is None:
                self.init_swarm(rng.choice(TOPOLOGIES), 12, "adaptive")
            assert self.swarm is not None
            live = self.live_agents()
            cap = min(self.swarm.max_agents, MAX_SIM_AGENTS)
            if len(live) < cap and (len(live) < 3 or rng.random() < 0.3):
                self.spawn(rng.choice(AGENT_TYPES))
            if rng.random() < 0.4 and sum(t.status == "pending" for t in self.tasks.values()) < 8:
                self.add_task(f"simulated task #{len(self.tasks) + 1}")
            idle = [a for a in self.live_agents() if a.status == "idle"]
            if len(live) > 3 and idle and rng.random() < 0.05:
                self.terminate(rng.choice(idle).id)
        # Work the queue: finish some running tasks, then hand pending ones to idle agents.
        for agent in self.live_agents():
            agent.health = round(min(1.0, max(0.5, agent.health + rng.uniform(-0.05, 0.05))), 2)
            if agent.status == "busy" and rng.random() < 0.35:
                task = self.tasks.get(agent.current_task or "")
                if task is not None:
                    task.status = "completed"
                agent.status, agent.current_task = "idle", None
                agent.task_count += 1
                agent.last_active_ms = now
        idle = [a for a in self.live_agents() if a.status == "idle"]
        for task in self.tasks.values():
            if not idle:
                break
            if task.status == "pending":
                agent = idle.pop(rng.randrange(len(idle)))
                task.status, task.assigned_to = "in_progress", agent.id
                agent.status, agent.current_task, agent.last_active_ms = "busy", task.id, now
        self._forget_done()

    def _forget_done(self) -> None:
        done = [t.id for t in self.tasks.values() if t.status == "completed"]
        for task_id in done[: max(0, len(done) - MAX_DONE_TASKS)]:
            del self.tasks[task_id]
