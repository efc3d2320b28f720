"""The page's own frame decoder, in Chromium, against the vectors the Python encoder wrote
(tests/js/make_vectors.py; node --test checks the same files outside a browser), and its hot
path, NodeState.applyBuffer, refusing non-finite floats once Chromium has optimized it: with the
WebAssembly kernel (static/js/steady.js) the page uses, and with the JavaScript loop."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cdp import Page

pytestmark = pytest.mark.anyio

VECTORS = Path(__file__).resolve().parents[1] / "js" / "vectors"

# Decode one vector in the page with the modules it serves; errors come back as data.
DECODE = """(async (b64, decoder) => {
  const { decodeFrame, decodeLegacy } = await import("/static/js/frames.js");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    const f = (decoder === "legacy" ? decodeLegacy : decodeFrame)(bytes.buffer);
    const ids = [], pos = [], vel = [];
    for (let k = 0; k < f.count; k++) {
      ids.push(f.u32[7 * k]);
      for (let j = 1; j <= 3; j++) pos.push(f.f32[7 * k + j]);
      for (let j = 4; j <= 6; j++) vel.push(f.f32[7 * k + j]);
    }
    return { kind: f.kind, sequence: f.sequence, count: f.count, ids, pos, vel };
  } catch (exc) {
    return { error: String(exc.message), offset: exc.offset ?? null, name: exc.name };
  }
})"""

DRAG = """(async (ids, positions) => {
  const { encodeDrag } = await import("/static/js/frames.js");
  const buf = new Uint8Array(encodeDrag(ids, positions));
  let s = "";
  for (const b of buf) s += String.fromCharCode(b);
  return btoa(s);
})"""

# A state of n nodes fed steady keyframes until V8 optimizes the code that copies and checks
# them (the one benchmarks/viewer.py times; `wasm`: the kernel, else the JavaScript loop), then,
# each after more good ones, keyframes with one NaN or infinity at a float word of the first,
# middle or last record. Every one must throw FrameError at its byte and leave the state as it
# was; good keyframes still apply after.
HOT_REFUSALS = """(async (n, wasm) => {
  const { NodeState } = await import("/static/js/nodestate.js");
  const { FrameError } = await import("/static/js/frames.js");
  const message = (seq) => {
    const buf = new ArrayBuffer(16 + 28 * n);
    const dv = new DataView(buf);
    dv.setUint8(0, 0x56); dv.setUint8(1, 0x46); dv.setUint8(2, 2); dv.setUint8(3, 0);
    dv.setUint32(4, n, true); dv.setUint32(8, seq, true);
    for (let k = 0; k < n; k++) {
      const at = 16 + 28 * k;
      dv.setUint32(at, ((k % 2 ? 0x80000000 : 0x40000000) | (k + 1)) >>> 0, true);
      for (let j = 1; j <= 6; j++) dv.setFloat32(at + 4 * j, Math.sin(seq + k * j) * 100, true);
    }
    return buf;
  };
  const good = [1, 2, 3, 4].map(message);
  const state = new NodeState(undefined, { wasm });
  for (let i = 0; i < 100; i++) state.applyBuffer(good[i % 4]);
  const failures = [];
  for (const bad of [NaN, Infinity, -Infinity]) {
    for (let word = 1; word <= 6; word++) {
      for (const k of [0, n >> 1, n - 1]) {
        for (let i = 0; i < 20; i++) state.applyBuffer(good[i % 4]);
        const buf = message(9);
        const at = 16 + 28 * k + 4 * word;
        new DataView(buf).setFloat32(at, bad, true);
        const { positions, version } = state;
        const before = positions.slice(0, 3 * n);
        let error = null;
        try {
          state.applyBuffer(buf);
        } catch (exc) {
          error = exc;
        }
        const same = state.positions === positions && state.version === version &&
          state.positions.subarray(0, 3 * n).every((v, i) => Object.is(v, before[i]));
        if (!(error instanceof FrameError && error.offset === at && same)) {
          failures.push({ bad: String(bad), word, k, error: String(error), same });
        }
      }
    }
  }
  state.applyBuffer(good[0]);
  const f32 = new Float32Array(good[0], 16, 7 * n);
  let applied = 0;
  for (let k = 0; k < n; k++) {
    if (Object.is(state.positions[3 * k + 2], f32[7 * k + 3])) applied++;
  }
  return { failures, applied, path: state.steadyPath };
})"""


def index() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())
    return data


async def decode(page: Page, file: str, decoder: str) -> dict[str, Any]:
    b64 = base64.b64encode((VECTORS / file).read_bytes()).decode()
    result: dict[str, Any] = await page.evaluate(
        f"{DECODE}({json.dumps(b64)}, {json.dumps(decoder)})"
    )
    return result


def f32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


async def test_valid_vectors_decode_as_the_python_encoder_wrote_them(page: Page) -> None:
    for v in index()["valid"]:
        got = await decode(page, v["file"], v["decoder"])
        assert "error" not in got, (v["name"], got)
        assert (got["kind"], got["sequence"], got["count"]) == (
            v["kind"],
            v["sequence"],
            v["count"],
        ), v["name"]
        if "samples" in v:  # the 1000-node keyframe: sampled records and exact sums
            for sample in v["samples"]:
                k = sample["index"]
                assert got["ids"][k] == sample["id"]
                assert got["pos"][3 * k : 3 * k + 3] == sample["position"]
                assert got["vel"][3 * k : 3 * k + 3] == sample["velocity"]
            assert sum(got["ids"]) == v["id_sum"]
            assert sum(got["pos"]) == pytest.approx(v["position_sum"], rel=1e-12)
        else:
            assert got["ids"] == v["ids"], v["name"]
            assert got["pos"] == v["positions"], v["name"]
            assert got["vel"] == v["velocities"], v["name"]


async def test_invalid_vectors_are_refused_at_the_same_byte(page: Page) -> None:
    for v in index()["invalid"]:
        got = await decode(page, v["file"], v["decoder"])
        assert got.get("name") == "FrameError", (v["name"], got)
        assert got["offset"] == v["offset"], (v["name"], got)
        assert v["message"] in got["error"], (v["name"], got)


async def test_the_drag_message_is_byte_for_byte_the_vector(page: Page) -> None:
    drag = index()["drag"]
    b64 = await page.evaluate(f"{DRAG}({json.dumps(drag['ids'])}, {json.dumps(drag['positions'])})")
    assert base64.b64decode(b64) == (VECTORS / drag["file"]).read_bytes()
    assert f32(drag["positions"]) == drag["positions_f32"]


@pytest.mark.parametrize("path", ["wasm", "js"])
async def test_the_optimized_apply_refuses_every_non_finite_float(page: Page, path: str) -> None:
    # 5000 nodes: five chunks of the kernel, the last one partly filled
    n = 5000
    wasm = "true" if path == "wasm" else "false"
    got = await page.evaluate(f"{HOT_REFUSALS}({n}, {wasm})", timeout=120)
    assert got == {"failures": [], "applied": n, "path": path}
