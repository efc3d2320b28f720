from __future__ import annotations

import pytest

from visionflow.mcp.breaker import CircuitBreaker


def test_opens_after_threshold_consecutive_failures() -> None:
    b = CircuitBreaker(threshold=3, cooldown=10)
    for t in range(2):
        assert b.allow(t)
        b.record_failure(t)
    assert b.state(2) == "closed"
    b.record_failure(2)
    assert b.state(2) == "open"
    assert not b.allow(5)
    assert b.retry_in(5) == pytest.approx(7)


def test_success_resets_the_count() -> None:
    b = CircuitBreaker(threshold=2, cooldown=10)
    b.record_failure(0)
    b.record_success()
    b.record_failure(1)
    assert b.state(1) == "closed"


def test_one_probe_after_cooldown_then_closed_on_success() -> None:
    b = CircuitBreaker(threshold=1, cooldown=10)
    b.record_failure(0)
    assert b.state(10) == "half_open"
    assert b.allow(10)
    assert not b.allow(10.5)  # only one probe
    b.record_success()
    assert b.state(11) == "closed"
    assert b.allow(11)


def test_failed_probe_opens_for_another_cooldown() -> None:
    b = CircuitBreaker(threshold=5, cooldown=10)
    for _ in range(5):
        b.record_failure(0)
    assert b.allow(12)
    b.record_failure(12)
    assert b.state(12) == "open"
    assert b.retry_in(15) == pytest.approx(7)
    assert b.allow(22)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(threshold=0, cooldown=1)


def test_an_abandoned_probe_reopens_instead_of_hanging() -> None:
    # A probe that ends with neither verdict (cancelled, or an unexpected error) used to
    # leave the breaker half-open for good: allow() was never true again.
    b = CircuitBreaker(threshold=1, cooldown=10)
    b.record_failure(0)
    assert b.allow(10)  # the probe
    b.abandon_probe(11)
    assert b.state(15) == "open" and not b.allow(15)
    assert b.allow(21)  # another probe after a cooldown
    b.abandon_probe(21)
    b.record_success()
    b.abandon_probe(30)  # closed: nothing to abandon
    assert b.state(30) == "closed"
