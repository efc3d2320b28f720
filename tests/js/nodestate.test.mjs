// NodeState: keyframes replace, deltas overwrite and append, `version` tracks membership.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  AGENT_FLAG,
  DELTA,
  HEADER_SIZE,
  KEYFRAME,
  KNOWLEDGE_FLAG,
  RECORD_SIZE,
  decodeFrame,
  decodeLegacy,
} from "../../visionflow/web/static/js/frames.js";
import { NodeState } from "../../visionflow/web/static/js/nodestate.js";

const K = (raw) => (KNOWLEDGE_FLAG | raw) >>> 0;
const A = (raw) => (AGENT_FLAG | raw) >>> 0;

let sequence = 0;

/**
 * A protocol-2 message, decoded. `nodes`: [id, x, y, z]; velocity is raw id / 8 on every axis,
 * so a mix-up between position and velocity words shows.
 */
function frame(kind, nodes) {
  const buffer = new ArrayBuffer(HEADER_SIZE + RECORD_SIZE * nodes.length);
  const dv = new DataView(buffer);
  dv.setUint8(0, 0x56);
  dv.setUint8(1, 0x46);
  dv.setUint8(2, 2);
  dv.setUint8(3, kind);
  dv.setUint32(4, nodes.length, true);
  dv.setBigUint64(8, BigInt(++sequence), true);
  nodes.forEach(([id, x, y, z], k) => {
    const at = HEADER_SIZE + k * RECORD_SIZE;
    dv.setUint32(at, id, true);
    [x, y, z].forEach((c, i) => dv.setFloat32(at + 4 + 4 * i, c, true));
    for (let i = 0; i < 3; i++) dv.setFloat32(at + 16 + 4 * i, (id & 0xff) / 8, true);
  });
  return decodeFrame(buffer);
}

const keyframe = (nodes) => frame(KEYFRAME, nodes);
const delta = (nodes) => frame(DELTA, nodes);

/** The state as [id, x, y, z] rows in slot order, checking the Map agrees with the arrays. */
function rows(state) {
  const out = [];
  for (let s = 0; s < state.count; s++) {
    const id = state.ids[s];
    assert.equal(state.indexOf(id), s, `indexOf(${id})`);
    out.push([id, ...state.positions.subarray(3 * s, 3 * s + 3)]);
  }
  return out;
}

test("an empty state", () => {
  const state = new NodeState();
  assert.equal(state.count, 0);
  assert.equal(state.version, 0);
  assert.ok(state.ids instanceof Uint32Array);
  assert.ok(state.positions instanceof Float32Array);
  assert.equal(state.positions.length, 3 * state.capacity);
  assert.equal(state.indexOf(K(1)), -1);
});

test("a keyframe replaces the state, in frame order", () => {
  const state = new NodeState();
  const r1 = state.apply(keyframe([[K(1), 1, 2, 3], [A(2), 4, 5, 6], [K(3), 7, 8, 9]]));
  assert.deepStrictEqual(r1, { keyframe: true, changed: 3, membership: true });
  assert.equal(state.version, 1);
  assert.deepStrictEqual(rows(state), [[K(1), 1, 2, 3], [A(2), 4, 5, 6], [K(3), 7, 8, 9]]);

  // K(1) is gone, K(4) is new, the order is the frame's
  const r2 = state.apply(keyframe([[K(3), -7, -8, -9], [K(4), 0, 0, 1], [A(2), 4, 5, 6.5]]));
  assert.deepStrictEqual(r2, { keyframe: true, changed: 3, membership: true });
  assert.equal(state.version, 2);
  assert.deepStrictEqual(rows(state), [[K(3), -7, -8, -9], [K(4), 0, 0, 1], [A(2), 4, 5, 6.5]]);
  assert.equal(state.indexOf(K(1)), -1);

  // an empty keyframe: everything is gone
  const r3 = state.apply(keyframe([]));
  assert.deepStrictEqual(r3, { keyframe: true, changed: 0, membership: true });
  assert.equal(state.count, 0);
  assert.equal(state.indexOf(K(3)), -1);
  assert.equal(state.version, 3);
});

test("a keyframe with the same ids in the same order only moves positions", () => {
  const state = new NodeState();
  state.apply(keyframe([[K(1), 1, 2, 3], [A(2), 4, 5, 6]]));
  const { version, ids } = state;
  const r = state.apply(keyframe([[K(1), 10, 20, 30], [A(2), 40, 50, 60]]));
  assert.deepStrictEqual(r, { keyframe: true, changed: 2, membership: false });
  assert.equal(state.version, version);
  assert.equal(state.ids, ids, "same array");
  assert.deepStrictEqual(rows(state), [[K(1), 10, 20, 30], [A(2), 40, 50, 60]]);
});

test("the same ids in another order is a membership change (slots moved)", () => {
  const state = new NodeState();
  state.apply(keyframe([[K(1), 1, 1, 1], [K(2), 2, 2, 2], [K(3), 3, 3, 3]]));
  const v = state.version;
  const r = state.apply(keyframe([[K(1), 1, 1, 1], [K(3), 3, 3, 3], [K(2), 2, 2, 2]]));
  assert.equal(r.membership, true);
  assert.equal(state.version, v + 1);
  assert.deepStrictEqual(rows(state), [[K(1), 1, 1, 1], [K(3), 3, 3, 3], [K(2), 2, 2, 2]]);
});

test("a delta overwrites known nodes and appends unknown ones", () => {
  const state = new NodeState();
  state.apply(keyframe([[K(1), 1, 2, 3], [A(2), 4, 5, 6]]));
  const v = state.version;

  const r1 = state.apply(delta([[A(2), -4, -5, -6]]));
  assert.deepStrictEqual(r1, { keyframe: false, changed: 1, membership: false });
  assert.equal(state.version, v);
  assert.deepStrictEqual(rows(state), [[K(1), 1, 2, 3], [A(2), -4, -5, -6]]);

  const r2 = state.apply(delta([[K(9), 9, 9, 9], [K(1), 0, 0, 0], [A(8), 8, 8, 8]]));
  assert.deepStrictEqual(r2, { keyframe: false, changed: 3, membership: true });
  assert.equal(state.version, v + 1, "one bump per frame, however many were added");
  assert.deepStrictEqual(rows(state), [
    [K(1), 0, 0, 0],
    [A(2), -4, -5, -6],
    [K(9), 9, 9, 9],
    [A(8), 8, 8, 8],
  ]);

  const r3 = state.apply(delta([]));
  assert.deepStrictEqual(r3, { keyframe: false, changed: 0, membership: false });
});

test("the same raw id with the other flag is another node", () => {
  const state = new NodeState();
  state.apply(keyframe([[K(5), 1, 1, 1], [A(5), 2, 2, 2]]));
  assert.equal(state.count, 2);
  assert.equal(state.indexOf(K(5)), 0);
  assert.equal(state.indexOf(A(5)), 1);
  assert.equal(state.indexOf(5), -1);
});

test("legacy frames apply like deltas", () => {
  const legacyBytes = (nodes) => {
    const full = keyframe(nodes);
    return decodeLegacy(full.u32.slice().buffer);
  };
  const state = new NodeState();
  state.apply(keyframe([[K(1), 1, 2, 3]]));
  const r = state.apply(legacyBytes([[K(2), 4, 5, 6], [K(1), 7, 8, 9]]));
  assert.deepStrictEqual(r, { keyframe: false, changed: 2, membership: true });
  assert.deepStrictEqual(rows(state), [[K(1), 7, 8, 9], [K(2), 4, 5, 6]]);
});

test("the vectors apply: the 1000-node keyframe, then the delta and legacy frames", () => {
  const load = (file) => {
    const bytes = readFileSync(new URL(`./vectors/${file}`, import.meta.url));
    return new Uint8Array(bytes).buffer;
  };
  const big = decodeFrame(load("keyframe_1000.bin"));
  const state = new NodeState(16);
  state.apply(big);
  assert.equal(state.count, 1000);
  assert.equal(state.capacity, 1024);
  for (const k of [0, 499, 999]) {
    assert.equal(state.ids[k], big.u32[7 * k]);
    assert.equal(state.indexOf(big.u32[7 * k]), k);
    assert.deepStrictEqual(
      Array.from(state.positions.subarray(3 * k, 3 * k + 3)),
      Array.from(big.f32.subarray(7 * k + 1, 7 * k + 4)),
    );
  }
  state.apply(decodeFrame(load("delta.bin")));
  state.apply(decodeLegacy(load("legacy.bin")));
  assert.equal(state.count, 1006);
  const again = state.apply(decodeFrame(load("keyframe_1000.bin")));
  assert.equal(again.membership, true);
  assert.equal(state.count, 1000);
});

test("growth past the initial capacity doubles and keeps everything", () => {
  const state = new NodeState(4);
  assert.equal(state.capacity, 4);
  const nodes = [];
  for (let i = 1; i <= 4; i++) nodes.push([K(i), i, -i, i / 2]);
  state.apply(keyframe(nodes));
  assert.equal(state.capacity, 4);

  // deltas append one by one past the capacity: 4 -> 8 -> 16
  for (let i = 5; i <= 11; i++) {
    state.apply(delta([[A(i), i, -i, i / 2]]));
    nodes.push([A(i), i, -i, i / 2]);
  }
  assert.equal(state.count, 11);
  assert.equal(state.capacity, 16);
  assert.equal(state.positions.length, 48);
  assert.deepStrictEqual(rows(state), nodes);

  // a keyframe far past the capacity grows in one reallocation, doubling until it fits
  const many = [];
  for (let i = 1; i <= 100; i++) many.push([K(i), i, i, i]);
  state.apply(keyframe(many));
  assert.equal(state.count, 100);
  assert.equal(state.capacity, 128);
  assert.deepStrictEqual(rows(state), many);
  // the upload range is exactly the used slots
  assert.equal(state.positions.subarray(0, 3 * state.count).length, 300);
});

test("a keyframe that shrinks and regrows keeps the Map in step", () => {
  const state = new NodeState(2);
  state.apply(keyframe([[K(1), 1, 1, 1], [K(2), 2, 2, 2], [K(3), 3, 3, 3]]));
  state.apply(keyframe([[K(2), 2, 2, 2]]));
  assert.deepStrictEqual(rows(state), [[K(2), 2, 2, 2]]);
  assert.equal(state.indexOf(K(1)), -1);
  assert.equal(state.indexOf(K(3)), -1);
  state.apply(delta([[K(1), 5, 5, 5]]));
  assert.deepStrictEqual(rows(state), [[K(2), 2, 2, 2], [K(1), 5, 5, 5]]);
});

test("a repeated id within a keyframe keeps one slot, last record wins", () => {
  const state = new NodeState();
  const r = state.apply(keyframe([[K(1), 1, 1, 1], [K(2), 2, 2, 2], [K(1), 9, 9, 9]]));
  assert.equal(r.membership, true);
  assert.deepStrictEqual(rows(state), [[K(1), 9, 9, 9], [K(2), 2, 2, 2]]);
});

test("clear forgets every node and bumps version once", () => {
  const state = new NodeState();
  state.apply(keyframe([[K(1), 1, 1, 1]]));
  const v = state.version;
  state.clear();
  assert.equal(state.count, 0);
  assert.equal(state.indexOf(K(1)), -1);
  assert.equal(state.version, v + 1);
  state.clear();
  assert.equal(state.version, v + 1);
});
