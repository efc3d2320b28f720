// The viewer's frame decoder against the vectors the Python encoder wrote
// (tests/js/make_vectors.py). Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  AGENT_FLAG,
  DELTA,
  FrameError,
  HEADER_SIZE,
  ID_MASK,
  KEYFRAME,
  KNOWLEDGE_FLAG,
  MAX_DRAG_RECORDS,
  RECORD_SIZE,
  RECORD_WORDS,
  _copyRecords,
  decodeFrame,
  decodeLegacy,
  encodeDrag,
} from "../../visionflow/web/static/js/frames.js";

const VECTORS = new URL("./vectors/", import.meta.url);
const index = JSON.parse(readFileSync(new URL("index.json", VECTORS), "utf8"));

/** A vector file as a standalone ArrayBuffer (what a WebSocket hands the viewer). */
function load(file) {
  const bytes = readFileSync(new URL(file, VECTORS));
  const buffer = new ArrayBuffer(bytes.length);
  new Uint8Array(buffer).set(bytes);
  return buffer;
}

const decoders = { frame: decodeFrame, legacy: decodeLegacy };

function record(frame, k) {
  const w = k * RECORD_WORDS;
  return {
    id: frame.u32[w],
    position: Array.from(frame.f32.subarray(w + 1, w + 4)),
    velocity: Array.from(frame.f32.subarray(w + 4, w + 7)),
  };
}

test("constants match docs/protocol.md", () => {
  assert.equal(HEADER_SIZE, 16);
  assert.equal(RECORD_SIZE, 28);
  assert.equal(RECORD_WORDS, 7);
  assert.equal(KEYFRAME, 0);
  assert.equal(DELTA, 1);
  assert.equal(AGENT_FLAG, 0x80000000);
  assert.equal(KNOWLEDGE_FLAG, 0x40000000);
  assert.equal(ID_MASK, 0x3fffffff);
  assert.equal(MAX_DRAG_RECORDS, 4096);
});

test("the vector set covers what the brief asks for", () => {
  const names = index.valid.map((v) => v.name);
  for (const n of ["keyframe_empty", "keyframe_one", "keyframe_1000", "delta", "legacy"]) {
    assert.ok(names.includes(n), n);
  }
  const offsets = new Set(index.invalid.filter((v) => v.python).map((v) => v.offset));
  for (const o of [0, 2, 3, 4]) assert.ok(offsets.has(o), `a refusal at byte ${o}`);
});

for (const v of index.valid) {
  test(`decodes ${v.name}`, () => {
    const frame = decoders[v.decoder](load(v.file));
    assert.equal(frame.kind, v.kind);
    assert.equal(frame.sequence, v.sequence);
    assert.equal(frame.count, v.count);
    assert.ok(frame.u32 instanceof Uint32Array);
    assert.ok(frame.f32 instanceof Float32Array);
    assert.equal(frame.u32.length, v.count * RECORD_WORDS);
    assert.equal(frame.f32.length, v.count * RECORD_WORDS);
    if (v.ids !== undefined) {
      const ids = [];
      const positions = [];
      const velocities = [];
      for (let k = 0; k < frame.count; k++) {
        const r = record(frame, k);
        ids.push(r.id);
        positions.push(...r.position);
        velocities.push(...r.velocity);
      }
      // deepStrictEqual tells -0 from 0, so signed zeros are checked too
      assert.deepStrictEqual(ids, v.ids);
      assert.deepStrictEqual(positions, v.positions);
      assert.deepStrictEqual(velocities, v.velocities);
      return;
    }
    for (const s of v.samples) {
      const r = record(frame, s.index);
      assert.deepStrictEqual(r, { id: s.id, position: s.position, velocity: s.velocity });
    }
    let idSum = 0;
    let agents = 0;
    let knowledge = 0;
    let posSum = 0;
    let velSum = 0;
    for (let k = 0; k < frame.count; k++) {
      const r = record(frame, k);
      idSum += r.id;
      if (r.id & AGENT_FLAG) agents++;
      if (r.id & KNOWLEDGE_FLAG) knowledge++;
      for (const x of r.position) posSum += x;
      for (const x of r.velocity) velSum += x;
    }
    assert.equal(idSum, v.id_sum);
    assert.equal(agents, v.agent_count);
    assert.equal(knowledge, v.knowledge_count);
    assert.ok(agents > 0 && knowledge > 0, "both flags present");
    assert.equal(posSum, v.position_sum);
    assert.equal(velSum, v.velocity_sum);
  });
}

for (const v of index.invalid) {
  test(`refuses ${v.name} at byte ${v.offset}`, () => {
    const buffer = load(v.file);
    assert.throws(
      () => decoders[v.decoder](buffer),
      (err) => {
        assert.ok(err instanceof FrameError, `${err}`);
        assert.ok(err instanceof Error);
        assert.equal(err.name, "FrameError");
        assert.equal(err.offset, v.offset);
        assert.ok(err.message.includes(v.message), `${err.message} lacks ${v.message}`);
        assert.ok(err.message.startsWith(`bad frame at byte ${v.offset}: `), err.message);
        return true;
      },
    );
  });
}

test("a keyframe decode views the message's buffer: no copy", () => {
  const v = index.valid.find((x) => x.name === "keyframe_1000");
  const buffer = load(v.file);
  const frame = decodeFrame(buffer);
  assert.equal(frame.u32.buffer, buffer);
  assert.equal(frame.f32.buffer, buffer);
  assert.equal(frame.u32.byteOffset, HEADER_SIZE);
  assert.equal(frame.f32.byteOffset, HEADER_SIZE);
  // a write through the message's bytes shows in the decoded views
  new DataView(buffer).setFloat32(HEADER_SIZE + 4, 1234.5, true);
  assert.equal(frame.f32[1], 1234.5);
});

test("a legacy decode views the message's buffer too", () => {
  const buffer = load("legacy.bin");
  const frame = decodeLegacy(buffer);
  assert.equal(frame.u32.buffer, buffer);
  assert.equal(frame.u32.byteOffset, 0);
});

test("typed-array views of a message are accepted (e.g. a Node Buffer)", () => {
  const bytes = new Uint8Array(load("keyframe_one.bin"));
  // aligned view: records are still views; unaligned: copied, same values
  const aligned = new Uint8Array(bytes.length + 4);
  aligned.set(bytes, 4);
  const unaligned = new Uint8Array(bytes.length + 1);
  unaligned.set(bytes, 1);
  for (const view of [aligned.subarray(4), unaligned.subarray(1)]) {
    const frame = decodeFrame(view);
    assert.equal(frame.sequence, 42);
    assert.deepStrictEqual(record(frame, 0), {
      id: KNOWLEDGE_FLAG | 5,
      position: [1, 2, 3],
      velocity: [0, 0, -0.5],
    });
  }
  assert.equal(decodeFrame(aligned.subarray(4)).u32.buffer, aligned.buffer);
  // offsets stay relative to the message, not to the underlying buffer
  const bad = new Uint8Array(load("bad_nan_pos_y.bin"));
  const shifted = new Uint8Array(bad.length + 3);
  shifted.set(bad, 3);
  assert.throws(() => decodeFrame(shifted.subarray(3)), { name: "FrameError", offset: 24 });
  assert.throws(() => decodeFrame("VF"), TypeError);
});

test("the copying decode (big-endian hosts) gives the same records", () => {
  for (const name of ["keyframe_1000", "delta", "legacy"]) {
    const v = index.valid.find((x) => x.name === name);
    const buffer = load(v.file);
    const frame = decoders[v.decoder](buffer);
    const start = v.decoder === "frame" ? HEADER_SIZE : 0;
    const copy = _copyRecords(buffer, start, frame.count);
    assert.notEqual(copy.u32.buffer, buffer);
    assert.deepStrictEqual(copy.u32, frame.u32);
    // compare float bit patterns: -0 and NaN-shaped ids must survive the copy
    assert.deepStrictEqual(new Uint32Array(copy.f32.buffer), new Uint32Array(frame.u32));
  }
});

test("sequences up to 2^53 are exact; the u64 high word is read", () => {
  const buffer = load("keyframe_empty.bin");
  const dv = new DataView(buffer);
  dv.setBigUint64(8, 2n ** 53n, true);
  assert.equal(decodeFrame(buffer).sequence, 2 ** 53);
  dv.setBigUint64(8, 2n ** 32n + 7n, true);
  assert.equal(decodeFrame(buffer).sequence, 2 ** 32 + 7);
  dv.setBigUint64(8, 2n ** 64n - 1n, true);
  assert.throws(() => decodeFrame(buffer), { name: "FrameError", offset: 8 });
});

test("encodeDrag writes the drag vector byte for byte", () => {
  const { ids, positions } = index.drag;
  const out = encodeDrag(ids, positions);
  assert.ok(out instanceof ArrayBuffer);
  assert.deepStrictEqual(new Uint8Array(out), new Uint8Array(load(index.drag.file)));
  // typed-array inputs give the same bytes
  const again = encodeDrag(Uint32Array.from(ids), Float64Array.from(positions));
  assert.deepStrictEqual(new Uint8Array(again), new Uint8Array(out));
  // and it reads back as records with zero velocity and float32-rounded positions
  const back = decodeLegacy(out);
  assert.equal(back.count, ids.length);
  for (let k = 0; k < back.count; k++) {
    const r = record(back, k);
    assert.equal(r.id, ids[k]);
    assert.deepStrictEqual(r.position, index.drag.positions_f32.slice(3 * k, 3 * k + 3));
    assert.deepStrictEqual(r.velocity, [0, 0, 0]);
  }
});

test("encodeDrag refuses what the server would refuse whole", () => {
  assert.equal(encodeDrag([], []).byteLength, 0);
  assert.throws(() => encodeDrag([1], [0, 0]), RangeError);
  assert.throws(() => encodeDrag([1], [0, NaN, 0]), RangeError);
  assert.throws(() => encodeDrag([1], [0, 0, Infinity]), RangeError);
  assert.throws(() => encodeDrag([1], [0, 1e39, 0]), RangeError); // Infinity as float32
  assert.throws(() => encodeDrag([-1], [0, 0, 0]), RangeError);
  assert.throws(() => encodeDrag([2 ** 32], [0, 0, 0]), RangeError);
  assert.throws(() => encodeDrag([1.5], [0, 0, 0]), RangeError);
  const n = MAX_DRAG_RECORDS + 1;
  assert.throws(() => encodeDrag(new Uint32Array(n), new Float32Array(3 * n)), RangeError);
  const max = encodeDrag(new Uint32Array(MAX_DRAG_RECORDS), new Float32Array(3 * MAX_DRAG_RECORDS));
  assert.equal(max.byteLength, MAX_DRAG_RECORDS * RECORD_SIZE);
});

test("the finiteness check skips id words and finds the first bad float", () => {
  // 3 records; ids with NaN/Inf bit patterns are fine, floats are not
  const buffer = new ArrayBuffer(HEADER_SIZE + 3 * RECORD_SIZE);
  const dv = new DataView(buffer);
  dv.setUint8(0, 0x56);
  dv.setUint8(1, 0x46);
  dv.setUint8(2, 2);
  dv.setUint32(4, 3, true);
  dv.setUint32(HEADER_SIZE, 0x7fc00000, true); // NaN pattern
  dv.setUint32(HEADER_SIZE + RECORD_SIZE, 0x7f800000, true); // +Inf pattern
  dv.setUint32(HEADER_SIZE + 2 * RECORD_SIZE, 0xff800000, true); // -Inf pattern
  assert.equal(decodeFrame(buffer).count, 3);
  dv.setFloat32(HEADER_SIZE + 2 * RECORD_SIZE + 8, -Infinity, true);
  dv.setFloat32(HEADER_SIZE + RECORD_SIZE + 20, NaN, true);
  assert.throws(() => decodeFrame(buffer), {
    name: "FrameError",
    offset: HEADER_SIZE + RECORD_SIZE + 20,
    message: /record 1 field vel\.y is not a finite float/,
  });
});
