// Binary position frames of the /wss stream (docs/protocol.md sections 1-3 and 5), for the
// viewer. Pure: no DOM, so the same module runs in browsers and under `node --test`.
//
// The decoder validates what the Python decoder (visionflow/protocol/frames.py) refuses, with
// the same byte offsets and the same reasons, so a frame either side refuses is refused the
// same way on the other. On a little-endian host (every browser in practice) the decoded
// records are typed-array views over the message's own ArrayBuffer: a 100k-node keyframe
// (2.8 MB at 30 Hz) is never copied, and NodeState.applyBuffer checks its floats in the same
// loop that takes the positions out (one pass over the message).

/** Bytes in a protocol-2 header ("VF", version, kind, count u32, sequence u64). */
export const HEADER_SIZE = 16;
/** Bytes in one node record: id u32, position 3 x f32, velocity 3 x f32. */
export const RECORD_SIZE = 28;
/** 32-bit words in one record, the stride of the `u32`/`f32` views of a decoded frame. */
export const RECORD_WORDS = 7;
/** Header kind byte of a keyframe: the receiver replaces its whole state. */
export const KEYFRAME = 0;
/** Header kind byte of a delta: the receiver overwrites or adds the nodes it carries. */
export const DELTA = 1;
/** Id bit 31: an agent node (MCP agent, or the hub of its swarm or task). */
export const AGENT_FLAG = 0x80000000;
/** Id bit 30: a knowledge node (imported graph). */
export const KNOWLEDGE_FLAG = 0x40000000;
/** Mask of the raw node id (bits 0-29), e.g. for the `release` control message. */
export const ID_MASK = 0x3fffffff;
/** Most records the server takes in one drag message (more is refused with `bad_drag`). */
export const MAX_DRAG_RECORDS = 4096;

const VERSION = 2;
const MAGIC0 = 0x56; // "V"
const MAGIC1 = 0x46; // "F"
const FIELD_NAMES = ["id", "pos.x", "pos.y", "pos.z", "vel.x", "vel.y", "vel.z"];
// Typed arrays use the host's byte order and the wire is little-endian: views are only
// correct on a little-endian host (checked once; big-endian hosts get a copying decode).
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A message that breaks docs/protocol.md. `offset` is the byte where it went wrong and
 * `reason` the text after "bad frame at byte N: ", both as the Python decoder reports them,
 * so a log line names the same byte on either side.
 */
export class FrameError extends Error {
  /**
   * @param {string} reason what is wrong, without the offset
   * @param {number} offset byte offset of the problem in the message
   */
  constructor(reason, offset) {
    super(`bad frame at byte ${offset}: ${reason}`);
    this.name = "FrameError";
    /** @type {string} */
    this.reason = reason;
    /** @type {number} */
    this.offset = offset;
  }
}

/**
 * A decoded frame. Record k: id `u32[7k]`, position `f32[7k+1..7k+3]`, velocity
 * `f32[7k+4..7k+6]`. On little-endian hosts `u32` and `f32` view the message's buffer (no
 * copy): they stay valid as long as nobody writes to that buffer.
 *
 * @typedef {object} Frame
 * @property {number|null} kind KEYFRAME or DELTA; null for a legacy frame (no header)
 * @property {number|null} sequence physics tick (u64 read exactly, at most 2^53); null for legacy
 * @property {number} count number of records
 * @property {Uint32Array} u32 the records region as 32-bit words (ids at stride 7)
 * @property {Float32Array} f32 the same words as floats (positions, velocities)
 */

/**
 * Bytes of `data` as [buffer, byteOffset, byteLength]; accepts an ArrayBuffer (what a
 * WebSocket with binaryType "arraybuffer" delivers) or any ArrayBufferView (a Node Buffer).
 * @param {ArrayBuffer|ArrayBufferView} data
 * @returns {[ArrayBuffer, number, number]}
 */
function bytesOf(data) {
  if (data instanceof ArrayBuffer) return [data, 0, data.byteLength];
  if (ArrayBuffer.isView(data)) return [data.buffer, data.byteOffset, data.byteLength];
  throw new TypeError("expected an ArrayBuffer or an ArrayBufferView");
}

/**
 * Index (in words) of the first non-finite float in `f32`, skipping the id words; -1 if all
 * are finite. A finite float32 is at most 3.4e38, so the double sum of any number of them that
 * fits in memory is finite, while one NaN or +-Infinity makes the sum NaN or infinite: one add
 * per float and a single test at the end; the exact word is searched for only on failure.
 * @param {Float32Array} f32
 * @param {number} count records
 * @returns {number}
 */
function firstNonFinite(f32, count) {
  let a = 0;
  let b = 0;
  for (let k = 0, w = 0; k < count; k++, w += RECORD_WORDS) {
    a += f32[w + 1] + f32[w + 2] + f32[w + 3];
    b += f32[w + 4] + f32[w + 5] + f32[w + 6];
  }
  const sum = a + b;
  if (sum - sum === 0) return -1;
  const end = count * RECORD_WORDS;
  for (let w = 0; w < end; w++) {
    if (w % RECORD_WORDS !== 0 && f32[w] - f32[w] !== 0) return w;
  }
  return -1; // not reached: the sum above was not finite only because some float is not
}

// Frames whose floats decodeFrame/decodeLegacy checked: NodeState.apply does not check them
// again.
const checkedFrames = new WeakSet();

/**
 * Throw FrameError (offset and reason as the Python decoder gives them) for the first
 * non-finite float of `frame`, if any. Records start at byte 16 of a protocol-2 message and
 * at byte 0 of a legacy one (kind null).
 * @internal used by NodeState, which checks frames it did not get from decodeFrame
 * @param {Frame} frame
 */
export function _checkFinite(frame) {
  const w = firstNonFinite(frame.f32, frame.count);
  if (w >= 0) {
    const rec = Math.floor(w / RECORD_WORDS);
    const field = FIELD_NAMES[w % RECORD_WORDS];
    const start = frame.kind === null ? 0 : HEADER_SIZE;
    throw new FrameError(`record ${rec} field ${field} is not a finite float`, start + 4 * w);
  }
}

/**
 * Whether `frame` came from decodeFrame or decodeLegacy (its floats were checked then).
 * @internal
 * @param {Frame} frame
 * @returns {boolean}
 */
export function _isChecked(frame) {
  return checkedFrames.has(frame);
}

/**
 * Copy `count` records at `byteOffset` of `buffer` into fresh native-order arrays, reading
 * little-endian with a DataView. The big-endian (or unaligned) path; exported for its tests.
 * @internal
 * @param {ArrayBuffer} buffer
 * @param {number} byteOffset
 * @param {number} count
 * @returns {{u32: Uint32Array, f32: Float32Array}}
 */
export function _copyRecords(buffer, byteOffset, count) {
  const words = count * RECORD_WORDS;
  const u32 = new Uint32Array(words);
  const f32 = new Float32Array(u32.buffer);
  const dv = new DataView(buffer, byteOffset, words * 4);
  for (let w = 0; w < words; w++) {
    if (w % RECORD_WORDS === 0) u32[w] = dv.getUint32(4 * w, true);
    else f32[w] = dv.getFloat32(4 * w, true);
  }
  return { u32, f32 };
}

/**
 * The records region as views (or a copy where views cannot be used); floats not checked.
 * @param {ArrayBuffer} buffer
 * @param {number} start byte offset of the records in `buffer`
 * @param {number} count
 */
function records(buffer, start, count) {
  if (LITTLE_ENDIAN_HOST && start % 4 === 0) {
    return {
      u32: new Uint32Array(buffer, start, count * RECORD_WORDS),
      f32: new Float32Array(buffer, start, count * RECORD_WORDS),
    };
  }
  return _copyRecords(buffer, start, count);
}

/**
 * The records region of a protocol-2 message that `_decodeUnchecked` accepted, as a DataView:
 * little-endian as on the wire, at any alignment and on any host. NodeState.applyBuffer reads
 * a keyframe through it (measured faster in V8 than the typed-array views: one bounds check
 * and no base-pointer arithmetic per read).
 * @internal for NodeState.applyBuffer
 * @param {ArrayBuffer|ArrayBufferView} buffer the message
 * @param {number} count its records (the decoded frame's `count`)
 * @returns {DataView}
 */
export function _recordsView(buffer, count) {
  const [buf, base] = bytesOf(buffer);
  return new DataView(buf, base + HEADER_SIZE, count * RECORD_SIZE);
}

/**
 * Decode one protocol-2 message (docs/protocol.md section 2). Refuses, with FrameError and
 * the Python decoder's offsets: fewer than 16 bytes, a wrong magic, a version other than 2, a
 * kind other than 0 or 1, a length other than 16 + 28 * N, a non-finite float; and, as
 * JavaScript numbers cannot hold it exactly, a sequence above 2^53 (offset 8).
 *
 * The viewer's hot path is `NodeState.applyBuffer`, which checks the floats in the loop that
 * copies the positions instead of in a pass of its own; this is the same decode with the
 * check done here, for every other use.
 * @param {ArrayBuffer|ArrayBufferView} buffer one binary WebSocket message
 * @returns {Frame}
 */
export function decodeFrame(buffer) {
  const frame = _decodeUnchecked(buffer);
  _checkFinite(frame);
  checkedFrames.add(frame);
  return frame;
}

/**
 * decodeFrame without the finiteness check: every header and length check, records not
 * looked at. NodeState.apply checks such a frame's floats itself (it is not marked checked).
 * @internal for NodeState.applyBuffer
 * @param {ArrayBuffer|ArrayBufferView} buffer one binary WebSocket message
 * @returns {Frame}
 */
export function _decodeUnchecked(buffer) {
  const [buf, base, size] = bytesOf(buffer);
  if (size < HEADER_SIZE) {
    throw new FrameError(
      `message is ${size} bytes, shorter than the ${HEADER_SIZE}-byte header`,
      size,
    );
  }
  const dv = new DataView(buf, base, HEADER_SIZE);
  const m0 = dv.getUint8(0);
  const m1 = dv.getUint8(1);
  if (m0 !== MAGIC0 || m1 !== MAGIC1) {
    const hex = (b) => `0x${b.toString(16).padStart(2, "0")}`;
    throw new FrameError(
      `magic is ${hex(m0)} ${hex(m1)}, expected ${hex(MAGIC0)} ${hex(MAGIC1)} ("VF")`,
      0,
    );
  }
  const version = dv.getUint8(2);
  if (version !== VERSION) {
    throw new FrameError(`protocol version ${version}, expected ${VERSION}`, 2);
  }
  const kind = dv.getUint8(3);
  if (kind !== KEYFRAME && kind !== DELTA) {
    throw new FrameError(`unknown frame kind ${kind} (0 = keyframe, 1 = delta)`, 3);
  }
  const count = dv.getUint32(4, true);
  const expected = HEADER_SIZE + RECORD_SIZE * count;
  if (size !== expected) {
    throw new FrameError(
      `record count ${count} needs ${expected} bytes, message has ${size}`,
      4,
    );
  }
  const lo = dv.getUint32(8, true);
  const hi = dv.getUint32(12, true);
  // 2^53 = hi 0x200000, lo 0: the largest integer up to which every Number is exact.
  if (hi > 0x200000 || (hi === 0x200000 && lo !== 0)) {
    throw new FrameError(
      `sequence ${dv.getBigUint64(8, true)} is above 2^53, not exact as a JavaScript number`,
      8,
    );
  }
  const sequence = hi * 0x100000000 + lo;
  const { u32, f32 } = records(buf, base + HEADER_SIZE, count);
  return { kind, sequence, count, u32, f32 };
}

/**
 * Decode a legacy frame (`protocol=legacy`, docs/protocol.md section 3): records without a
 * header, so `kind` and `sequence` are null and the receiver applies it like a delta.
 * Refuses a length that is not a multiple of 28 and non-finite floats, as Python does.
 * @param {ArrayBuffer|ArrayBufferView} buffer one binary WebSocket message
 * @returns {Frame}
 */
export function decodeLegacy(buffer) {
  const [buf, base, size] = bytesOf(buffer);
  const extra = size % RECORD_SIZE;
  if (extra !== 0) {
    throw new FrameError(
      `legacy frame is ${size} bytes, not a multiple of the ${RECORD_SIZE}-byte record ` +
        `(${extra} bytes left over)`,
      size - extra,
    );
  }
  const count = size / RECORD_SIZE;
  const { u32, f32 } = records(buf, base, count);
  const frame = { kind: null, sequence: null, count, u32, f32 };
  _checkFinite(frame);
  checkedFrames.add(frame);
  return frame;
}

/**
 * Encode a drag (docs/protocol.md section 5, "Dragging nodes"): headerless records asking
 * the server to pin node `ids[i]` at `positions[3i..3i+2]`; velocities are sent as 0 (the
 * server ignores them). Ids go out as given, flagged or not (the server masks the flags).
 * Throws RangeError for what the server would refuse whole as `bad_drag`: lengths that do not
 * match, an id that is not a u32, a non-finite coordinate, more than MAX_DRAG_RECORDS nodes.
 * Coordinates beyond +-1e6 are the caller's to clamp (the server refuses them too).
 * @param {ArrayLike<number>} ids node ids, one per record
 * @param {ArrayLike<number>} positions x, y, z per id (rounded to float32)
 * @returns {ArrayBuffer} one binary WebSocket message (empty for no ids: the server ignores it)
 */
export function encodeDrag(ids, positions) {
  const n = ids.length;
  if (positions.length !== 3 * n) {
    throw new RangeError(`${n} ids need ${3 * n} coordinates, got ${positions.length}`);
  }
  if (n > MAX_DRAG_RECORDS) {
    throw new RangeError(`${n} nodes in one drag, the server takes at most ${MAX_DRAG_RECORDS}`);
  }
  const out = new ArrayBuffer(n * RECORD_SIZE);
  const dv = new DataView(out);
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new RangeError(`id ${id} at index ${i} is not a u32`);
    }
    const at = i * RECORD_SIZE;
    dv.setUint32(at, id, true);
    for (let c = 0; c < 3; c++) {
      const x = positions[3 * i + c];
      // Checked after rounding: a finite double beyond the float32 range becomes Infinity.
      if (!Number.isFinite(Math.fround(x))) {
        throw new RangeError(`coordinate ${c} of node ${id} is ${x}, not a finite float32`);
      }
      dv.setFloat32(at + 4 + 4 * c, x, true);
    }
    // velocity words stay 0 (a fresh ArrayBuffer is zero-filled)
  }
  return out;
}
