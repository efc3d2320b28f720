"""Binary position frames (docs/protocol.md sections 1-3): a sans-IO numpy codec.

Encoding takes three parallel arrays, the way the physics engine holds a snapshot:

- ``ids``: ``uint32 (N,)`` flagged node ids (exactly one of :data:`AGENT_FLAG`,
  :data:`KNOWLEDGE_FLAG` set),
- ``positions`` and ``velocities``: ``float32 (N, 3)``,

and returns ``bytes`` ready for one WebSocket binary message. ``rows=`` (an index array) encodes
a subset without the caller gathering it first; that is how deltas are built.

Speed: the records are interleaved by one fused numba loop (see :mod:`._kernels`) straight into
the ``bytes`` object that is returned, so a keyframe costs one pass over its size, about a
``bytes(buffer)`` copy of it. The object is created uninitialised with the C API's
``PyBytes_FromStringAndSize(NULL, size)`` and filled before anyone else holds a reference,
which is the one case in which the C API allows writing into a bytes object (see
:func:`_new_bytes`); it is immutable from the moment it is returned. A ``bytes`` is returned,
not a view, because hypercorn copies anything else once per viewer (``bytes(message["bytes"])``)
and the ``/wss`` sender sends frames as ``bytes``. A fresh multi-megabyte allocation can cost a
page fault per 4 KiB on first touch; glibc's malloc serves repeated frames of a size from memory
already mapped, so in steady state it does not (``benchmarks/encode.py`` measures it). Encoding
refuses non-finite floats and ids without exactly one flag with :class:`LocalProtocolError`: the
caller (the physics snapshot) must have scrubbed them, and a frame never carries them.

Decoding validates everything docs/protocol.md section 2 lists and raises
:class:`FrameDecodeError` with the byte offset where the message went wrong; it never raises
anything else.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final, TypeAlias

import numpy as np
from numpy.typing import NDArray

from visionflow.errors import FrameDecodeError, LocalProtocolError
from visionflow.protocol import _kernels
from visionflow.protocol.wire import AGENT_FLAG, FLAG_MASK, ID_MASK, KNOWLEDGE_FLAG

__all__ = [
    "AGENT_FLAG",
    "FLAG_MASK",
    "HEADER_SIZE",
    "ID_MASK",
    "KNOWLEDGE_FLAG",
    "MAGIC",
    "RECORD_DTYPE",
    "RECORD_SIZE",
    "VERSION",
    "Frame",
    "FrameKind",
    "Records",
    "WireFormat",
    "decode_client_records",
    "decode_frame",
    "decode_legacy",
    "encode_delta",
    "encode_frame",
    "encode_keyframe",
    "encode_legacy",
    "is_warm",
    "warm_up",
]

MAGIC: Final = b"VF"
VERSION: Final = 2
HEADER_SIZE: Final = 16
RECORD_SIZE: Final = 28
_MAX_COUNT: Final = 0xFFFFFFFF
_MAX_SEQUENCE: Final = 0xFFFFFFFFFFFFFFFF

#: One node record, packed little-endian (28 bytes, no padding).
RECORD_DTYPE: Final = np.dtype([("id", "<u4"), ("pos", "<f4", (3,)), ("vel", "<f4", (3,))])
assert RECORD_DTYPE.itemsize == RECORD_SIZE

_HEADER = struct.Struct("<2sBBIQ")
assert _HEADER.size == HEADER_SIZE

_FIELD_NAMES: Final = ("id", "pos.x", "pos.y", "pos.z", "vel.x", "vel.y", "vel.z")

U32Array: TypeAlias = NDArray[np.uint32]
F32Array: TypeAlias = NDArray[np.float32]
RowIndex: TypeAlias = NDArray[np.intp]


class FrameKind(IntEnum):
    """The ``kind`` byte of a protocol-2 header."""

    KEYFRAME = 0
    DELTA = 1


class WireFormat(StrEnum):
    """The ``protocol`` query parameter: which framing a connection gets."""

    PROTOCOL2 = "2"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class Records:
    """Decoded node records: parallel arrays, owned by this object (copied out of the message)."""

    ids: U32Array
    positions: F32Array
    velocities: F32Array

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded protocol-2 frame."""

    kind: FrameKind
    sequence: int
    ids: U32Array
    positions: F32Array
    velocities: F32Array

    def __len__(self) -> int:
        return int(self.ids.shape[0])


# --------------------------------------------------------------------------- encoding


# PyBytes_FromStringAndSize(NULL, n) returns a new, uninitialised bytes object of n bytes, and
# "the data must not be modified in any way, unless the object was just created using
# PyBytes_FromStringAndSize(NULL, size)" (C API docs, PyBytes_AsString). numba runs on CPython
# only, so the C API is always there. ``pythonapi`` calls hold the GIL.
_bytes_new = ctypes.pythonapi.PyBytes_FromStringAndSize
_bytes_new.restype = ctypes.py_object
_bytes_new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
_bytes_data = ctypes.pythonapi.PyBytes_AsString
_bytes_data.restype = ctypes.c_void_p
_bytes_data.argtypes = (ctypes.py_object,)


class _Filling:
    """Exposes a new bytes object's storage to numpy, and keeps that object alive meanwhile.

    The array made from it has this object as its ``base``, so the memory it points at cannot
    be freed under it even if it outlived the encoder (it never does: it is a local there).
    """

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner: bytes, nbytes: int) -> None:
        self.owner = owner
        self.__array_interface__ = {
            "data": (_bytes_data(owner), False),
            "shape": (nbytes,),
            "typestr": "|u1",
            "version": 3,
        }


def _new_bytes(nbytes: int) -> tuple[bytes, NDArray[np.uint8]]:
    """A new ``bytes`` of ``nbytes`` uninitialised bytes and a writable array over them.

    The caller fills every byte through the array, drops the array, and only then hands the
    bytes out: from then on nothing writes to it. ``nbytes`` must be > 0 (CPython returns a
    shared empty object for 0).
    """
    data: bytes = _bytes_new(None, nbytes)
    return data, np.asarray(_Filling(data, nbytes))


def _check_ids(ids: object) -> U32Array:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise LocalProtocolError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.dtype == np.uint32:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind not in "iu":
        raise LocalProtocolError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > _MAX_COUNT):
        raise LocalProtocolError("ids must fit in u32")
    return arr.astype(np.uint32)


def _check_vectors(name: str, values: object, n: int) -> F32Array:
    arr = np.asarray(values)
    if arr.shape != (n, 3):
        raise LocalProtocolError(f"{name} must have shape ({n}, 3), got {arr.shape}")
    if arr.dtype == np.float32:  # the usual case: no conversion, no errstate (~1 us)
        return np.ascontiguousarray(arr)
    if arr.dtype.kind != "f":
        raise LocalProtocolError(f"{name} must be floats, got dtype {arr.dtype}")
    # A float64 too large for float32 becomes inf here, which the encoder then refuses.
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def _check_rows(rows: object) -> RowIndex:
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise LocalProtocolError(f"rows must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    # The range (0 <= row < n) is checked by the packer, on the way.
    return np.ascontiguousarray(arr, dtype=np.intp)


def _explain_refusal(ids: U32Array, pos: F32Array, vel: F32Array, rows: RowIndex | None) -> str:
    """Slow path, on failure only: name the first offending record."""
    order = np.arange(ids.shape[0]) if rows is None else rows
    flags = ids[order] & np.uint32(FLAG_MASK)
    bad_flag = (flags != AGENT_FLAG) & (flags != KNOWLEDGE_FLAG)
    bad_float = ~np.isfinite(np.concatenate([pos[order], vel[order]], axis=1)).all(axis=1)
    i = int(np.argmax(bad_flag | bad_float))
    row = int(order[i])
    node = int(ids[row])
    if bad_flag[i]:
        return f"record {i} (row {row}): id 0x{node:08x} must carry exactly one of the two flags"
    return (
        f"record {i} (row {row}, id 0x{node:08x}) holds a non-finite float "
        f"(pos={pos[row].tolist()}, vel={vel[row].tolist()}); scrub it before encoding"
    )


def _encode(
    header: tuple[FrameKind, int] | None,
    ids: object,
    positions: object,
    velocities: object,
    rows: object | None,
) -> bytes:
    """Encode records, after a protocol-2 header ``(kind, sequence)`` unless it is None."""
    ids_a = _check_ids(ids)
    n_nodes = ids_a.shape[0]
    pos = _check_vectors("positions", positions, n_nodes)
    vel = _check_vectors("velocities", velocities, n_nodes)
    rows_a = None if rows is None else _check_rows(rows)
    count = n_nodes if rows_a is None else rows_a.shape[0]
    if count > _MAX_COUNT:
        raise LocalProtocolError(f"{count} records do not fit a u32 count")
    start = 0 if header is None else HEADER_SIZE
    nbytes = start + RECORD_SIZE * count
    if nbytes == 0:
        return b""  # a legacy frame without records
    data, buf = _new_bytes(nbytes)
    pos_bits = pos.view(np.uint32).reshape(-1)
    vel_bits = vel.view(np.uint32).reshape(-1)
    # Aligned: CPython's allocators align objects to 16 bytes and a bytes' data is at offset 32.
    out = buf[start:].view(np.uint32)
    if rows_a is None:
        status = _kernels.pack_all(out, ids_a, pos_bits, vel_bits)
    else:
        status = _kernels.pack_rows(out, ids_a, pos_bits, vel_bits, rows_a)
    if status & _kernels.OUT_OF_RANGE:
        raise LocalProtocolError(f"rows out of range for {n_nodes} nodes")
    if status:
        raise LocalProtocolError(_explain_refusal(ids_a, pos, vel, rows_a))
    if header is not None:
        kind, sequence = header
        packed = _HEADER.pack(MAGIC, VERSION, kind, count, sequence)
        buf[:HEADER_SIZE] = np.frombuffer(packed, np.uint8)
    del out, buf  # no writable view of ``data`` survives this function
    return data


def _check_sequence(sequence: int) -> int:
    seq = int(sequence)
    if not 0 <= seq <= _MAX_SEQUENCE:
        raise LocalProtocolError(f"sequence {sequence} does not fit a u64")
    return seq


def encode_keyframe(
    ids: object,
    positions: object,
    velocities: object,
    sequence: int,
    *,
    rows: object | None = None,
) -> bytes:
    """A protocol-2 keyframe: header (kind 0) plus the records (all rows, or ``rows``)."""
    header = (FrameKind.KEYFRAME, _check_sequence(sequence))
    return _encode(header, ids, positions, velocities, rows)


def encode_delta(
    ids: object,
    positions: object,
    velocities: object,
    sequence: int,
    *,
    rows: object | None = None,
) -> bytes:
    """A protocol-2 delta: header (kind 1) plus the records (all rows, or ``rows``)."""
    header = (FrameKind.DELTA, _check_sequence(sequence))
    return _encode(header, ids, positions, velocities, rows)


def encode_legacy(
    ids: object,
    positions: object,
    velocities: object,
    *,
    rows: object | None = None,
) -> bytes:
    """A legacy frame: the records alone, no header (keyframe and delta look the same)."""
    return _encode(None, ids, positions, velocities, rows)


def encode_frame(
    fmt: WireFormat,
    kind: FrameKind,
    ids: object,
    positions: object,
    velocities: object,
    sequence: int,
    *,
    rows: object | None = None,
) -> bytes:
    """Encode in ``fmt``; ``kind`` and ``sequence`` are dropped for legacy (but still checked)."""
    seq = _check_sequence(sequence)
    if fmt is WireFormat.LEGACY:
        return _encode(None, ids, positions, velocities, rows)
    return _encode((FrameKind(kind), seq), ids, positions, velocities, rows)


_warm = False


def is_warm() -> bool:
    """Whether :func:`warm_up` has run in this process (the kernels are compiled)."""
    return _warm


def warm_up() -> None:
    """Compile the numba kernels now (about a second) rather than on the first frame."""
    global _warm
    # numba compiles one version per argument type, and a read-only array is another type:
    # snapshots are read-only, so without those a first 100k-node keyframe compiled on the
    # event loop (stalls of 0.5-1.4 s in benchmarks/loop_stall.py).
    # The hub's delta rows are writable, other callers' may not be: both.
    for frozen, frozen_rows in itertools.product((False, True), repeat=2):
        ids = np.array([KNOWLEDGE_FLAG], np.uint32)
        vec = np.zeros((1, 3), np.float32)
        rows = np.array([0], np.intp)
        for a in (ids, vec):
            a.flags.writeable = not frozen
        rows.flags.writeable = not frozen_rows
        encode_keyframe(ids, vec, vec, 0)
        encode_delta(ids, vec, vec, 0, rows=rows)
    _warm = True


# --------------------------------------------------------------------------- decoding


def _as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def _records(view: memoryview, offset: int, count: int) -> Records:
    """Copy ``count`` records at ``offset`` out of ``view``, refusing any non-finite float."""
    words = np.frombuffer(view, dtype="<u4", count=7 * count, offset=offset)
    exponent = np.uint32(0x7F800000)
    bad = (words & exponent) == exponent
    bad[::7] = False  # the id word is not a float
    if bad.any():
        word = int(np.argmax(bad))
        rec, field = divmod(word, 7)
        raise FrameDecodeError(
            f"record {rec} field {_FIELD_NAMES[field]} is not a finite float", offset + 4 * word
        )
    table = np.frombuffer(view, dtype=RECORD_DTYPE, count=count, offset=offset)
    return Records(
        ids=table["id"].astype(np.uint32),
        positions=table["pos"].astype(np.float32),
        velocities=table["vel"].astype(np.float32),
    )


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode one protocol-2 message, validating every rule of docs/protocol.md section 2."""
    view = _as_bytes_view(data)
    size = view.nbytes
    if size < HEADER_SIZE:
        raise FrameDecodeError(
            f"message is {size} bytes, shorter than the {HEADER_SIZE}-byte header", size
        )
    magic, version, kind, count, sequence = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise FrameDecodeError(f"magic is {magic!r}, expected {MAGIC!r}", 0)
    if version != VERSION:
        raise FrameDecodeError(f"protocol version {version}, expected {VERSION}", 2)
    if kind not in (FrameKind.KEYFRAME, FrameKind.DELTA):
        raise FrameDecodeError(f"unknown frame kind {kind} (0 = keyframe, 1 = delta)", 3)
    expected = HEADER_SIZE + RECORD_SIZE * count
    if size != expected:
        raise FrameDecodeError(
            f"record count {count} needs {expected} bytes, message has {size}", 4
        )
    records = _records(view, HEADER_SIZE, count)
    return Frame(FrameKind(kind), sequence, records.ids, records.positions, records.velocities)


def _decode_headerless(data: bytes | bytearray | memoryview, what: str) -> Records:
    view = _as_bytes_view(data)
    size = view.nbytes
    extra = size % RECORD_SIZE
    if extra:
        raise FrameDecodeError(
            f"{what} is {size} bytes, not a multiple of the {RECORD_SIZE}-byte record "
            f"({extra} bytes left over)",
            size - extra,
        )
    return _records(view, 0, size // RECORD_SIZE)


def decode_legacy(data: bytes | bytearray | memoryview) -> Records:
    """Decode a legacy frame (headerless records, docs/protocol.md section 3)."""
    return _decode_headerless(data, "legacy frame")


def decode_client_records(data: bytes | bytearray | memoryview) -> Records:
    """Decode a client's binary drag message (section 5): headerless records, finite floats.

    Whether the ids exist (and whether flags are present) is for the caller to judge against
    the graph; velocities are decoded but carry no meaning.
    """
    return _decode_headerless(data, "client binary message")
