// The side panels: MCP endpoints and the health banner, the swarm (agents, spawn, initialise,
// task), the physics sliders, and a node's details. They talk to the existing REST routes and
// show the server's own refusal text; nothing here touches WebGL.

const $ = (id) => document.getElementById(id);

function text(el, value) {
  el.textContent = value == null ? "" : String(value);
}

function li(...children) {
  const item = document.createElement("li");
  item.append(...children);
  return item;
}

/** A list's only item, saying there is nothing (or nothing known) to list. */
function mutedItem(message) {
  return li(Object.assign(document.createElement("span"), { className: "muted", textContent: message }));
}

/** Runtime layout settings shown as sliders: key -> [min, max, step, log scale]. */
const PHYSICS_FIELDS = {
  repel_k: [0.01, 100, 0.01, true],
  spring_k: [0.01, 10, 0.01, true],
  rest_length: [0.1, 100, 0.1, true],
  center_gravity_k: [0, 1, 0.001, false],
  damping: [0, 1, 0.01, false],
  max_velocity: [0.1, 100, 0.1, true],
  cooling_steps: [10, 3000, 10, false],
  theta: [0.1, 2, 0.05, false],
};
const PHYSICS_FLAGS = ["linlog", "enabled"];

// -- notes of the vault (GET /api/notes/{id}); pure helpers, tested in tests/js ----------------

export const NOTE_PREFIX = "note:";
export const NO_PAGE = "no page yet: a link to a missing note";

/** Whether a node of /api/graph/data is a note of the vault (a page, or a placeholder: a link
 *  to a page not written yet), so that its text is asked of /api/notes/{id}. */
export function isNoteNode(node) {
  return (
    node != null &&
    typeof node.key === "string" &&
    node.key.startsWith(NOTE_PREFIX) &&
    (node.group === "note" || node.group === "placeholder")
  );
}

function joined(value) {
  if (value == null) return "";
  return Array.isArray(value) ? value.map(String).join(", ") : String(value);
}

/** The rows shown above a note's text: path, aliases, tags (strings; empty ones are skipped). */
export function noteRows(note) {
  return [
    ["path", joined(note && note.path)],
    ["aliases", joined(note && note.aliases)],
    ["tags", joined(note && note.tags)],
  ].filter(([, v]) => v !== "");
}

/** What the panel says when /api/notes/{id} refuses (an ApiError or any error). */
export function noteErrorText(exc) {
  if (exc && exc.code === "not_a_note") return NO_PAGE;
  return (exc && exc.message) || "the note could not be read";
}

/** A details value as text: "" for nothing (null, "", [], {}), a list of plain values joined
 * with commas, other objects as JSON. */
export function detailText(v) {
  if (v == null) return "";
  if (Array.isArray(v)) {
    if (v.every((x) => x == null || typeof x !== "object")) return v.filter((x) => x != null && x !== "").join(", ");
    return v.length ? JSON.stringify(v) : "";
  }
  if (typeof v === "object") return Object.keys(v).length ? JSON.stringify(v) : "";
  return String(v);
}

export class Panels {
  constructor({ api, onSelectAgent, onServiceAnswered = () => {}, onServiceUnreachable = () => {} }) {
    this.api = api;
    this.onSelectAgent = onSelectAgent;
    this.onServiceAnswered = onServiceAnswered; // the health poll got an HTTP answer
    this.onServiceUnreachable = onServiceUnreachable; // ... or none at all
    this.agents = new Map(); // flagged id (or endpoint/agent_id when no node) -> agent
    this.agentKeys = new Map(); // endpoint/agent_id -> its key in this.agents
    this.agentRevisions = new Map(); // endpoint -> the agents revision this.agents holds
    this.endpoints = [];
    this.settings = null;
    this.showEffective = new Map(); // physics field input -> puts the value in effect back in it
    this.noteSeq = 0; // answers of an older selection are dropped
    this.noteId = null; // raw id of the note shown
    this.wire();
  }

  wire() {
    $("spawn-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const body = { type: $("spawn-type").value.trim() };
      const name = $("spawn-name").value.trim();
      if (name) body.name = name;
      this.swarmCall("/api/bots/spawn-agent", body, "spawn requested");
    });
    $("init-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const body = { topology: $("init-topology").value, maxAgents: Number($("init-max").value) };
      this.swarmCall("/api/bots/initialize-swarm", body, "swarm initialisation requested");
    });
    $("task-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.swarmCall("/api/bots/task", { task: $("task-text").value }, "task submitted");
    });
    // a submit the browser's own checks stop (an empty task, max agents 0) fires no submit
    // event: the last action's message must not stay as if it were this one's
    for (const form of ["spawn-form", "init-form", "task-form"]) {
      $(form).addEventListener(
        "invalid",
        () => {
          text($("swarm-error"), "");
          text($("swarm-status"), "");
        },
        true,
      );
    }
    $("agent-filter-type").addEventListener("change", () => this.renderAgents());
    $("agent-filter-status").addEventListener("change", () => this.renderAgents());
    $("physics-group").addEventListener("change", () => this.renderPhysics());
  }

  async swarmCall(path, body, done) {
    const error = $("swarm-error");
    const status = $("swarm-status");
    const endpoint = $("spawn-endpoint").value;
    if (endpoint) body.endpoint = endpoint;
    text(error, "");
    text(status, "");
    try {
      await this.api.call(path, { method: "POST", body });
      text(status, done);
    } catch (exc) {
      text(error, exc.path ? `${exc.message} (${exc.path})` : exc.message);
    }
  }

  // -- agents ----------------------------------------------------------------------------------

  /** Every agent, as /api/bots/data lists them, with each endpoint's agents revision. */
  setAllAgents(agents, revisions = {}) {
    this.agents.clear();
    this.agentKeys.clear();
    for (const agent of agents) this.putAgent(agent);
    this.agentRevisions = new Map(Object.entries(revisions));
    this.renderAgents();
  }

  /**
   * An `agents_changed` message: true when applied (or already in what was read), false when
   * it does not follow the revision held (a message missed): then read them all again.
   */
  applyAgentsChange(m) {
    const held = this.agentRevisions.get(m.endpoint) ?? 0;
    if (m.revision <= held) return true;
    if (m.revision !== held + 1) return false;
    for (const agentId of m.removed) {
      const name = `${m.endpoint}/${agentId}`;
      this.agents.delete(this.agentKeys.get(name));
      this.agentKeys.delete(name);
    }
    for (const agent of m.changed) this.putAgent(agent);
    this.agentRevisions.set(m.endpoint, m.revision);
    this.renderAgents();
    return true;
  }

  putAgent(agent) {
    const name = `${agent.endpoint}/${agent.agent_id}`;
    const before = this.agentKeys.get(name);
    if (before !== undefined) this.agents.delete(before); // its node id may have changed
    const key = agent.id ?? name;
    this.agents.set(key, agent);
    this.agentKeys.set(name, key);
  }

  renderAgents() {
    const typeSel = $("agent-filter-type");
    const statusSel = $("agent-filter-status");
    const types = new Set();
    const statuses = new Set();
    for (const a of this.agents.values()) {
      types.add(a.type || "other");
      statuses.add(a.status || "unknown");
    }
    syncOptions(typeSel, types, "all types");
    syncOptions(statusSel, statuses, "all statuses");
    const wantType = typeSel.value;
    const wantStatus = statusSel.value;
    const list = $("agent-list");
    // the list is rebuilt on every change (a live swarm: every second): the row that had the
    // focus gets it back, or a keyboard user lost it before pressing Enter
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.id : undefined;
    const rows = [];
    const sorted = [...this.agents.values()].sort((a, b) => (a.name || "").localeCompare(b.name || ""));
    for (const a of sorted) {
      if (wantType && (a.type || "other") !== wantType) continue;
      if (wantStatus && (a.status || "unknown") !== wantStatus) continue;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = a.colour || "#95a5a6";
      const label = document.createElement("span");
      text(label, `${a.name || a.agent_id} · ${a.type || "?"} · ${a.status || "?"}`);
      const row = li(swatch, label);
      if (a.id != null) row.dataset.id = String(a.id);
      if (a.live === false) row.classList.add("gone");
      row.addEventListener("click", () => a.id != null && this.onSelectAgent(a.id));
      if (a.id != null) {
        // reachable and usable from the keyboard, as a button would be
        row.tabIndex = 0;
        row.setAttribute("role", "button");
        row.addEventListener("keydown", (e) => {
          if (e.key !== "Enter" && e.key !== " ") return;
          e.preventDefault();
          this.onSelectAgent(a.id);
        });
      }
      rows.push(row);
    }
    list.replaceChildren(...rows);
    if (focused !== undefined) {
      const again = rows.find((row) => row.dataset.id === focused);
      if (again) again.focus();
    }
  }

  // -- endpoints and health --------------------------------------------------------------------

  async refreshStatus() {
    try {
      const status = await this.api.call("/api/bots/status");
      this.endpoints = status.endpoints || [];
      this.renderEndpoints();
    } catch {
      // the banner below says why; the last list would say "connected" through an outage
      $("endpoint-list").replaceChildren(mutedItem("unknown: the service cannot be reached"));
    }
    const banner = $("banner");
    try {
      const health = await this.api.call("/api/health");
      this.onServiceAnswered();
      if (health.status === "ok") {
        banner.hidden = true;
      } else {
        const bad = Object.entries(health.subsystems || {})
          .filter(([, s]) => s.state !== "running" || (s.detail && s.detail.degraded))
          .map(([name, s]) => `${name} ${s.state}${s.last_error ? `: ${s.last_error}` : ""}`);
        text(banner, `Service ${health.status}: ${bad.join("; ") || "see /api/health"}`);
        banner.hidden = false;
      }
    } catch (exc) {
      if (exc.status === 503) this.onServiceAnswered(); // failing, but there to talk to
      else if (exc.status === 0) this.onServiceUnreachable();
      text(banner, exc.status === 503 ? "Service failing: see /api/health" : `Service unreachable: ${exc.message}`);
      banner.hidden = false;
    }
  }

  renderEndpoints() {
    const list = $("endpoint-list");
    const select = $("spawn-endpoint");
    if (this.endpoints.length === 0) {
      list.replaceChildren(mutedItem("none configured"));
      select.replaceChildren();
      return;
    }
    list.replaceChildren(
      ...this.endpoints.map((e) => {
        const row = document.createElement("span");
        const breaker = e.breaker && typeof e.breaker === "object" ? e.breaker.state : e.breaker;
        text(row, `${e.name}: ${e.connected ? "connected" : "down"}${breaker && breaker !== "closed" ? `, breaker ${breaker}` : ""}`);
        if (!e.connected) row.classList.add("bad");
        return li(row);
      }),
    );
    const chosen = select.value;
    select.replaceChildren(
      ...this.endpoints.map((e) => Object.assign(document.createElement("option"), { value: e.name, textContent: e.name })),
    );
    if (chosen) select.value = chosen;
  }

  // -- physics ---------------------------------------------------------------------------------

  async loadSettings() {
    try {
      this.settings = (await this.api.call("/api/settings")).settings;
      this.renderPhysics();
    } catch {
      // shown again on the next connection
    }
  }

  /**
   * The settings again after a change made anywhere (`settings_changed`): each field shows the
   * value in effect, but the one being edited now is left alone.
   */
  async followSettings() {
    try {
      this.settings = (await this.api.call("/api/settings")).settings;
    } catch {
      return; // read again on the next change or connection
    }
    for (const [input, show] of this.showEffective) if (input !== document.activeElement) show();
  }

  renderPhysics() {
    if (!this.settings) return;
    const group = $("physics-group").value;
    const values = this.settings.physics[group];
    const fields = [];
    this.showEffective.clear();
    for (const [key, [min, max, step, log]] of Object.entries(PHYSICS_FIELDS)) {
      const name = `physics.${group}.${key}`;
      const wrap = document.createElement("div");
      wrap.className = "field";
      const label = document.createElement("label");
      text(label, key);
      // a slider to drag (log scale where the range spans decades) and the exact value
      const slider = document.createElement("input");
      slider.type = "range";
      slider.setAttribute("aria-label", `${key} slider`);
      const input = document.createElement("input");
      input.type = "number";
      input.dataset.setting = name;
      input.min = String(min);
      input.max = String(max);
      input.step = "any";
      input.value = String(values[key]);
      const toSlider = (v) => (log ? Math.log10(Math.max(v, min)) : v);
      const fromSlider = (v) => round(log ? Math.pow(10, v) : v, step);
      slider.min = String(toSlider(Math.max(min, 1e-6)));
      slider.max = String(toSlider(max));
      slider.step = log ? "0.01" : String(step);
      slider.value = String(toSlider(values[key]));
      const integer = key === "cooling_steps";
      // back to what the service has: after a refusal, input that is no number at all, or a
      // change made elsewhere
      const reset = () => {
        const now = this.settings.physics[group][key];
        input.value = String(now);
        slider.value = String(toSlider(now));
      };
      this.showEffective.set(input, reset);
      slider.addEventListener("input", () => {
        input.value = String(fromSlider(Number(slider.value)));
      });
      slider.addEventListener("change", () => this.patch(group, key, fromSlider(Number(slider.value)), integer, reset));
      input.addEventListener("change", () => {
        const value = input.value.trim() === "" ? NaN : Number(input.value);
        if (!Number.isFinite(value)) {
          // Number("") is 0: an emptied field set the value to 0
          text(document.querySelector(`[data-error-for="${name}"]`), `${key}: a number from ${min} to ${max}`);
          reset();
          return;
        }
        slider.value = String(toSlider(value));
        this.patch(group, key, value, integer, reset);
      });
      const err = document.createElement("div");
      err.className = "error";
      err.dataset.errorFor = name;
      label.append(slider, input);
      wrap.append(label, err);
      fields.push(wrap);
    }
    for (const key of PHYSICS_FLAGS) {
      const name = `physics.${group}.${key}`;
      const wrap = document.createElement("div");
      wrap.className = "field";
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.dataset.setting = name;
      input.checked = Boolean(values[key]);
      this.showEffective.set(input, () => {
        input.checked = Boolean(this.settings.physics[group][key]);
      });
      input.addEventListener("change", () => this.patch(group, key, input.checked, false));
      const err = document.createElement("div");
      err.className = "error";
      err.dataset.errorFor = name;
      label.append(input, ` ${key}`);
      wrap.append(label, err);
      fields.push(wrap);
    }
    $("physics-fields").replaceChildren(...fields);
  }

  async patch(group, key, value, integer, reset = null) {
    const name = `physics.${group}.${key}`;
    const err = document.querySelector(`[data-error-for="${name}"]`);
    if (err) text(err, "");
    const v = integer ? Math.round(value) : value;
    try {
      const result = await this.api.call("/api/settings", {
        method: "PATCH",
        body: { physics: { [group]: { [key]: v } } },
      });
      this.settings = result.settings;
    } catch (exc) {
      if (err) text(err, exc.message);
      if (reset) reset(); // the field shows what is in effect, not what was refused
    }
  }

  // -- details ---------------------------------------------------------------------------------

  showDetails(title, rows) {
    const section = $("details");
    if (!title) {
      section.hidden = true;
      return;
    }
    text($("details-title"), title);
    const items = [];
    for (const [k, v] of rows) {
      const shown = detailText(v);
      if (shown === "") continue;
      const dt = document.createElement("dt");
      text(dt, k);
      const dd = document.createElement("dd");
      text(dd, shown);
      items.push(dt, dd);
    }
    $("details-list").replaceChildren(...items);
    section.hidden = false;
  }

  /**
   * A note's path, aliases, tags and Markdown text under the details (`node` as
   * /api/graph/data gives it, `rawId` its raw id); anything else hides that part. The text is
   * untrusted: it goes in as textContent only. Selecting the same note again (the graph
   * changed) reads it again without blanking what is shown.
   */
  async showNote(node, rawId) {
    const seq = ++this.noteSeq;
    const box = $("note");
    const status = $("note-status");
    const list = $("note-meta");
    const pre = $("note-text");
    if (!isNoteNode(node)) {
      this.noteId = null;
      box.hidden = true;
      return;
    }
    if (this.noteId !== rawId) {
      this.noteId = rawId;
      status.classList.remove("error");
      text(status, "reading the note…");
      status.hidden = false;
      list.replaceChildren();
      text(pre, "");
      pre.hidden = true;
    }
    box.hidden = false;
    if (node.group === "placeholder") {
      // a link to a page not written yet: nothing to read (asking only earned a 404)
      status.classList.add("error");
      text(status, NO_PAGE);
      status.hidden = false;
      return;
    }
    let note;
    try {
      note = await this.api.call(`/api/notes/${encodeURIComponent(String(rawId))}`);
    } catch (exc) {
      if (seq !== this.noteSeq) return;
      status.classList.add("error");
      text(status, noteErrorText(exc));
      status.hidden = false;
      list.replaceChildren();
      text(pre, "");
      pre.hidden = true;
      return;
    }
    if (seq !== this.noteSeq) return;
    const items = [];
    for (const [k, v] of noteRows(note)) {
      const dt = document.createElement("dt");
      text(dt, k);
      const dd = document.createElement("dd");
      text(dd, v);
      items.push(dt, dd);
    }
    list.replaceChildren(...items);
    status.classList.remove("error");
    text(status, "");
    status.hidden = true;
    text(pre, note && typeof note.text === "string" ? note.text : "");
    pre.hidden = false;
  }
}

function syncOptions(select, values, allLabel) {
  const want = ["", ...[...values].sort()];
  const have = [...select.options].map((o) => o.value);
  if (want.length === have.length && want.every((v, i) => v === have[i])) return;
  const chosen = select.value;
  select.replaceChildren(
    ...want.map((v) => Object.assign(document.createElement("option"), { value: v, textContent: v || allLabel })),
  );
  select.value = want.includes(chosen) ? chosen : "";
}

function round(value, step) {
  const digits = Math.max(0, Math.ceil(-Math.log10(step)));
  return Number(value.toFixed(Math.min(6, digits + 2)));
}
