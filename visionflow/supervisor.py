"""Supervision: restart policy, the health registry every subsystem reports to, and the
per-child wrapper that restarts a failing child without disturbing its siblings.

A child is any ``async def run(*, task_status)`` callable. It calls ``task_status.started()``
once it is really usable; the supervisor marks it ``running`` then. When it raises, the
supervisor logs the error with context, marks it ``backoff``, sleeps a capped exponential delay
with jitter and starts it again; after more than ``budget`` restarts within ``window`` seconds
it marks the child ``failed`` and leaves it down while the rest keep running.
"""

from __future__ import annotations

import errno
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.abc
from loguru import logger

from visionflow.errors import StartupError

ChildState = Literal["starting", "running", "backoff", "failed", "stopped"]
Status = Literal["ok", "degraded", "failing"]


class RestartObserver(Protocol):
    def __call__(self, name: str) -> None: ...


# --------------------------------------------------------------------------- health


@dataclass
class SubsystemHealth:
    """What one subsystem last said about itself; owned by the registry, mutated via a handle."""

    name: str
    critical: bool
    state: ChildState = "starting"
    #: Not ready once it has ``failed`` (the supervisor gave up), though not critical: the
    #: service still serves, but not what it is for (physics: the layout no longer moves).
    essential: bool = False
    restarts: int = 0
    last_error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "detail": dict(self.detail),
        }


class HealthRegistry:
    """The single source of truth for ``/api/health``, ``/readyz`` and the restart metric.

    Truthful by construction: overall status is derived from the children's states on every
    read, never cached and never defaulted to ok.
    """

    def __init__(self, version: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.version = version
        self._clock = clock
        self._started_at = clock()
        self._subsystems: dict[str, SubsystemHealth] = {}
        self.shutting_down = False
        #: Start-up work still running (e.g. the restore), as a reason not to be ready.
        self.starting: str | None = None

    def register(
        self, name: str, *, critical: bool = False, essential: bool = False
    ) -> SubsystemHealth:
        entry = self._subsystems.get(name)
        if entry is None:
            entry = self._subsystems[name] = SubsystemHealth(name, critical)
        entry.critical = entry.critical or critical
        entry.essential = entry.essential or essential
        return entry

    def get(self, name: str) -> SubsystemHealth | None:
        return self._subsystems.get(name)

    def remove(self, name: str) -> None:
        self._subsystems.pop(name, None)

    @property
    def subsystems(self) -> dict[str, SubsystemHealth]:
        return dict(self._subsystems)

    def status(self) -> Status:
        worst: Status = "ok"
        for sub in self._subsystems.values():
            if sub.critical and sub.state in ("backoff", "failed"):
                return "failing"
            if sub.state in ("backoff", "failed") or sub.detail.get("degraded"):
                worst = "degraded"
        return worst

    def readiness(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        if self.shutting_down:
            reasons.append("shutting down")
        if self.starting is not None:
            reasons.append(self.starting)
        for sub in self._subsystems.values():
            if sub.critical and sub.state != "running":
                reasons.append(f"{sub.name} is {sub.state}")
            elif sub.essential and sub.state == "failed":
                reasons.append(f"{sub.name} is failed: {sub.last_error or 'gave up restarting'}")
        if self.status() == "failing":
            reasons.append("health is failing")
        return (not reasons, reasons)

    def uptime(self) -> float:
        return self._clock() - self._started_at

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status(),
            "uptime_s": round(self.uptime(), 3),
            "version": self.version,
            "subsystems": {name: sub.as_json() for name, sub in self._subsystems.items()},
        }


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RestartPolicy:
    """Capped exponential backoff with jitter, and a restart budget per time window."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.2
    budget: int = 5
    window: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before restart number ``attempt`` (1-based): initial * 2^(attempt-1), capped,
        then shortened by up to ``jitter`` so a fleet of restarts does not synchronise."""
        base = min(self.maximum, self.initial * math.pow(2.0, max(0, attempt - 1)))
        return base * (1.0 - self.jitter * rng.random())


class _ChildStatus(anyio.abc.TaskStatus[Any]):
    """The ``task_status`` a supervised child sees: marks it running, releases the starter."""

    def __init__(self, on_started: Callable[[], None]) -> None:
        self._on_started = on_started
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            self._on_started()


Child = Callable[..., Awaitable[None]]


class Supervisor:
    """Starts children in a task group it is given and keeps them alive."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        registry: HealthRegistry,
        policy: RestartPolicy,
        *,
        on_restart: RestartObserver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._tg = task_group
        self._registry = registry
        self._policy = policy
        self._on_restart = on_restart
        self._rng = rng or random.Random()
        self.stopping = anyio.Event()
        self._done: dict[str, anyio.Event] = {}  # set when that child's wrapper returns

    async def start(
        self,
        name: str,
        child: Child,
        *,
        critical: bool = False,
        policy: RestartPolicy | None = None,
    ) -> None:
        """Start ``child`` and return once it reported started (or failed its first start).

        A critical child that fails before its first start raises StartupError here; a
        non-critical one goes on retrying in the background.
        """
        self._registry.register(name, critical=critical)
        await self._tg.start(self._supervise, name, child, critical, policy or self._policy)

    def begin_shutdown(self) -> None:
        self.stopping.set()
        self._registry.shutting_down = True

    async def wait_stopped(self, *names: str) -> None:
        """Wait until the named children (default: every child) have returned."""
        for name in names or list(self._done):
            done = self._done.get(name)
            if done is not None:
                await done.wait()

    async def _supervise(
        self,
        name: str,
        child: Child,
        critical: bool,
        policy: RestartPolicy,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        health = self._registry.register(name, critical=critical)
        log = logger.bind(subsystem=name)
        restarts_at: deque[float] = deque(maxlen=policy.budget + 1)
        attempt = 0
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                task_status.started()

        done = self._done[name] = anyio.Event()
        try:
            while True:
                health.state = "starting"

                def on_started() -> None:
                    health.state = "running"
                    release()

                status = _ChildStatus(on_started)
                began = anyio.current_time()
                try:
                    await child(task_status=status)
                except Exception as exc:  # noqa: BLE001 — boundary: supervisor per-child wrapper
                    error = _describe(exc)
                    health.last_error = error
                    if self.stopping.is_set():
                        log.info("stopped with an error during shutdown: {}", error)
                        health.state = "stopped"
                        release()
                        return
                    if critical and not released:
                        health.state = "failed"
                        if isinstance(exc, StartupError):
                            raise
                        raise StartupError(f"{name} failed to start: {error}") from exc
                    if _out_of_resources(exc):  # the machine's state, not a bug: one line
                        log.error("crashed: {} (the system is out of a resource)", error)
                    elif isinstance(exc, StartupError):  # explained in full: a setting, not a bug
                        log.error("crashed: {}", error)
                    else:
                        log.opt(exception=exc).error("crashed: {}", error)
                else:
                    if self.stopping.is_set():
                        health.state = "stopped"
                        release()
                        return
                    # Children run until cancelled: returning on its own is a failure too
                    # (health said ok for a subsystem that was gone), so restart it.
                    health.last_error = "returned on its own"
                    if critical and not released:
                        health.state = "failed"
                        raise StartupError(f"{name} returned before it started")
                    log.error("returned on its own")

                now = anyio.current_time()
                if now - began >= policy.maximum:
                    attempt = 0  # it ran long enough to count as healthy: start the ramp anew
                restarts_at.append(now)
                recent = sum(1 for t in restarts_at if now - t <= policy.window)
                if recent > policy.budget:
                    health.state = "failed"
                    log.error(
                        "gave up after {} restarts within {:g}s; the rest keeps running",
                        policy.budget,
                        policy.window,
                    )
                    release()
                    return
                attempt += 1
                delay = policy.delay(attempt, self._rng)
                health.state = "backoff"
                health.restarts += 1
                if self._on_restart is not None:
                    self._on_restart(name)
                log.warning("restarting in {:.2f}s (restart {})", delay, health.restarts)
                release()
                with anyio.move_on_after(delay):
                    await self.stopping.wait()
                if self.stopping.is_set():
                    health.state = "stopped"
                    return
        finally:
            done.set()


def _describe(exc: BaseException) -> str:
    """One line for health and logs; exception groups are flattened to their first leaf."""
    exc = _first_leaf(exc)
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# errno values that say the machine ran out of something (descriptors, memory, disk), which a
# traceback would not explain better: a storm of connections during the start-up compile made
# numba fail to open its own sources (EMFILE) and logged a 60-line traceback per child.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC})


def _first_leaf(exc: BaseException) -> BaseException:
    """``exc``, or the first exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _out_of_resources(exc: BaseException) -> bool:
    """Whether ``exc`` (or the first leaf of a group) is, or was caused by, running out of a
    resource (``_RESOURCE_ERRNOS``)."""
    seen: BaseException | None = _first_leaf(exc)
    for _ in range(8):  # a bounded walk down the chain of causes
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in _RESOURCE_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_E = TypeVar("_E", bound=BaseException)


def sole_exception(exc: BaseException) -> BaseException:
    """``exc`` with nested one-member exception groups taken off (a task group wraps even a
    single error); a group of several stays a group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def find_in_group(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` inside (possibly nested) exception groups."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_in_group(inner, kind)
            if found is not None:
                return found
    return None
