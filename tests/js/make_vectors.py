"""Write the binary test vectors of the viewer's JavaScript decoder (tests/js/*.test.mjs).

The frames are made by the service's own encoder (``visionflow.protocol.frames``), so the
JavaScript decoder is tested against what the server really sends; the refused ones are valid
frames with bytes corrupted, and each is checked here to be refused by the Python decoder at
the offset ``index.json`` gives (except the ones marked ``"python": false``: a sequence above
2^53 is valid on the wire but not exact in a JavaScript number).

Usage: ``python tests/js/make_vectors.py`` (re)writes ``tests/js/vectors/``;
``--check`` regenerates in memory and exits 1 if any file there differs or is missing.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionflow.errors import FrameDecodeError
from visionflow.protocol.frames import (
    AGENT_FLAG,
    HEADER_SIZE,
    KNOWLEDGE_FLAG,
    RECORD_SIZE,
    decode_client_records,
    decode_frame,
    decode_legacy,
    encode_delta,
    encode_keyframe,
    encode_legacy,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "vectors"

# docs/protocol.md section 2: keyframe, sequence 42, knowledge node 5 at (1, 2, 3), vel (0, 0, -0.5)
DOC_EXAMPLE = bytes.fromhex(
    "56460200 01000000 2a000000 00000000"
    "05000040 0000803f 00000040 00004040 00000000 00000000 000000bf"
)

Vec = list[float]
Content = tuple[Sequence[int], Vec, Vec]


def f32(values: Sequence[float]) -> list[float]:
    """The float32 values as Python floats, exactly (JSON keeps them exact: repr round-trips)."""
    return [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]


def arrays(ids: Sequence[int], pos: Vec, vel: Vec) -> tuple[Any, Any, Any]:
    return (
        np.array(ids, np.uint32),
        np.array(pos, np.float64).reshape(-1, 3),
        np.array(vel, np.float64).reshape(-1, 3),
    )


def big_keyframe() -> tuple[list[int], Vec, Vec]:
    """1000 nodes, alternating flags. Integer arithmetic then one correctly rounded division,
    so the values are the same on every machine and numpy version (no libm, no RNG stream)."""
    ids: list[int] = []
    pos: Vec = []
    vel: Vec = []
    for i in range(1000):
        flag = AGENT_FLAG if i % 2 else KNOWLEDGE_FLAG
        ids.append(flag | (1 + i * 1_048_573) % 0x3FFF_FFFF)
        pos += [((i * 7919) % 20011 - 10005) / 3, ((i * 104_729) % 4001 - 2000) / 64, i / 7]
        vel += [((i * 31) % 17 - 8) / 10, 0.0, -((i * 13) % 5) / 1024]
    return ids, f32(pos), f32(vel)


def expected(
    name: str, kind: int | None, seq: int | None, ids: Sequence[int], pos: Vec, vel: Vec
) -> dict[str, Any]:
    """What the JS decoder must return; the 1000-node frame gets samples and exact sums."""
    entry: dict[str, Any] = {"name": name, "file": f"{name}.bin"}
    entry["decoder"] = "legacy" if kind is None else "frame"
    entry |= {"kind": kind, "sequence": seq, "count": len(ids)}
    if len(ids) <= 16:
        return entry | {"ids": list(ids), "positions": pos, "velocities": vel}
    samples = [0, 1, 2, 499, 500, len(ids) - 2, len(ids) - 1]
    entry["samples"] = [
        {
            "index": k,
            "id": ids[k],
            "position": pos[3 * k : 3 * k + 3],
            "velocity": vel[3 * k : 3 * k + 3],
        }
        for k in samples
    ]
    # Plain left-to-right float64 sums: JavaScript adding in record order gets the same bits.
    pos_sum = 0.0
    for v in pos:
        pos_sum += v
    vel_sum = 0.0
    for v in vel:
        vel_sum += v
    entry |= {
        "id_sum": sum(ids),
        "agent_count": sum(1 for i in ids if i & AGENT_FLAG),
        "knowledge_count": sum(1 for i in ids if i & KNOWLEDGE_FLAG),
        "position_sum": pos_sum,
        "velocity_sum": vel_sum,
    }
    return entry


def check(ok: bool, what: str) -> None:
    """A failed expectation about the encoder or decoder (kept under ``python -O`` too)."""
    if not ok:
        raise RuntimeError(what)


def refusal(decode: Callable[[bytes], object], data: bytes) -> FrameDecodeError | None:
    try:
        decode(data)
    except FrameDecodeError as err:
        return err
    return None


def corrupt(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def build() -> dict[str, bytes]:
    """Every file of tests/js/vectors/, by name."""
    files: dict[str, bytes] = {}
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []

    def add(name: str, data: bytes, kind: int | None, seq: int | None, content: Content) -> None:
        ids, pos, vel = content
        files[f"{name}.bin"] = data
        valid.append(expected(name, kind, seq, ids, pos, vel))
        decoded = decode_legacy(data) if kind is None else decode_frame(data)
        check(decoded.ids.tolist() == list(ids), f"{name}: ids")
        check(decoded.positions.reshape(-1).tolist() == pos, f"{name}: positions")
        check(decoded.velocities.reshape(-1).tolist() == vel, f"{name}: velocities")
        if kind is not None:
            frame = decode_frame(data)
            check((frame.kind, frame.sequence) == (kind, seq), f"{name}: header")

    def refuse(
        name: str, data: bytes, decoder: str, offset: int, message: str, python: bool = True
    ) -> None:
        files[f"{name}.bin"] = data
        invalid.append(
            {
                "name": name,
                "file": f"{name}.bin",
                "decoder": decoder,
                "offset": offset,
                "message": message,
                "python": python,
            }
        )
        if not python:
            decode_frame(data)  # valid on the wire; only JavaScript refuses it
            return
        decode: Callable[[bytes], object] = decode_frame if decoder == "frame" else decode_legacy
        err = refusal(decode, data)
        check(err is not None, f"{name}: the Python decoder accepted it")
        assert err is not None
        check(err.offset == offset, f"{name}: Python says offset {err.offset}, not {offset}")
        check(message in err.reason, f"{name}: {message!r} not in {err.reason!r}")

    # ---- valid frames
    empty = encode_keyframe(*arrays([], [], []), 1)
    add("keyframe_empty", empty, 0, 1, ([], [], []))

    one = ([KNOWLEDGE_FLAG | 5], f32([1.0, 2.0, 3.0]), f32([0.0, 0.0, -0.5]))
    example = encode_keyframe(*arrays(*one), 42)
    check(example == DOC_EXAMPLE, "the encoder no longer matches protocol.md section 2")
    add("keyframe_one", example, 0, 42, one)

    big = big_keyframe()
    add("keyframe_1000", encode_keyframe(*arrays(*big), 123_456_789_012), 0, 123_456_789_012, big)

    # Edge floats (signed zero, the smallest subnormal, the largest float32) and the largest
    # sequence a JavaScript number holds exactly.
    delta = (
        [AGENT_FLAG | 7, KNOWLEDGE_FLAG | 0x3FFF_FFFF, AGENT_FLAG | 1],
        f32([-0.0, 1.401298464324817e-45, 3.4028234663852886e38, 0.1, -1e6, 1e6, 1 / 3, -2.5, 0.0]),
        f32([0.0, 0.0, 0.0, -0.0, 1e-3, -1e-3, 5.0, 6.0, 7.0]),
    )
    add("delta", encode_delta(*arrays(*delta), 2**53), 1, 2**53, delta)

    legacy = (
        [AGENT_FLAG | 3, KNOWLEDGE_FLAG | 4, KNOWLEDGE_FLAG | 9],
        f32([1.5, -2.5, 3.5, 10.0, 20.0, 30.0, -0.0, 0.5, 0.1]),
        f32([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, -0.25, 0.0, 8.0]),
    )
    add("legacy", encode_legacy(*arrays(*legacy)), None, None, legacy)
    add("legacy_empty", encode_legacy(*arrays([], [], [])), None, None, ([], [], []))

    # ---- a drag (section 5): headerless records, velocity 0; positions as the viewer has them
    # (doubles), rounded to float32 by the encoder
    drag_ids = [KNOWLEDGE_FLAG | 5, AGENT_FLAG | 12, KNOWLEDGE_FLAG | 0x3FFF_FFFF]
    drag_pos = [0.1, -2.0, 3.75, 1e6, -1e6, 1 / 3, 0.0, -0.0, 123.456]
    drag = encode_legacy(
        np.array(drag_ids, np.uint32),
        np.array(drag_pos, np.float64).reshape(-1, 3),
        np.zeros((3, 3), np.float32),
    )
    decoded = decode_client_records(drag)
    check(decoded.ids.tolist() == drag_ids, "drag: ids")
    check(decoded.positions.reshape(-1).tolist() == f32(drag_pos), "drag: positions")
    files["drag.bin"] = drag
    drag_entry = {"file": "drag.bin", "ids": drag_ids, "positions": drag_pos}
    drag_entry["positions_f32"] = f32(drag_pos)

    # ---- refused frames: what decode_frame / decode_legacy refuse, by corrupting valid ones
    refuse("bad_empty_message", b"", "frame", 0, "shorter than the 16-byte header")
    refuse("bad_short", example[:15], "frame", 15, "message is 15 bytes, shorter than the 16")
    refuse("bad_magic", corrupt(example, 0, b"WF"), "frame", 0, "magic is")
    refuse("bad_magic_second_byte", corrupt(example, 1, b"G"), "frame", 0, "magic is")
    refuse(
        "bad_version", corrupt(example, 2, b"\x01"), "frame", 2, "protocol version 1, expected 2"
    )
    refuse("bad_kind", corrupt(example, 3, b"\x02"), "frame", 3, "unknown frame kind 2")
    refuse(
        "bad_length_truncated",
        example[:-1],
        "frame",
        4,
        "record count 1 needs 44 bytes, message has 43",
    )
    refuse(
        "bad_length_extra",
        empty + bytes(RECORD_SIZE),
        "frame",
        4,
        "record count 0 needs 16 bytes, message has 44",
    )
    refuse(
        "bad_count_huge",
        corrupt(example, 4, struct.pack("<I", 0xFFFF_FFFF)),
        "frame",
        4,
        "record count 4294967295 needs 120259084276 bytes, message has 44",
    )
    nan = struct.pack("<f", float("nan"))
    inf = struct.pack("<f", float("inf"))
    refuse(
        "bad_nan_pos_y",
        corrupt(example, HEADER_SIZE + 8, nan),
        "frame",
        HEADER_SIZE + 8,
        "record 0 field pos.y is not a finite float",
    )
    # A non-finite float in a later record: record 2 of the delta gets +Inf as vel.z. Record 1
    # has the id 0x7fffffff (knowledge, raw 0x3fffffff), a NaN bit pattern if read as a float:
    # a decoder that checked id words would report byte 44 instead.
    at = HEADER_SIZE + 2 * RECORD_SIZE + 24
    refuse(
        "bad_inf_vel_z_record_2",
        corrupt(encode_delta(*arrays(*delta), 2**53), at, inf),
        "frame",
        at,
        "record 2 field vel.z is not a finite float",
    )
    at = HEADER_SIZE + 500 * RECORD_SIZE + 4
    refuse(
        "bad_neg_inf_pos_x_record_500",
        corrupt(files["keyframe_1000.bin"], at, struct.pack("<f", float("-inf"))),
        "frame",
        at,
        "record 500 field pos.x is not a finite float",
    )
    refuse(
        "bad_sequence_above_2_53",
        corrupt(example, 8, struct.pack("<Q", 2**53 + 1)),
        "frame",
        8,
        "above 2^53",
        python=False,
    )
    legacy_bytes = files["legacy.bin"]
    refuse(
        "bad_legacy_length",
        legacy_bytes[:-2],
        "legacy",
        2 * RECORD_SIZE,
        "legacy frame is 82 bytes, not a multiple of the 28-byte record (26 bytes left over)",
    )
    at = RECORD_SIZE + 16
    refuse(
        "bad_legacy_nan_vel_x",
        corrupt(legacy_bytes, at, b"\x01\x00\xc0\x7f"),  # a NaN with a payload
        "legacy",
        at,
        "record 1 field vel.x is not a finite float",
    )

    index = {
        "about": "made by tests/js/make_vectors.py from visionflow.protocol.frames; do not edit",
        "valid": valid,
        "drag": drag_entry,
        "invalid": invalid,
    }
    files["index.json"] = render(index).encode()
    return files


def render(index: dict[str, Any]) -> str:
    """JSON with one line per vector: short, and a regenerated file diffs per vector."""
    lines = ["{", f'  "about": {json.dumps(index["about"])},']
    for key in ("valid", "invalid"):
        rows = [f"    {json.dumps(entry)}" for entry in index[key]]
        lines += [f'  "{key}": [', ",\n".join(rows), "  ],"]
    lines += [f'  "drag": {json.dumps(index["drag"])}', "}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed vectors differ"
    )
    args = parser.parse_args(argv)
    files = build()
    on_disk = {p.name for p in OUT.glob("*")} if OUT.is_dir() else set()
    if args.check:
        stale = sorted(
            name
            for name, data in files.items()
            if not (OUT / name).is_file() or (OUT / name).read_bytes() != data
        )
        extra = sorted(on_disk - files.keys())
        for name in stale:
            print(f"differs or missing: tests/js/vectors/{name}", file=sys.stderr)
        for name in extra:
            print(f"not generated (remove it): tests/js/vectors/{name}", file=sys.stderr)
        if stale or extra:
            print("run: python tests/js/make_vectors.py", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files up to date")
        return 0
    OUT.mkdir(exist_ok=True)
    for name in sorted(on_disk - files.keys()):
        (OUT / name).unlink()
    for name, data in files.items():
        (OUT / name).write_bytes(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} files ({total} bytes) to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
