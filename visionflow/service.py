"""The root of the task tree: builds the service, starts every subsystem under the
supervisor, and shuts down gracefully on SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc
from loguru import logger

from visionflow import __version__
from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics
from visionflow.settings import Settings
from visionflow.supervisor import HealthRegistry, RestartPolicy, Supervisor
from visionflow.web.app import create_app
from visionflow.web.context import ServiceContext
from visionflow.web.server import HttpServer

log = logger.bind(subsystem="main")


def restart_policy(settings: Settings) -> RestartPolicy:
    sup = settings.supervisor
    return RestartPolicy(
        initial=sup.backoff_initial,
        maximum=sup.backoff_max,
        jitter=sup.backoff_jitter,
        budget=sup.restart_budget,
        window=sup.restart_window,
    )


@dataclass
class Service:
    """One running VisionFlow: its context, supervisor and HTTP listener."""

    settings: Settings
    ctx: ServiceContext = field(init=False)
    http: HttpServer = field(init=False)
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    on_ready: Callable[[Service], None] | None = None

    def __post_init__(self) -> None:
        self.ctx = ServiceContext(
            live=LiveSettings.from_settings(self.settings),
            registry=HealthRegistry(__version__),
            metrics=Metrics(),
        )

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        grace = self.settings.server.shutdown_grace
        await anyio.to_thread.run_sync(self.ctx.live.load_overrides)
        async with anyio.create_task_group() as tg:
            supervisor = Supervisor(
                tg,
                self.ctx.registry,
                restart_policy(self.settings),
                on_restart=self.ctx.metrics.on_restart,
            )
            self.http = HttpServer(create_app(self.ctx), self.settings, supervisor.stopping)
            await supervisor.start("http", self.http.run, critical=True)
            log.info("ready at {} (health: {}/api/health)", self.http.url, self.http.url)
            if self.on_ready is not None:
                self.on_ready(self)
            task_status.started()

            await self.stop_requested.wait()
            log.info("shutting down (grace {:g}s)", grace)
            supervisor.begin_shutdown()
            with anyio.move_on_after(grace):
                await supervisor.wait_stopped()
            tg.cancel_scope.cancel()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain within ``server.shutdown_grace``.

    A second signal during the drain stops at once.
    """
    service = Service(settings)
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            # Kept open for the whole run so a second Ctrl-C is ours too, not a KeyboardInterrupt.
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if service.stop_requested.is_set():
                        log.warning("received {} again: stopping now", name)
                        tg.cancel_scope.cancel()
                        return
                    log.info("received {}", name)
                    service.request_stop()

        tg.start_soon(watch_signals)
        await service.run()
        tg.cancel_scope.cancel()
