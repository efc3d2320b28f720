// The viewer: wires the stream, the node state, the renderer, the camera and the panels, and
// handles the mouse, wheel, touch and keys. Counters for tests and the HUD live on
// window.visionflow (see docs/viewer.md).

import { OrbitCamera } from "./camera.js";
import { AGENT_FLAG, ID_MASK, encodeDrag } from "./frames.js";
import { Api, Stream } from "./net.js";
import { NodeState } from "./nodestate.js";
import { Panels, isNoteNode } from "./panels.js";
import { Renderer } from "./renderer.js";

const $ = (id) => document.getElementById(id);

// Above this many edges they are not drawn until the "edges" box is ticked (a 100k-node graph
// with 200k edges still renders; millions of lines would not).
const EDGE_LIMIT = 250_000;
const APPLY_SAMPLES = 300; // per-frame decode + apply times kept for the median
const STATUS_POLL_MS = 5000;
const BRIGHTNESS = { active: 1, busy: 1, working: 1, idle: 0.7, spawning: 0.6, offline: 0.25, error: 0.3 };
const HUB_COLOUR = [235, 235, 240];

const params = new URLSearchParams(location.search);
const api = new Api(params.get("token"));

const vf = {
  state: "connecting",
  webgl: false,
  frames: 0,
  keyframes: 0,
  deltas: 0,
  bytes: 0,
  reconnects: 0,
  lastSequence: 0,
  nodes: 0,
  edges: 0,
  fps: 0,
  applyMs: 0,
  settled: false,
  agents: [],
  errors: [],
  applyTimes: [],
  contextRestores: 0,
  positionOf: (id) => positionOf(id),
  screenOf: (id) => screenOf(id),
  nodeIds: () => Array.from(state.ids.subarray(0, state.count)),
  fit: () => fit(),
  /** the node id drawn on top at canvas pixel (x, y), or -1: what a click there would pick */
  pickAt: (x, y) => pickId(x, y),
  /** reconnections made early because the status poll found the service back */
  healthReconnects: 0,
  /** seconds to the next connection attempt while closed (else null) */
  get nextAttemptIn() {
    return stream.secondsToNextAttempt();
  },
  /** how far the camera is from what it looks at */
  get cameraDistance() {
    return camera.distance;
  },
  /** edges the renderer draws (0 without a GPU context) */
  get drawnEdges() {
    return renderer ? renderer.edgeCount : 0;
  },
  /** whether the side panel is shown (P or its button toggles it) */
  get panelOpen() {
    return document.body.classList.contains("panel-open");
  },
  /** "wasm" or "js": what applies a steady keyframe (NodeState.steadyPath) */
  get steadyPath() {
    return state.steadyPath;
  },
};
window.visionflow = vf;

const state = new NodeState();
const camera = new OrbitCamera();
const canvas = $("view");
let renderer = null;
try {
  renderer = new Renderer(canvas);
  vf.webgl = true;
} catch (exc) {
  $("nowebgl").hidden = false;
  vf.errors.push(String(exc.message || exc));
}
// The browser may take the GPU context away (a driver reset, too many tabs): every buffer and
// program is gone with it. Ask for it back (preventDefault), say so, and build the renderer
// again when it returns; the node state, the camera and the metadata are ours and stay.
let nodeSize = 1; // the lost renderer's worldSize, for the one built when the context is back
canvas.addEventListener("webglcontextlost", (e) => {
  e.preventDefault();
  if (renderer) nodeSize = renderer.worldSize;
  renderer = null;
  vf.webgl = false;
  hovered = -1;
  showNote("the graphics context was lost: waiting for the browser to give it back");
});
canvas.addEventListener("webglcontextrestored", () => {
  try {
    renderer = new Renderer(canvas);
  } catch (exc) {
    vf.errors.push(`webgl restore: ${exc.message || exc}`);
    return;
  }
  vf.webgl = true;
  vf.contextRestores += 1;
  renderer.hidden = hidden;
  renderer.showEdges = $("show-edges").checked;
  renderer.worldSize = nodeSize; // the camera is where the user left it: no refit
  applyTheme();
  styleDirty = true;
  edgesDirty = true;
  showNote("");
});

// Graph metadata from /api/graph/data: flagged id -> {label, kind, key, group, metadata}.
const meta = new Map();
let edgePairs = new Uint32Array(0); // flagged ids, 2 per edge
let degree = new Map();
let graphRevision = -1;
let fetching = null;
let refetch = false;
let edgesLimited = false;

const pinned = new Set(); // raw ids this page pinned (dragged)
let selected = -1; // flagged id
let selectedKey = null; // its key when selected: an id may name another node after a restart
let hovered = -1;
let neighbours = new Set();
let styleDirty = true;
let edgesDirty = true;
let shownVersion = -1;
let fitted = false;
// The view follows the layout (refits while it moves) until the user moves the camera.
let autoFit = true;
let lastAutoFit = 0;
let hidden = 0;
let serviceDown = false; // the status poll last found nothing answering

const panels = new Panels({
  api,
  onSelectAgent: (id) => select(id, true),
  // The status poll reached the service after it had not: it is back, so no need to wait out
  // the backoff. Only then: a service that answers but refuses the stream (full, or a proxy
  // without WebSockets) was retried every 5 s instead of backing off.
  onServiceAnswered: () => {
    const wasDown = serviceDown;
    serviceDown = false;
    if (!wasDown || vf.state !== "closed" || stream.secondsToNextAttempt() === null) return;
    vf.healthReconnects += 1;
    stream.reconnectNow();
  },
  onServiceUnreachable: () => {
    serviceDown = true;
  },
});

// -- stream ------------------------------------------------------------------------------------

const stream = new Stream({
  token: params.get("token"),
  onFrame(buffer) {
    const t0 = performance.now();
    let frame;
    try {
      frame = state.applyBuffer(buffer); // checks and applies in one pass; throws, unchanged
    } catch (exc) {
      vf.errors.push(`frame refused: ${exc.message}`);
      return;
    }
    const dt = performance.now() - t0;
    vf.applyTimes.push(dt);
    if (vf.applyTimes.length > APPLY_SAMPLES) vf.applyTimes.shift();
    vf.frames += 1;
    vf.bytes += buffer.byteLength;
    if (frame.kind === 0) vf.keyframes += 1;
    else vf.deltas += 1;
    vf.lastSequence = frame.sequence;
    vf.nodes = state.count;
    if (!fitted && state.count > 0) {
      fitted = true;
      requestAnimationFrame(() => fit());
    }
  },
  onMessage(m) {
    switch (m.type) {
      case "connection_established":
        if (m.graph_revision !== graphRevision) loadGraph();
        break;
      case "graph_changed":
        loadGraph();
        break;
      case "settings_changed":
        panels.followSettings();
        break;
      case "agents_changed":
        // applied in order; one that does not follow what is held (or arrives while the
        // whole list is being read) means reading the whole list again
        if (agentsFetching === null && panels.applyAgentsChange(m)) agentsChanged();
        else loadAgents();
        break;
      case "settled":
        vf.settled = true;
        if (autoFit) requestAnimationFrame(() => fit());
        break;
      case "moving":
        vf.settled = false;
        break;
      case "error":
        vf.errors.push(`${m.code}: ${m.message}`);
        showNote(m.message);
        break;
      default:
        break;
    }
  },
  onState(s, detail) {
    vf.state = s;
    vf.reconnects = stream.reconnects;
    const el = $("hud-state");
    el.textContent = detail ? `${s} (${detail})` : s;
    el.className = `state ${s}`;
    $("token-form").hidden = s !== "unauthorized";
    $("hud-retry").hidden = s !== "closed";
    if (s === "open") {
      pinned.clear(); // the server let go of the last connection's pins when it closed
      loadAgents();
      panels.loadSettings();
      panels.refreshStatus();
    }
  },
});

$("hud-retry").addEventListener("click", () => stream.reconnectNow());

/** "reconnecting in 12 s", counting down in whole seconds (net.js says it the same way). */
function reconnectText(seconds) {
  return `reconnecting in ${Math.ceil(seconds)} s`;
}
// the wait before the next attempt counts down (it used to stand still at its first value)
setInterval(() => {
  const left = vf.state === "closed" ? stream.secondsToNextAttempt() : null;
  if (left !== null) $("hud-state").textContent = `closed (${reconnectText(left)})`;
}, 500);

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token-input").value;
  api.token = token;
  stream.retry(token);
});

// -- graph metadata -----------------------------------------------------------------------------

async function loadGraph() {
  if (fetching) {
    refetch = true;
    return fetching;
  }
  fetching = (async () => {
    try {
      const nodes = new Map();
      const pairs = [];
      let offset = 0;
      let revision = -1;
      for (;;) {
        const page = await api.call(`/api/graph/data?offset=${offset}&limit=100000`);
        revision = page.revision;
        for (const n of page.nodes) {
          nodes.set(n.flagged_id, { raw: n.id, label: n.label, kind: n.kind, key: n.key, group: n.group, metadata: n.metadata });
        }
        for (const e of page.edges) pairs.push(e.source, e.target);
        offset += page.limit;
        if (offset >= page.node_count && offset >= page.edge_count) break;
      }
      // edges name their ends by flagged id, as frames do
      const flaggedPairs = new Uint32Array(pairs.length);
      const deg = new Map();
      let k = 0;
      for (let i = 0; i < pairs.length; i += 2) {
        const a = pairs[i];
        const b = pairs[i + 1];
        if (!nodes.has(a) || !nodes.has(b)) continue;
        flaggedPairs[k++] = a;
        flaggedPairs[k++] = b;
        deg.set(a, (deg.get(a) || 0) + 1);
        deg.set(b, (deg.get(b) || 0) + 1);
      }
      meta.clear();
      for (const [id, n] of nodes) meta.set(id, n);
      edgePairs = flaggedPairs.subarray(0, k);
      degree = deg;
      graphRevision = revision;
      vf.edges = k / 2;
      if (edgesLimited && vf.edges <= EDGE_LIMIT && renderer) {
        // the page turned them off for a larger graph, not the user: on again
        edgesLimited = false;
        $("show-edges").checked = true;
        renderer.showEdges = true;
      }
      if (vf.edges > EDGE_LIMIT && renderer && renderer.showEdges && !edgesLimited) {
        edgesLimited = true;
        $("show-edges").checked = false;
        renderer.showEdges = false;
        showNote(`${vf.edges.toLocaleString()} edges: not drawn above ${EDGE_LIMIT.toLocaleString()} (tick "edges" to draw them)`);
      }
      edgesDirty = true;
      styleDirty = true;
      if (selected >= 0) {
        // gone from the graph, or its id now names another node (a restarted service with
        // another graph): nothing is selected rather than the wrong node
        const m = meta.get(selected);
        const same = m !== undefined && (selectedKey === null || m.key === selectedKey);
        select(same ? selected : -1, false, true);
      }
    } catch (exc) {
      vf.errors.push(`graph data: ${exc.message}`);
    } finally {
      fetching = null;
      if (refetch) {
        refetch = false;
        loadGraph();
      }
    }
  })();
  return fetching;
}

let agentsFetching = null; // the read of /api/bots/data in flight
let agentsRefetch = false; // read again when it ends (a change came meanwhile)

function loadAgents() {
  if (agentsFetching) {
    agentsRefetch = true;
    return agentsFetching;
  }
  agentsFetching = (async () => {
    try {
      const data = await api.call("/api/bots/data");
      panels.setAllAgents(data.agents || [], data.revisions || {});
      agentsChanged();
    } catch (exc) {
      vf.errors.push(`agents: ${exc.message}`);
    } finally {
      agentsFetching = null;
      if (agentsRefetch) {
        agentsRefetch = false;
        loadAgents();
      }
    }
  })();
  return agentsFetching;
}

function agentsChanged() {
  vf.agents = [...panels.agents.values()];
  styleDirty = true;
  if (selected >= 0) select(selected, false);
}

// -- looks ------------------------------------------------------------------------------------

let colors = new Uint8Array(0);
let sizes = new Float32Array(0);
let flags = new Uint8Array(0);
let edgeIndex = new Uint32Array(0);

function hexColour(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  if (!m) return [149, 165, 166];
  const v = parseInt(m[1], 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function cssColour(name) {
  const probe = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return hexColour(probe.length === 4 ? `#${probe[1]}${probe[1]}${probe[2]}${probe[2]}${probe[3]}${probe[3]}` : probe);
}

function groupColour(group, base) {
  if (!group) return base;
  let h = 2166136261;
  for (let i = 0; i < group.length; i++) h = Math.imul(h ^ group.charCodeAt(i), 16777619);
  // murmur3's finaliser: names that differ in one character get far-apart hues
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  const hue = ((h >>> 0) % 3600) / 3600;
  return hsl(hue, 0.55, 0.55);
}

function hsl(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

function rebuildStyle() {
  const n = state.count;
  if (colors.length < n * 4) {
    const cap = Math.max(1024, 2 ** Math.ceil(Math.log2(n)));
    colors = new Uint8Array(cap * 4);
    sizes = new Float32Array(cap);
    flags = new Uint8Array(cap);
  }
  const knowledge = cssColour("--knowledge");
  const agentsById = panels.agents;
  const focus = selected >= 0;
  for (let i = 0; i < n; i++) {
    const id = state.ids[i];
    const isAgent = (id & AGENT_FLAG) !== 0;
    const m = meta.get(id);
    let rgb = knowledge;
    let bright = 1;
    let size = 1 + 0.5 * Math.log2(1 + (degree.get(id) || 0));
    let f = isAgent ? 1 : 0;
    if (isAgent) {
      const agent = agentsById.get(id);
      if (agent) {
        rgb = hexColour(agent.colour);
        bright = agent.live === false ? 0.25 : BRIGHTNESS[agent.status] ?? 0.8;
        size = 1.8;
      } else {
        rgb = HUB_COLOUR; // a swarm's or a task's hub node
        f |= 2;
        size = 2.6;
      }
    } else if (m) {
      rgb = groupColour(m.group, knowledge);
    }
    if (id === selected) f |= 4;
    else if (focus && !neighbours.has(id)) f |= 16;
    colors[i * 4] = rgb[0];
    colors[i * 4 + 1] = rgb[1];
    colors[i * 4 + 2] = rgb[2];
    colors[i * 4 + 3] = Math.round(255 * bright);
    sizes[i] = size;
    flags[i] = f;
  }
  renderer.setAttributes(colors, sizes, flags, n);
  renderer.focus = focus;
}

function rebuildEdges() {
  const pairs = edgePairs;
  if (edgeIndex.length < pairs.length) edgeIndex = new Uint32Array(Math.max(1024, pairs.length));
  const own = []; // the selected node's edges, drawn over the rest
  let k = 0;
  for (let i = 0; i < pairs.length; i += 2) {
    if (hidden && !(visible(pairs[i]) && visible(pairs[i + 1]))) continue; // no loose ends
    const a = state.indexOf(pairs[i]);
    const b = state.indexOf(pairs[i + 1]);
    if (a < 0 || b < 0) continue;
    edgeIndex[k++] = a;
    edgeIndex[k++] = b;
    if (selected >= 0 && (pairs[i] === selected || pairs[i + 1] === selected)) own.push(a, b);
  }
  renderer.setEdges(edgeIndex, k / 2);
  renderer.setFocusEdges(Uint32Array.from(own), own.length / 2);
}

// -- camera helpers -----------------------------------------------------------------------------

function positionOf(id) {
  const i = state.indexOf(id);
  if (i < 0) return null;
  const p = state.positions;
  return [p[3 * i], p[3 * i + 1], p[3 * i + 2]];
}

function screenOf(id) {
  const p = positionOf(id);
  if (!p) return null;
  camera.update(performance.now());
  const rect = canvas.getBoundingClientRect();
  const s = camera.project(p, rect.width, rect.height);
  return s ? [s[0] + rect.left, s[1] + rect.top] : null;
}

/** Frame every visible node (a small swarm beside a large graph must stay in view). */
function fit() {
  const n = state.count;
  if (n === 0) return;
  const p = state.positions;
  const stride = Math.max(1, Math.floor(n / 20000));
  const c = [0, 0, 0];
  let m = 0;
  for (let i = 0; i < n; i += stride) {
    if (!visible(state.ids[i])) continue;
    c[0] += p[3 * i];
    c[1] += p[3 * i + 1];
    c[2] += p[3 * i + 2];
    m++;
  }
  if (m === 0) return;
  c[0] /= m;
  c[1] /= m;
  c[2] /= m;
  const d = [];
  for (let i = 0; i < n; i += stride) {
    if (!visible(state.ids[i])) continue;
    d.push(Math.hypot(p[3 * i] - c[0], p[3 * i + 1] - c[1], p[3 * i + 2] - c[2]));
  }
  d.sort((a, b) => a - b);
  // a floor of a few rest lengths: one node (or a pile on one point) framed at its own size
  // was zoomed in so far that the least drift threw it out of view
  const radius = Math.max(d[d.length - 1], MIN_FIT_RADIUS);
  camera.aspect = canvas.clientWidth / Math.max(1, canvas.clientHeight);
  camera.fit(c, radius);
  // node size from the typical spacing (median radius / cube root of the count), not from the
  // framed radius: a far-off swarm must not blow the graph's nodes up
  const typical = d[Math.floor((d.length - 1) / 2)];
  const spacing = (typical / Math.cbrt(m * stride)) * 0.3;
  if (renderer) renderer.worldSize = Math.max(spacing, radius * 0.02);
}

const MIN_FIT_RADIUS = 5;

function visible(id) {
  return (hidden & ((id & AGENT_FLAG) !== 0 ? 2 : 1)) === 0;
}

// -- selection, hover, labels --------------------------------------------------------------------

function select(id, fly, reread = false) {
  const changed = id !== selected;
  selected = id;
  if (changed) selectedKey = id >= 0 && meta.has(id) ? meta.get(id).key : null;
  neighbours = new Set([id]);
  edgesDirty = true; // its own edges are drawn strong
  // the note is read when the selection changes or the graph did, not on every agent change
  if (changed || reread) panels.showNote(id >= 0 ? meta.get(id) : null, id & ID_MASK);
  if (id < 0) {
    panels.showDetails(null);
    styleDirty = true;
    return;
  }
  for (let i = 0; i < edgePairs.length; i += 2) {
    if (edgePairs[i] === id) neighbours.add(edgePairs[i + 1]);
    else if (edgePairs[i + 1] === id) neighbours.add(edgePairs[i]);
  }
  styleDirty = true;
  const [title, rows] = describe(id);
  panels.showDetails(title, rows);
  const p = positionOf(id);
  if (fly) autoFit = false;
  if (fly && p) camera.flyTo(p, Math.max(camera.distance * 0.35, renderer ? renderer.worldSize * 40 : 10));
}

function describe(id) {
  const m = meta.get(id);
  const agent = panels.agents.get(id);
  const raw = id & ID_MASK;
  if (agent) {
    return [
      agent.name || agent.agent_id,
      [
        ["type", agent.type],
        ["status", agent.live === false ? `${agent.status} (server unreachable)` : agent.status],
        ["health", agent.health],
        ["swarm", agent.swarm_id],
        ["tasks", agent.task_count],
        ["endpoint", agent.endpoint],
        ["capabilities", (agent.capabilities || []).join(", ")],
        ["last active", agent.last_active],
        ["id", raw],
      ],
    ];
  }
  if (m) {
    const rows = [
      ["kind", m.kind],
      ["key", m.key],
      ["group", m.group],
      ["links", degree.get(id) || 0],
      ["id", raw],
    ];
    const md = m.metadata || {};
    // a note's path, aliases and tags are in the note's own section below
    const shownBelow = isNoteNode(m) ? new Set(["path", "aliases", "tags"]) : new Set();
    if (md.tags && !shownBelow.has("tags")) rows.push(["tags", md.tags]);
    for (const [k, v] of Object.entries(md)) if (k !== "tags" && !shownBelow.has(k)) rows.push([k, v]);
    return [m.label || m.key, rows];
  }
  return [`node ${raw}`, [["id", raw]]];
}

function labelOf(id) {
  const agent = panels.agents.get(id);
  if (agent) return `${agent.name || agent.agent_id} (${agent.type || "agent"}, ${agent.status || "?"})`;
  const m = meta.get(id);
  return m ? m.label || m.key : `node ${id & ID_MASK}`;
}

/** A hovered node's label and the details that fit a tooltip (the panel has the rest). */
function hoverText(id) {
  const [title, rows] = describe(id);
  const keep = new Set(["type", "status", "health", "swarm", "tasks", "endpoint", "group", "links", "tags"]);
  const lines = rows.filter(([k, v]) => keep.has(k) && v != null && v !== "").map(([k, v]) => `${k}: ${v}`);
  return [title, ...lines].join("\n");
}

const labelEls = new Map();
function updateLabels() {
  const want = new Set([selected, hovered].filter((id) => id >= 0));
  for (const [id, el] of labelEls) {
    if (!want.has(id)) {
      el.remove();
      labelEls.delete(id);
    }
  }
  const rect = canvas.getBoundingClientRect();
  for (const id of want) {
    const p = positionOf(id);
    const s = p && camera.project(p, rect.width, rect.height);
    let el = labelEls.get(id);
    if (!s) {
      if (el) el.hidden = true;
      continue;
    }
    if (!el) {
      el = document.createElement("div");
      $("labels").append(el);
      labelEls.set(id, el);
    }
    el.hidden = false;
    el.textContent = id === hovered && id !== selected ? hoverText(id) : labelOf(id);
    el.style.left = `${s[0]}px`;
    el.style.top = `${s[1]}px`;
    // right of the node; left of it where it does not fit there; else against the canvas's
    // right edge (a label squeezed there came out one word a line, or ran off a phone)
    const width = el.offsetWidth;
    const fitsRight = s[0] + 8 + width <= rect.width;
    const fitsLeft = s[0] - 8 - width >= 0;
    el.classList.toggle("flip", !fitsRight && fitsLeft);
    if (!fitsRight && !fitsLeft) el.style.left = `${Math.max(0, rect.width - width - 8 - 8)}px`;
  }
}

// -- input -------------------------------------------------------------------------------------

let pointer = null; // {mode: 'orbit'|'pan'|'drag', x, y, id}
let pickAt = null; // pending hover pick [x, y]
let dragSend = null; // pending drag position
const touches = new Map();

function localXY(e) {
  const rect = canvas.getBoundingClientRect();
  return [e.clientX - rect.left, e.clientY - rect.top];
}

function pickId(x, y) {
  if (!renderer) return -1;
  camera.update(performance.now());
  const slot = renderer.pickAt(camera, x, y);
  return slot >= 0 ? state.ids[slot] : -1;
}

canvas.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "touch") return;
  canvas.setPointerCapture(e.pointerId);
  const [x, y] = localXY(e);
  const id = e.button === 0 && !e.shiftKey ? pickId(x, y) : -1;
  if (id >= 0) pointer = { mode: "drag", x, y, id, moved: false };
  else pointer = { mode: e.button === 2 || e.shiftKey ? "pan" : "orbit", x, y, moved: false };
});

canvas.addEventListener("pointermove", (e) => {
  if (e.pointerType === "touch") return;
  const [x, y] = localXY(e);
  if (!pointer) {
    pickAt = [x, y];
    return;
  }
  const dx = x - pointer.x;
  const dy = y - pointer.y;
  if (Math.abs(dx) + Math.abs(dy) > 2) pointer.moved = true;
  if (pointer.mode === "drag") {
    if (!pointer.moved) return;
    canvas.classList.add("dragging");
    const p = positionOf(pointer.id);
    if (!p) return;
    const rect = canvas.getBoundingClientRect();
    camera.update(performance.now());
    const q = camera.unprojectAtDepth(x, y, p, rect.width, rect.height);
    const i = state.indexOf(pointer.id);
    state.positions[3 * i] = q[0];
    state.positions[3 * i + 1] = q[1];
    state.positions[3 * i + 2] = q[2];
    dragSend = [pointer.id, q];
    return;
  }
  pointer.x = x;
  pointer.y = y;
  autoFit = false;
  if (pointer.mode === "orbit") camera.orbit(dx, dy);
  else camera.pan(dx, dy, canvas.clientHeight);
});

canvas.addEventListener("pointerup", (e) => {
  if (e.pointerType === "touch" || !pointer) return;
  canvas.classList.remove("dragging");
  const p = pointer;
  pointer = null;
  if (p.mode === "drag") {
    if (p.moved) {
      sendDrag(); // the last position, whatever the frame timing
      pinned.add(p.id & ID_MASK);
    } else {
      select(p.id, false);
    }
  } else if (!p.moved) {
    select(-1, false);
  }
});

canvas.addEventListener("pointerleave", () => {
  pickAt = null;
  if (hovered >= 0 && !pointer) {
    hovered = -1; // its label stayed up while the pointer was over the panel
    canvas.classList.remove("over-node");
  }
});

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener(
  "wheel",
  (e) => {
    e.preventDefault();
    autoFit = false;
    camera.zoom(Math.exp(e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
  },
  { passive: false },
);

// touch: one finger orbits, two pinch to zoom and pan, a tap selects (or clears)
const TAP_SLOP = 10; // CSS pixels a finger may move and still tap
const TAP_MS = 500;
let tap = null; // {id, x, y, t} while one finger is down and may be a tap

canvas.addEventListener("touchstart", (e) => {
  for (const t of e.changedTouches) touches.set(t.identifier, [t.clientX, t.clientY]);
  const first = e.changedTouches[0];
  tap = touches.size === 1 ? { id: first.identifier, x: first.clientX, y: first.clientY, t: performance.now() } : null;
});
canvas.addEventListener(
  "touchmove",
  (e) => {
    e.preventDefault();
    autoFit = false;
    const before = [...touches.values()];
    for (const t of e.changedTouches) {
      touches.set(t.identifier, [t.clientX, t.clientY]);
      if (tap && t.identifier === tap.id && Math.hypot(t.clientX - tap.x, t.clientY - tap.y) > TAP_SLOP) tap = null;
    }
    const after = [...touches.values()];
    if (after.length === 1 && before.length === 1) {
      camera.orbit(after[0][0] - before[0][0], after[0][1] - before[0][1]);
    } else if (after.length >= 2 && before.length >= 2) {
      const span = (p) => Math.hypot(p[0][0] - p[1][0], p[0][1] - p[1][1]);
      const mid = (p) => [(p[0][0] + p[1][0]) / 2, (p[0][1] + p[1][1]) / 2];
      camera.zoom(span(before) / Math.max(span(after), 1));
      const [m0, m1] = [mid(before), mid(after)];
      camera.pan(m1[0] - m0[0], m1[1] - m0[1], canvas.clientHeight);
    }
  },
  { passive: false },
);
const touchEnd = (e) => {
  for (const t of e.changedTouches) {
    touches.delete(t.identifier);
    if (e.type === "touchend" && tap && t.identifier === tap.id) {
      const still = Math.hypot(t.clientX - tap.x, t.clientY - tap.y) <= TAP_SLOP;
      if (still && performance.now() - tap.t <= TAP_MS) {
        // tapping a node did nothing: touch input never picked
        const rect = canvas.getBoundingClientRect();
        select(pickId(t.clientX - rect.left, t.clientY - rect.top), false);
      }
    }
  }
  tap = null;
};
canvas.addEventListener("touchend", touchEnd);
canvas.addEventListener("touchcancel", touchEnd);

// Fields that take typing keep their keys; a checkbox or a button does not take F or R.
const TYPED_INPUTS = new Set(["text", "search", "number", "password", "email", "url", "tel"]);

function takesTyping(el) {
  if (el instanceof HTMLInputElement) return TYPED_INPUTS.has(el.type);
  return el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement || (el instanceof HTMLElement && el.isContentEditable);
}

// The camera from the keyboard: arrows orbit (with Shift they pan), + and - zoom. Only where
// no control would take the arrows itself (the canvas focused, or nothing).
const KEY_STEP = 40; // CSS pixels of mouse drag that one press stands for
const KEY_ZOOM = 1.25;

function cameraKey(key, shift) {
  const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (key in arrows) {
    const [dx, dy] = arrows[key].map((v) => v * KEY_STEP);
    if (shift) camera.pan(dx, dy, canvas.clientHeight);
    else camera.orbit(dx, dy);
  } else if (key === "+" || key === "=") camera.zoom(1 / KEY_ZOOM);
  else if (key === "-" || key === "_") camera.zoom(KEY_ZOOM);
  else return false;
  autoFit = false;
  return true;
}

window.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || takesTyping(e.target)) return; // Ctrl+R reloads
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (key === "f") {
    autoFit = true;
    fit();
  } else if (key === "r") releasePins();
  else if (key === "p") setPanel(!vf.panelOpen, true);
  else if (key === "Escape") select(-1, false);
  else if ((e.target === canvas || e.target === document.body) && cameraKey(e.key, e.shiftKey)) {
    e.preventDefault();
  }
});

// -- the side panel: beside the graph from 900 px wide, a sheet below it on narrower screens,
// where it starts hidden (on a phone it would leave no graph to see)

const PANEL_KEY = "visionflow.panel";

function setPanel(open, chosen = false) {
  const button = $("panel-toggle");
  if (!open && $("panel").contains(document.activeElement)) button.focus(); // not lost with it
  document.body.classList.toggle("panel-open", open);
  button.textContent = open ? "Hide panel" : "Panel";
  button.setAttribute("aria-expanded", String(open));
  if (chosen) {
    try {
      localStorage.setItem(PANEL_KEY, open ? "open" : "closed");
    } catch {
      // storage refused (a private window): the choice lasts this page only
    }
  }
}

function storedPanel() {
  try {
    return localStorage.getItem(PANEL_KEY);
  } catch {
    return null;
  }
}

$("panel-toggle").addEventListener("click", () => setPanel(!vf.panelOpen, true));
{
  const stored = storedPanel();
  setPanel(stored ? stored === "open" : matchMedia("(min-width: 900px)").matches);
}
// the canvas changes size with the window and the panel: the view is framed again for it
new ResizeObserver(() => {
  if (autoFit && fitted) fit();
}).observe(canvas);

function sendDrag() {
  if (!dragSend) return;
  const [id, q] = dragSend;
  dragSend = null;
  stream.send(encodeDrag([id], q));
}

const RELEASE_IDS = 4096;

function releasePins() {
  if (pinned.size === 0) return;
  const ids = [...pinned];
  // a release names at most 4096 ids (as many as a drag pins; the server refuses more)
  for (let i = 0; i < ids.length; i += RELEASE_IDS) {
    stream.send({ type: "release", ids: ids.slice(i, i + RELEASE_IDS) });
  }
  pinned.clear();
}

$("fit").addEventListener("click", () => {
  autoFit = true;
  fit();
});
$("release-pins").addEventListener("click", () => releasePins());
for (const [box, bit] of [["show-knowledge", 1], ["show-agents", 2]]) {
  $(box).addEventListener("change", (e) => {
    hidden = e.target.checked ? hidden & ~bit : hidden | bit;
    if (renderer) renderer.hidden = hidden;
    edgesDirty = true;
    if (hovered >= 0 && !visible(hovered)) hovered = -1;
    if (selected >= 0 && !visible(selected)) select(-1, false);
  });
}
$("show-edges").addEventListener("change", (e) => {
  if (renderer) renderer.showEdges = e.target.checked;
});
const LABELS_NOTE = "loading the graph's labels…";
let lastSearch = null; // what was searched last (lower case): searched again, the next match
const NO_MATCH = "no visible node matches";
$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const typed = $("search").value;
  const q = typed.trim().toLowerCase();
  if (!q) return;
  if (fetching) {
    // the labels are on their way (the page just opened, or the graph changed): a search
    // typed meanwhile would miss a node that is there, so it waits for them
    showNote(LABELS_NOTE);
    await fetching;
    if ($("hud-note").textContent === LABELS_NOTE) showNote("");
  }
  const matches = [];
  for (const [id, m] of meta) {
    const agent = panels.agents.get(id);
    const label = ((agent ? agent.name || agent.agent_id : m.label || m.key) || "").toLowerCase();
    if (label.includes(q) && state.indexOf(id) >= 0 && visible(id)) matches.push(id);
  }
  if (matches.length === 0) {
    showNote(`${NO_MATCH} "${typed}"`);
    return;
  }
  // the same search again goes on to the next match (it used to stop at the first)
  const at = q === lastSearch ? matches.indexOf(selected) : -1;
  const id = matches[(at + 1) % matches.length];
  lastSearch = q;
  select(id, true);
  if (matches.length > 1) showNote(`match ${matches.indexOf(id) + 1} of ${matches.length}: Enter for the next`);
  else if (/^match \d/.test($("hud-note").textContent) || $("hud-note").textContent.startsWith(NO_MATCH)) showNote(""); // an earlier search's
});

let noteTimer = null;
function showNote(message) {
  $("hud-note").textContent = message;
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => {
    $("hud-note").textContent = "";
  }, 8000);
}

// -- loop ---------------------------------------------------------------------------------------

let lastHud = performance.now();
let lastCounts = { frames: 0, bytes: 0, draws: 0 };
let draws = 0;

function tick(now) {
  requestAnimationFrame(tick);
  if (!renderer) return;
  if (dragSend) sendDrag(); // at most one drag message per animation frame
  if (state.version !== shownVersion) {
    shownVersion = state.version;
    styleDirty = true;
    edgesDirty = true;
  }
  if (styleDirty) {
    styleDirty = false;
    rebuildStyle();
  }
  if (edgesDirty) {
    edgesDirty = false;
    rebuildEdges();
  }
  renderer.setPositions(state.positions, state.count);
  if (autoFit && !vf.settled && fitted && now - lastAutoFit > 500 && !camera.flight) {
    lastAutoFit = now;
    fit();
  }
  camera.aspect = canvas.clientWidth / Math.max(1, canvas.clientHeight);
  camera.update(now);
  renderer.draw(camera);
  draws += 1;
  if (pickAt && !pointer) {
    const [x, y] = pickAt;
    pickAt = null;
    const id = pickId(x, y);
    if (id !== hovered) {
      hovered = id;
      canvas.classList.toggle("over-node", id >= 0);
    }
  }
  updateLabels();
  if (now - lastHud >= 1000) {
    const secs = (now - lastHud) / 1000;
    vf.fps = Math.round((draws - lastCounts.draws) / secs);
    const fpsIn = (vf.frames - lastCounts.frames) / secs;
    const bps = (vf.bytes - lastCounts.bytes) / secs;
    lastCounts = { frames: vf.frames, bytes: vf.bytes, draws };
    lastHud = now;
    const sorted = [...vf.applyTimes].sort((a, b) => a - b);
    vf.applyMs = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    $("hud-nodes").textContent = state.count.toLocaleString();
    $("hud-edges").textContent = vf.edges.toLocaleString();
    $("hud-fps-in").textContent = fpsIn.toFixed(0);
    $("hud-bytes").textContent = bps > 1e6 ? `${(bps / 1e6).toFixed(1)} MB` : `${(bps / 1e3).toFixed(0)} kB`;
    $("hud-fps").textContent = String(vf.fps);
    $("hud-apply").textContent = vf.applyMs.toFixed(2);
    $("hud-motion").textContent = vf.state === "open" ? (vf.settled ? "settled" : "moving") : "";
  }
}

// also while the stream is down: the banner then says the service cannot be reached (and the
// endpoint list is not left saying "connected" through an outage)
setInterval(() => {
  if (vf.state !== "unauthorized") panels.refreshStatus();
}, STATUS_POLL_MS);

// Colours follow prefers-color-scheme: read the CSS variables again when it changes.
function applyTheme() {
  if (!renderer) return;
  renderer.background = [...cssColour("--bg").map((v) => v / 255), 1];
  const edge = cssColour("--edge");
  renderer.edgeColor = [edge[0] / 255, edge[1] / 255, edge[2] / 255, 0.7];
  styleDirty = true;
}
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
applyTheme();

stream.start();
requestAnimationFrame(tick);
