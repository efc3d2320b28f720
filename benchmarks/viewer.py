"""Viewer benchmark: decode + apply time per frame in headless Chromium, against a plain copy.

``python benchmarks/viewer.py [--sizes 10000,100000]``. Starts a real ``visionflow serve`` on an
ephemeral port (for the page's own modules, served as users get them), opens the page in
headless Chromium (Debian's package; WebGL flags as the browser tests use), and in that page
times, for each size:

- **keyframe**: ``NodeState.applyBuffer`` (what the page runs per frame: the checks of
  ``decodeFrame`` fused with the copy) of a protocol-2 keyframe of every node
  (the same nodes in the same order as the state holds: the steady case of a running layout),
  as the page runs it (the WebAssembly SIMD kernel of ``static/js/steady.js``, under the page's
  own Content-Security-Policy), and in the same page with ``{wasm: false}``: the JavaScript
  loop a browser without WebAssembly runs (**keyframe js**);
- **delta 10%**: the same for a delta of 10% of the nodes, scattered;
- **first key**: the first keyframe of a new state, which allocates the arrays and builds the id
  -> slot map (once per connection or topology change), for reference, median of 5 (with the
  kernel's memory, and with plain arrays: **first js**);
- **baseline**: ``Float32Array.prototype.set`` of the keyframe's records (7 floats per node)
  into a preallocated array: the least work that moves that many bytes in the page.

Frames are built in the page with the layout of docs/protocol.md section 2 (the decoder checks
it). Browsers coarsen ``performance.now()`` (to 100 us without cross-origin isolation), so every
sample times several frames in a row: 10 at 100k nodes (30 samples make the 300 frames), 10^6 /
nodes below that (100 at 10k: a resolution of 1 us a frame, where 10 frames gave 10 us, the
size of the whole measurement), and the table gives medians per frame. Target: a 100k
keyframe applied in under 5 ms and within 2x the copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from _serve import serve  # noqa: E402
from cdp import Browser  # noqa: E402

PAGE_SCRIPT = r"""
(async (sizes) => {
  const { NodeState } = await import("/static/js/nodestate.js");
  function frame(kind, seq, ids, shift) {
    const n = ids.length;
    const buf = new ArrayBuffer(16 + 28 * n);
    const dv = new DataView(buf);
    dv.setUint8(0, 0x56); dv.setUint8(1, 0x46); dv.setUint8(2, 2); dv.setUint8(3, kind);
    dv.setUint32(4, n, true); dv.setBigUint64(8, BigInt(seq), true);
    const u32 = new Uint32Array(buf, 16, 7 * n);
    const f32 = new Float32Array(buf, 16, 7 * n);
    for (let k = 0; k < n; k++) {
      u32[7 * k] = ids[k];
      f32[7 * k + 1] = Math.sin(k + shift) * 100;
      f32[7 * k + 2] = Math.cos(k * 1.3 + shift) * 100;
      f32[7 * k + 3] = Math.sin(k * 0.7 - shift) * 100;
    }
    return buf;
  }
  const median = (a) => {
    const s = [...a].sort((x, y) => x - y);
    return s[Math.floor(s.length / 2)];
  };
  const time = (fn, reps) => {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) fn(r);
    return (performance.now() - t0) / reps;
  };
  const out = {};
  for (const n of sizes) {
    const ids = new Uint32Array(n);
    for (let k = 0; k < n; k++) ids[k] = (0x40000000 | (k + 1)) >>> 0;
    const keys = [0, 1, 2, 3].map((s) => frame(0, s + 1, ids, s));
    const pick = new Uint32Array(Math.floor(n / 10));
    for (let k = 0; k < pick.length; k++) pick[k] = ids[(k * 7919) % n];
    const deltas = [0, 1, 2, 3].map((s) => frame(1, s + 10, pick, s + 0.5));
    const state = new NodeState();
    const plain = new NodeState(undefined, { wasm: false });
    state.applyBuffer(keys[0]);
    plain.applyBuffer(keys[0]);
    const reps = Math.max(10, Math.round(1e6 / n));
    for (let w = 0; w < 20; w++) {
      state.applyBuffer(keys[w % 4]); // warm up the JIT
      plain.applyBuffer(keys[w % 4]);
    }
    const key = [], keyJs = [], delta = [], copy = [];
    const dst = new Float32Array(7 * n);
    const srcs = keys.map((b) => new Float32Array(b, 16, 7 * n));
    for (let s = 0; s < 30; s++) {
      copy.push(time((r) => dst.set(srcs[r % 4]), reps));
      key.push(time((r) => state.applyBuffer(keys[r % 4]), reps));
      keyJs.push(time((r) => plain.applyBuffer(keys[r % 4]), reps));
      delta.push(time((r) => state.applyBuffer(deltas[r % 4]), reps));
    }
    // the first keyframe of a new state (arrays allocated, id table built), once the code is warm
    const first = [], firstJs = [];
    for (let s = 0; s < 5; s++) {
      first.push(time(() => new NodeState().applyBuffer(keys[s % 4]), 1));
      const js = () => new NodeState(undefined, { wasm: false }).applyBuffer(keys[s % 4]);
      firstJs.push(time(js, 1));
    }
    out[n] = {
      key: median(key), keyJs: median(keyJs), delta: median(delta), copy: median(copy),
      first: median(first), firstJs: median(firstJs), reps, path: state.steadyPath,
    };
  }
  return JSON.stringify(out);
})
"""


async def measure(url: str, sizes: list[int]) -> dict[str, dict[str, float]]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    browser = await Browser.launch(chromium)
    try:
        page = await browser.new_page()
        await page.navigate(url + "/")
        result = await page.evaluate(f"{PAGE_SCRIPT}({json.dumps(sizes)})", timeout=300)
        version = await page.evaluate("navigator.userAgent")
    finally:
        await browser.close()
    data: dict[str, dict[str, float]] = json.loads(result)
    data["_"] = {"agent": version}  # type: ignore[dict-item]
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="vf-viewer-bench-") as d:
        proc, url = serve(Path(d))
        try:
            data = asyncio.run(measure(url, sizes))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    agent = data.pop("_")["agent"]
    load = os.getloadavg()
    print(f"viewer decode + apply, headless Chromium ({agent}); 2 CPUs, load {load[0]:.2f}")
    paths = sorted({str(data[str(n)]["path"]) for n in sizes})
    print(f"median ms per frame over 30 samples; ratio = ours / copy; the page's keyframe: {paths}")
    print(
        f"{'nodes':>7} {'frames':>6} {'keyframe':>9} {'copy':>7} {'ratio':>6} "
        f"{'keyframe js':>12} {'ratio':>6} {'delta 10%':>10} {'first key':>10} {'first js':>9}"
    )
    for n in sizes:
        r = data[str(n)]
        copy = max(r["copy"], 1e-9)
        row = [f"{n:>7}", f"{30 * r['reps']:>6}", f"{r['key']:>9.3f}", f"{r['copy']:>7.3f}"]
        row += [f"{r['key'] / copy:>5.2f}x", f"{r['keyJs']:>12.3f}", f"{r['keyJs'] / copy:>5.2f}x"]
        row += [f"{r['delta']:>10.3f}", f"{r['first']:>10.2f}", f"{r['firstJs']:>9.2f}"]
        print(" ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
