"""Hypothesis over ``/wss``: upgrade parameters, control messages and binary drags, sent to a
served service over loopback (docs/protocol.md sections 4, 5 and 8).

Each message is followed by a sentinel ``ping`` whose ``pong`` marks the end of its replies, so
every reply is laid at the door of the message that caused it: one ``error`` (with a documented
code) for what the protocol refuses, the documented answer for the rest, and the connection
still open after it. Nothing may end a connection with 1011 or log a traceback. Generation is
derandomized and example counts are small, so a run takes seconds and repeats exactly.
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.served import TOKEN, Served, examples, served
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.slow

#: What the server may send (section 5), and the codes an ``error`` may carry.
SERVER_TYPES = {
    "connection_established",
    "settled",
    "moving",
    "graph_changed",
    "agents_changed",
    "subscribed",
    "pong",
    "error",
}
ERROR_CODES = {
    "bad_message",
    "rate_limited",
    "bad_drag",
    "unknown_node",
    "invalid_position",
    "bad_release",
}
# Unsolicited messages that may come between any two replies.
UNSOLICITED = {"settled", "moving", "graph_changed", "agents_changed"}
MAX_COORD = 1e6
WAIT = 10.0

FUZZ = settings(
    max_examples=examples(40),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("fuzz-ws"), token=TOKEN) as s:
        yield s
    assert not s.tracebacks(), "\n".join(s.tracebacks())


@pytest.fixture(scope="module")
def node_ids(service: Served) -> list[int]:
    """The example vault's nodes (shown once the vault is read, soon after start-up)."""
    deadline = time.monotonic() + 60
    while True:
        auth = {"Authorization": f"Bearer {TOKEN}"}  # the graph's data needs it, as /wss does
        page = requests.get(f"{service.url}/api/graph/data", headers=auth, timeout=30).json()
        ids = [n["id"] for n in page["nodes"]]
        if ids:
            return ids
        assert time.monotonic() < deadline, "the example vault never showed: no nodes to drag"
        time.sleep(0.1)


def open_viewer(service: Served, **params: str) -> ClientConnection:
    query = urlencode({"token": TOKEN, **params})
    return connect(f"{service.ws_url}?{query}", open_timeout=WAIT, close_timeout=1, max_size=None)


class Session:
    """One viewer; ``exchange`` sends a message and returns the replies it caused."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sentinel = 9_000_000_000
        first = self.texts_until(lambda m: m["type"] == "connection_established")
        assert first[-1]["protocol"] in ("2", "legacy")

    def texts_until(self, done: Any) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while True:
            raw = self.ws.recv(WAIT)
            if isinstance(raw, bytes):
                continue  # position frames
            message = json.loads(raw)
            assert isinstance(message, dict) and message.get("type") in SERVER_TYPES, raw
            if message["type"] == "error":
                assert message["code"] in ERROR_CODES, message
                assert isinstance(message["message"], str) and message["message"]
            got.append(message)
            if done(message):
                return got

    def exchange(self, message: str | bytes) -> list[dict[str, Any]]:
        self.sentinel += 1
        mark = self.sentinel
        self.ws.send(message)
        self.ws.send(json.dumps({"type": "ping", "timestamp": mark}))
        replies = self.texts_until(lambda m: m["type"] == "pong" and m["timestamp"] == mark)
        return [m for m in replies[:-1] if m["type"] not in UNSOLICITED]


def errors(replies: list[dict[str, Any]]) -> list[str]:
    return [m["code"] for m in replies if m["type"] == "error"]


def answered(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replies other than the heartbeat (a ``pong`` with a null timestamp)."""
    return [m for m in replies if not (m["type"] == "pong" and m["timestamp"] is None)]


# -- control messages ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
NUMBERS = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
KNOWN = [
    "ping",
    "requestInitialData",
    "subscribe_position_updates",
    "unsubscribe_position_updates",
    "release",
]


@st.composite
def control(draw: st.DrawFn) -> tuple[str, str]:
    """(what it is, the text sent)."""
    kind = draw(
        st.sampled_from(
            ["ping", "subscribe", "release", "plain", "unknown", "not_json", "not_object", "any"]
        )
    )
    extra = draw(
        st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), JSON_VALUES, max_size=2)
    )
    if kind == "ping":
        timestamp = draw(st.none() | NUMBERS | JSON_VALUES)
        return kind, json.dumps({"type": "ping", **extra, "timestamp": timestamp})
    if kind == "subscribe":
        interval = draw(NUMBERS | JSON_VALUES)
        return kind, json.dumps(
            {"type": "subscribe_position_updates", **extra, "interval": interval}
        )
    if kind == "release":
        ids = draw(st.lists(st.integers(-5, 2**32 + 5), max_size=20) | JSON_VALUES)
        return kind, json.dumps({"type": "release", **extra, "ids": ids})
    if kind == "plain":
        name = draw(st.sampled_from(["requestInitialData", "unsubscribe_position_updates"]))
        return name, json.dumps({"type": name, **extra})
    if kind == "unknown":
        name = draw(st.text(max_size=30).filter(lambda t: t not in KNOWN) | JSON_VALUES)
        return kind, json.dumps({"type": name, **extra})
    if kind == "not_object":
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return kind, json.dumps(value)
    if kind == "not_json":
        text = draw(st.text(max_size=60).filter(lambda t: not _is_json(t)))
        return kind, text
    return kind, draw(st.text(max_size=200))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@FUZZ
@given(messages=st.lists(control(), min_size=1, max_size=8))
def test_control_messages_get_their_answer_or_one_error(
    service: Served, messages: list[tuple[str, str]]
) -> None:
    with open_viewer(service, subscribe="false") as ws:
        session = Session(ws)
        for kind, text in messages:
            raw = session.exchange(text)
            replies = answered(raw)
            refused = errors(replies)
            assert len(refused) <= 1, (text, replies)
            if kind in ("unknown", "not_json", "not_object"):
                assert refused == ["bad_message"], (text, replies)
            elif kind == "ping":
                sent = json.loads(text)["timestamp"]
                if not refused:  # a number, or null: echoed
                    pongs = [m for m in raw if m["type"] == "pong"]
                    assert any(_same(m["timestamp"], sent) for m in pongs), (text, raw)
            elif kind in ("subscribe", "requestInitialData"):
                if not refused:
                    assert [m["type"] for m in replies] == ["subscribed"], (text, replies)
                    assert replies[0]["interval"] > 0
            elif kind in ("release", "unsubscribe_position_updates"):
                assert all(m["type"] == "error" for m in replies), (text, replies)
            else:  # any text at all
                assert all(m["type"] in ("error", "pong", "subscribed") for m in replies), (
                    text,
                    replies,
                )


def _same(got: Any, sent: Any) -> bool:
    if isinstance(sent, int | float) and not isinstance(sent, bool):
        return isinstance(got, int | float) and math.isclose(got, sent, rel_tol=1e-15)
    return got == sent


# -- drags ----------------------------------------------------------------------------------------


def record(node: int, x: float, y: float, z: float) -> bytes:
    return struct.pack("<I3f3f", node, x, y, z, 0.0, 0.0, 0.0)


COORD = st.floats(width=32)


@st.composite
def drag(draw: st.DrawFn, known: list[int]) -> tuple[str, bytes]:
    """(the refusal expected, or "" for none; the message)."""
    kind = draw(st.sampled_from(["ok", "coords", "unknown", "garbage"]))
    if kind == "garbage":
        data = draw(st.binary(max_size=200))
        if len(data) % 28 == 0:
            data += b"\0"
        return "bad_drag", data
    ids = draw(st.lists(st.sampled_from(known), min_size=1, max_size=8))
    flags = draw(st.sampled_from([0, 0x40000000]))  # a record may carry its kind's flag
    if kind == "ok":
        inside = st.floats(-MAX_COORD, MAX_COORD, width=32)
        points = [draw(st.tuples(inside, inside, inside)) for _ in ids]
        return "", b"".join(record(i | flags, *p) for i, p in zip(ids, points, strict=True))
    if kind == "unknown":
        stranger = draw(st.integers(1, 0x3FFFFFFF).filter(lambda i: i not in known))
        return "unknown_node", b"".join(record(i, 0.0, 0.0, 0.0) for i in [*ids, stranger])
    points = [draw(st.tuples(COORD, COORD, COORD)) for _ in ids]
    values = [v for p in points for v in p]
    if any(not math.isfinite(v) for v in values):
        expected = "bad_drag"
    elif any(abs(v) > MAX_COORD for v in values):
        expected = "invalid_position"
    else:
        expected = ""
    return expected, b"".join(record(i, *p) for i, p in zip(ids, points, strict=True))


@FUZZ
@given(data=st.data())
def test_drags_are_applied_whole_or_refused_with_their_code(
    service: Served, node_ids: list[int], data: st.DataObject
) -> None:
    drags = data.draw(st.lists(drag(node_ids), min_size=1, max_size=6))
    with open_viewer(service, subscribe="false") as ws:
        session = Session(ws)
        for expected, message in drags:
            refused = errors(answered(session.exchange(message)))
            assert refused == ([expected] if expected else []), (message.hex(), refused)
        # the pins this viewer made: released by name, and nothing refused
        assert errors(session.exchange(json.dumps({"type": "release", "ids": node_ids}))) == []


# -- the upgrade --------------------------------------------------------------------------------


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["protocol", "graph", "subscribe", "token", "other"]),
        st.text(max_size=12)
        | st.sampled_from(["2", "legacy", "all", "agents", "knowledge", "true", "0", TOKEN]),
        max_size=4,
    )
)
def test_an_upgrade_is_accepted_or_closed_with_its_code(
    service: Served, params: dict[str, str]
) -> None:
    query = urlencode(params)
    closed = None
    with connect(f"{service.ws_url}?{query}", open_timeout=WAIT, close_timeout=1) as ws:
        try:
            first = json.loads(ws.recv(WAIT))
        except ConnectionClosed as exc:
            closed = exc.rcvd
    if params.get("token") != TOKEN:
        assert closed is not None and closed.code == 4401, closed
    elif closed is not None:
        assert closed.code == 4400, closed
        assert (
            params.get("protocol", "2") not in ("2", "legacy")
            or params.get("graph", "all") not in ("all", "knowledge", "agents")
            or params.get("subscribe", "true").lower()
            not in ("true", "1", "yes", "false", "0", "no")
        ), (params, closed)
    else:
        assert first["type"] == "connection_established"
        assert first["protocol"] == params.get("protocol", "2")
