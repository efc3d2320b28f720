"""The viewer where things go wrong or change under it: the GPU context lost and given back,
a group hidden, a selected node gone from the graph, a physics field emptied or refused, keys
with a checkbox focused. Each was found wrong by trying the page as a user would."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
import pytest
from cdp import Page
from test_viewer import CANVAS_ONLY, OVERLAYS_BACK, drawn_pixels, wait_streaming

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.anyio

#: The seeded ring (conftest.small_graph): 20 edges round it and 5 chords.
KNOWLEDGE_EDGES = 25


async def drawn(page: Page) -> int:
    await page.evaluate(CANVAS_ONLY)
    png = await page.screenshot()
    await page.evaluate(OVERLAYS_BACK)
    differ, _, _ = await anyio.to_thread.run_sync(drawn_pixels, png)
    return differ


async def test_a_lost_gpu_context_is_drawn_again_once_the_browser_gives_it_back(
    page: Page,
) -> None:
    await wait_streaming(page)
    before = await drawn(page)
    assert before >= 500
    await page.evaluate(
        "window.__lose = document.getElementById('view').getContext('webgl2')"
        ".getExtension('WEBGL_lose_context'); window.__lose.loseContext(); true"
    )
    await page.wait_for("window.visionflow.webgl === false", timeout=10)
    note = await page.evaluate("document.getElementById('hud-note').textContent")
    assert "graphics context was lost" in note
    await page.evaluate("window.__lose.restoreContext(); true")
    await page.wait_for(
        "window.visionflow.webgl === true && window.visionflow.contextRestores === 1", timeout=10
    )
    await page.wait_for("window.visionflow.drawnEdges > 0", timeout=10)
    # it used to stay blank: no buffer or program survives a lost context
    assert await drawn(page) >= before // 2
    assert page.console_errors == []


async def test_a_hidden_group_takes_its_edges_with_it(page: Page) -> None:
    await wait_streaming(page)
    await page.wait_for(f"window.visionflow.drawnEdges >= {KNOWLEDGE_EDGES}", timeout=20)
    everything = await page.evaluate("window.visionflow.drawnEdges")
    await page.evaluate("document.getElementById('show-knowledge').click(); true")
    # only the swarm's own edges are left (its hub and agents), none to a hidden note
    await page.wait_for(
        f"window.visionflow.drawnEdges === {everything - KNOWLEDGE_EDGES}", timeout=10
    )
    await page.evaluate("document.getElementById('show-agents').click(); true")
    await page.wait_for("window.visionflow.drawnEdges === 0", timeout=10)
    for box in ("show-knowledge", "show-agents"):
        await page.evaluate(f"document.getElementById('{box}').click(); true")
    await page.wait_for(f"window.visionflow.drawnEdges === {everything}", timeout=10)


async def test_keys_work_with_a_checkbox_focused_and_leave_ctrl_alone(page: Page) -> None:
    await wait_streaming(page)

    async def key(text: str, modifiers: int = 0) -> None:
        for kind in ("keyDown", "keyUp"):
            await page.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": text, "text": text, "modifiers": modifiers},
            )

    # the user zooms far out (which ends the automatic fit), then clicks a checkbox
    await page.evaluate(
        """(() => {
          window.visionflow.fit();
          const view = document.getElementById('view');
          for (let i = 0; i < 10; i++) {
            view.dispatchEvent(
              new WheelEvent('wheel', {deltaY: 500, bubbles: true, cancelable: true}));
          }
          document.getElementById('show-edges').focus();
          return true;
        })()"""
    )
    await anyio.sleep(0.3)
    zoomed = await page.evaluate("window.visionflow.cameraDistance")
    await key("f", modifiers=2)  # Ctrl+F is the browser's find, not a fit
    await anyio.sleep(0.5)
    assert await page.evaluate("window.visionflow.cameraDistance") == zoomed
    await key("F")  # Shift+F with the checkbox focused: a fit (it did nothing)
    await page.wait_for(f"window.visionflow.cameraDistance < {zoomed} / 2", timeout=10)


async def test_a_selected_node_that_leaves_the_graph_is_no_longer_selected(
    page: Page, service: Stack
) -> None:
    await wait_streaming(page)
    await page.wait_for("window.visionflow.nodeIds().length >= 20", timeout=20)
    await page.evaluate(
        """(() => {
          document.getElementById('search').value = 'Note 3';
          document.getElementById('search-form').requestSubmit();
          return true;
        })()"""
    )
    await page.wait_for(
        "document.getElementById('details-title').textContent === 'Note 3'", timeout=20
    )
    other = {"nodes": [{"id": "x", "label": "Another"}, {"id": "y"}], "edges": []}
    r = await anyio.to_thread.run_sync(
        lambda: service.post_json("/api/graph/import?mode=replace", other)
    )
    assert r.status_code == 200, r.text
    # it used to stay: "node 3 / id 3" in the panel, and the new graph drawn dimmed
    await page.wait_for("document.getElementById('details').hidden === true", timeout=20)
    await anyio.to_thread.run_sync(service.seed)  # the ring back for what follows


async def test_an_emptied_or_refused_physics_field_shows_what_is_in_effect(
    page: Page, service: Stack
) -> None:
    await wait_streaming(page)
    field = "physics.knowledge.damping"
    await page.wait_for(
        f"document.querySelector('[data-setting=\"{field}\"]') !== null", timeout=20
    )
    before = service.request("GET", "/api/settings").json()["settings"]["physics"]["knowledge"]

    async def enter(value: str) -> str:
        return str(
            await page.evaluate(
                f"""(() => {{
                  const input = document.querySelector('[data-setting="{field}"]');
                  input.value = {json.dumps(value)};
                  input.dispatchEvent(new Event('change', {{bubbles: true}}));
                  return true;
                }})()"""
            )
        )

    await enter("")  # Number("") is 0: it set damping to 0
    error = await page.wait_for(
        f"document.querySelector('[data-error-for=\"{field}\"]').textContent", timeout=10
    )
    assert error.startswith("damping: a number from")
    shown = await page.evaluate(f"document.querySelector('[data-setting=\"{field}\"]').value")
    assert float(shown) == before["damping"]
    await enter("7")  # out of range: the service refuses it, the field goes back
    await page.wait_for(
        f"document.querySelector('[data-error-for=\"{field}\"]').textContent.includes('<= 1')",
        timeout=10,
    )
    value = f"Number(document.querySelector('[data-setting=\"{field}\"]').value)"
    await page.wait_for(f"{value} === {before['damping']}", timeout=10)
    after = service.request("GET", "/api/settings").json()["settings"]["physics"]["knowledge"]
    assert after["damping"] == before["damping"]


async def test_the_physics_fields_follow_a_change_made_elsewhere(
    page: Page, service: Stack
) -> None:
    await wait_streaming(page)
    field = "physics.knowledge.damping"
    value = f"Number(document.querySelector('[data-setting=\"{field}\"]').value)"
    await page.wait_for(
        f"document.querySelector('[data-setting=\"{field}\"]') !== null", timeout=20
    )
    before = service.request("GET", "/api/settings").json()["settings"]["physics"]["knowledge"]
    wanted = 0.55 if before["damping"] != 0.55 else 0.6
    patch = {"physics": {"knowledge": {"damping": wanted}}}
    r = await anyio.to_thread.run_sync(
        lambda: service.request("PATCH", "/api/settings", json=patch)
    )
    assert r.status_code == 200, r.text
    # another client's change: the page used to show the old value until it reconnected
    await page.wait_for(f"{value} === {wanted}", timeout=20)
    back = {"physics": {"knowledge": {"damping": before["damping"]}}}
    r = await anyio.to_thread.run_sync(lambda: service.request("PATCH", "/api/settings", json=back))
    assert r.status_code == 200, r.text
    await page.wait_for(f"{value} === {before['damping']}", timeout=20)


async def test_retry_now_reconnects_before_the_backoff_would(page: Page, service: Stack) -> None:
    await wait_streaming(page)
    await anyio.to_thread.run_sync(service.stop)
    await page.wait_for(
        "window.visionflow.state === 'closed' && !document.getElementById('hud-retry').hidden",
        timeout=20,
    )
    await anyio.sleep(16)  # failed attempts every 0.5, 1, 2, 4, 8 s: the next waits 8-16 s
    text = await page.evaluate("document.getElementById('hud-state').textContent")
    assert text.startswith("closed (reconnecting in ") and text.endswith(" s)"), text
    await anyio.to_thread.run_sync(service.start)
    left = await page.evaluate("window.visionflow.nextAttemptIn")
    await page.evaluate("document.getElementById('hud-retry').click(); true")
    if left is not None and left > 4:
        # it comes back at once, not when the scheduled attempt would have (a second of
        # slack for a busy machine; with less time left than that the check says nothing)
        await page.wait_for("window.visionflow.state === 'open'", timeout=left - 1)
    await wait_streaming(page)
    assert await page.evaluate("document.getElementById('hud-retry').hidden") is True


async def test_the_banner_says_why_an_endpoint_is_down(page: Page, service: Stack) -> None:
    """Last in this module: the simulator stays stopped. The banner read a key the health
    answer does not have, and said "mcp:sim backoff" without the reason."""
    await wait_streaming(page)
    assert service.sim is not None
    service.stop_sim()
    # the poll is every 5 s; the endpoint's reconnects back off from 1 s
    banner = await page.wait_for(
        """(() => {
          const b = document.getElementById('banner');
          return !b.hidden && b.textContent.includes('mcp:sim backoff: ') ? b.textContent : null;
        })()""",
        timeout=45,
    )
    assert "127.0.0.1:" in banner, banner  # the reason names where it could not connect
