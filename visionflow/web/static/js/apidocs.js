// The API reference page (/api/docs): fetches /openapi.json and renders every operation, its
// parameters, request body and answers, with their schemas. DOM calls and textContent only:
// nothing in the document is parsed as HTML. The pure helpers are exported for node --test.

const METHODS = ["get", "post", "put", "patch", "delete"];

/** The schema a "#/components/schemas/X" reference points at, or the schema itself. */
export function resolve(spec, schema) {
  let seen = 0;
  while (schema && typeof schema.$ref === "string" && seen++ < 32) {
    const parts = schema.$ref.replace(/^#\//, "").split("/");
    schema = parts.reduce((at, key) => (at == null ? undefined : at[key]), spec);
  }
  return schema ?? {};
}

/** One line for a schema: its type, and the bounds, enum, format or reference it names. */
export function summary(spec, schema) {
  if (!schema || typeof schema !== "object") return "any";
  if (typeof schema.$ref === "string") return schema.$ref.split("/").pop();
  for (const key of ["oneOf", "anyOf"]) {
    if (Array.isArray(schema[key])) return schema[key].map((s) => summary(spec, s)).join(" | ");
  }
  if ("const" in schema) return JSON.stringify(schema.const);
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  let type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type ?? "any";
  if (type === "array" && schema.items) type = `array of ${summary(spec, schema.items)}`;
  const notes = [];
  if (schema.format) notes.push(schema.format);
  for (const [key, text] of [
    ["minimum", "≥"],
    ["maximum", "≤"],
    ["minLength", "length ≥"],
    ["maxLength", "length ≤"],
    ["minItems", "items ≥"],
    ["maxItems", "items ≤"],
  ]) {
    if (typeof schema[key] === "number") notes.push(`${text} ${schema[key]}`);
  }
  if (schema.pattern) notes.push(`pattern ${schema.pattern}`);
  if ("default" in schema) notes.push(`default ${JSON.stringify(schema.default)}`);
  return notes.length ? `${type} (${notes.join(", ")})` : type;
}

/** The operations of the document, grouped by tag in the document's tag order. */
export function operations(spec) {
  const groups = new Map((spec.tags ?? []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = op.tags?.[0] ?? "other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push({ path, method, op });
    }
  }
  return [...groups].filter(([, ops]) => ops.length);
}

/** Whether the operation needs the bearer token (an empty requirement makes it optional). */
export function needsToken(op) {
  const security = op.security ?? [];
  return security.length > 0 && security.every((req) => Object.keys(req).length > 0);
}

// -- the page ---------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function schemaTree(spec, schema, depth = 0) {
  const resolved = resolve(spec, schema);
  const box = el("div", { class: "schema" });
  box.append(el("code", { text: summary(spec, schema) }));
  if (resolved.description) box.append(el("span", { class: "note", text: ` ${resolved.description}` }));
  const props = resolved.properties ?? {};
  const names = Object.keys(props);
  if (!names.length || depth > 6) return box;
  const required = new Set(resolved.required ?? []);
  const list = el("ul");
  for (const name of names) {
    const item = el("li", {}, el("b", { text: name }));
    if (required.has(name)) item.append(el("span", { class: "req", text: " required" }));
    item.append(schemaTree(spec, props[name], depth + 1));
    list.append(item);
  }
  box.append(list);
  return box;
}

function content(spec, media) {
  const list = el("div");
  for (const [type, entry] of Object.entries(media ?? {})) {
    const block = el("div", { class: "media" }, el("div", { class: "mt", text: type }));
    if (entry?.schema) block.append(schemaTree(spec, entry.schema));
    list.append(block);
  }
  return list;
}

function parameters(spec, params) {
  const table = el("table");
  table.append(
    el("tr", {}, ...["name", "in", "schema", "description"].map((h) => el("th", { text: h }))),
  );
  for (const p of params) {
    const name = el("td", {}, el("code", { text: p.name }));
    if (p.required) name.append(el("span", { class: "req", text: " required" }));
    table.append(
      el(
        "tr",
        {},
        name,
        el("td", { text: p.in }),
        el("td", {}, el("code", { text: summary(spec, p.schema) })),
        el("td", { text: p.description ?? "" }),
      ),
    );
  }
  return table;
}

function operation(spec, { path, method, op }) {
  const id = op.operationId ?? `${method}-${path}`;
  const head = el(
    "summary",
    {},
    el("span", { class: `method ${method}`, text: method.toUpperCase() }),
    el("code", { class: "path", text: path }),
    el("span", { class: "sum", text: op.summary ?? "" }),
  );
  if (needsToken(op)) head.append(el("span", { class: "lock", text: "token", title: "needs server.token" }));
  const body = el("details", { id, class: "op" }, head);
  if (op.description) body.append(el("p", { class: "desc", text: op.description }));
  body.append(el("p", { class: "opid" }, "operationId ", el("code", { text: id })));
  if (op.parameters?.length) body.append(el("h4", { text: "Parameters" }), parameters(spec, op.parameters));
  if (op.requestBody) {
    body.append(el("h4", { text: "Request body" }), content(spec, op.requestBody.content));
  }
  body.append(el("h4", { text: "Answers" }));
  for (const [status, answer] of Object.entries(op.responses ?? {})) {
    const row = el(
      "div",
      { class: "answer" },
      el("span", { class: `status s${status[0]}`, text: status }),
      el("span", { text: ` ${answer.description ?? ""}` }),
    );
    if (answer.content) row.append(content(spec, answer.content));
    body.append(row);
  }
  return body;
}

export function render(spec, root = document) {
  root.getElementById("title").textContent = spec.info?.title ?? "API";
  root.getElementById("version").textContent = `version ${spec.info?.version ?? "?"} · OpenAPI ${spec.openapi}`;
  root.getElementById("description").textContent = spec.info?.description ?? "";
  const main = root.getElementById("operations");
  const toc = root.getElementById("toc");
  main.replaceChildren();
  toc.replaceChildren();
  let count = 0;
  for (const [tag, ops] of operations(spec)) {
    const section = el("section", { id: `tag-${tag}` }, el("h2", { text: tag }));
    const links = el("ul");
    for (const entry of ops) {
      section.append(operation(spec, entry));
      const link = el("a", { href: `#${entry.op.operationId ?? ""}` });
      link.textContent = `${entry.method.toUpperCase()} ${entry.path}`;
      links.append(el("li", {}, link));
      count += 1;
    }
    toc.append(el("h3", { text: tag }), links);
    main.append(section);
  }
  document.body.dataset.operations = String(count);
  return count;
}

async function main() {
  try {
    const response = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`/openapi.json answered ${response.status}`);
    render(await response.json());
    if (location.hash) document.getElementById(location.hash.slice(1))?.setAttribute("open", "");
  } catch (err) {
    const status = document.getElementById("status");
    if (status) status.textContent = `Could not load the API document: ${err.message}`;
    document.body.dataset.operations = "error";
  }
}

if (typeof document !== "undefined") main();
