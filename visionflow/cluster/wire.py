"""What travels over NATS between the service and its relays. Sans-IO.

Subjects, under ``cluster.subject_prefix`` (``P``):

- ``P.stream.frame`` (service to relays): a protocol-2 frame of the ``all`` filter, keyframe
  or delta, with :class:`TickHeaders`;
- ``P.stream.control`` (service to relays): a control message as viewers get it (JSON text);
- ``P.rpc.sync`` (relay to service, request/reply): "publish a keyframe now" (a relay that
  starts or reconnected);
- ``P.rpc.pins`` (request/reply): a viewer's drag or release, :class:`PinRequest` ->
  :class:`PinReply`;
- ``P.rpc.api`` (request/reply): an HTTP request under ``/api/``, :class:`ApiRequest` ->
  :class:`ApiReply` (in parts, ``VF-Part: i/n``, when over the broker's max_payload);
- ``P.relay.alive`` (relay to service): the relay's id, every :data:`ALIVE_INTERVAL_S`: the
  service releases the pins of a relay it has not heard from for :data:`ALIVE_TIMEOUT_S`
  (one killed without a word cannot release them itself).

Both stream subjects come from one connection and are read by one subscription (``P.stream.>``),
so a relay sees them in the order they were published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import msgspec

from visionflow.errors import RemoteProtocolError

__all__ = [
    "ApiReply",
    "ApiRequest",
    "PinReply",
    "PinRequest",
    "Subjects",
    "TickHeaders",
    "decode",
    "encode",
]

#: Header names (NATS headers are HTTP-like; values are strings).
EPOCH: Final = "VF-Epoch"
BASE: Final = "VF-Base"
REVISION: Final = "VF-Revision"
SETTLED: Final = "VF-Settled"
#: When the publisher sent a frame: its wall clock, ms since the epoch (a relay's lag estimate).
SENT: Final = "VF-Sent"
#: A relay says it is alive this often; one silent this long is gone (its pins are released).
ALIVE_INTERVAL_S: Final = 5.0
ALIVE_TIMEOUT_S: Final = 20.0
#: A multi-part reply (a response over the broker's max_payload): ``i/n``, 1-based.
PART: Final = "VF-Part"


@dataclass(frozen=True, slots=True)
class Subjects:
    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}.stream.>"

    @property
    def frame(self) -> str:
        return f"{self.prefix}.stream.frame"

    @property
    def control(self) -> str:
        return f"{self.prefix}.stream.control"

    @property
    def sync(self) -> str:
        return f"{self.prefix}.rpc.sync"

    @property
    def pins(self) -> str:
        return f"{self.prefix}.rpc.pins"

    @property
    def api(self) -> str:
        return f"{self.prefix}.rpc.api"

    @property
    def alive(self) -> str:
        return f"{self.prefix}.relay.alive"


@dataclass(frozen=True, slots=True)
class TickHeaders:
    """What a frame does not say itself: which run of the service it is from (``epoch``: the
    sequence starts again at 1 when the service restarts), the tick a delta applies to
    (``base``; None for a keyframe), the topology revision and whether the layout rests."""

    epoch: str
    base: int | None
    revision: int
    settled: bool

    def to_headers(self) -> dict[str, str]:
        out = {
            EPOCH: self.epoch,
            REVISION: str(self.revision),
            SETTLED: "1" if self.settled else "0",
        }
        if self.base is not None:
            out[BASE] = str(self.base)
        return out

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> TickHeaders:
        """Raises :class:`RemoteProtocolError` naming the header that is missing or wrong."""
        if not headers:
            raise RemoteProtocolError("frame without headers")
        epoch = headers.get(EPOCH, "")
        if not epoch or len(epoch) > 64:
            raise RemoteProtocolError(f"header {EPOCH} missing or over 64 characters")
        base_text = headers.get(BASE)
        return cls(
            epoch,
            None if base_text is None else _uint(BASE, base_text),
            _uint(REVISION, headers.get(REVISION)),
            headers.get(SETTLED) == "1",
        )


def _uint(name: str, text: str | None) -> int:
    if text is None or not text.isdigit() or len(text) > 20:
        raise RemoteProtocolError(f"header {name}: expected an unsigned integer, got {text!r}")
    return int(text)


# --------------------------------------------------------------------------- request bodies


class PinRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A relay viewer's drag (``pin``: ids and positions), ``release`` (ids) or disconnect
    (``release_all``). ``relay`` + ``owner`` (the relay's connection serial) name the owner."""

    op: Literal["pin", "release", "release_all"]
    relay: str
    owner: int
    ids: bytes = b""  # little-endian u32, raw or flagged
    positions: bytes = b""  # little-endian f32 x 3 per id


class PinReply(msgspec.Struct, frozen=True, kw_only=True):
    """``ok``, or the viewer's ``error`` message: ``code`` and ``message`` as the service
    itself would send them (``unknown_node``, ``invalid_position``, ...)."""

    ok: bool
    code: str = ""
    message: str = ""


class ApiRequest(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = []
    body: bytes = b""
    client: str = ""  # the viewer's address as the relay saw it (per-client limits)


class ApiReply(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    headers: list[tuple[bytes, bytes]] = []
    body: bytes = b""


_ENCODER: Final = msgspec.msgpack.Encoder()
_T = TypeVar("_T", PinRequest, PinReply, ApiRequest, ApiReply)


def encode(message: PinRequest | PinReply | ApiRequest | ApiReply) -> bytes:
    return _ENCODER.encode(message)


def decode(data: bytes, kind: type[_T]) -> _T:
    """Raises :class:`RemoteProtocolError` for a body that is not a ``kind``."""
    try:
        return msgspec.msgpack.decode(data, type=kind)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"bad {kind.__name__}: {exc}") from exc
