// The details panel's note helpers (panels.js): which nodes are notes, the rows, the 404 text.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { NO_PAGE, detailText, isNoteNode, noteErrorText, noteRows } from "../../visionflow/web/static/js/panels.js";

test("a vault page and a placeholder are notes; other nodes are not", () => {
  assert.equal(isNoteNode({ key: "note:alpha", group: "note" }), true);
  assert.equal(isNoteNode({ key: "note:missing", group: "placeholder" }), true);
  assert.equal(isNoteNode({ key: "note:alpha", group: "even" }), false);
  assert.equal(isNoteNode({ key: "n1", group: "note" }), false);
  assert.equal(isNoteNode({ key: 7, group: "note" }), false);
  assert.equal(isNoteNode({ group: "note" }), false);
  assert.equal(isNoteNode(null), false);
  assert.equal(isNoteNode(undefined), false);
});

test("the rows are path, aliases and tags as text, empty ones left out", () => {
  assert.deepEqual(noteRows({ path: "a/Alpha.md", aliases: ["A", "First"], tags: ["x", "y"], text: "t" }), [
    ["path", "a/Alpha.md"],
    ["aliases", "A, First"],
    ["tags", "x, y"],
  ]);
  assert.deepEqual(noteRows({ path: "B.md", aliases: [], tags: [] }), [["path", "B.md"]]);
  assert.deepEqual(noteRows({ path: "<b>.md", tags: "solo" }), [
    ["path", "<b>.md"],
    ["tags", "solo"],
  ]);
  assert.deepEqual(noteRows(null), []);
});

test("a 404 says 'no page yet' for a missing note, else the server's message", () => {
  assert.equal(noteErrorText({ code: "not_a_note", message: "node 3 has no page" }), NO_PAGE);
  assert.equal(NO_PAGE, "no page yet: a link to a missing note");
  assert.equal(noteErrorText({ code: "note_unreadable", message: "too large" }), "too large");
  assert.equal(noteErrorText(new Error("boom")), "boom");
  assert.equal(noteErrorText(null), "the note could not be read");
});

test("a details value as text: nothing for empty ones, lists joined, other objects as JSON", () => {
  for (const empty of [null, undefined, "", [], {}, [null, ""]]) assert.equal(detailText(empty), "");
  assert.equal(detailText(["a", "b", 3]), "a, b, 3"); // it showed ["a","b",3]
  assert.equal(detailText(0), "0");
  assert.equal(detailText(false), "false");
  assert.equal(detailText({ k: 1 }), '{"k":1}');
  assert.equal(detailText([{ k: 1 }]), '[{"k":1}]');
  assert.equal(detailText("<b>x</b>"), "<b>x</b>"); // text: the panel sets textContent
});
