"""The page where the service wants a token, and in a browser without WebGL2."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from cdp import Browser
from conftest import Stack

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-viewer-token"
#: Seconds for the first frames: they wait for the physics compile, which on a fresh clone (no
#: numba cache) with both cores busy took more than 30 s.
COMPILE = 90


@pytest.fixture(scope="module")
def guarded(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``visionflow serve`` with ``server.token`` set (no simulator needed)."""
    root: Path = tmp_path_factory.mktemp("browser-token")
    s = Stack(root)
    s.settings.write_text(
        f'[server]\ntoken = "{TOKEN}"\nshutdown_grace = 2.0\n[state]\ndir = "{root / "state"}"\n'
        '[knowledge]\npath = "none"\n'  # the two nodes imported below, not the example vault
    )
    try:
        s.start()
        r = s.request(
            "POST",
            "/api/graph/import",
            json={"nodes": [{"id": "a"}, {"id": "b"}], "edges": [{"source": "a", "target": "b"}]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200, r.text
        yield s
    finally:
        s.close()


async def test_without_the_token_the_page_asks_for_it(browser: Browser, guarded: Stack) -> None:
    page = await browser.new_page()
    try:
        await page.navigate(f"{guarded.url}/")
        await page.wait_for("window.visionflow.state === 'unauthorized'", timeout=30)
        assert await page.evaluate("document.getElementById('token-form').hidden") is False
        await page.evaluate(
            f"""(() => {{
              document.getElementById('token-input').value = {TOKEN!r};
              document.getElementById('token-form').requestSubmit();
              return true;
            }})()"""
        )
        await page.wait_for(
            "window.visionflow.state === 'open' && window.visionflow.nodes === 2", timeout=COMPILE
        )
        assert await page.evaluate("document.getElementById('token-form').hidden") is True
    finally:
        await page.close()


async def test_a_token_in_the_page_url_is_used(browser: Browser, guarded: Stack) -> None:
    page = await browser.new_page()
    try:
        await page.navigate(f"{guarded.url}/?token={TOKEN}")
        await page.wait_for(
            "window.visionflow.state === 'open' && window.visionflow.nodes === 2", timeout=COMPILE
        )
        # REST calls carry it too: the settings panel could load (PATCH needs the token)
        await page.wait_for("document.querySelectorAll('[data-setting]').length > 0", timeout=30)
    finally:
        await page.close()


async def test_a_browser_without_webgl2_gets_an_explanation(chromium: str, guarded: Stack) -> None:
    browser = await Browser.launch(chromium, flags=("--disable-webgl", "--disable-3d-apis"))
    try:
        page = await browser.new_page()
        await page.navigate(f"{guarded.url}/?token={TOKEN}")
        await page.wait_for("window.visionflow && window.visionflow.webgl === false", timeout=30)
        assert await page.evaluate("document.getElementById('nowebgl').hidden") is False
        text = await page.evaluate("document.getElementById('nowebgl').textContent")
        assert "WebGL2" in text
        assert not [e for e in page.console_errors if "Uncaught" in e]
    finally:
        await browser.close()
