// The viewer's node positions, kept the way the renderer uploads them: parallel typed arrays,
// slots 0..count-1 contiguous, no per-node objects (100k nodes at 30 Hz must not churn the
// garbage collector). Pure: no DOM, runs under `node --test`.

import {
  KEYFRAME,
  RECORD_WORDS,
  _checkFinite,
  _decodeUnchecked,
  _isChecked,
  _recordsView,
} from "./frames.js";
import { MAX_WASM_CAPACITY, WasmArrays, kernel } from "./steady.js";

const DEFAULT_CAPACITY = 1024;
/** Fewest buckets of the id -> slot table. */
const MIN_BUCKETS = 16;
/** 2^32 / golden ratio: Fibonacci hashing, the top bits of id * HASH are the bucket. */
const HASH = 0x9e3779b1;
/**
 * Most records the checking steady copy compares: their byte offsets (28 * 2^26 + 24) stay
 * int32, so its loop needs no overflow checks. A larger keyframe takes the rebuild instead.
 */
const MAX_STEADY = 1 << 26;

/** Smallest power of two >= x (x >= 1). */
function pow2AtLeast(x) {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}

/**
 * Node positions applied from decoded frames (see frames.js). Slot `s` holds node `ids[s]` at
 * `positions[3s..3s+2]`. Upload `positions.subarray(0, 3 * count)` with one bufferSubData.
 *
 * Read `ids` and `positions` again after every `apply`: the arrays are replaced (doubled) when
 * they grow, and a keyframe may hand over `positions` as another array of the same capacity
 * (it is written aside and swapped in, so that a refused frame leaves the state as it was).
 * Reallocate GPU buffers when `capacity` changed. `version` changes whenever the set of ids or
 * their slot order changes: rebuild per-node attributes (colours, sizes) and edge index
 * buffers then, and only then.
 *
 * A frame with a non-finite float is refused whole (FrameError, nothing applied), whichever
 * entry point it comes through: `applyBuffer` checks while it copies, `apply` trusts a frame
 * from decodeFrame/decodeLegacy (checked there) and checks any other before applying it.
 */
export class NodeState {
  /**
   * @param {number} [capacity] initial number of slots; the arrays double past it
   * @param {{wasm?: boolean}} [options] `wasm: false` keeps the steady keyframe in JavaScript
   *   even where the WebAssembly kernel (steady.js) can run (tests compare the two)
   */
  constructor(capacity = DEFAULT_CAPACITY, { wasm = true } = {}) {
    const cap = Math.max(1, Math.floor(capacity));
    /** Number of nodes (used slots). */
    this.count = 0;
    /** Bumped when the set of ids or their slot order changes. */
    this.version = 0;
    // the steady keyframe's kernel, or null: the JavaScript loop
    this._kernel = wasm ? kernel() : null;
    /** @type {WasmArrays|null} the arrays' WebAssembly memory, when the kernel runs */
    this._wasm = null;
    /** Flagged node id per slot (Uint32Array of `capacity`, first `count` used). */
    this.ids = new Uint32Array(0);
    /** x, y, z per slot (Float32Array of 3 * `capacity`, first 3 * `count` used). */
    this.positions = new Float32Array(0);
    // Where a checking keyframe writes before it is known to be valid; swapped with positions.
    this._spare = new Float32Array(0);
    this._allocate(cap);
    // id -> slot, open addressing with linear probing: bucket b is [2b] = id (as int32),
    // [2b + 1] = slot + 1 (0: empty). Ids are never removed one by one (a keyframe rebuilds),
    // so there are no tombstones; at most half the buckets are used.
    this._table = new Int32Array(0);
    this._mask = 0;
    this._shift = 0;
    this._sizeTable(cap);
  }

  /** Slots allocated; the arrays are reallocated (doubled) when `count` would pass it. */
  get capacity() {
    return this.ids.length;
  }

  /**
   * What applies a steady keyframe from `applyBuffer`: "wasm" (the SIMD kernel of steady.js)
   * or "js" (the DataView loop: no WebAssembly, or the page's CSP forbids compiling it).
   * @returns {"wasm"|"js"}
   */
  get steadyPath() {
    return this._wasm !== null ? "wasm" : "js";
  }

  /**
   * Slot of a node, or -1 if it is not (or no longer) in the state.
   * @param {number} flaggedId id as on the wire, flag bits included
   * @returns {number}
   */
  indexOf(flaggedId) {
    // not a u32 (NaN, negative, fraction, string, ...): in no state
    if (typeof flaggedId !== "number" || flaggedId !== flaggedId >>> 0) return -1;
    return this._find(flaggedId | 0);
  }

  /**
   * Forget every node (e.g. on reconnect with `protocol=legacy`, whose frames cannot remove
   * nodes). Bumps `version` if there was anything to forget.
   */
  clear() {
    if (this.count === 0) return;
    this.count = 0;
    this._table.fill(0);
    this.version++;
  }

  /**
   * Apply one decoded frame. A keyframe replaces the whole state (absent nodes are gone, slot
   * order = frame order); a delta or a legacy frame (kind null) overwrites the nodes it carries
   * and appends unknown ones. A keyframe with exactly the current ids in the current order
   * (the steady state) only copies positions: no table work, no `version` bump.
   *
   * A frame from decodeFrame or decodeLegacy had its floats checked there and is not checked
   * again (do not write into its buffer in between); any other frame is, and one with a
   * non-finite float is refused with FrameError and leaves the state unchanged.
   * @param {import("./frames.js").Frame} frame from decodeFrame or decodeLegacy
   * @returns {{keyframe: boolean, changed: number, membership: boolean}} `changed`: records
   *   written (positions overwritten or nodes added); `membership`: `version` was bumped
   */
  apply(frame) {
    if (!_isChecked(frame)) _checkFinite(frame); // throws before anything changes
    if (frame.kind === KEYFRAME) return this._applyKeyframe(frame, null);
    return this._applyDelta(frame);
  }

  /**
   * Decode and apply one protocol-2 message in one pass over its records: the viewer's hot
   * path, the same as `apply(decodeFrame(buffer))` (same refusals, offsets and result on the
   * state) but the floats are checked in the loop that copies the positions. On FrameError
   * the state is unchanged.
   * @param {ArrayBuffer|ArrayBufferView} buffer one binary WebSocket message
   * @returns {import("./frames.js").Frame} the decoded frame (its floats checked)
   */
  applyBuffer(buffer) {
    const frame = _decodeUnchecked(buffer);
    if (frame.kind === KEYFRAME) {
      this._applyKeyframe(frame, _recordsView(buffer, frame.count));
    } else {
      _checkFinite(frame);
      this._applyDelta(frame);
    }
    return frame;
  }

  // -- id -> slot table ------------------------------------------------------------------------

  /** Size the table for `cap` slots (at most half full) and empty it. */
  _sizeTable(cap) {
    const buckets = Math.max(MIN_BUCKETS, pow2AtLeast(2 * cap));
    if (2 * buckets !== this._table.length) {
      this._table = new Int32Array(2 * buckets);
      this._mask = buckets - 1;
      this._shift = 32 - Math.log2(buckets);
    } else {
      this._table.fill(0);
    }
  }

  /**
   * Slot of `key` (a flagged id as int32) or -1.
   * @param {number} key
   */
  _find(key) {
    const table = this._table;
    const mask = this._mask;
    let b = Math.imul(key, HASH) >>> this._shift;
    for (;;) {
      const slot = table[2 * b + 1];
      if (slot === 0) return -1;
      if (table[2 * b] === key) return slot - 1;
      b = (b + 1) & mask;
    }
  }

  /**
   * Record `key` -> `slot`; `key` must not be in the table.
   * @param {number} key flagged id as int32
   * @param {number} slot
   */
  _insert(key, slot) {
    const table = this._table;
    const mask = this._mask;
    let b = Math.imul(key, HASH) >>> this._shift;
    while (table[2 * b + 1] !== 0) b = (b + 1) & mask;
    table[2 * b] = key;
    table[2 * b + 1] = slot + 1;
  }

  /**
   * New, empty `ids`, `positions` and `_spare` of `cap` slots: in the kernel's WebAssembly
   * memory when it runs and the browser grants the memory, else plain typed arrays.
   * @param {number} cap slots
   */
  _allocate(cap) {
    this._wasm = null;
    if (this._kernel !== null && cap <= MAX_WASM_CAPACITY) {
      try {
        this._wasm = new WasmArrays(this._kernel, cap);
      } catch (exc) {
        if (!(exc instanceof RangeError)) throw exc; // out of memory: plain arrays below
      }
    }
    if (this._wasm !== null) {
      this.ids = this._wasm.ids;
      this.positions = this._wasm.a;
      this._spare = this._wasm.b;
    } else {
      this.ids = new Uint32Array(cap);
      this.positions = new Float32Array(3 * cap);
      this._spare = new Float32Array(3 * cap);
    }
  }

  /**
   * Grow the arrays (doubling) to hold `needed` slots, keeping the used ones, and the table
   * with them.
   * @param {number} needed slots required
   */
  _reserve(needed) {
    const cap = this.ids.length;
    if (needed <= cap) return;
    let next = cap * 2;
    while (next < needed) next *= 2;
    const ids = this.ids;
    const positions = this.positions;
    this._allocate(next);
    this.ids.set(ids.subarray(0, this.count));
    this.positions.set(positions.subarray(0, 3 * this.count));
    this._sizeTable(next);
    for (let s = 0; s < this.count; s++) this._insert(this.ids[s] | 0, s);
  }

  // -- frames ----------------------------------------------------------------------------------

  /**
   * @param {import("./frames.js").Frame} frame
   * @param {DataView|null} records the message's records (from _recordsView) when the floats
   *   are not checked yet (applyBuffer), checked on the way; null: checked already
   */
  _applyKeyframe(frame, records) {
    const n = frame.count;
    const u32 = frame.u32;
    const f32 = frame.f32;
    if (n === this.count) {
      if (records !== null) {
        if (this._steadyChecking(frame, records)) {
          return { keyframe: true, changed: n, membership: false };
        }
      } else {
        // Steady state: same ids, same order. Copy while comparing ids; stop at the first
        // mismatch (then the rebuild below rewrites every position anyway).
        const ids = this.ids;
        const pos = this.positions;
        let k = 0;
        for (let w = 0, p = 0; k < n; k++, w += RECORD_WORDS, p += 3) {
          if (u32[w] !== ids[k]) break;
          pos[p] = f32[w + 1];
          pos[p + 1] = f32[w + 2];
          pos[p + 2] = f32[w + 3];
        }
        if (k === n) return { keyframe: true, changed: n, membership: false };
      }
    }
    if (records !== null) _checkFinite(frame); // before anything changes
    this._reserve(n);
    const ids = this.ids;
    const pos = this.positions;
    this._sizeTable(this.ids.length);
    let count = 0;
    for (let k = 0, w = 0; k < n; k++, w += RECORD_WORDS) {
      const id = u32[w];
      // The server never repeats an id within a frame; if one did, its last record wins and
      // keeps the slot of its first, so slots stay unique.
      let slot = this._find(id | 0);
      if (slot < 0) {
        slot = count++;
        this._insert(id | 0, slot);
        ids[slot] = id;
      }
      const p = 3 * slot;
      pos[p] = f32[w + 1];
      pos[p + 1] = f32[w + 2];
      pos[p + 2] = f32[w + 3];
    }
    this.count = count;
    this.version++;
    return { keyframe: true, changed: n, membership: true };
  }

  /**
   * The steady keyframe of applyBuffer: compare each id with the state's, copy the position
   * into `_spare`, and check all six floats. With the kernel (steady.js) in WebAssembly SIMD;
   * without it in one JavaScript pass over the message that adds up all six floats (see
   * firstNonFinite in frames.js: one NaN or infinity makes the sum non-finite; one test after
   * the loop instead of a branch per float). `_spare` is swapped in only if every id matched
   * and every float is finite.
   *
   * The records are read through a DataView, not frame.u32/f32: in V8 (Chromium 156) a
   * DataView read compiles to an index, a bounds check and a load, a typed-array read also
   * recomputes the array's data pointer, and the loop keeps fewer registers busy; the `| 0`s
   * keep the offsets int32 (no overflow checks), and 28 is RECORD_SIZE as a literal (an
   * imported constant is a load in the loop). About 15% less time than with the views
   * (benchmarks/README.md, viewer.py).
   * @param {import("./frames.js").Frame} frame
   * @param {DataView} dv its records, little-endian as on the wire
   * @returns {boolean} whether the ids all matched (then the positions are applied)
   */
  _steadyChecking(frame, dv) {
    if (this._wasm !== null) {
      const records = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
      const got = this._wasm.steady(records, frame.count, this._spare);
      if (got < 0) _checkFinite(frame); // throws: some record before the first new id is bad
      if (got !== frame.count) return false;
      const pos = this._spare;
      this._spare = this.positions;
      this.positions = pos;
      return true;
    }
    const ids = this.ids;
    const pos = this._spare;
    const n = Math.min(frame.count, MAX_STEADY) | 0;
    let sum = 0;
    let k = 0;
    for (let b = 0; k < n; k = (k + 1) | 0, b = (b + 28) | 0) {
      if (dv.getUint32(b, true) !== ids[k]) break;
      const p = (3 * k) | 0;
      const x = dv.getFloat32((b + 4) | 0, true);
      const y = dv.getFloat32((b + 8) | 0, true);
      const z = dv.getFloat32((b + 12) | 0, true);
      pos[p] = x;
      pos[(p + 1) | 0] = y;
      pos[(p + 2) | 0] = z;
      sum +=
        x +
        y +
        z +
        dv.getFloat32((b + 16) | 0, true) +
        dv.getFloat32((b + 20) | 0, true) +
        dv.getFloat32((b + 24) | 0, true);
    }
    if (sum - sum !== 0) _checkFinite(frame); // throws: some record before k is bad
    if (k !== frame.count) return false;
    this._spare = this.positions;
    this.positions = pos;
    return true;
  }

  /**
   * A delta or legacy frame whose floats are known to be finite.
   * @param {import("./frames.js").Frame} frame
   */
  _applyDelta(frame) {
    const n = frame.count;
    const u32 = frame.u32;
    const f32 = frame.f32;
    let added = 0;
    let pos = this.positions;
    let table = this._table;
    let mask = this._mask;
    let shift = this._shift;
    for (let k = 0, w = 0; k < n; k++, w += RECORD_WORDS) {
      const key = u32[w] | 0;
      // this._find, inlined: the per-record cost of a delta is this probe
      let b = Math.imul(key, HASH) >>> shift;
      let slot = -1;
      for (;;) {
        const v = table[2 * b + 1];
        if (v === 0) break;
        if (table[2 * b] === key) {
          slot = v - 1;
          break;
        }
        b = (b + 1) & mask;
      }
      if (slot < 0) {
        slot = this.count;
        if (slot === this.ids.length) {
          this._reserve(slot + 1);
          pos = this.positions;
          table = this._table;
          mask = this._mask;
          shift = this._shift;
          this._insert(key, slot);
        } else {
          table[2 * b] = key; // b is the empty bucket the probe stopped at
          table[2 * b + 1] = slot + 1;
        }
        this.ids[slot] = key;
        this.count = slot + 1;
        added++;
      }
      const p = 3 * slot;
      pos[p] = f32[w + 1];
      pos[p + 1] = f32[w + 2];
      pos[p + 2] = f32[w + 3];
    }
    if (added > 0) this.version++;
    return { keyframe: false, changed: n, membership: added > 0 };
  }
}
