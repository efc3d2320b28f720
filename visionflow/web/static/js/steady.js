// The steady keyframe (the same ids in the same order as the state) in WebAssembly SIMD, for
// NodeState.applyBuffer: compare each record's id with the state's, copy its position, check
// all six floats. Pure: no DOM, runs under `node --test`.
//
// Why: in V8 the JavaScript loop that does this (nodestate.js, the fallback below) costs about
// 12 cycles a record, compute-bound: 0.4-0.55 ms for a 100k-node keyframe, 1.7-2.3x a plain
// TypedArray.set of the same 2.8 MB. WebAssembly cannot read the message where it is (a
// WebSocket hands over its own ArrayBuffer), so the records go through a 28 KiB scratch area
// in the module's memory, 1024 at a time: each chunk is copied in with TypedArray.set and
// checked while it is still in the L1 cache, so the message is read from memory once, as by the
// copy. Measured 0.21-0.30 ms at 100k nodes, 0.82-1.15x the copy, median 1.05x over 12 runs
// (benchmarks/viewer.py, benchmarks/README.md).
//
// The module is built here from bytes, no toolchain and no third-party code (the WAT is beside
// the builder). Compiling it needs 'wasm-unsafe-eval' in the page's Content-Security-Policy
// (docs/security.md says why that is safe); where WebAssembly, SIMD or that permission is
// missing, kernel() is null and NodeState runs the JavaScript loop instead, with the same
// results.

/** Records the kernel takes per call: 28 KiB of scratch, which fits a 32 KiB L1 data cache. */
export const CHUNK_RECORDS = 1024;
/** Largest capacity kept in WebAssembly memory (28 bytes a slot: 0.9 GiB); more: plain arrays. */
export const MAX_WASM_CAPACITY = 1 << 25;

const RECORD_SIZE = 28; // frames.js RECORD_SIZE (not imported: frames.js stays independent)
const SCRATCH = 0; // byte offset of the scratch records in the module's memory
const IDS = CHUNK_RECORDS * RECORD_SIZE; // byte offset of the ids (16-aligned)
const PAGE = 65536;
// WebAssembly memory is little-endian; JavaScript views of it use the host's order.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// -- the module, byte by byte --------------------------------------------------------------------

const uleb = (v) => {
  const out = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
};
const sleb = (v) => {
  const out = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
};
const name = (s) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const section = (id, body) => [id, ...uleb(body.length), ...body];
const I32 = 0x7f;
const V128 = 0x7b;
const get = (i) => [0x20, i];
const set = (i) => [0x21, i];
const tee = (i) => [0x22, i];
const i32 = (v) => [0x41, ...sleb(v)];
const simd = (op) => [0xfd, ...uleb(op)];
const memarg = (align, offset) => [align, ...uleb(offset)];
const v128 = (words) => [
  ...simd(0x0c),
  ...words.flatMap((w) => [w & 255, (w >>> 8) & 255, (w >>> 16) & 255, (w >>> 24) & 255]),
];
const OP = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d, void: 0x40,
  i32Load: 0x28, i32Ne: 0x47, i32GtU: 0x4b, i32GeU: 0x4f, i32Add: 0x6a, i32Or: 0x72,
  i32Xor: 0x73,
};
// SIMD opcodes (after the 0xfd prefix)
const V = { load: 0x00, store: 0x0b, i32x4Splat: 0x11, i32x4GtS: 0x3b, and: 0x4e, anyTrue: 0x53,
  i32x4MaxS: 0xb8 };

/**
 * The module's bytes. It imports its memory as m.mem and exports one function:
 *
 *   (func (export "steady") (param $rec i32) (param $ids i32) (param $pos i32) (param $n i32)
 *         (result i32)
 *     ;; $rec: n records (28 bytes, as on the wire); $ids: n u32; $pos: 3n f32 and 4 spare bytes
 *     (local $k i32) (local $acc v128) (local $m v128) (local $m0 v128) (local $m1 v128)
 *     (local $m3 v128) (local $m5 v128) (local $a v128)
 *     ;; a float is not finite iff its bits without the sign are > 0x7f7fffff (the largest
 *     ;; finite float): keep the largest such value seen, lane by lane, in $acc (signed max:
 *     ;; with the sign masked off every value is >= 0)
 *     (local.set $m  (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
 *     ;; four records are 7 vectors; the id words (0, 7, 14, 21) are lanes 0, 3, 2 and 1 of
 *     ;; vectors 0, 1, 3 and 5: their masks leave the ids out
 *     (local.set $m0 (v128.const i32x4 0 0x7fffffff 0x7fffffff 0x7fffffff))
 *     (local.set $m1 (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0))
 *     (local.set $m3 (v128.const i32x4 0x7fffffff 0x7fffffff 0 0x7fffffff))
 *     (local.set $m5 (v128.const i32x4 0x7fffffff 0 0x7fffffff 0x7fffffff))
 *     (block $done
 *       (block $tail (loop $quad                     ;; four records a turn
 *         (br_if $tail (i32.gt_u (i32.add (local.get $k) (i32.const 4)) (local.get $n)))
 *         (br_if $tail (i32.or (i32.or (i32.or         ;; any of the 4 ids differs: one by one
 *           (i32.xor (i32.load (local.get $rec)) (i32.load (local.get $ids)))
 *           (i32.xor (i32.load offset=28 (local.get $rec)) (i32.load offset=4 (local.get $ids))))
 *           (i32.xor (i32.load offset=56 (local.get $rec)) (i32.load offset=8 (local.get $ids))))
 *           (i32.xor (i32.load offset=84 (local.get $rec)) (i32.load offset=12 (local.get $ids)))))
 *         ;; x y z of record j, and one word more that the next store overwrites
 *         (v128.store offset=0  (local.get $pos) (v128.load offset=4  (local.get $rec)))
 *         (v128.store offset=12 (local.get $pos) (v128.load offset=32 (local.get $rec)))
 *         (v128.store offset=24 (local.get $pos) (v128.load offset=60 (local.get $rec)))
 *         (v128.store offset=36 (local.get $pos) (v128.load offset=88 (local.get $rec)))
 *         ;; for (v, mask) in (0, $m0) (16, $m1) (32, $m) (48, $m3) (64, $m) (80, $m5) (96, $m):
 *         (local.set $acc (i32x4.max_s (local.get $acc)
 *           (v128.and (v128.load offset=v (local.get $rec)) (local.get mask))))
 *         (local.set $rec (i32.add (local.get $rec) (i32.const 112)))
 *         (local.set $ids (i32.add (local.get $ids) (i32.const 16)))
 *         (local.set $pos (i32.add (local.get $pos) (i32.const 48)))
 *         (local.set $k (i32.add (local.get $k) (i32.const 4)))
 *         (br $quad)))
 *       (loop $one                                   ;; the rest, and the records of a mismatch
 *         (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
 *         (br_if $done (i32.ne (i32.load (local.get $rec)) (i32.load (local.get $ids))))
 *         (v128.store (local.get $pos) (local.tee $a (v128.load offset=4 (local.get $rec))))
 *         (local.set $acc (i32x4.max_s
 *           (i32x4.max_s (local.get $acc) (v128.and (local.get $a) (local.get $m)))
 *           (v128.and (v128.load offset=12 (local.get $rec)) (local.get $m))))
 *         (local.set $rec (i32.add (local.get $rec) (i32.const 28)))
 *         (local.set $ids (i32.add (local.get $ids) (i32.const 4)))
 *         (local.set $pos (i32.add (local.get $pos) (i32.const 12)))
 *         (local.set $k (i32.add (local.get $k) (i32.const 1)))
 *         (br $one)))
 *     ;; -1: a float of the first $k records is not finite; else $k, the records whose id matched
 *     (if (result i32) (v128.any_true (i32x4.gt_s (local.get $acc) (i32x4.splat (i32.const 0x7f7fffff))))
 *       (then (i32.const -1)) (else (local.get $k))))
 *
 * @returns {Uint8Array}
 */
export function kernelBytes() {
  const [rec, ids, pos, n, k, acc, m, m0, m1, m3, m5, a] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const F = 0x7fffffff;
  const load = (offset) => [...get(rec), ...simd(V.load), ...memarg(0, offset)];
  const idXor = (j) => [
    ...get(rec), OP.i32Load, ...memarg(2, RECORD_SIZE * j),
    ...get(ids), OP.i32Load, ...memarg(2, 4 * j),
    OP.i32Xor,
  ];
  const move = (j) => [
    ...get(pos), ...load(4 + RECORD_SIZE * j), ...simd(V.store), ...memarg(0, 12 * j),
  ];
  const check = (offset, mask) => [
    ...get(acc), ...load(offset), ...get(mask), ...simd(V.and), ...simd(V.i32x4MaxS),
    ...set(acc),
  ];
  const add = (local, v) => [...get(local), ...i32(v), OP.i32Add, ...set(local)];
  const body = [
    2, 1, I32, 7, V128, // locals: $k; $acc $m $m0 $m1 $m3 $m5 $a
    ...v128([F, F, F, F]), ...set(m),
    ...v128([0, F, F, F]), ...set(m0),
    ...v128([F, F, F, 0]), ...set(m1),
    ...v128([F, F, 0, F]), ...set(m3),
    ...v128([F, 0, F, F]), ...set(m5),
    OP.block, OP.void, // $done
    OP.block, OP.void, OP.loop, OP.void, // $tail, $quad
    ...get(k), ...i32(4), OP.i32Add, ...get(n), OP.i32GtU, OP.brIf, 1,
    ...idXor(0), ...idXor(1), OP.i32Or, ...idXor(2), OP.i32Or, ...idXor(3), OP.i32Or,
    OP.brIf, 1,
    ...move(0), ...move(1), ...move(2), ...move(3),
    ...check(0, m0), ...check(16, m1), ...check(32, m), ...check(48, m3),
    ...check(64, m), ...check(80, m5), ...check(96, m),
    ...add(rec, 4 * RECORD_SIZE), ...add(ids, 16), ...add(pos, 48), ...add(k, 4),
    OP.br, 0,
    OP.end, OP.end,
    OP.loop, OP.void, // $one
    ...get(k), ...get(n), OP.i32GeU, OP.brIf, 1,
    ...get(rec), OP.i32Load, ...memarg(2, 0), ...get(ids), OP.i32Load, ...memarg(2, 0),
    OP.i32Ne, OP.brIf, 1,
    ...get(pos), ...load(4), ...tee(a), ...simd(V.store), ...memarg(0, 0),
    ...get(acc), ...get(a), ...get(m), ...simd(V.and), ...simd(V.i32x4MaxS),
    ...load(12), ...get(m), ...simd(V.and), ...simd(V.i32x4MaxS), ...set(acc),
    ...add(rec, RECORD_SIZE), ...add(ids, 4), ...add(pos, 12), ...add(k, 1),
    OP.br, 0,
    OP.end,
    OP.end,
    ...get(acc), ...i32(0x7f7fffff), ...simd(V.i32x4Splat), ...simd(V.i32x4GtS),
    ...simd(V.anyTrue),
    OP.if, I32, ...i32(-1), OP.else, ...get(k), OP.end,
    OP.end,
  ];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(1, [1, 0x60, 4, I32, I32, I32, I32, 1, I32]), // type 0: (i32 x 4) -> i32
    ...section(2, [1, ...name("m"), ...name("mem"), 0x02, 0x00, 0x00]), // memory, min 0 pages
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(7, [1, ...name("steady"), 0x00, 0]), // export function 0 as "steady"
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

let compiled; // undefined: not tried yet; null: not available here

/**
 * The compiled kernel, or null where it cannot run: no WebAssembly, no SIMD, a big-endian host,
 * or a Content-Security-Policy without 'wasm-unsafe-eval' (compiling then throws). Tried once.
 * @returns {WebAssembly.Module|null}
 */
export function kernel() {
  if (compiled !== undefined) return compiled;
  compiled = null;
  if (!LITTLE_ENDIAN_HOST || typeof WebAssembly !== "object") return compiled;
  const bytes = kernelBytes();
  try {
    // validate() first: a browser without SIMD says false rather than throwing
    if (WebAssembly.validate(bytes)) compiled = new WebAssembly.Module(bytes);
  } catch {
    // CompileError or EvalError from the page's CSP: the JavaScript loop does the work
  }
  return compiled;
}

/**
 * NodeState's arrays inside one WebAssembly.Memory, beside the scratch area the kernel reads:
 * `ids` (capacity u32) and two position arrays `a` and `b` (3 * capacity f32 each), of which
 * NodeState shows one and writes a steady keyframe into the other. Layout, in bytes: scratch
 * [0, 28672), ids, then a and b, each followed by 16 bytes the kernel may write past the end.
 */
export class WasmArrays {
  /**
   * @param {WebAssembly.Module} module from kernel()
   * @param {number} capacity slots, at most MAX_WASM_CAPACITY
   */
  constructor(module, capacity) {
    const posA = IDS + 4 * capacity + (16 - ((4 * capacity) % 16)) % 16;
    const posB = posA + 12 * capacity + 16;
    const end = posB + 12 * capacity + 16;
    // throws RangeError when the browser cannot give that much memory
    const memory = new WebAssembly.Memory({ initial: Math.ceil(end / PAGE) });
    const instance = new WebAssembly.Instance(module, { m: { mem: memory } });
    this._steady = instance.exports.steady;
    this._scratch = new Uint8Array(memory.buffer, SCRATCH, CHUNK_RECORDS * RECORD_SIZE);
    /** Flagged node id per slot. */
    this.ids = new Uint32Array(memory.buffer, IDS, capacity);
    /** Positions, first array. */
    this.a = new Float32Array(memory.buffer, posA, 3 * capacity);
    /** Positions, second array. */
    this.b = new Float32Array(memory.buffer, posB, 3 * capacity);
  }

  /**
   * Compare the ids of `count` records with `ids[0..count)`, copy their positions into `dst`
   * (`a` or `b`) and check all their floats, up to the first id that differs.
   * @param {Uint8Array} records the records, 28 bytes each, little-endian (any alignment)
   * @param {number} count records, at most the capacity
   * @param {Float32Array} dst `a` or `b`
   * @returns {number} `count`: every id matched and every float is finite (`dst` holds the
   *   positions); k < count: record k is the first whose id differs, the floats before it
   *   are finite; -1: a float before the first differing id is not finite
   */
  steady(records, count, dst) {
    const steady = this._steady;
    const scratch = this._scratch;
    const dstAt = dst.byteOffset;
    for (let s = 0; s < count; s += CHUNK_RECORDS) {
      const e = Math.min(count, s + CHUNK_RECORDS);
      scratch.set(records.subarray(RECORD_SIZE * s, RECORD_SIZE * e));
      const got = steady(SCRATCH, IDS + 4 * s, dstAt + 12 * s, e - s);
      if (got !== e - s) return got < 0 ? -1 : s + got;
    }
    return count;
  }
}
