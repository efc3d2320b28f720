"""Logging: loguru set-up, human lines or JSON lines, every line tagged with its subsystem.

The standard library's logging (hypercorn, stamina, numba) is routed into the same sink.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

import msgspec
import stamina.instrumentation
from loguru import logger

if TYPE_CHECKING:
    from loguru import Message

HUMAN_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {extra[subsystem]: <12} | {message}"

#: The bound value of an access line (web/access.py), and the fields a JSON line lifts from it.
ACCESS_KEY = "access"
ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "client")

# stdlib logger name prefix -> subsystem tag
_SUBSYSTEM_OF = {"hypercorn": "http", "stamina": "retry", "numba": "physics", "websockets": "ws"}


class InterceptHandler(logging.Handler):
    """Forward stdlib records into loguru with the right level, caller and subsystem."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        subsystem = _SUBSYSTEM_OF.get(record.name.split(".")[0], record.name)
        logger.bind(subsystem=subsystem).opt(depth=6, exception=record.exc_info).log(
            level, record.getMessage()
        )


def _json_sink(stream: TextIO) -> Any:
    encoder = msgspec.json.Encoder()

    def sink(message: Message) -> None:
        record = message.record
        doc: dict[str, Any] = {
            "ts": record["time"].isoformat(),
            "level": record["level"].name,
            "subsystem": record["extra"].get("subsystem", "main"),
            "message": record["message"],
        }
        access = record["extra"].get(ACCESS_KEY)
        if isinstance(access, dict):
            # an access line (web/access.py): its fields at the top level, as they are
            doc.update((k, v) for k, v in access.items() if k in ACCESS_FIELDS)
        extra = {k: v for k, v in record["extra"].items() if k not in ("subsystem", ACCESS_KEY)}
        if extra:
            doc["extra"] = {
                k: v if isinstance(v, int | float | str | bool) else str(v)
                for k, v in extra.items()
            }
        if record["exception"] is not None:
            exc = record["exception"]
            doc["error"] = f"{exc.type.__name__ if exc.type else 'Error'}: {exc.value}"
        stream.write(encoder.encode(doc).decode() + "\n")
        stream.flush()

    return sink


# The service's own sink: (handler id, format, stream, level), so that ``set_level`` can
# replace it alone (other sinks, a test's say, stay).
_sink: tuple[int, str, TextIO, str] | None = None


def _add_sink(level: str, fmt: str, stream: TextIO) -> int:
    if fmt == "json":
        return logger.add(_json_sink(stream), level=level, backtrace=False, diagnose=False)
    return logger.add(
        stream,
        level=level,
        format=HUMAN_FORMAT,
        backtrace=False,
        diagnose=False,
        colorize=False,
    )


def set_level(level: str) -> None:
    """Change the level of the sink ``setup`` made (``log.level`` is a runtime setting)."""
    global _sink
    if _sink is None or _sink[3] == level:
        return
    handler, fmt, stream, _ = _sink
    logger.remove(handler)
    _sink = (_add_sink(level, fmt, stream), fmt, stream, level)


# --------------------------------------------------------------------------- retries

#: What the stamina retries of the current task retry, and the subsystem to tag them with.
_retrying: ContextVar[tuple[str, str] | None] = ContextVar("visionflow_retrying", default=None)


@contextmanager
def retrying(what: str, subsystem: str) -> Iterator[None]:
    """Name the stamina retries made in this block (stamina's own context blocks are nameless)."""
    token = _retrying.set((what, subsystem))
    try:
        yield
    finally:
        _retrying.reset(token)


def log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's retry hook: one line with what is retried, the attempt and the delay."""
    what, subsystem = _retrying.get() or (details.name, "retry")
    cause = details.caused_by
    logger.bind(subsystem=subsystem).warning(
        "{}: attempt {} failed ({}); retrying in {:.2f}s",
        what,
        details.retry_num,
        str(cause) or type(cause).__name__,
        details.wait_for,
    )


def route_retries() -> None:
    """Make every stamina retry log through :func:`log_retry`.

    stamina's default hooks log a bare "stamina.retry_scheduled" (the details go to fields a
    text line does not show) and count into the global Prometheus registry, which is not the
    one /metrics serves.
    """
    stamina.instrumentation.set_on_retry_hooks([log_retry])


def setup(level: str = "INFO", fmt: str = "human", stream: TextIO | None = None) -> None:
    global _sink
    stream = stream or sys.stderr
    logger.remove()
    logger.configure(extra={"subsystem": "main"})
    _sink = (_add_sink(level, fmt, stream), fmt, stream, level)
    handler = InterceptHandler()
    logging.basicConfig(handlers=[handler], level=logging.INFO, force=True)
    for name in ("hypercorn.error", "hypercorn.access", "stamina"):
        std = logging.getLogger(name)
        std.handlers = [handler]
        std.propagate = False
    # numba is chatty at DEBUG; its warnings still come through.
    logging.getLogger("numba").setLevel(logging.WARNING)
    # httpx logs every request at INFO with its whole URL: an MCP endpoint's password and
    # ?api_key= in clear (our own lines show them as ***), two lines a poll, tagged "httpx"
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    route_retries()


def quiet_asyncio_reports(
    loop: asyncio.AbstractEventLoop, *, also: Callable[[dict[str, Any]], bool] | None = None
) -> None:
    """Keep asyncio from logging a traceback for a connection task hypercorn cancelled, or
    one whose socket failed; ``also`` may take other reports (True: handled).

    At the end of its drain hypercorn cancels the connections still open; asyncio's stream
    callback then asks the cancelled task for its exception, gets CancelledError and reports
    "Exception in callback" with a traceback. That is a shutdown doing its job, not an error.
    And hypercorn lets an OSError out of its connection task when closing a socket fails: a
    viewer that stopped reading (closed 1013) is dropped by TCP_USER_TIMEOUT, and asyncio
    reported "Unhandled exception in client_connected_cb" with a TimeoutError traceback.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_visionflow_quiet", False):
        return  # installed already (a server restarted on this loop)
    log = logger.bind(subsystem="http")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if also is not None and also(context):
            return
        if isinstance(exc, asyncio.CancelledError):
            log.debug("a connection was cancelled at the end of the drain")
            return
        if isinstance(exc, OSError) and "client_connected_cb" in str(context.get("message")):
            log.info("a connection ended with {!r} (the peer stopped acknowledging)", exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._visionflow_quiet = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
