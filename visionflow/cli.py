"""Command line: ``visionflow serve | check-config | mcp-sim | state backup|restore``.

Exit codes: 0 clean stop or valid settings, 1 start-up failure (port busy, ...),
2 invalid settings or usage, 141 when the reader of stdout went away (``| head``).
A user never sees a traceback for a bad input.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from visionflow import __version__, settings
from visionflow.errors import ConfigError, StartupError
from visionflow.supervisor import find_in_group

if TYPE_CHECKING:
    from loguru import Logger

EXIT_OK, EXIT_STARTUP, EXIT_CONFIG = 0, 1, 2
#: 128 + SIGPIPE: what a Unix tool killed by a closed pipe reports (``set -o pipefail`` sees it).
EXIT_BROKEN_PIPE = 141

# Plain text: argparse prints help as it is (the module docstring's markup would show).
DESCRIPTION = "VisionFlow: a live 3-D view of AI agent swarms and knowledge graphs."
BACKEND_HELP = "async library to run on (default: asyncio)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionflow", description=DESCRIPTION)
    parser.add_argument(
        "--version",
        action="version",
        version=f"visionflow {__version__}",
        help="print 'visionflow <version>' and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")

    serve = command("serve", "run the service until SIGINT or SIGTERM")
    serve.add_argument("--config", metavar="PATH", help="settings file (default: ./settings.toml)")
    serve.add_argument("--host", help="listen on this address (overrides server.host)")
    serve.add_argument(
        "--port", type=int, help="listen on this port, 0 for a free one (overrides server.port)"
    )
    serve.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help=BACKEND_HELP
    )

    relay = command("relay", "serve more viewers of a service that publishes to NATS")
    relay.add_argument("--config", metavar="PATH", help="settings file (default: ./settings.toml)")
    relay.add_argument("--nats", metavar="URL", help="NATS to read (overrides cluster.nats_url)")
    relay.add_argument("--host", help="listen on this address (overrides server.host)")
    relay.add_argument(
        "--port", type=int, help="listen on this port, 0 for a free one (overrides server.port)"
    )

    check = command("check-config", "validate the settings and print the effective ones")
    check.add_argument(
        "path", nargs="?", metavar="PATH", help="settings file (default: ./settings.toml)"
    )
    check.add_argument(
        "--mcp-json",
        metavar="FILE",
        help="instead: print the [[mcp.endpoints]] for the mcpServers of FILE (.mcp.json, "
        "Claude Desktop's config)",
    )
    check.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --mcp-json: print header and env values (default: ***)",
    )

    sim = command("mcp-sim", "run the claude-flow swarm simulator (an MCP server)")
    sim.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    sim.add_argument(
        "--port", type=int, default=9500, help="TCP port, 0 for a free one (default: %(default)s)"
    )
    sim.add_argument("--stdio", action="store_true", help="serve one session on stdin/stdout")
    sim.add_argument(
        "--http",
        action="store_true",
        help="serve MCP over Streamable HTTP at http://HOST:PORT/mcp (--delay applies)",
    )
    sim.add_argument(
        "--flavor", choices=["v2", "v3"], default="v2", help="claude-flow dialect (default: v2)"
    )
    sim.add_argument(
        "--seed", type=int, default=0, help="seed of the simulated swarm (default: %(default)s)"
    )
    sim.add_argument(
        "--tick",
        type=_number(float, 0.0),
        default=1.0,
        metavar="S",
        help="seconds between swarm changes; 0: a swarm that does not change "
        "(default: %(default)s)",
    )
    sim.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=BACKEND_HELP)
    faults = sim.add_argument_group("fault injection")
    count, positive = _number(int, 0), _number(int, 1)
    faults.add_argument("--drop-after", type=count, metavar="N", help="drop after N messages")
    faults.add_argument("--delay", type=_number(float, 0.0), metavar="S", help="delay every reply")
    faults.add_argument("--garbage-every", type=positive, metavar="N", help="garbage line every N")
    faults.add_argument("--out-of-order", action="store_true", help="answer out of order")
    faults.add_argument(
        "--drip", type=positive, metavar="BYTES", help="send replies in tiny pieces"
    )
    faults.add_argument("--huge-line", type=positive, metavar="BYTES", help="send one huge line")

    state = command("state", "back up or restore the saved state: graph, layout, overrides")
    actions = state.add_subparsers(dest="action", required=True, title="actions", metavar="ACTION")
    for name, text in (
        ("backup", "write a backup of state.dir to FILE (from the running service, if any)"),
        ("restore", "replace the files of state.dir by those of FILE (the service stopped)"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument("file", metavar="FILE", help="the backup file (a .tar.gz)")
        action.add_argument(
            "--config", metavar="PATH", help="settings file (default: ./settings.toml)"
        )
        if name == "backup":
            action.add_argument(
                "--url", help="ask the service at URL (default: the one running on state.dir)"
            )
    return parser


def _number(kind: type[int] | type[float], least: float) -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` of at least ``least``; argparse turns the
    ArgumentTypeError into a usage error (exit 2)."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < least:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number >= {least:g}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in some messages
    return convert


def _err(message: str) -> None:
    print(f"visionflow: {message}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.mcp_json is not None:
        from visionflow.mcp.mcpjson import check_mcp_json

        return check_mcp_json(args.mcp_json, show_secrets=args.show_secrets)
    try:
        loaded = settings.load(args.path)
    except ConfigError as exc:
        _err(exc.render())
        return EXIT_CONFIG
    if not loaded.file_found:
        print(f"# {loaded.source} not found: these are the defaults", file=sys.stderr)
    for note in loaded.notes:
        print(f"# note: {note}", file=sys.stderr)
    print(settings.to_toml(loaded.settings))
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    try:
        loaded = settings.load(args.config)
    except ConfigError as exc:
        _err(exc.render())
        return EXIT_CONFIG
    from visionflow.state import command

    if args.action == "backup":
        return command.backup(loaded.settings, args.file, args.url)
    return command.restore(loaded.settings, args.file)


def cmd_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port is not None:
        overrides.setdefault("server", {})["port"] = args.port
    relay = args.command == "relay"  # `visionflow relay` shares all of this (cluster/relay.py)
    backend = "asyncio" if relay else args.backend
    if relay and args.nats is not None:
        overrides.setdefault("cluster", {})["nats_url"] = args.nats
    try:
        loaded = settings.load(args.config, overrides=overrides)
    except ConfigError as exc:
        _err(exc.render())
        return EXIT_CONFIG
    nats_url = loaded.settings.cluster.nats_url
    if relay and not nats_url:
        _err("relay: nothing to read: give --nats nats://HOST:PORT or set cluster.nats_url")
        return EXIT_CONFIG
    if nats_url and backend != "asyncio":
        _err("cluster.nats_url needs the asyncio backend (nats-py): drop --backend trio")
        return EXIT_CONFIG

    from loguru import logger

    from visionflow import logs

    logs.setup(loaded.settings.log.level, loaded.settings.log.format)
    if not loaded.file_found:
        logger.bind(subsystem="main").info("no {} found: using defaults", loaded.source)
    for note in loaded.notes:
        logger.bind(subsystem="main").warning("{}", note)

    import anyio

    from visionflow.service import serve, serve_relay

    try:
        anyio.run(serve_relay if relay else serve, loaded.settings, backend=backend)
    except KeyboardInterrupt:
        return EXIT_OK
    except (StartupError, BaseExceptionGroup) as exc:  # a start-up failure is one line
        if find_in_group(exc, KeyboardInterrupt) is not None:
            return EXIT_OK
        startup = find_in_group(exc, StartupError)
        if startup is None:
            raise
        _err(str(startup))
        return EXIT_STARTUP
    return EXIT_OK


async def _until_signalled(main_fn: Callable[[], Awaitable[None]], log: Logger) -> None:
    """Run ``main_fn`` until it returns or SIGINT/SIGTERM arrives; either way say it stopped.

    Without this a SIGTERM killed the simulator silently (exit 143).
    """
    import anyio

    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received {}: stopping", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals)
        await main_fn()
        tg.cancel_scope.cancel()
    log.info("stopped")


def cmd_mcp_sim(args: argparse.Namespace) -> int:
    from functools import partial

    import anyio
    from loguru import logger

    from visionflow import logs
    from visionflow.mcpsim.server import SimFaults, serve_simulator, serve_simulator_stdio

    if not 0 <= args.port <= 65535:
        _err(f"--port {args.port}: must be 0-65535")
        return EXIT_CONFIG
    faults = SimFaults(
        drop_after_messages=args.drop_after,
        reply_delay=args.delay or 0.0,
        garbage_every=args.garbage_every or 0,
        out_of_order=args.out_of_order,
        drip_bytes=args.drip or 0,
        huge_line_bytes=args.huge_line or 0,
    )
    logs.setup("INFO", "human")
    common = {"flavor": args.flavor, "faults": faults, "seed": args.seed}
    if args.http and args.stdio:
        _err("--http and --stdio: give one")
        return EXIT_CONFIG
    if args.http:
        from visionflow.mcpsim.http import serve_simulator_http
        from visionflow.mcpsim.server import Simulator

        sim = Simulator(tick_interval=args.tick, **common)
        main_fn = partial(serve_simulator_http, args.host, args.port, sim=sim)
    elif args.stdio:
        logger.remove()  # stdout is the protocol; keep the log on stderr only
        logs.setup("WARNING", "human")
        main_fn = partial(serve_simulator_stdio, tick_interval=args.tick, **common)
    else:
        main_fn = partial(serve_simulator, args.host, args.port, tick_interval=args.tick, **common)
    try:
        anyio.run(_until_signalled, main_fn, logger.bind(subsystem="mcp"), backend=args.backend)
    except KeyboardInterrupt:
        return EXIT_OK
    except (OSError, BaseExceptionGroup) as exc:  # a busy port is one line
        if find_in_group(exc, KeyboardInterrupt) is not None:
            return EXIT_OK
        error = find_in_group(exc, OSError)
        if error is None:
            raise
        _err(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
        return EXIT_STARTUP
    return EXIT_OK


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage error: argparse printed it
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG if exc.code else EXIT_OK
    handlers = {
        "serve": cmd_serve,
        "relay": cmd_serve,
        "check-config": cmd_check_config,
        "mcp-sim": cmd_mcp_sim,
        "state": cmd_state,
    }
    return handlers[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at interpreter exit
    except BrokenPipeError:
        # The reader went away (`check-config | head -1`): stop quietly, as `cat` would. Python
        # would still flush stdout at exit and complain: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def entry() -> NoReturn:
    """The ``visionflow`` program: :func:`main`, then the exit, which does not wait for work a
    stop left in daemon threads (an import, the physics step: see ``visionflow.exitguard``)."""
    from visionflow import exitguard

    exitguard.enable()  # a stop that outlasts server.shutdown_grace ends the process
    code = main()
    exitguard.exit_if_threads_left(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
