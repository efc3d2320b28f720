// WebGL2 renderer: nodes as point sprites with size attenuation, edges as lines, both drawn from
// one position buffer that each frame refreshes with a single bufferSubData. Picking renders
// slot numbers into an offscreen target and reads back one pixel: no loop over nodes per move.

const NODE_VS = `#version 300 es
precision highp float;
uniform mat4 u_viewProj;
uniform float u_scale;      // pixels per world unit at distance 1
uniform float u_worldSize;  // a plain node's diameter in world units
uniform uint u_hidden;      // kinds not drawn: bit 0 knowledge, bit 1 agents
uniform uint u_pass;        // 0 every node, 1 the dimmed ones only, 2 the others only
in vec3 a_pos;
in vec4 a_color;            // rgb, a = brightness (agent status)
in float a_size;            // multiple of u_worldSize
in uint a_flags;            // bit 0 agent, bit 1 hub, bit 2 selected, bit 3 neighbour, bit 4 dim
out vec4 v_color;
flat out uint v_flags;
void main() {
  uint kindBit = (a_flags & 1u) == 1u ? 2u : 1u;
  bool dim = (a_flags & 16u) != 0u;
  gl_Position = u_viewProj * vec4(a_pos, 1.0);
  if ((u_hidden & kindBit) != 0u || (u_pass == 1u && !dim) || (u_pass == 2u && dim)) {
    gl_Position = vec4(2.0, 2.0, 2.0, 1.0); gl_PointSize = 0.0; return;
  }
  float px = a_size * u_worldSize * u_scale / max(gl_Position.w, 1e-6);
  if ((a_flags & 4u) != 0u) px *= 1.5;
  gl_PointSize = clamp(px, 2.0, 96.0);
  v_color = a_color;
  v_flags = a_flags;
}`;

const NODE_FS = `#version 300 es
precision highp float;
in vec4 v_color;
flat in uint v_flags;
out vec4 outColor;
void main() {
  vec2 c = gl_PointCoord * 2.0 - 1.0;
  float r2 = dot(c, c);
  if (r2 > 1.0) discard;
  vec3 rgb = v_color.rgb * (0.35 + 0.65 * v_color.a);
  if ((v_flags & 1u) != 0u && r2 > 0.62) rgb = mix(rgb, vec3(1.0), 0.55 * v_color.a); // agent ring
  if ((v_flags & 2u) != 0u && r2 < 0.2) rgb = vec3(1.0);                           // hub centre
  if ((v_flags & 4u) != 0u && r2 > 0.75) rgb = vec3(1.0, 0.85, 0.1);                // selected
  float alpha = (v_flags & 16u) != 0u ? 0.25 : 1.0;
  outColor = vec4(rgb * (1.0 - 0.25 * r2), alpha);
}`;

const PICK_FS = `#version 300 es
precision highp float;
flat in uint v_slot;
out vec4 outColor;
void main() {
  vec2 c = gl_PointCoord * 2.0 - 1.0;
  if (dot(c, c) > 1.0) discard;
  uint s = v_slot + 1u;
  outColor = vec4(float(s & 255u), float((s >> 8) & 255u), float((s >> 16) & 255u), 255.0) / 255.0;
}`;

const PICK_VS = `#version 300 es
precision highp float;
uniform mat4 u_viewProj;
uniform float u_scale;
uniform float u_worldSize;
uniform uint u_hidden;
uniform uint u_pass;
in vec3 a_pos;
in float a_size;
in uint a_flags;
flat out uint v_slot;
void main() {
  uint kindBit = (a_flags & 1u) == 1u ? 2u : 1u;
  bool dim = (a_flags & 16u) != 0u;
  gl_Position = u_viewProj * vec4(a_pos, 1.0);
  if ((u_hidden & kindBit) != 0u || (u_pass == 1u && !dim) || (u_pass == 2u && dim)) {
    gl_Position = vec4(2.0, 2.0, 2.0, 1.0); gl_PointSize = 0.0; return;
  }
  gl_PointSize = clamp(a_size * u_worldSize * u_scale / max(gl_Position.w, 1e-6), 8.0, 96.0);
  v_slot = uint(gl_VertexID);
}`;

const EDGE_VS = `#version 300 es
precision highp float;
uniform mat4 u_viewProj;
in vec3 a_pos;
void main() { gl_Position = u_viewProj * vec4(a_pos, 1.0); }`;

const EDGE_FS = `#version 300 es
precision highp float;
uniform vec4 u_color;
out vec4 outColor;
void main() { outColor = u_color; }`;

const ATTR = { pos: 0, color: 1, size: 2, flags: 3 };

function compile(gl, vs, fs) {
  const program = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, src);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
      throw new Error(`shader: ${gl.getShaderInfoLog(shader)}`);
    }
    gl.attachShader(program, shader);
  }
  for (const [name, loc] of Object.entries(ATTR)) gl.bindAttribLocation(program, loc, `a_${name}`);
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
    throw new Error(`program: ${gl.getProgramInfoLog(program)}`);
  }
  const uniforms = {};
  const count = gl.getProgramParameter(program, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < count; i++) {
    const info = gl.getActiveUniform(program, i);
    uniforms[info.name] = gl.getUniformLocation(program, info.name);
  }
  return { program, uniforms };
}

export class Renderer {
  /** Throws if the canvas has no WebGL2 (the page then shows its explanation). */
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", { antialias: true, preserveDrawingBuffer: true });
    if (!gl) throw new Error("WebGL2 is not available");
    this.gl = gl;
    this.canvas = canvas;
    this.nodes = compile(gl, NODE_VS, NODE_FS);
    this.pick = compile(gl, PICK_VS, PICK_FS);
    this.edges = compile(gl, EDGE_VS, EDGE_FS);
    this.posBuffer = gl.createBuffer();
    this.colorBuffer = gl.createBuffer();
    this.sizeBuffer = gl.createBuffer();
    this.flagBuffer = gl.createBuffer();
    this.edgeBuffer = gl.createBuffer();
    this.focusEdgeBuffer = gl.createBuffer();
    this.capacity = 0;
    this.count = 0;
    this.edgeCount = 0;
    this.focusEdgeCount = 0;
    // a node is selected: the others are dimmed and drawn behind it and its neighbours
    this.focus = false;
    this.vao = gl.createVertexArray();
    this.edgeVao = gl.createVertexArray();
    this.focusEdgeVao = gl.createVertexArray();
    this.pickTarget = null;
    this.worldSize = 1;
    this.hidden = 0;
    this.showEdges = true;
    this.edgeColor = [0.5, 0.55, 0.6, 0.35];
    this.background = [0.95, 0.96, 0.97, 1];
    this.setupVaos();
  }

  setupVaos() {
    const gl = this.gl;
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuffer);
    gl.enableVertexAttribArray(ATTR.pos);
    gl.vertexAttribPointer(ATTR.pos, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colorBuffer);
    gl.enableVertexAttribArray(ATTR.color);
    gl.vertexAttribPointer(ATTR.color, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.sizeBuffer);
    gl.enableVertexAttribArray(ATTR.size);
    gl.vertexAttribPointer(ATTR.size, 1, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.flagBuffer);
    gl.enableVertexAttribArray(ATTR.flags);
    gl.vertexAttribIPointer(ATTR.flags, 1, gl.UNSIGNED_BYTE, 0, 0);
    gl.bindVertexArray(this.edgeVao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuffer);
    gl.enableVertexAttribArray(ATTR.pos);
    gl.vertexAttribPointer(ATTR.pos, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.edgeBuffer);
    gl.bindVertexArray(this.focusEdgeVao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuffer);
    gl.enableVertexAttribArray(ATTR.pos);
    gl.vertexAttribPointer(ATTR.pos, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.focusEdgeBuffer);
    gl.bindVertexArray(null);
  }

  /** Grow the per-node buffers to hold `n` slots (doubling; contents are re-sent after). */
  ensure(n) {
    if (n <= this.capacity) return;
    const gl = this.gl;
    let cap = Math.max(1024, this.capacity);
    while (cap < n) cap *= 2;
    this.capacity = cap;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, cap * 12, gl.DYNAMIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colorBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, cap * 4, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.sizeBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, cap * 4, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.flagBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, cap, gl.STATIC_DRAW);
  }

  /** The frame's positions: one bufferSubData of the used slots. */
  setPositions(positions, count) {
    this.ensure(count);
    this.count = count;
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, positions, 0, count * 3);
  }

  /** Per-node looks (colour RGBA8, size, flags), rebuilt when membership or styling changes. */
  setAttributes(colors, sizes, flags, count) {
    this.ensure(count);
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colorBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, colors, 0, count * 4);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.sizeBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, sizes, 0, count);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.flagBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, flags, 0, count);
  }

  /** Edge endpoints as slot pairs (Uint32Array, 2 per edge). */
  setEdges(indices, count) {
    this.uploadPairs(this.edgeVao, this.edgeBuffer, indices, count);
    this.edgeCount = count;
  }

  /** The selected node's edges (slot pairs), drawn over the others at full strength. */
  setFocusEdges(indices, count) {
    this.uploadPairs(this.focusEdgeVao, this.focusEdgeBuffer, indices, count);
    this.focusEdgeCount = count;
  }

  uploadPairs(vao, buffer, indices, count) {
    const gl = this.gl;
    gl.bindVertexArray(vao);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, indices.subarray(0, count * 2), gl.STATIC_DRAW);
    gl.bindVertexArray(null);
  }

  resize() {
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    return [w, h];
  }

  uniforms(u, camera, height) {
    const gl = this.gl;
    gl.uniformMatrix4fv(u.u_viewProj, false, camera.viewProj);
    gl.uniform1f(u.u_scale, height / (2 * Math.tan(camera.fov / 2)));
    gl.uniform1f(u.u_worldSize, this.worldSize);
    gl.uniform1ui(u.u_hidden, this.hidden);
  }

  /** The nodes, in one draw, or with a selection in two: the dimmed ones first, then, with the
   *  depth buffer cleared, the selected node and its neighbours, which nothing dimmed can then
   *  cover (in a dense graph they were lost behind a haze of faded nodes in front of them).
   *  Picking (``dimDepth``) keeps depth within the dimmed pass, so it picks the nearest. */
  drawNodes(u, between = null, dimDepth = true) {
    const gl = this.gl;
    gl.bindVertexArray(this.vao);
    if (!this.focus) {
      gl.uniform1ui(u.u_pass, 0);
      gl.drawArrays(gl.POINTS, 0, this.count);
      return;
    }
    gl.depthMask(dimDepth);
    gl.uniform1ui(u.u_pass, 1);
    gl.drawArrays(gl.POINTS, 0, this.count);
    gl.depthMask(true);
    gl.clear(gl.DEPTH_BUFFER_BIT);
    if (between) {
      // only the visible draw passes one (picking has none): its program is the nodes'
      between();
      gl.useProgram(this.nodes.program);
      gl.bindVertexArray(this.vao);
    }
    gl.uniform1ui(u.u_pass, 2);
    gl.drawArrays(gl.POINTS, 0, this.count);
  }

  /** The selected node's edges at full strength, over everything drawn so far. */
  drawFocusEdges(camera) {
    const gl = this.gl;
    gl.disable(gl.DEPTH_TEST);
    gl.useProgram(this.edges.program);
    gl.uniformMatrix4fv(this.edges.uniforms.u_viewProj, false, camera.viewProj);
    const [r, g, b] = this.edgeColor;
    gl.uniform4fv(this.edges.uniforms.u_color, [r, g, b, 1]);
    gl.bindVertexArray(this.focusEdgeVao);
    gl.drawElements(gl.LINES, this.focusEdgeCount * 2, gl.UNSIGNED_INT, 0);
    gl.enable(gl.DEPTH_TEST);
  }

  draw(camera) {
    const gl = this.gl;
    const [w, h] = this.resize();
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, w, h);
    gl.clearColor(...this.background);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.BLEND);
    // colour blends by the source's alpha; the canvas's own alpha stays 1 (the page composites
    // the canvas as premultiplied: with its alpha lowered by a faded node, the light theme's
    // colours blew out to white)
    gl.blendFuncSeparate(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    const focusEdges = this.showEdges && this.focus && this.focusEdgeCount > 0;
    if (this.showEdges && this.edgeCount > 0) {
      gl.disable(gl.DEPTH_TEST);
      gl.useProgram(this.edges.program);
      gl.uniformMatrix4fv(this.edges.uniforms.u_viewProj, false, camera.viewProj);
      const [r, g, b, a] = this.edgeColor;
      // with a selection the other edges fade as the other nodes do, its own stay strong
      gl.uniform4fv(this.edges.uniforms.u_color, this.focus ? [r, g, b, a * 0.3] : this.edgeColor);
      gl.bindVertexArray(this.edgeVao);
      gl.drawElements(gl.LINES, this.edgeCount * 2, gl.UNSIGNED_INT, 0);
    }
    if (this.count > 0) {
      gl.enable(gl.DEPTH_TEST);
      gl.depthFunc(gl.LEQUAL);
      gl.useProgram(this.nodes.program);
      this.uniforms(this.nodes.uniforms, camera, h);
      // the selection's own edges go between the dimmed nodes and its own: over the haze
      this.drawNodes(
        this.nodes.uniforms,
        focusEdges ? () => this.drawFocusEdges(camera) : null,
        false, // translucent faded nodes write no depth: they cut gaps in each other
      );
    }
    gl.bindVertexArray(null);
  }

  /** The slot drawn at CSS pixel (x, y), or -1: one offscreen draw and a 1-pixel read. */
  pickAt(camera, x, y) {
    if (this.count === 0) return -1;
    const gl = this.gl;
    const [w, h] = [this.canvas.width, this.canvas.height];
    if (!this.pickTarget || this.pickTarget.w !== w || this.pickTarget.h !== h) {
      this.makePickTarget(w, h);
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.pickTarget.fb);
    gl.viewport(0, 0, w, h);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.disable(gl.BLEND);
    gl.enable(gl.DEPTH_TEST);
    gl.useProgram(this.pick.program);
    this.uniforms(this.pick.uniforms, camera, h);
    this.drawNodes(this.pick.uniforms); // what is picked is what is seen on top
    gl.bindVertexArray(null);
    const dpr = w / Math.max(1, this.canvas.clientWidth);
    const px = new Uint8Array(4);
    gl.readPixels(Math.floor(x * dpr), Math.floor(h - 1 - y * dpr), 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    const slot = (px[0] | (px[1] << 8) | (px[2] << 16)) - 1;
    return slot < this.count ? slot : -1;
  }

  makePickTarget(w, h) {
    const gl = this.gl;
    if (this.pickTarget) {
      gl.deleteFramebuffer(this.pickTarget.fb);
      gl.deleteTexture(this.pickTarget.tex);
      gl.deleteRenderbuffer(this.pickTarget.depth);
    }
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, w, h, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
    const depth = gl.createRenderbuffer();
    gl.bindRenderbuffer(gl.RENDERBUFFER, depth);
    gl.renderbufferStorage(gl.RENDERBUFFER, gl.DEPTH_COMPONENT24, w, h);
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
    gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.DEPTH_ATTACHMENT, gl.RENDERBUFFER, depth);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    this.pickTarget = { fb, tex, depth, w, h };
  }
}
