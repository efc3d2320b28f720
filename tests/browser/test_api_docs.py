"""/api/docs in a real browser: it renders every operation of /openapi.json from our own static
files, under the page's Content-Security-Policy (no CDN, no inline script, no console error)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cdp import Browser, Page
from conftest import Stack

pytestmark = pytest.mark.anyio


@pytest.fixture
async def docs(browser: Browser, service: Stack) -> AsyncIterator[Page]:
    p = await browser.new_page()
    try:
        await p.navigate(f"{service.url}/api/docs#graph_import")
        yield p
    finally:
        await p.close()


async def test_every_operation_is_rendered(docs: Page, service: Stack) -> None:
    spec = service.request("GET", "/openapi.json").json()
    expected = sum(len(ops) for ops in spec["paths"].values())
    shown = await docs.wait_for("document.body.dataset.operations", timeout=30)
    assert shown == str(expected)
    titles = await docs.evaluate(
        "[...document.querySelectorAll('details.op > summary .path')].map(e => e.textContent)"
    )
    assert set(titles) == set(spec["paths"])
    # the linked operation is open, with its parameters and its body's schema
    opened = await docs.evaluate(
        "(() => { const d = document.getElementById('graph_import');"
        " return d && d.open ? d.textContent : null })()"
    )
    assert opened is not None
    for text in ("mode", "replace", "GraphDocument", "application/graphml+xml", "401"):
        assert text in opened, text
    assert not docs.console_errors, docs.console_errors
    resources = await docs.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert all(r.startswith(service.url) for r in resources), resources
