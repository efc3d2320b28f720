// The orbit camera's fit (camera.js): a framed sphere stays inside the canvas whatever its shape.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { OrbitCamera } from "../../visionflow/web/static/js/camera.js";

/** The largest |x| and |y| in normalised device coordinates over points of the sphere. */
function extent(camera, centre, radius) {
  let x = 0;
  let y = 0;
  for (let a = 0; a < 64; a++) {
    for (let b = 1; b < 32; b++) {
      const theta = (a / 64) * 2 * Math.PI;
      const phi = (b / 32) * Math.PI;
      const p = [
        centre[0] + radius * Math.sin(phi) * Math.cos(theta),
        centre[1] + radius * Math.cos(phi),
        centre[2] + radius * Math.sin(phi) * Math.sin(theta),
      ];
      const s = camera.project(p, 2, 2); // a 2x2 viewport: pixels are NDC + 1
      x = Math.max(x, Math.abs(s[0] - 1));
      y = Math.max(y, Math.abs(s[1] - 1));
    }
  }
  return [x, y];
}

for (const aspect of [0.45, 0.75, 1, 1.6, 3]) {
  test(`a fitted sphere is inside a canvas of aspect ${aspect}, and fills its narrower side`, () => {
    const camera = new OrbitCamera();
    camera.aspect = aspect;
    camera.fit([10, -4, 7], 50);
    camera.update(0);
    const [x, y] = extent(camera, [10, -4, 7], 50);
    assert.ok(x <= 1 && y <= 1, `out of the canvas: x ${x}, y ${y}`);
    // framed, not lost in the middle: the narrower side is nearly filled
    assert.ok(Math.max(x, y) > 0.8, `too small: x ${x}, y ${y}`);
    if (aspect < 1) assert.ok(x > y, "a tall canvas is filled across");
  });
}
