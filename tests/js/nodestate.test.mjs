// NodeState: keyframes replace, deltas overwrite and append, `version` tracks membership.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  AGENT_FLAG,
  DELTA,
  FrameError,
  HEADER_SIZE,
  KEYFRAME,
  KNOWLEDGE_FLAG,
  RECORD_SIZE,
  _decodeUnchecked,
  decodeFrame,
  decodeLegacy,
} from "../../visionflow/web/static/js/frames.js";
import { NodeState } from "../../visionflow/web/static/js/nodestate.js";

const K = (raw) => (KNOWLEDGE_FLAG | raw) >>> 0;
const A = (raw) => (AGENT_FLAG | raw) >>> 0;

let sequence = 0;

/**
 * A protocol-2 message (ArrayBuffer). `nodes`: [id, x, y, z]; velocity is raw id / 8 on every
 * axis, so a mix-up between position and velocity words shows.
 */
function message(kind, nodes) {
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
  return buffer;
}

/** The same message, decoded. */
const frame = (kind, nodes) => decodeFrame(message(kind, nodes));

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

// -- applyBuffer, checking frames, the id -> slot table -------------------------------------------

/** Everything observable about a state, copied (to compare before and after a refusal). */
function snapshot(state) {
  return {
    count: state.count,
    version: state.version,
    capacity: state.capacity,
    ids: state.ids,
    positions: state.positions,
    idsCopy: Array.from(state.ids),
    positionsCopy: Array.from(state.positions),
    rows: rows(state),
  };
}

function assertUnchanged(state, before) {
  assert.equal(state.count, before.count);
  assert.equal(state.version, before.version);
  assert.equal(state.capacity, before.capacity);
  assert.equal(state.ids, before.ids, "same ids array");
  assert.equal(state.positions, before.positions, "same positions array");
  assert.deepStrictEqual(Array.from(state.ids), before.idsCopy);
  assert.deepStrictEqual(Array.from(state.positions), before.positionsCopy);
  assert.deepStrictEqual(rows(state), before.rows);
}

/** `buffer` with float word `word` (1..6) of record `k` set to `value`; returns its byte offset. */
function poison(buffer, k, word, value) {
  const at = HEADER_SIZE + k * RECORD_SIZE + 4 * word;
  new DataView(buffer).setFloat32(at, value, true);
  return at;
}

const FIELDS = ["id", "pos.x", "pos.y", "pos.z", "vel.x", "vel.y", "vel.z"];

/** Three states fed the same frames: apply(decodeFrame), applyBuffer, apply(unchecked frame). */
function threeWays(capacity) {
  const states = [new NodeState(capacity), new NodeState(capacity), new NodeState(capacity)];
  return {
    states,
    feed(buffer) {
      const results = [
        states[0].apply(decodeFrame(buffer)),
        (states[1].applyBuffer(buffer), null),
        states[2].apply(_decodeUnchecked(buffer)),
      ];
      const expected = rows(states[0]);
      for (const s of states.slice(1)) {
        assert.deepStrictEqual(rows(s), expected);
        assert.equal(s.version, states[0].version);
        assert.equal(s.count, states[0].count);
      }
      assert.deepStrictEqual(results[2], results[0]);
      return results[0];
    },
  };
}

test("applyBuffer and apply of an unchecked frame do what apply(decodeFrame) does", () => {
  const { feed, states } = threeWays(2);
  feed(message(KEYFRAME, [[K(1), 1, 2, 3], [A(2), 4, 5, 6], [K(3), 7, 8, 9]]));
  feed(message(KEYFRAME, [[K(1), -1, -2, -3], [A(2), -4, -5, -6], [K(3), -7, -8, -9]]));
  feed(message(DELTA, [[A(2), 0, 0, 0], [K(7), 7, 7, 7], [A(8), 8, 8, 8]]));
  feed(message(KEYFRAME, [[K(3), 3, 3, 3], [K(1), 1, 1, 1]]));
  feed(message(KEYFRAME, [[K(3), 3, 3, 3], [K(1), 1, 1, 1], [K(3), 9, 9, 9]]));
  feed(message(KEYFRAME, []));
  feed(message(DELTA, []));
  feed(message(DELTA, [[K(1), 1, 1, 1]]));
  assert.equal(states[1].count, 1);
});

test("applyBuffer returns the decoded frame and refuses what decodeFrame refuses", () => {
  const state = new NodeState();
  const buffer = message(KEYFRAME, [[K(1), 1, 2, 3]]);
  const f = state.applyBuffer(buffer);
  assert.equal(f.kind, KEYFRAME);
  assert.equal(f.sequence, sequence);
  assert.equal(f.count, 1);
  assert.equal(f.u32[0], K(1));
  const before = snapshot(state);
  const vectors = new URL("./vectors/", import.meta.url);
  const index = JSON.parse(readFileSync(new URL("index.json", vectors), "utf8"));
  let n = 0;
  for (const v of index.invalid.filter((x) => x.decoder === "frame")) {
    const bytes = readFileSync(new URL(v.file, vectors));
    assert.throws(
      () => state.applyBuffer(new Uint8Array(bytes).buffer),
      (err) =>
        err instanceof FrameError && err.offset === v.offset && err.message.includes(v.message),
      v.name,
    );
    assertUnchanged(state, before);
    n++;
  }
  assert.ok(n >= 10);
});

test("a non-finite float anywhere in a keyframe is refused, at its offset, state unchanged", () => {
  const nodes = [];
  for (let i = 1; i <= 40; i++) nodes.push([i % 2 ? K(i) : A(i), i, -i, i / 4]);
  const other = nodes.map(([id, x, y, z], i) => [i === 20 ? K(999) : id, x, y, z]);
  const reversed = [...nodes].reverse();
  for (const bad of [NaN, Infinity, -Infinity]) {
    for (const word of [1, 2, 3, 4, 5, 6]) {
      for (const k of [0, 19, 39]) {
        // same ids (the steady copy), a different id at 20 (the fallback after a partial copy),
        // another order, more nodes, and the first keyframe of an empty state
        for (const next of [nodes, other, reversed, [...nodes, [K(77), 1, 1, 1]], null]) {
          const state = new NodeState(8);
          if (next !== null) state.apply(keyframe(nodes));
          const buffer = message(KEYFRAME, next ?? nodes);
          const offset = poison(buffer, k, word, bad);
          const before = snapshot(state);
          for (const go of [
            () => state.applyBuffer(buffer),
            () => state.apply(_decodeUnchecked(buffer)),
            () => state.apply(decodeFrame(buffer)),
          ]) {
            assert.throws(go, (err) => {
              assert.ok(err instanceof FrameError, `${err}`);
              assert.equal(err.offset, offset);
              assert.match(err.message, new RegExp(`record ${k} field ${FIELDS[word]} `));
              return true;
            });
            assertUnchanged(state, before);
          }
        }
      }
    }
  }
});

test("a non-finite float in a delta is refused, at its offset, nothing added or moved", () => {
  const state = new NodeState(4);
  state.apply(keyframe([[K(1), 1, 2, 3], [A(2), 4, 5, 6], [K(3), 7, 8, 9], [K(4), 0, 0, 0]]));
  for (const word of [1, 2, 3, 4, 5, 6]) {
    for (const k of [0, 2, 3]) {
      // known nodes and new ones (past the capacity: the arrays would grow)
      const buffer = message(DELTA, [
        [A(2), 9, 9, 9],
        [K(5), 5, 5, 5],
        [K(1), 0, 1, 0],
        [A(6), 6, 6, 6],
      ]);
      const offset = poison(buffer, k, word, word % 2 ? NaN : -Infinity);
      const before = snapshot(state);
      for (const go of [
        () => state.applyBuffer(buffer),
        () => state.apply(_decodeUnchecked(buffer)),
        () => state.apply(decodeFrame(buffer)),
      ]) {
        assert.throws(go, (err) => err instanceof FrameError && err.offset === offset);
        assertUnchanged(state, before);
        assert.equal(state.indexOf(K(5)), -1);
      }
    }
  }
  // a legacy frame (records at byte 0) that is not from decodeLegacy is checked too
  const legacy = message(DELTA, [[K(1), 1, 1, 1], [K(9), 9, 9, 9]]).slice(HEADER_SIZE);
  new DataView(legacy).setFloat32(RECORD_SIZE + 16, NaN, true);
  const unchecked = {
    kind: null,
    sequence: null,
    count: 2,
    u32: new Uint32Array(legacy),
    f32: new Float32Array(legacy),
  };
  const before = snapshot(state);
  assert.throws(() => state.apply(unchecked), { name: "FrameError", offset: RECORD_SIZE + 16 });
  assertUnchanged(state, before);
});

test("a steady keyframe through applyBuffer may swap in the other positions array", () => {
  const state = new NodeState(4);
  const nodes = [[K(1), 1, 2, 3], [A(2), 4, 5, 6]];
  state.applyBuffer(message(KEYFRAME, nodes));
  const { version, ids } = state;
  const seen = new Set();
  for (let i = 0; i < 4; i++) {
    state.applyBuffer(message(KEYFRAME, [[K(1), i, i, i], [A(2), -i, -i, -i]]));
    seen.add(state.positions);
    assert.equal(state.positions.length, 3 * state.capacity);
    assert.deepStrictEqual(rows(state), [[K(1), i, i, i], [A(2), -i, -i, -i]]);
  }
  assert.equal(state.version, version);
  assert.equal(state.ids, ids);
  assert.ok(seen.size <= 2);
  // a delta after a swap writes into the array the state now shows
  state.applyBuffer(message(DELTA, [[A(2), 7, 7, 7], [K(5), 5, 5, 5]]));
  assert.deepStrictEqual(rows(state), [[K(1), 3, 3, 3], [A(2), 7, 7, 7], [K(5), 5, 5, 5]]);
});

test("a keyframe whose ids differ from the state partway falls back to a rebuild", () => {
  for (const via of ["apply", "applyBuffer"]) {
    const state = new NodeState();
    const nodes = [];
    for (let i = 1; i <= 50; i++) nodes.push([K(i), i, i, i]);
    state.apply(keyframe(nodes));
    const v = state.version;
    const next = nodes.map(([id, x, y, z], i) => [i === 30 ? A(31) : id, -x, -y, -z]);
    const buffer = message(KEYFRAME, next);
    const r = via === "apply" ? state.apply(decodeFrame(buffer)) : null;
    if (via === "applyBuffer") state.applyBuffer(buffer);
    if (r) assert.deepStrictEqual(r, { keyframe: true, changed: 50, membership: true });
    assert.equal(state.version, v + 1);
    assert.deepStrictEqual(rows(state), next);
    assert.equal(state.indexOf(K(31)), -1);
    assert.equal(state.indexOf(A(31)), 30);
  }
});

test("the id table: growth, collisions, flags and odd lookups", () => {
  const state = new NodeState(1);
  // ids that share a bucket of the smallest table (16 buckets): same top 4 bits of id * hash
  const bucket = (id) => Math.imul(id, 0x9e3779b1) >>> 28;
  const colliding = [];
  for (let raw = 1; colliding.length < 12; raw++) {
    if (bucket(K(raw)) === bucket(K(1))) colliding.push(K(raw));
  }
  // two by two in deltas: the table grows while colliding ids are in it
  const expect = [];
  for (let i = 0; i < colliding.length; i += 2) {
    const batch = [[colliding[i], i, 0, 0], [colliding[i + 1], i + 1, 0, 0]];
    state.apply(delta(batch));
    expect.push(...batch);
    assert.deepStrictEqual(rows(state), expect);
  }
  // every flag combination of the same raw id, 0, and the largest u32 are distinct nodes
  const odd = [0, 5, K(5), A(5), (AGENT_FLAG | KNOWLEDGE_FLAG | 5) >>> 0, 0xffffffff, 0x7fffffff];
  state.apply(delta(odd.map((id, i) => [id, i, i, i])));
  for (const id of odd) assert.ok(state.indexOf(id) >= 0, `${id}`);
  const misses = [K(6), A(6), 6, -1, -5, 1.5, NaN, 2 ** 32, 2 ** 32 + 5, "5", 5n, undefined, null];
  for (const miss of misses) {
    assert.equal(state.indexOf(miss), -1, `${miss}`);
  }
  // many nodes, in deltas of 1000: growth 1 -> 8192 slots, every id found, absent ones not
  const many = new NodeState(1);
  const all = [];
  for (let b = 0; b < 8; b++) {
    const batch = [];
    for (let i = 0; i < 1000; i++) {
      const raw = b * 1000 + i;
      batch.push([raw % 3 === 0 ? A(raw * 7) : K(raw * 7), raw, -raw, raw / 2]);
    }
    many.apply(delta(batch));
    all.push(...batch);
  }
  assert.equal(many.count, 8000);
  assert.equal(many.capacity, 8192);
  assert.deepStrictEqual(rows(many), all);
  assert.equal(many.indexOf(K(8)), -1);
  // a keyframe rebuild empties the table: only its ids are left
  many.apply(keyframe(all.slice(7000)));
  assert.equal(many.count, 1000);
  assert.deepStrictEqual(rows(many), all.slice(7000));
  assert.equal(many.indexOf(all[0][0]), -1);
  many.clear();
  assert.equal(many.indexOf(all[7000][0]), -1);
  many.apply(delta([all[7000]]));
  assert.equal(many.indexOf(all[7000][0]), 0);
});

test("applyBuffer takes an unaligned view (the copying decode) too", () => {
  const buffer = message(KEYFRAME, [[K(1), 1, 2, 3], [A(2), 4, 5, 6]]);
  const shifted = new Uint8Array(buffer.byteLength + 1);
  shifted.set(new Uint8Array(buffer), 1);
  const state = new NodeState();
  state.applyBuffer(shifted.subarray(1));
  assert.deepStrictEqual(rows(state), [[K(1), 1, 2, 3], [A(2), 4, 5, 6]]);
  new DataView(shifted.buffer).setFloat32(1 + HEADER_SIZE + RECORD_SIZE + 24, NaN, true);
  const before = snapshot(state);
  assert.throws(() => state.applyBuffer(shifted.subarray(1)), {
    name: "FrameError",
    offset: HEADER_SIZE + RECORD_SIZE + 24,
  });
  assertUnchanged(state, before);
});

test("a steady keyframe through applyBuffer copies every finite float exactly, at any offset", () => {
  // The steady copy reads the message through a DataView and adds the floats up to check
  // them: signed zeros, subnormals and the largest floats are neither refused nor changed,
  // whether the message starts 4-byte aligned in its buffer or not.
  const tiny = 2 ** -149; // the smallest subnormal float32
  const max = 3.4028234663852886e38; // the largest float32
  const nodes = [
    [K(1), -0, 0, tiny],
    [A(2), -tiny, max, -max],
    [K(3), 1.5, -2.25, 1e-40],
    [A(4), max, max, max],
  ];
  const next = nodes.map(([id, x, y, z]) => [id, z, x, y]);
  for (const shift of [0, 1, 4, 8]) {
    const state = new NodeState();
    state.applyBuffer(message(KEYFRAME, nodes));
    const { version, positions } = state;
    const buffer = message(KEYFRAME, next);
    const bytes = new Uint8Array(buffer.byteLength + shift);
    bytes.set(new Uint8Array(buffer), shift);
    state.applyBuffer(bytes.subarray(shift));
    assert.equal(state.version, version, "the steady path: no membership change");
    assert.notEqual(state.positions, positions, "the steady path: the other array swapped in");
    // deepStrictEqual tells -0 from 0
    assert.deepStrictEqual(rows(state), next.map(([id, ...p]) => [id, ...p.map(Math.fround)]));
  }
});
