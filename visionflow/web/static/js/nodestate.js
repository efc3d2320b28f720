// The viewer's node positions, kept the way the renderer uploads them: parallel typed arrays,
// slots 0..count-1 contiguous, no per-node objects (100k nodes at 30 Hz must not churn the
// garbage collector). Pure: no DOM, runs under `node --test`.

import { KEYFRAME, RECORD_WORDS } from "./frames.js";

const DEFAULT_CAPACITY = 1024;

/**
 * Node positions applied from decoded frames (see frames.js). Slot `s` holds node `ids[s]` at
 * `positions[3s..3s+2]`. Upload `positions.subarray(0, 3 * count)` with one bufferSubData.
 *
 * The arrays are replaced (doubled) when they grow: read `ids` and `positions` again after
 * every `apply`, and reallocate GPU buffers when `capacity` changed. `version` changes whenever
 * the set of ids or their slot order changes: rebuild per-node attributes (colours, sizes) and
 * edge index buffers then, and only then.
 */
export class NodeState {
  /**
   * @param {number} [capacity] initial number of slots; the arrays double past it
   */
  constructor(capacity = DEFAULT_CAPACITY) {
    const cap = Math.max(1, Math.floor(capacity));
    /** Number of nodes (used slots). */
    this.count = 0;
    /** Flagged node id per slot (Uint32Array of `capacity`, first `count` used). */
    this.ids = new Uint32Array(cap);
    /** x, y, z per slot (Float32Array of 3 * `capacity`, first 3 * `count` used). */
    this.positions = new Float32Array(3 * cap);
    /** Bumped when the set of ids or their slot order changes. */
    this.version = 0;
    /** @type {Map<number, number>} flagged id -> slot */
    this._slots = new Map();
  }

  /** Slots allocated; the arrays are reallocated (doubled) when `count` would pass it. */
  get capacity() {
    return this.ids.length;
  }

  /**
   * Slot of a node, or -1 if it is not (or no longer) in the state.
   * @param {number} flaggedId id as on the wire, flag bits included
   * @returns {number}
   */
  indexOf(flaggedId) {
    const slot = this._slots.get(flaggedId);
    return slot === undefined ? -1 : slot;
  }

  /**
   * Forget every node (e.g. on reconnect with `protocol=legacy`, whose frames cannot remove
   * nodes). Bumps `version` if there was anything to forget.
   */
  clear() {
    if (this.count === 0) return;
    this.count = 0;
    this._slots.clear();
    this.version++;
  }

  /**
   * Apply one decoded frame. A keyframe replaces the whole state (absent nodes are gone, slot
   * order = frame order); a delta or a legacy frame (kind null) overwrites the nodes it carries
   * and appends unknown ones. A keyframe with exactly the current ids in the current order
   * (the steady state) only copies positions: no Map work, no `version` bump.
   * @param {import("./frames.js").Frame} frame from decodeFrame or decodeLegacy
   * @returns {{keyframe: boolean, changed: number, membership: boolean}} `changed`: records
   *   written (positions overwritten or nodes added); `membership`: `version` was bumped
   */
  apply(frame) {
    if (frame.kind === KEYFRAME) return this._applyKeyframe(frame);
    return this._applyDelta(frame);
  }

  /** @param {number} needed slots required */
  _reserve(needed) {
    const cap = this.ids.length;
    if (needed <= cap) return;
    let next = cap * 2;
    while (next < needed) next *= 2;
    const ids = new Uint32Array(next);
    ids.set(this.ids.subarray(0, this.count));
    const positions = new Float32Array(3 * next);
    positions.set(this.positions.subarray(0, 3 * this.count));
    this.ids = ids;
    this.positions = positions;
  }

  /** @param {import("./frames.js").Frame} frame */
  _applyKeyframe(frame) {
    const n = frame.count;
    const u32 = frame.u32;
    const f32 = frame.f32;
    if (n === this.count) {
      // Fast path: same ids, same order. Copy while comparing; stop at the first mismatch
      // (the positions copied so far are rewritten by the full rebuild below).
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
    this._reserve(n);
    const ids = this.ids;
    const pos = this.positions;
    const slots = this._slots;
    slots.clear();
    let count = 0;
    for (let k = 0, w = 0; k < n; k++, w += RECORD_WORDS) {
      const id = u32[w];
      // The server never repeats an id within a frame; if one did, its last record wins and
      // keeps the slot of its first, so slots stay unique.
      let slot = slots.get(id);
      if (slot === undefined) {
        slot = count++;
        slots.set(id, slot);
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

  /** @param {import("./frames.js").Frame} frame */
  _applyDelta(frame) {
    const n = frame.count;
    const u32 = frame.u32;
    const f32 = frame.f32;
    const slots = this._slots;
    let added = 0;
    for (let k = 0, w = 0; k < n; k++, w += RECORD_WORDS) {
      const id = u32[w];
      let slot = slots.get(id);
      if (slot === undefined) {
        if (this.count === this.ids.length) this._reserve(this.count + 1);
        slot = this.count++;
        slots.set(id, slot);
        this.ids[slot] = id;
        added++;
      }
      const pos = this.positions;
      const p = 3 * slot;
      pos[p] = f32[w + 1];
      pos[p + 1] = f32[w + 2];
      pos[p + 2] = f32[w + 3];
    }
    if (added > 0) this.version++;
    return { keyframe: false, changed: n, membership: added > 0 };
  }
}
