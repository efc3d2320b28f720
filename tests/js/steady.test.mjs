// The steady keyframe's WebAssembly SIMD kernel (steady.js) against the JavaScript loop it
// replaces: the same states, the same refusals, at every chunk boundary.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AGENT_FLAG,
  DELTA,
  FrameError,
  HEADER_SIZE,
  KEYFRAME,
  KNOWLEDGE_FLAG,
  RECORD_SIZE,
} from "../../visionflow/web/static/js/frames.js";
import { NodeState } from "../../visionflow/web/static/js/nodestate.js";
import {
  CHUNK_RECORDS,
  WasmArrays,
  kernel,
  kernelBytes,
} from "../../visionflow/web/static/js/steady.js";

/** A protocol-2 message of `ids` with the floats of `floats(k, word)` (word 1..6). */
function message(kind, ids, floats) {
  const buffer = new ArrayBuffer(HEADER_SIZE + RECORD_SIZE * ids.length);
  const dv = new DataView(buffer);
  dv.setUint8(0, 0x56);
  dv.setUint8(1, 0x46);
  dv.setUint8(2, 2);
  dv.setUint8(3, kind);
  dv.setUint32(4, ids.length, true);
  dv.setUint32(8, 1, true);
  ids.forEach((id, k) => {
    const at = HEADER_SIZE + k * RECORD_SIZE;
    dv.setUint32(at, id, true);
    for (let w = 1; w <= 6; w++) dv.setFloat32(at + 4 * w, floats(k, w), true);
  });
  return buffer;
}

/** A small deterministic generator (xorshift32), so a failure can be replayed. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

const NON_FINITE = [NaN, Infinity, -Infinity];
// finite floats the check must let through unchanged: signed zeros, the smallest subnormal,
// the largest float, and bit patterns next to the non-finite ones
const EDGE = [-0, 0, 2 ** -149, -(2 ** -149), 3.4028234663852886e38, -3.4028234663852886e38];

/** State as plain data: count, version, ids and positions of the used slots (bits of -0 kept). */
function view(state) {
  const n = state.count;
  return {
    count: n,
    version: state.version,
    ids: Array.from(state.ids.subarray(0, n)),
    positions: Array.from(state.positions.subarray(0, 3 * n), (v) => (Object.is(v, -0) ? "-0" : v)),
  };
}

/** Apply `buffer` to `state`: the error's name, offset and message, or null. */
function outcome(state, buffer) {
  try {
    state.applyBuffer(buffer);
    return null;
  } catch (exc) {
    assert.ok(exc instanceof FrameError, String(exc));
    return { offset: exc.offset, message: exc.message };
  }
}

test("the kernel compiles here (Node has WebAssembly SIMD) and NodeState uses it", () => {
  assert.ok(WebAssembly.validate(kernelBytes()));
  assert.ok(kernel() instanceof WebAssembly.Module);
  assert.equal(new NodeState().steadyPath, "wasm");
  assert.equal(new NodeState(8, { wasm: false }).steadyPath, "js");
  // growth keeps the arrays in the kernel's memory
  const state = new NodeState(1);
  const ids = Array.from({ length: 3000 }, (_, k) => (KNOWLEDGE_FLAG | (k + 1)) >>> 0);
  state.applyBuffer(message(KEYFRAME, ids, (k, w) => k + w / 8));
  assert.equal(state.capacity, 4096);
  assert.equal(state.steadyPath, "wasm");
  state.applyBuffer(message(KEYFRAME, ids, (k, w) => -k - w / 8));
  assert.equal(state.positions[3 * 2999 + 2], -2999 - 3 / 8);
});

test("WasmArrays.steady: count, the first differing id, or -1, at every chunk boundary", () => {
  const cap = 3 * CHUNK_RECORDS + 8;
  const arrays = new WasmArrays(kernel(), cap);
  for (const n of [0, 1, 3, 4, 5, CHUNK_RECORDS - 1, CHUNK_RECORDS, CHUNK_RECORDS + 1, cap]) {
    const ids = Array.from({ length: n }, (_, k) => (AGENT_FLAG | (k * 7 + 1)) >>> 0);
    arrays.ids.set(ids);
    const good = message(KEYFRAME, ids, (k, w) => (w <= 3 ? k * 3 + w : -w));
    const records = (buffer) => new Uint8Array(buffer, HEADER_SIZE);
    const dst = arrays.b;
    dst.fill(7);
    assert.equal(arrays.steady(records(good), n, dst), n);
    for (let k = 0; k < n; k++) {
      for (let c = 0; c < 3; c++) assert.equal(dst[3 * k + c], k * 3 + c + 1);
    }
    // the kernel writes at most one word past the positions it copies
    if (3 * n + 1 < dst.length) assert.equal(dst[3 * n + 1], 7);
    for (const at of new Set([0, 3, 4, CHUNK_RECORDS - 1, CHUNK_RECORDS, n - 1])) {
      if (at < 0 || at >= n) continue;
      const other = [...ids];
      other[at] = (other[at] ^ 1) >>> 0;
      const moved = message(KEYFRAME, other, () => 1);
      assert.equal(arrays.steady(records(moved), n, dst), at, `id ${at} of ${n}`);
      for (const word of [1, 2, 3, 4, 5, 6]) {
        const bad = message(KEYFRAME, ids, (k, w) => (k === at && w === word ? NaN : 1));
        assert.equal(arrays.steady(records(bad), n, dst), -1, `NaN at ${at}.${word} of ${n}`);
        // a non-finite float after the first differing id is not the kernel's to see
        if (at > 0) {
          const late = message(KEYFRAME, [...ids.slice(0, at - 1), 5, ...ids.slice(at)], (k, w) =>
            k === at && w === word ? Infinity : 1,
          );
          assert.equal(arrays.steady(records(late), n, dst), at - 1);
        }
      }
    }
  }
});

test("ids whose bits look like NaN or infinity as floats are ids, not floats", () => {
  // 0x7f800000 | x is a non-finite float's bit pattern; as an id it must neither be refused nor
  // taken for a mismatch, at each of the four positions a record takes in the kernel's 4-record step
  const ids = [0x7fffffff, 0xffffffff, 0x7fc00000, 0xffc00000];
  for (let j = 0; j < 12; j++) ids.push((0x7f800000 | j) >>> 0, (0xff800000 | (j << 4)) >>> 0);
  for (let shift = 0; shift < 4; shift++) {
    const all = [...Array.from({ length: shift }, (_, k) => k + 1), ...ids];
    for (const wasm of [true, false]) {
      const state = new NodeState(4, { wasm });
      state.applyBuffer(message(KEYFRAME, all, (k, w) => k + w));
      const { version } = state;
      state.applyBuffer(message(KEYFRAME, all, (k, w) => -k - w));
      assert.equal(state.version, version, "steady: no rebuild");
      assert.equal(state.positions[3 * (all.length - 1)], -(all.length - 1) - 1);
    }
  }
});

test("kernel and JavaScript loop agree on random frames: states and refusals", () => {
  const next = rng(20261205);
  const pick = (a) => a[Math.floor(next() * a.length)];
  const sizes = [0, 1, 2, 5, 63, CHUNK_RECORDS - 1, CHUNK_RECORDS, CHUNK_RECORDS + 3, 2500];
  for (let round = 0; round < 60; round++) {
    const states = [new NodeState(pick([1, 16, 4096])), new NodeState(16, { wasm: false })];
    assert.equal(states[0].steadyPath, "wasm");
    let ids = [];
    for (let step = 0; step < 12; step++) {
      const r = next();
      let kind = KEYFRAME;
      let frameIds;
      if (step === 0 || r < 0.1) {
        const n = pick(sizes);
        frameIds = Array.from({ length: n }, () =>
          ((next() < 0.5 ? AGENT_FLAG : KNOWLEDGE_FLAG) | Math.floor(next() * 0x3fffffff)) >>> 0,
        );
      } else if (r < 0.2 && ids.length > 1) {
        frameIds = [...ids];
        const a = Math.floor(next() * ids.length);
        [frameIds[a], frameIds[0]] = [frameIds[0], frameIds[a]]; // another order
      } else if (r < 0.3 && ids.length > 0) {
        frameIds = [...ids];
        frameIds[Math.floor(next() * ids.length)] = 0x7fc00000; // a new node in one place
      } else if (r < 0.4) {
        kind = DELTA;
        frameIds = ids.filter(() => next() < 0.1);
        if (next() < 0.3) frameIds.push((KNOWLEDGE_FLAG | (step + 1)) >>> 0);
      } else {
        frameIds = [...ids]; // the steady keyframe
      }
      const poisoned = frameIds.length > 0 && next() < 0.3 ? Math.floor(next() * frameIds.length) : -1;
      const word = 1 + Math.floor(next() * 6);
      const bad = pick(NON_FINITE);
      const buffer = message(kind, frameIds, (k, w) =>
        k === poisoned && w === word ? bad : next() < 0.05 ? pick(EDGE) : (next() - 0.5) * 1e4,
      );
      const got = states.map((s) => outcome(s, buffer));
      assert.deepStrictEqual(got[0], got[1], `round ${round} step ${step}`);
      assert.equal(got[0] !== null, poisoned >= 0, `round ${round} step ${step}: refused`);
      assert.deepStrictEqual(view(states[0]), view(states[1]), `round ${round} step ${step}`);
      if (got[0] === null) ids = Array.from(states[0].ids.subarray(0, states[0].count));
    }
  }
});
