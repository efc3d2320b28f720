// An orbit camera: yaw/pitch around a target, distance by wheel or pinch, pan in the view plane.
// Plain arrays and column-major 4x4 matrices, as WebGL's uniformMatrix4fv takes them.

export class OrbitCamera {
  constructor() {
    this.target = [0, 0, 0];
    this.distance = 100;
    this.yaw = 0.6;
    this.pitch = 0.4;
    this.fov = (50 * Math.PI) / 180;
    this.aspect = 1;
    this.view = new Float32Array(16);
    this.proj = new Float32Array(16);
    this.viewProj = new Float32Array(16);
    this.eye = [0, 0, 0];
    this.flight = null; // {from, to, t0, ms} while flying to a node
  }

  /** Frame a sphere (centre, radius) in view: within the narrower of the two fields of view
   *  (`fov` is the vertical one; a canvas taller than wide has a narrower horizontal one). */
  fit(centre, radius) {
    this.target = centre.slice();
    const half = Math.atan(Math.tan(this.fov / 2) * Math.min(1, this.aspect));
    this.distance = Math.max(1e-3, (radius * 1.05) / Math.sin(half));
  }

  flyTo(point, distance, ms = 600) {
    this.flight = {
      from: { target: this.target.slice(), distance: this.distance },
      to: { target: point.slice(), distance },
      t0: performance.now(),
      ms,
    };
  }

  orbit(dx, dy) {
    this.yaw -= dx * 0.005;
    this.pitch = Math.max(-1.55, Math.min(1.55, this.pitch + dy * 0.005));
  }

  zoom(factor) {
    this.distance = Math.max(1e-3, Math.min(1e7, this.distance * factor));
  }

  /** Move the target by a screen drag of (dx, dy) CSS pixels on a viewport `height` tall. */
  pan(dx, dy, height) {
    const scale = (2 * this.distance * Math.tan(this.fov / 2)) / height;
    const [r, u] = this.axes();
    for (let k = 0; k < 3; k++) this.target[k] += (-dx * r[k] + dy * u[k]) * scale;
  }

  /** Right and up vectors of the view, in world space. */
  axes() {
    const v = this.view;
    return [
      [v[0], v[4], v[8]],
      [v[1], v[5], v[9]],
      [-v[2], -v[6], -v[10]],
    ];
  }

  update(now) {
    if (this.flight) {
      const f = this.flight;
      const t = Math.min(1, (now - f.t0) / f.ms);
      const e = t * t * (3 - 2 * t);
      for (let k = 0; k < 3; k++) this.target[k] = f.from.target[k] + (f.to.target[k] - f.from.target[k]) * e;
      this.distance = f.from.distance * Math.pow(f.to.distance / f.from.distance, e);
      if (t >= 1) this.flight = null;
    }
    const cp = Math.cos(this.pitch);
    const dir = [cp * Math.sin(this.yaw), Math.sin(this.pitch), cp * Math.cos(this.yaw)];
    this.eye = [0, 1, 2].map((k) => this.target[k] + dir[k] * this.distance);
    lookAt(this.view, this.eye, this.target, [0, 1, 0]);
    const near = Math.max(this.distance * 1e-3, 1e-4);
    const far = this.distance * 1e3 + 1e4;
    perspective(this.proj, this.fov, this.aspect, near, far);
    multiply(this.viewProj, this.proj, this.view);
  }

  /** World point -> [x, y] in CSS pixels of a width x height viewport, or null if behind. */
  project(p, width, height) {
    const m = this.viewProj;
    const x = m[0] * p[0] + m[4] * p[1] + m[8] * p[2] + m[12];
    const y = m[1] * p[0] + m[5] * p[1] + m[9] * p[2] + m[13];
    const w = m[3] * p[0] + m[7] * p[1] + m[11] * p[2] + m[15];
    if (w <= 0) return null;
    return [((x / w + 1) / 2) * width, ((1 - y / w) / 2) * height];
  }

  /** The point under screen (sx, sy) at the depth of world point `p` (for dragging). */
  unprojectAtDepth(sx, sy, p, width, height) {
    const [r, u, f] = this.axes();
    const rel = [0, 1, 2].map((k) => p[k] - this.eye[k]);
    const depth = rel[0] * f[0] + rel[1] * f[1] + rel[2] * f[2];
    const halfH = depth * Math.tan(this.fov / 2);
    const halfW = halfH * this.aspect;
    const nx = (sx / width) * 2 - 1;
    const ny = 1 - (sy / height) * 2;
    return [0, 1, 2].map((k) => this.eye[k] + f[k] * depth + r[k] * nx * halfW + u[k] * ny * halfH);
  }
}

function lookAt(out, eye, target, up) {
  let zx = eye[0] - target[0];
  let zy = eye[1] - target[1];
  let zz = eye[2] - target[2];
  let len = Math.hypot(zx, zy, zz) || 1;
  zx /= len; zy /= len; zz /= len;
  let xx = up[1] * zz - up[2] * zy;
  let xy = up[2] * zx - up[0] * zz;
  let xz = up[0] * zy - up[1] * zx;
  len = Math.hypot(xx, xy, xz) || 1;
  xx /= len; xy /= len; xz /= len;
  const yx = zy * xz - zz * xy;
  const yy = zz * xx - zx * xz;
  const yz = zx * xy - zy * xx;
  out.set([
    xx, yx, zx, 0,
    xy, yy, zy, 0,
    xz, yz, zz, 0,
    -(xx * eye[0] + xy * eye[1] + xz * eye[2]),
    -(yx * eye[0] + yy * eye[1] + yz * eye[2]),
    -(zx * eye[0] + zy * eye[1] + zz * eye[2]),
    1,
  ]);
}

function perspective(out, fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2);
  const nf = 1 / (near - far);
  out.fill(0);
  out[0] = f / aspect;
  out[5] = f;
  out[10] = (far + near) * nf;
  out[11] = -1;
  out[14] = 2 * far * near * nf;
}

function multiply(out, a, b) {
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[k * 4 + j] * b[i * 4 + k];
      out[i * 4 + j] = s;
    }
  }
}
