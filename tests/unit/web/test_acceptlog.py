"""AcceptErrors: a burst of failed accepts is one line, then the count once a minute."""

from __future__ import annotations

import errno
import logging

import pytest
from loguru import logger

from visionflow.web.acceptlog import (
    REPORT_EVERY_S,
    AcceptErrors,
    TrioAcceptFilter,
    is_asyncio_accept_error,
    is_asyncio_stale_accept_retry,
)


@pytest.fixture
def lines() -> list[str]:
    got: list[str] = []
    sink = logger.add(lambda m: got.append(str(m)), level="WARNING", format="{message}")
    yield got
    logger.remove(sink)


def test_one_line_per_burst_then_one_a_minute_with_the_count(lines: list[str]) -> None:
    now = [0.0]
    errors = AcceptErrors(clock=lambda: now[0])
    for k in range(300):  # trio retries every 100 ms: 30 s of failures
        now[0] = k * 0.1
        errors.note("EMFILE (Too many open files)")
    assert len(lines) == 1 and "cannot accept connections: EMFILE" in lines[0]
    now[0] = REPORT_EVERY_S + 1
    errors.note("EMFILE (Too many open files)")
    assert len(lines) == 2 and "300 failed accepts since the last report" in lines[1]


def test_trio_retry_records_are_replaced_and_others_pass(lines: list[str]) -> None:
    flt = TrioAcceptFilter(AcceptErrors())
    record = logging.LogRecord(
        "trio.serve_listeners",
        logging.ERROR,
        __file__,
        1,
        "accept returned %s (%s); retrying in %s seconds",
        ("EMFILE", "Too many open files", 0.1),
        None,
    )
    assert flt.filter(record) is False
    assert "cannot accept connections: EMFILE (Too many open files)" in lines[0]
    other = logging.LogRecord("trio.serve_listeners", logging.ERROR, __file__, 1, "x", (), None)
    assert flt.filter(other) is True


def test_asyncio_contexts() -> None:
    assert is_asyncio_accept_error({"message": "socket.accept() out of system resource"})
    assert not is_asyncio_accept_error({"message": "Exception in callback"})


def test_a_stale_accept_retry_is_recognised_and_nothing_else() -> None:
    retry = "Exception in callback BaseSelectorEventLoop._start_serving(<function ...>, ...)"
    bad_fd = ValueError("Invalid file descriptor: -1")
    assert is_asyncio_stale_accept_retry({"message": retry, "exception": bad_fd})
    ebadf = OSError(errno.EBADF, "Bad file descriptor")
    assert is_asyncio_stale_accept_retry({"message": retry, "exception": ebadf})
    # the listener still open but failing otherwise: reported as before
    assert not is_asyncio_stale_accept_retry(
        {"message": retry, "exception": OSError(errno.ENOMEM, "x")}
    )
    assert not is_asyncio_stale_accept_retry({"message": retry, "exception": ValueError("other")})
    other = "Exception in callback Server._serve()"
    assert not is_asyncio_stale_accept_retry({"message": other, "exception": bad_fd})
