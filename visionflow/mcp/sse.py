"""Sans-IO parser of a ``text/event-stream`` body (the WHATWG event-stream format), bounded.

Ours rather than httpx-sse's: that decoder (0.4.3) works on decoded text and buffers a line, and
an event's data lines, without any limit, so a server sending one endless ``data:`` line would
make us hold all of it. Here a line over ``max_event_bytes`` (plus room for its field name), or an
event whose data grows past it, is a :class:`RemoteProtocolError` and the stream is dead, like an
oversize JSON-RPC line (``framing.py``).

Lines end in CR LF, LF or CR; a CR at the end of a chunk waits for the next one (it may be the
first half of CR LF). Data stays bytes (MCP's events carry UTF-8 JSON); other fields are decoded
with replacement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from visionflow.errors import RemoteProtocolError

__all__ = ["SseEvent", "SseParser"]

_EOL = re.compile(rb"\r\n|\r|\n")
#: A line may hold the field name and ": " besides the data it carries.
_FIELD_SLACK = 64
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: bytes
    event: str = "message"
    id: str | None = None  # the last event id in force when it was dispatched


class SseParser:
    """Feed it body chunks; it returns the events they complete.

    ``last_event_id`` (for ``Last-Event-ID`` when reconnecting) and ``retry`` (milliseconds the
    server asked a reconnect to wait) persist across events, as the format says.
    """

    def __init__(self, max_event_bytes: int) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self._buf = bytearray()
        self._scan_from = 0  # bytes before it hold no line end: a drip is scanned once
        self._data = bytearray()
        self._has_data = False
        self._event = ""
        self._started = False
        self._error: RemoteProtocolError | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(bytes(buf)):
                return []
            self._started = True
            if buf.startswith(_BOM):
                del buf[: len(_BOM)]
        events: list[SseEvent] = []
        pos = 0
        while True:
            m = _EOL.search(buf, max(pos, self._scan_from))
            if m is None or (m.group() == b"\r" and m.end() == len(buf)):
                break  # no line end yet, or a CR whose LF may be in the next chunk
            event = self._line(bytes(buf[pos : m.start()]))
            pos = m.end()
            if event is not None:
                events.append(event)
        if pos:
            del buf[:pos]
        self._scan_from = max(0, len(buf) - 1)  # a held CR is looked at again
        if len(buf) > self.max_event_bytes + _FIELD_SLACK:
            self._fail(f"an event-stream line exceeds {self.max_event_bytes} bytes")
        return events

    def _fail(self, reason: str) -> None:
        self._buf.clear()
        self._data.clear()
        self._error = RemoteProtocolError(reason)
        raise self._error

    def _line(self, line: bytes) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None  # a comment: servers send them as keep-alives
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            if self._has_data:
                self._data += b"\n"
            self._data += value
            self._has_data = True
            if len(self._data) > self.max_event_bytes:
                self._fail(f"an event's data exceeds {self.max_event_bytes} bytes")
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry = int(value[:12])
        return None  # unknown fields are ignored

    def _dispatch(self) -> SseEvent | None:
        if not self._has_data:
            self._event = ""
            return None
        event = SseEvent(bytes(self._data), self._event or "message", self.last_event_id)
        self._data.clear()
        self._has_data = False
        self._event = ""
        return event
