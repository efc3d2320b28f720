"""A circuit breaker (sans-IO: the caller passes the time).

closed: calls go through; ``threshold`` consecutive failures open it.
open: calls are refused until ``cooldown`` seconds have passed, then one probe is let through
(half-open). The probe's success closes the breaker; its failure opens it for another cooldown.
"""

from __future__ import annotations

from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]

# Clocks are floats: a wait of a few ulps can round to no wait at all and spin a caller that
# sleeps retry_in() and asks again, so "almost cooled down" counts as cooled down.
_EPSILON = 1e-6


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown: float) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self._state: BreakerState = "closed"
        self._opened_at = 0.0

    def state(self, now: float) -> BreakerState:
        if self._state == "open" and now - self._opened_at >= self.cooldown - _EPSILON:
            return "half_open"
        return self._state

    def retry_in(self, now: float) -> float:
        """Seconds until a call may go through (0 when it may now)."""
        if self.state(now) != "open":
            return 0.0
        return max(0.0, self.cooldown - (now - self._opened_at))

    def allow(self, now: float) -> bool:
        """May a call go through now? In half-open this admits the single probe."""
        state = self.state(now)
        if state == "half_open" and self._state == "open":
            self._state = "half_open"
            return True
        return state == "closed"

    def record_success(self) -> None:
        self.failures = 0
        self._state = "closed"

    def abandon_probe(self, now: float) -> None:
        """The half-open probe ended without a verdict (cancelled, or an unexpected error):
        open again, so another probe is admitted after a cooldown instead of never."""
        if self._state == "half_open":
            self._state = "open"
            self._opened_at = now

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self._state == "half_open" or self.failures >= self.threshold:
            self._state = "open"
            self._opened_at = now
