"""A note of the vault, selected in the viewer: the details panel shows its path, aliases, tags
and Markdown text (as text, never as markup), and a placeholder says it has no page yet."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from cdp import Browser, Page
from conftest import Stack

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

TOKEN = "notes-viewer-token"
HOSTILE = "<img src=x onerror=alert(1)>"
ALPHA = (
    "---\naliases: [First]\ntags: [greek]\n---\n"
    f"# Alpha\n\nSee [[Beta]] and [[Gamma]].\n\n{HOSTILE}\n<b>not bold</b>\n"
)
BETA = "# Beta\n\nBack to [[Alpha]].\n"


@pytest.fixture(scope="module")
def vault_stack(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``visionflow serve`` reading a two-note vault (and a token, which the page must pass)."""
    root: Path = tmp_path_factory.mktemp("browser-notes")
    vault = root / "vault"
    vault.mkdir()
    (vault / "Alpha.md").write_text(ALPHA, encoding="utf-8")
    (vault / "Beta.md").write_text(BETA, encoding="utf-8")
    s = Stack(root)
    s.settings.write_text(
        f'[server]\ntoken = "{TOKEN}"\nshutdown_grace = 2.0\n'
        f'[state]\ndir = "{root / "state"}"\n'
        f"[knowledge]\npath = {json.dumps(str(vault))}\n"
    )
    try:
        s.start()
        deadline = time.monotonic() + 60
        while True:
            r = s.request("GET", "/api/graph/data", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200, r.text
            keys = {n["key"] for n in r.json()["nodes"]}
            if {"note:alpha", "note:beta", "note:gamma"} <= keys:
                break
            assert time.monotonic() < deadline, f"the vault's notes never showed: {sorted(keys)}"
            time.sleep(0.2)
        yield s
    finally:
        s.close()


async def select_by_search(page: Page, label: str) -> None:
    """Select a node the way a user finds one: the search box, then Enter (a form submit)."""
    await page.evaluate(
        f"""(() => {{
          document.getElementById('search').value = {json.dumps(label)};
          document.getElementById('search-form').requestSubmit();
          return true;
        }})()"""
    )
    await page.wait_for(
        f"document.getElementById('details-title').textContent === {json.dumps(label)}"
        " && !document.getElementById('details').hidden",
        timeout=20,
    )


async def test_a_selected_note_shows_its_text_as_text_and_a_placeholder_has_no_page(
    browser: Browser, vault_stack: Stack
) -> None:
    page = await browser.new_page()
    try:
        await page.navigate(f"{vault_stack.url}/?token={TOKEN}")
        await page.wait_for(
            "window.visionflow.state === 'open' && window.visionflow.nodes >= 3", timeout=45
        )
        await select_by_search(page, "Alpha")
        shown = await page.wait_for(
            """(() => {
              const pre = document.getElementById('note-text');
              if (pre.hidden || !pre.textContent) return null;
              const dl = document.getElementById('note-meta');
              return {
                text: pre.textContent,
                meta: Array.from(dl.children).map((e) => e.textContent),
                imgs: document.querySelectorAll('img').length,
                preChildren: pre.children.length,
                overflow: getComputedStyle(pre).overflowY,
                status: document.getElementById('note-status').hidden,
              };
            })()""",
            timeout=20,
        )
        assert HOSTILE in shown["text"] and "<b>not bold</b>" in shown["text"]
        assert "See [[Beta]] and [[Gamma]]." in shown["text"]
        assert shown["imgs"] == 0 and shown["preChildren"] == 0  # shown, not parsed
        assert shown["overflow"] == "auto"  # the stylesheet (not an inline style) applies
        assert shown["status"] is True
        assert shown["meta"] == ["path", "Alpha.md", "aliases", "First", "tags", "greek"]

        await select_by_search(page, "Gamma")  # linked to, never written: a placeholder
        message = await page.wait_for(
            """(() => {
              const s = document.getElementById('note-status');
              return !s.hidden && s.textContent !== 'reading the note…' ? s.textContent : null;
            })()""",
            timeout=20,
        )
        assert message == "no page yet: a link to a missing note"
        assert await page.evaluate("document.getElementById('note-text').hidden") is True
        assert await page.evaluate("document.getElementById('note-meta').children.length") == 0

        await page.evaluate(  # Esc clears the selection, and the note with it
            "document.body.dispatchEvent("
            "new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}))"
        )
        assert await page.evaluate("document.getElementById('note').hidden") is True
        # nothing logged: no CSP refusal, and no 404 for the placeholder, whose note the page
        # no longer asks for (it knows there is none; each selection used to log one)
        assert page.console_errors == []
    finally:
        await page.close()


async def test_a_search_typed_while_the_labels_load_waits_for_them(
    browser: Browser, vault_stack: Stack
) -> None:
    """The page's first read of /api/graph/data is held back (CDP's Fetch domain): a search
    submitted meanwhile says it is waiting, and selects the note once the labels arrive, where
    it used to answer "no node matches" for a node that is there."""
    page = await browser.new_page()
    held: list[str] = []
    released = False
    passing: set[asyncio.Task[object]] = set()

    def paused(session_id: str, params: dict[str, object]) -> None:
        if session_id != page.session_id:
            return
        if not released:
            held.append(str(params["requestId"]))
            return
        # a later read (the graph changed meanwhile) goes straight through
        task = asyncio.ensure_future(
            page.send("Fetch.continueRequest", {"requestId": params["requestId"]})
        )
        passing.add(task)
        task.add_done_callback(passing.discard)

    browser.on("Fetch.requestPaused", paused)
    try:
        await page.send("Fetch.enable", {"patterns": [{"urlPattern": "*/api/graph/data*"}]})
        await page.navigate(f"{vault_stack.url}/?token={TOKEN}")
        await page.wait_for(
            "window.visionflow.state === 'open' && window.visionflow.nodes >= 3", timeout=45
        )
        deadline = time.monotonic() + 30
        while not held:
            assert time.monotonic() < deadline, "the page never asked for /api/graph/data"
            await asyncio.sleep(0.05)
        await page.evaluate(
            """(() => {
              document.getElementById('search').value = 'Alpha';
              document.getElementById('search-form').requestSubmit();
              return true;
            })()"""
        )
        note = await page.evaluate("document.getElementById('hud-note').textContent")
        assert note == "loading the graph's labels…"
        assert await page.evaluate("document.getElementById('details').hidden") is True

        released = True
        for request_id in held:
            await page.send("Fetch.continueRequest", {"requestId": request_id})
        await page.wait_for(
            "document.getElementById('details-title').textContent === 'Alpha'"
            " && !document.getElementById('details').hidden",
            timeout=20,
        )
        assert await page.evaluate("document.getElementById('hud-note').textContent") == ""
    finally:
        browser.off("Fetch.requestPaused", paused)
        await page.close()


async def test_a_page_without_the_token_never_shows_open_nor_reads_without_it(
    browser: Browser, vault_stack: Stack
) -> None:
    """The service accepts the upgrade and closes it at once (4401); the page took the
    opening for "open" and fired its REST reads, which failed with 401."""
    page = await browser.new_page()
    try:
        await page.navigate(f"{vault_stack.url}/")
        await page.wait_for(
            "window.visionflow && window.visionflow.state === 'unauthorized'", timeout=45
        )
        await asyncio.sleep(1.0)  # anything it would read meanwhile
        assert await page.evaluate("window.visionflow.errors") == []
        assert await page.evaluate("document.getElementById('token-form').hidden") is False
        assert [e for e in page.console_errors if "401" in e and "/api/" in e] == []
        assert await page.evaluate("window.visionflow.reconnects") == 0
    finally:
        await page.close()
