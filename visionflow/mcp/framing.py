"""Sans-IO framer for newline-delimited JSON-RPC (docs/architecture.md section 10).

Feed it bytes in whatever chunks the socket hands over; it returns one event per complete line.
Lines are split on ``\\n`` *bytes*, which never occur inside a multi-byte UTF-8 sequence, so a
character split across chunks is reassembled before it is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from visionflow import jsonsafe
from visionflow.errors import RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "FrameEvent",
    "LineFramer",
    "RawMessage",
    "SkippedLine",
    "encode_line",
]

#: The MCP revision both ends of a session here speak: the client (``client.py``) asks for it
#: in ``initialize``, the simulator (``visionflow.mcpsim``) answers with it. Here because both
#: use this module for their lines.
PROTOCOL_VERSION = "2024-11-05"

#: 3.x answers ``tools/list`` with about 263 KB on one line; 8 MiB leaves a wide margin while
#: still bounding what a broken peer can make us buffer.
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024

_PREVIEW_CHARS = 80


class RawMessage(msgspec.Struct, omit_defaults=True):
    """One JSON-RPC object as it came off the wire; absent members stay ``UNSET``.

    ``UNSET`` (not ``None``) matters: ``"result": null`` is a valid answer and ``"id": null``
    is how some servers mark an error they could not attribute.
    """

    jsonrpc: str | msgspec.UnsetType = msgspec.UNSET
    id: int | str | msgspec.UnsetType | None = msgspec.UNSET
    method: str | msgspec.UnsetType = msgspec.UNSET
    params: Any = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A non-empty line that is not a JSON-RPC object (a banner, garbage, a batch array).

    ``preview`` is the first 80 characters, for a warning log; ``size`` is the line length in bytes.
    """

    preview: str
    size: int
    reason: str


FrameEvent = RawMessage | SkippedLine

_decoder = msgspec.json.Decoder(RawMessage)
_encoder = msgspec.json.Encoder()


def encode_line(message: object) -> bytes:
    """Serialise one message as a single newline-terminated line."""
    return _encoder.encode(message) + b"\n"


def _preview(line: bytes) -> str:
    return line[: _PREVIEW_CHARS * 4].decode("utf-8", errors="replace")[:_PREVIEW_CHARS]


class LineFramer:
    """Splits a byte stream into JSON-RPC messages, one per line.

    After a :class:`RemoteProtocolError` (a line over ``max_line_bytes``) the stream cannot be
    resynchronised safely, so every later :meth:`feed` raises again: close the connection.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()
        # Where to resume the newline search: bytes before it are known to hold none, so a
        # large line arriving in many small chunks is scanned once, not once per chunk.
        self._scan_from = 0
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[FrameEvent]:
        if self._error is not None:
            raise self._error
        self._buf += data
        events: list[FrameEvent] = []
        start = 0
        buf = self._buf
        while True:
            nl = buf.find(b"\n", max(start, self._scan_from))
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            start = nl + 1
            self._scan_from = start
            if len(line) > self.max_line_bytes:
                self._fail(len(line))
            event = self._parse(line)
            if event is not None:
                events.append(event)
        if start:
            del buf[:start]
            self._scan_from = 0
        self._scan_from = len(buf)
        if len(buf) > self.max_line_bytes:
            self._fail(len(buf))
        return events

    def _fail(self, size: int) -> None:
        self._buf.clear()
        self._error = RemoteProtocolError(
            f"line exceeds max_line_bytes={self.max_line_bytes} ({size}+ bytes without a newline)"
        )
        raise self._error

    @staticmethod
    def _parse(line: bytes) -> FrameEvent | None:
        stripped = line.strip()  # \r of \r\n, stray spaces; blank lines are keep-alives
        if not stripped:
            return None
        if stripped[:1] != b"{":
            reason = "not a JSON object"
            return SkippedLine(_preview(stripped), len(line), reason)
        try:
            return jsonsafe.decode(stripped, _decoder)
        except msgspec.ValidationError as exc:
            return SkippedLine(_preview(stripped), len(line), f"not a JSON-RPC message: {exc}")
        except msgspec.DecodeError as exc:
            return SkippedLine(_preview(stripped), len(line), f"invalid JSON: {exc}")
