"""The root of the task tree: builds the service, starts every subsystem under the
supervisor, and shuts down gracefully on SIGINT/SIGTERM.

Start order: ``hub`` (fans frames out) and the critical ``http`` listener first, so liveness
probes get an answer at once; then the saved state is restored in a worker thread (a 1M-node
graph takes tens of seconds; meanwhile ``/readyz`` says so and the graph routes answer 503)
and the notes vault (``knowledge.path``) is read; then ``physics`` (reports started at once,
compiles in a thread), ``layout`` (saves positions: never before the restore, which it would
overwrite), ``notes`` (watches the vault, if it was read) and one ``mcp:NAME`` per endpoint. A
stop during the restore abandons it (the thread is a daemon) and starts nothing more.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
from loguru import logger

from visionflow import __version__, exitguard, logs
from visionflow.changes import GraphChanges
from visionflow.cluster.link import require_asyncio
from visionflow.cluster.publisher import ClusterPublisher
from visionflow.cluster.relay import Relay
from visionflow.errors import GraphError
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore
from visionflow.live_settings import LiveSettings
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.memory import keep_out_of_gc, map_large_blocks
from visionflow.metrics import Metrics
from visionflow.notes.example import EXAMPLE_VAULT, NO_VAULT
from visionflow.notes.live import LiveVault, VaultRead
from visionflow.notes.parse import NoteError
from visionflow.notes.watch import Batch, VaultWatcher
from visionflow.physics.engine import PhysicsEngine
from visionflow.protocol.messages import SettingsChanged
from visionflow.settings import Settings
from visionflow.state import LayoutSaver
from visionflow.state.lockfile import StateLock, hold_for_service
from visionflow.supervisor import HealthRegistry, RestartPolicy, SubsystemHealth, Supervisor
from visionflow.threads import run_abandonable
from visionflow.web import routes_bots, routes_graph, routes_notes, viewer
from visionflow.web.app import create_app
from visionflow.web.context import Foundations, ServiceContext
from visionflow.web.hub import Hub
from visionflow.web.pins import EnginePins
from visionflow.web.server import HttpServer
from visionflow.web.ws import UpgradeRequiredRoute, websocket_route

log = logger.bind(subsystem="main")
notes_log = logger.bind(subsystem="notes")

#: The interpreter's thread switch interval while serving (see ``serve``).
SWITCH_INTERVAL_S = 0.001
#: The share of ``server.shutdown_grace`` by which the last layout save is done or left
#: behind: the rest is for the process to end (the listener drains for 0.75 of it).
SAVE_BY_SHARE = 0.9


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
    """One running VisionFlow: its context, supervisor and subsystems."""

    settings: Settings
    ctx: ServiceContext = field(init=False)
    engine: PhysicsEngine = field(init=False)
    hub: Hub = field(init=False)
    changes: GraphChanges = field(init=False)
    http: HttpServer = field(init=False)
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    on_ready: Callable[[Service], None] | None = None
    _notes_watcher: VaultWatcher | None = field(default=None, init=False)
    #: With ``cluster.nats_url``: the hub's tap, publishing to NATS (the ``cluster`` child).
    publisher: ClusterPublisher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        physics = self.settings.physics
        store = GraphStore(max_nodes=physics.max_nodes, max_edges=physics.max_edges)
        base = Foundations(
            live=LiveSettings.from_settings(self.settings),
            registry=HealthRegistry(__version__),
            metrics=Metrics(),
        )
        self.engine = PhysicsEngine(
            store,
            physics,
            metrics=base.metrics,
            # Essential: with the layout stopped for good the service is not ready (viewers get
            # a still picture of the last positions, not a live layout).
            health=base.registry.register("physics", essential=True),
        )
        # The hub's `stopping` is set with the supervisor's, in run().
        # One EnginePins for local and relay viewers: the later drag owns a pin across both.
        pins = EnginePins(self.engine)
        if self.settings.cluster.nats_url:  # frames to NATS for `visionflow relay` processes
            self.publisher = ClusterPublisher(
                self.settings.cluster, base.registry, base.metrics, pins=pins
            )
        self.hub = Hub(base, self.engine, pins=pins, tap=self.publisher)
        agents = AgentGraph(store)
        self.changes = GraphChanges(store, agents, self.engine, self.hub)
        self.ctx = ServiceContext(
            live=base.live,
            registry=base.registry,
            metrics=base.metrics,
            store=store,
            agents=agents,
            engine=self.engine,
            changes=self.changes,
        )
        self.ctx.live.subscribe(lambda s: self.engine.set_settings(s.physics))
        self.ctx.live.subscribe(lambda s: logs.set_level(s.log.level))
        # every viewer's settings panel follows a change made anywhere
        self.ctx.live.subscribe(
            lambda s: self.hub.publish(SettingsChanged(revision=self.ctx.live.revision))
        )

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def _read_knowledge(self) -> bool:
        """After the restore: read the vault ``knowledge.path`` names, or the example vault
        when it is empty and the graph holds nothing imported, or none (``"none"``: the notes
        a former vault left in the saved graph go). False if a stop came first."""
        path = self.settings.knowledge.path
        if path and path != NO_VAULT:
            return await self._load_notes(Path(path), example=False)
        changes = self.changes
        imported: list[bool] = []
        if not await self._unless_stopped(
            lambda: imported.append(changes.holds_imported_knowledge()), "graph check"
        ):
            return False
        if not path and not imported[0]:
            return await self._load_notes(EXAMPLE_VAULT, example=True)
        dropped: list[int] = []
        if not await self._unless_stopped(lambda: dropped.append(changes.drop_notes()), "notes"):
            return False
        if dropped[0]:
            log.info("no notes vault: {} note node(s) of a former vault removed", dropped[0])
            self.changes.knowledge_changed()
        return True

    async def _load_notes(self, root: Path, *, example: bool) -> bool:
        """Read the vault at ``root`` into the graph (after the restore, so the notes' saved
        positions apply) and, unless it is the example (whose files do not change), make the
        ``notes`` watcher that keeps it current; False if a stop came first. A vault that cannot
        be read is a failed ``notes`` health entry with the reason, not a failed start (and
        nothing watches it)."""
        knowledge = self.settings.knowledge
        health = self.ctx.registry.register("notes")
        health.detail["path"] = str(root)
        if example:
            health.detail["example"] = True
            log.info(
                "no knowledge.path and no imported graph: showing the example vault "
                '(knowledge.path = "none" turns it off; an import replaces it)'
            )
        self.ctx.registry.starting = "reading the notes vault"
        vault = LiveVault(
            root,
            max_file_bytes=knowledge.max_note_bytes,
            max_notes=knowledge.max_notes,
        )
        loaded: list[VaultRead | NoteError | GraphError] = []

        def load() -> None:
            try:
                read = self.changes.load_notes(vault)
            except (NoteError, GraphError) as exc:  # the vault, not the service, is at fault
                loaded.append(exc)
            else:
                loaded.append(read)

        if not await self._unless_stopped(load, "notes vault"):
            return False
        read = loaded[0]
        if not isinstance(read, VaultRead):
            health.state = "failed"
            health.last_error = str(read)
            log.error("notes vault {} not loaded: {}", root, read)
            return True
        health.state = "running"
        _report_notes(health, read)
        if read.problem_count or not read.complete:
            log.warning(
                "notes vault {}: {} file(s) skipped{} (first: {}); see /api/health",
                root,
                read.problem_count,
                "" if read.complete else ", and the walk stopped at a limit",
                "; ".join(f"{p.path}: {p.reason}" for p in read.problems[:3]) or "none",
            )
        log.info(
            "notes vault {}: {} notes, {} nodes and {} edges in the graph, read in {:.1f} s",
            root,
            read.notes,
            read.nodes,
            read.edges,
            read.seconds,
        )
        self.changes.notes_root = root
        self.changes.example_shown = example
        self.changes.knowledge_changed()
        if not example:
            self._notes_watcher = VaultWatcher(
                vault, health, partial(self._apply_notes_batch, vault, health)
            )
        return True

    async def _apply_notes_batch(
        self, vault: LiveVault, health: SubsystemHealth, batch: Batch
    ) -> None:
        """The watcher's batch: read in a worker thread, applied to the store as one change,
        the engine woken and viewers told. A graph too full for it is reported, not raised;
        NoteError (the vault folder gone) goes to the watcher."""
        paths = None if batch.everything else batch.paths
        work = partial(self.changes.update_notes, vault, paths)
        try:
            read = await run_abandonable(work, name="notes batch")
        except GraphError as exc:
            health.detail["degraded"] = True
            health.last_error = f"notes not applied: {exc}"
            notes_log.warning("notes vault: a change was not applied: {}", exc)
            return
        finally:
            health.detail["batches"] = health.detail.get("batches", 0) + 1
        if read is None:
            return
        if read.delta:
            self.changes.knowledge_changed()
        _report_notes(health, read)
        notes_log.info(
            "notes vault: {}: {}; {} note(s) read in {:.0f} ms",
            "everything" if paths is None else f"{len(paths)} path(s) changed",
            read.delta.summary(),
            read.parsed,
            read.seconds * 1000,
        )

    async def _unless_stopped(self, work: Callable[[], object], name: str) -> bool:
        """Run blocking ``work`` in a daemon thread; False if a stop came first (abandoned)."""
        finished = False
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal finished
                await run_abandonable(work, name=name)
                finished = True
                tg.cancel_scope.cancel()

            async def stop() -> None:
                await self.stop_requested.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(run)
            tg.start_soon(stop)
        return finished

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        settings = self.settings
        grace = settings.server.shutdown_grace
        ctx = self.ctx
        await anyio.to_thread.run_sync(ctx.live.load_overrides)
        endpoints = [e.name for e in settings.mcp.endpoints]
        async with anyio.create_task_group() as tg:
            supervisor = Supervisor(
                tg, ctx.registry, restart_policy(settings), on_restart=ctx.metrics.on_restart
            )
            hub = self.hub
            await supervisor.start("hub", hub.run)
            tg.start_soon(ctx.metrics.watch_event_loop)  # cancelled with the task group
            app = create_app(
                ctx,
                extra_routes=[
                    *routes_graph.routes(),
                    *routes_bots.routes(),
                    *routes_notes.routes(),
                    websocket_route(ctx, hub, graph_revision=lambda: ctx.store.revision),
                    UpgradeRequiredRoute(),
                    *viewer.routes(),
                ],
            )
            self.http = HttpServer(app, settings, supervisor.stopping)
            ctx.registry.starting = "restoring the saved graph and layout"
            await supervisor.start("http", self.http.run, critical=True)
            if self.publisher is not None:
                require_asyncio("cluster.nats_url")  # a start-up failure, not a child's retries
                self.publisher.app = app  # relays' /api/ requests are answered by it
                await supervisor.start("cluster", self.publisher.run)
            log.info("listening at {}; restoring the saved state", self.http.url)
            restore = partial(self.changes.restore, settings.state.dir, endpoints)
            restored = await self._unless_stopped(restore, "state restore")
            saver: LayoutSaver | None = None
            if restored:
                restored = await self._read_knowledge()
            if restored:
                ctx.registry.starting = None
                keep_out_of_gc()  # the restored graph lives on: no full collection walks it
                saver = LayoutSaver(
                    self.engine,
                    ctx.store,
                    settings.state.dir,
                    settings.state.save_interval,
                    carried=self.changes.carried,
                    health=ctx.registry.register("layout"),
                )
                await supervisor.start("physics", self.engine.run)
                await supervisor.start("layout", saver.run)
                if self._notes_watcher is not None:
                    await supervisor.start("notes", self._notes_watcher.run)
                for endpoint in settings.mcp.endpoints:
                    name = f"mcp:{endpoint.name}"
                    watcher = EndpointWatcher(
                        endpoint,
                        settings.mcp,
                        ctx.registry.register(name),
                        ctx.metrics,
                        self.changes.agents_reported,
                        cwd=endpoint.cwd or None,
                    )
                    ctx.watchers[endpoint.name] = watcher
                    await supervisor.start(name, watcher.run)
                log.info("ready at {} (viewer: {}/, health: {}/api/health)", *[self.http.url] * 3)
                if self.on_ready is not None:
                    self.on_ready(self)
            task_status.started()

            await self.stop_requested.wait()
            log.info("shutting down (grace {:g}s)", grace)
            if saver is not None:  # its last save ends before the grace, leaving the exit time
                saver.stop_by = anyio.current_time() + grace * SAVE_BY_SHARE
            supervisor.begin_shutdown()
            hub.stopping.set()
            # The listener drains requests and viewers (closed with 1001); the other children
            # hold nothing to drain and are cancelled (the layout saver still saves on the way).
            with anyio.move_on_after(grace):
                await supervisor.wait_stopped("http")
            tg.cancel_scope.cancel()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain within ``server.shutdown_grace``.

    A second signal during the drain stops at once.
    """
    # Imports, exports and syncs run Python in worker threads; the event loop needs the GIL
    # back after every socket call, and waits up to one switch interval each time. At the
    # default 5 ms, two clients exporting a 300k-node graph held /healthz at p99 393 ms; at
    # 1 ms, 108 ms, with as many exports done (benchmarks/loop_stall.py).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # Large temporaries (a big import's tables, the saved files, physics arrays) go back to
    # the system when freed instead of staying in glibc's arenas (visionflow/memory.py).
    map_large_blocks()
    # state.dir is this process's while it runs (state/lockfile.py): `visionflow state
    # backup` asks this service at the URL written there once ready; `restore` is refused
    lock = await anyio.to_thread.run_sync(hold_for_service, settings.state.dir)
    ready = anyio.Event()
    service = Service(settings, on_ready=lambda _: ready.set())
    try:
        await _serve(service, lock, ready)
    finally:
        if lock is not None:
            lock.release()


async def serve_relay(settings: Settings) -> None:
    """``visionflow relay`` (cluster/relay.py), with the service's signal handling and drain."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    await _serve(Relay(settings, policy=restart_policy(settings)), None, anyio.Event())


async def _serve(service: Service | Relay, lock: StateLock | None, ready: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:
        if lock is not None:

            async def announce() -> None:
                await ready.wait()
                await anyio.to_thread.run_sync(lock.announce, str(service.http.url))

            tg.start_soon(announce)

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
                    exitguard.arm(service.settings.server.shutdown_grace)
                    service.request_stop()

        tg.start_soon(watch_signals)
        await service.run()
        tg.cancel_scope.cancel()
    if exitguard.enabled():
        # The receiver, closed, put Python's defaults back: a second signal in the last
        # moments of the exit ended the program with 130 or 143 where the docs promise 0.
        # The stop is done; nothing more is asked of a signal.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _report_notes(health: SubsystemHealth, read: VaultRead) -> None:
    """The ``notes`` entry's counts after a read; degraded while files are skipped."""
    health.detail.update(
        notes=read.notes,
        nodes=read.nodes,
        edges=read.edges,
        problems=read.problem_count,
        first_problems=[f"{p.path}: {p.reason}" for p in read.problems[:5]],
        complete=read.complete,
    )
    health.last_error = None
    if read.problem_count or not read.complete:
        health.detail["degraded"] = True
    else:
        health.detail.pop("degraded", None)
