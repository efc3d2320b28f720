// The API reference page's helpers (apidocs.js): schema lines, $ref, grouping, the token.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { needsToken, operations, resolve, summary } from "../../visionflow/web/static/js/apidocs.js";

const SPEC = {
  tags: [{ name: "graph" }, { name: "settings" }],
  paths: {
    "/api/settings": { get: { tags: ["settings"] }, patch: { tags: ["settings"] } },
    "/api/graph/data": { get: { tags: ["graph"] } },
    "/x": { post: {} },
  },
  components: { schemas: { Page: { type: "object", properties: { a: { type: "integer" } } } } },
};

test("a schema is one line: type, bounds, enum, const, reference", () => {
  assert.equal(summary(SPEC, { type: "integer", minimum: 0, maximum: 100000, default: 10 }), "integer (≥ 0, ≤ 100000, default 10)");
  assert.equal(summary(SPEC, { type: "string", enum: ["merge", "replace"] }), '"merge" | "replace"');
  assert.equal(summary(SPEC, { const: "alive" }), '"alive"');
  assert.equal(summary(SPEC, { $ref: "#/components/schemas/Page" }), "Page");
  assert.equal(summary(SPEC, { type: ["string", "null"] }), "string | null");
  assert.equal(summary(SPEC, { type: "array", items: { type: "string", maxLength: 128 } }), "array of string (length ≤ 128)");
  assert.equal(summary(SPEC, { oneOf: [{ $ref: "#/components/schemas/Page" }, { type: "object" }] }), "Page | object");
  assert.equal(summary(SPEC, undefined), "any");
  assert.equal(summary(SPEC, {}), "any");
});

test("a reference resolves into the components; a broken or looping one gives {}", () => {
  assert.equal(resolve(SPEC, { $ref: "#/components/schemas/Page" }).type, "object");
  assert.deepEqual(resolve(SPEC, { $ref: "#/components/schemas/Nope" }), {});
  const loop = { components: { schemas: { A: { $ref: "#/components/schemas/A" } } } };
  assert.deepEqual(Object.keys(resolve(loop, { $ref: "#/components/schemas/A" })), ["$ref"]);
});

test("operations come grouped by tag, in the document's tag order, untagged last", () => {
  const groups = operations(SPEC);
  assert.deepEqual(groups.map(([tag]) => tag), ["graph", "settings", "other"]);
  assert.deepEqual(groups[1][1].map((o) => o.method), ["get", "patch"]);
});

test("the token is needed only when every requirement names it", () => {
  assert.equal(needsToken({ security: [{ bearer: [] }] }), true);
  assert.equal(needsToken({ security: [{}, { bearer: [] }] }), false);
  assert.equal(needsToken({}), false);
});
