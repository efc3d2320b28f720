"""Binary frame codec: round trips, every rejection rule, never a non-finite float."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from visionflow.errors import FrameDecodeError, LocalProtocolError
from visionflow.protocol.frames import (
    AGENT_FLAG,
    HEADER_SIZE,
    ID_MASK,
    KNOWLEDGE_FLAG,
    RECORD_DTYPE,
    RECORD_SIZE,
    FrameKind,
    WireFormat,
    decode_client_records,
    decode_frame,
    decode_legacy,
    encode_delta,
    encode_frame,
    encode_keyframe,
    encode_legacy,
)

finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
flagged_ids = st.builds(
    lambda node, agent: (AGENT_FLAG if agent else KNOWLEDGE_FLAG) | node,
    st.integers(0, ID_MASK),
    st.booleans(),
)


@st.composite
def node_arrays(draw: st.DrawFn, max_n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, max_n))
    ids = draw(hnp.arrays(np.uint32, n, elements=flagged_ids))
    pos = draw(hnp.arrays(np.float32, (n, 3), elements=finite_f32))
    vel = draw(hnp.arrays(np.float32, (n, 3), elements=finite_f32))
    return ids, pos, vel


def sample(n: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    ids = (np.arange(n, dtype=np.uint32) | np.uint32(KNOWLEDGE_FLAG)).astype(np.uint32)
    pos = rng.standard_normal((n, 3)).astype(np.float32)
    vel = rng.standard_normal((n, 3)).astype(np.float32)
    return ids, pos, vel


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))


@settings(max_examples=60, deadline=None)
@given(node_arrays(), st.integers(0, 2**64 - 1), st.sampled_from(list(FrameKind)))
def test_round_trip(arrays: tuple[np.ndarray, ...], sequence: int, kind: FrameKind) -> None:
    ids, pos, vel = arrays
    data = encode_frame(WireFormat.PROTOCOL2, kind, ids, pos, vel, sequence)
    assert isinstance(data, bytes)
    assert len(data) == HEADER_SIZE + RECORD_SIZE * len(ids)
    frame = decode_frame(data)
    assert (frame.kind, frame.sequence, len(frame)) == (kind, sequence, len(ids))
    assert np.array_equal(frame.ids, ids)
    assert bits_equal(frame.positions, pos)
    assert bits_equal(frame.velocities, vel)
    legacy = encode_legacy(ids, pos, vel)
    assert legacy == data[HEADER_SIZE:]
    records = decode_legacy(legacy)
    assert np.array_equal(records.ids, ids) and bits_equal(records.positions, pos)


def test_layout_is_the_documented_one() -> None:
    ids, pos, vel = sample(2)
    data = encode_delta(ids, pos, vel, 0x0102030405060708)
    assert data[:16] == b"VF\x02\x01" + struct.pack("<I", 2) + struct.pack("<Q", 0x0102030405060708)
    first = struct.unpack_from("<I6f", data, 16)
    assert first[0] == ids[0]
    assert np.array_equal(np.array(first[1:], np.float32), np.concatenate([pos[0], vel[0]]))
    assert RECORD_DTYPE.itemsize == 28


def test_rows_select_and_order_records() -> None:
    ids, pos, vel = sample(6)
    rows = np.array([4, 1], np.intp)
    frame = decode_frame(encode_delta(ids, pos, vel, 3, rows=rows))
    assert np.array_equal(frame.ids, ids[rows])
    assert np.array_equal(frame.positions, pos[rows])
    for bad in ([6], [-1], np.array([0, 2**63 + 5], np.uint64), np.array([2**64 - 1], np.uint64)):
        with pytest.raises(LocalProtocolError, match="out of range"):
            encode_delta(ids, pos, vel, 3, rows=np.asarray(bad))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["positions", "velocities"])
def test_encoder_refuses_non_finite(bad: float, which: str) -> None:
    ids, pos, vel = sample(4)
    (pos if which == "positions" else vel)[2, 1] = bad
    with pytest.raises(LocalProtocolError, match="record 2"):
        encode_keyframe(ids, pos, vel, 1)
    with pytest.raises(LocalProtocolError):
        encode_legacy(ids, pos, vel)
    # A row not encoded does not matter.
    decode_frame(encode_delta(ids, pos, vel, 1, rows=np.array([0, 3])))


def test_encoder_refuses_float64_overflow() -> None:
    ids, pos, vel = sample(2)
    with pytest.raises(LocalProtocolError, match="non-finite"):
        encode_keyframe(ids, pos.astype(np.float64) * 1e300, vel, 1)


@pytest.mark.parametrize("raw_id", [0x5, AGENT_FLAG | KNOWLEDGE_FLAG | 5])
def test_encoder_refuses_ids_without_exactly_one_flag(raw_id: int) -> None:
    ids, pos, vel = sample(3)
    ids[1] = raw_id
    with pytest.raises(LocalProtocolError, match="exactly one"):
        encode_keyframe(ids, pos, vel, 1)


def test_encoder_refuses_bad_shapes_and_sequences() -> None:
    ids, pos, vel = sample(3)
    with pytest.raises(LocalProtocolError, match="shape"):
        encode_keyframe(ids, pos[:2], vel, 1)
    with pytest.raises(LocalProtocolError, match="u64"):
        encode_keyframe(ids, pos, vel, -1)
    with pytest.raises(LocalProtocolError, match="u64"):
        encode_keyframe(ids, pos, vel, 2**64)
    with pytest.raises(LocalProtocolError, match="integers"):
        encode_keyframe(ids.astype(np.float32), pos, vel, 1)


def frame_bytes(n: int = 2, kind: int = 0) -> bytearray:
    ids, pos, vel = sample(n)
    data = bytearray(encode_keyframe(ids, pos, vel, 9))
    data[3] = kind
    return data


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"", 0, "shorter"),
        (bytes(frame_bytes())[:15], 15, "shorter"),
        (b"XF" + bytes(frame_bytes())[2:], 0, "magic"),
        (bytes(frame_bytes())[:2] + b"\x01" + bytes(frame_bytes())[3:], 2, "version"),
        (bytes(frame_bytes(kind=2)), 3, "kind"),
        (bytes(frame_bytes())[:-1], 4, "record count"),
        (bytes(frame_bytes()) + b"\x00", 4, "record count"),
    ],
)
def test_decoder_rejects(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(FrameDecodeError, match=reason) as info:
        decode_frame(data)
    assert info.value.offset == offset


@pytest.mark.parametrize("field", range(6))
def test_decoder_rejects_non_finite_with_offset(field: int) -> None:
    data = frame_bytes(3)
    at = HEADER_SIZE + RECORD_SIZE * 1 + 4 + 4 * field
    data[at : at + 4] = np.float32(np.nan).tobytes()
    with pytest.raises(FrameDecodeError, match="record 1") as info:
        decode_frame(data)
    assert info.value.offset == at


def test_headerless_decoders() -> None:
    ids, pos, vel = sample(3)
    legacy = encode_legacy(ids, pos, vel)
    assert len(decode_client_records(legacy)) == 3
    assert len(decode_client_records(b"")) == 0
    with pytest.raises(FrameDecodeError, match="multiple of the 28") as info:
        decode_client_records(legacy[:-3])
    assert info.value.offset == 56
    bad = bytearray(legacy)
    bad[4:8] = np.float32(np.inf).tobytes()
    with pytest.raises(FrameDecodeError, match=r"pos\.x") as info:
        decode_legacy(bad)
    assert info.value.offset == 4


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_frame_decode_error(data: bytes) -> None:
    for decode in (decode_frame, decode_legacy, decode_client_records):
        try:
            result = decode(data)
        except FrameDecodeError:
            continue
        assert np.isfinite(result.positions).all() and np.isfinite(result.velocities).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.binary(min_size=0, max_size=120))
def test_plausible_headers_decode_or_raise(count: int, body: bytes) -> None:
    data = b"VF\x02\x00" + struct.pack("<IQ", count, 1) + body
    try:
        frame = decode_frame(data)
    except FrameDecodeError:
        return
    assert np.isfinite(frame.positions).all() and np.isfinite(frame.velocities).all()


@settings(max_examples=60, deadline=None)
@given(node_arrays(max_n=10), st.data())
def test_a_frame_never_holds_non_finite_floats(
    arrays: tuple[np.ndarray, ...], data: st.DataObject
) -> None:
    ids, pos, vel = arrays
    if len(ids):
        row = data.draw(st.integers(0, len(ids) - 1))
        col = data.draw(st.integers(0, 5))
        target = pos if col < 3 else vel
        target[row, col % 3] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        with pytest.raises(LocalProtocolError):
            encode_keyframe(ids, pos, vel, 1)
    else:
        assert len(decode_frame(encode_keyframe(ids, pos, vel, 1))) == 0


# --------------------------------------------------------------------------- the encoded object


def test_each_frame_is_a_new_immutable_bytes_unaffected_by_later_encodes() -> None:
    """Frames are shared by identity between viewers: a later encode must never touch one."""
    ids, pos, vel = sample(1000)
    first = encode_keyframe(ids, pos, vel, 1)
    snapshot = bytes(bytearray(first))  # an independent copy of its contents
    second = encode_keyframe(ids, pos + np.float32(1), vel, 2)
    third = encode_delta(ids, pos, vel, 3, rows=np.arange(0, 1000, 3))
    assert type(first) is bytes and first is not second
    assert first == snapshot
    assert decode_frame(second).sequence == 2 and len(decode_frame(third)) == 334
    with pytest.raises(TypeError):
        memoryview(first)[0] = 0  # type: ignore[index]
    assert hash(first) == hash(snapshot)


def test_empty_and_tiny_frames() -> None:
    ids, pos, vel = sample(0)
    assert encode_legacy(ids, pos, vel) == b""
    assert len(decode_frame(encode_keyframe(ids, pos, vel, 7))) == 0
    one = sample(1)
    assert encode_legacy(*one) == encode_keyframe(*one, 0)[HEADER_SIZE:]
    assert len(encode_legacy(*one)) == RECORD_SIZE


def test_a_refused_encode_leaves_earlier_frames_intact() -> None:
    ids, pos, vel = sample(50)
    good = encode_keyframe(ids, pos, vel, 1)
    copy = bytes(bytearray(good))
    bad = pos.copy()
    bad[49, 2] = np.nan
    for _ in range(20):
        with pytest.raises(LocalProtocolError):
            encode_keyframe(ids, bad, vel, 2)
    assert good == copy


def test_concurrent_encodes_from_threads_do_not_mix() -> None:
    """The packer releases the GIL: frames built at once in several threads stay separate."""
    from concurrent.futures import ThreadPoolExecutor

    ids, pos, vel = sample(20_000)

    def build(k: int) -> tuple[int, bytes]:
        shifted = pos + np.float32(k)
        return k, encode_keyframe(ids, shifted, vel, k)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, range(16)))
    for k, data in results:
        frame = decode_frame(data)
        assert frame.sequence == k
        assert bits_equal(frame.positions, pos + np.float32(k))
