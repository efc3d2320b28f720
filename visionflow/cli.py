"""Command line: ``visionflow serve | check-config | mcp-sim``.

Exit codes: 0 clean stop or valid settings, 1 start-up failure (port busy, ...),
2 invalid settings or usage. A user never sees a traceback for a bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionflow import __version__
from visionflow.errors import ConfigError, StartupError

EXIT_OK, EXIT_STARTUP, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"visionflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--config", metavar="PATH", help="settings file (default ./settings.toml)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port (0 picks a free port)")
    serve.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")

    check = sub.add_parser("check-config", help="validate settings and print the effective ones")
    check.add_argument("path", nargs="?", help="settings file (default ./settings.toml)")
    return parser


def _err(message: str) -> None:
    print(f"visionflow: {message}", file=sys.stderr)


def _ensure_numba_cache_dir() -> None:
    """numba caches compiled kernels beside the sources; a read-only install needs elsewhere."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    package_dir = Path(__file__).resolve().parent
    if os.access(package_dir, os.W_OK):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(base / "visionflow" / "numba")


def _load(path: str | None, overrides: dict[str, Any] | None = None) -> Any:
    from visionflow import settings

    return settings.load(path, overrides=overrides)


def cmd_check_config(args: argparse.Namespace) -> int:
    from visionflow import settings

    try:
        loaded = _load(args.path)
    except ConfigError as exc:
        _err(exc.render())
        return EXIT_CONFIG
    if not loaded.file_found:
        print(f"# {loaded.source} not found: these are the defaults", file=sys.stderr)
    print(settings.to_toml(loaded.settings))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port is not None:
        overrides.setdefault("server", {})["port"] = args.port
    try:
        loaded = _load(args.config, overrides)
    except ConfigError as exc:
        _err(exc.render())
        return EXIT_CONFIG

    from loguru import logger

    from visionflow import logs

    _ensure_numba_cache_dir()
    logs.setup(loaded.settings.log.level, loaded.settings.log.format)
    if not loaded.file_found:
        logger.bind(subsystem="main").info("no {} found: using defaults", loaded.source)

    import anyio

    from visionflow.service import serve
    from visionflow.supervisor import find_in_group

    try:
        anyio.run(serve, loaded.settings, backend=args.backend)
    except KeyboardInterrupt:
        return EXIT_OK
    except BaseException as exc:  # turn start-up failures into one line; re-raise the rest
        if find_in_group(exc, KeyboardInterrupt) is not None:
            return EXIT_OK
        startup = find_in_group(exc, StartupError)
        if startup is None:
            raise
        _err(str(startup))
        return EXIT_STARTUP
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": cmd_serve, "check-config": cmd_check_config}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
