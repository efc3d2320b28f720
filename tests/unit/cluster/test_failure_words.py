"""What a relay's viewer or API client is told when the simulation does not answer over NATS."""

from __future__ import annotations

import nats.errors

from visionflow.cluster.relay import _failure_text


def test_a_request_nobody_answers_is_said_in_words() -> None:
    # a drag with the service stopped said "the simulation did not answer: NoRespondersError()"
    assert _failure_text(nats.errors.NoRespondersError()) == (
        "nothing answers on NATS: is the service running?"
    )
    assert _failure_text(nats.errors.TimeoutError()) == "no answer in time"
    assert _failure_text(TimeoutError()) == "no answer in time"
    assert _failure_text(ConnectionResetError(104, "Connection reset")) == (
        "[Errno 104] Connection reset"
    )
    assert _failure_text(nats.errors.ConnectionClosedError()) == "nats: connection closed"
