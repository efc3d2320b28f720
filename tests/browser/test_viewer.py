"""The WebGL2 viewer at ``GET /`` in a real headless Chromium against a real ``visionflow serve``.

The page's contract (``window.visionflow``, the DOM ids) is what these tests read; see the
fixtures in conftest.py for the service, the simulator and the browser.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from cdp import Page, decode_png
from websockets.asyncio.client import connect
from websockets.typing import Origin

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.anyio

KNOWLEDGE_FLAG = 0x40000000
HEADER = struct.Struct("<2sBBIQ")
RECORD = struct.Struct("<I3f3f")
REPEL = "physics.knowledge.repel_k"

#: Every overlay hidden, the canvas (and only it) visible: the screenshot shows what WebGL drew.
#: Through the CSSOM: the page's Content-Security-Policy (style-src 'self') refuses a <style>.
CANVAS_ONLY = """(() => {
  for (const el of document.body.querySelectorAll('*')) {
    el.style.setProperty('visibility', el.id === 'view' ? 'visible' : 'hidden', 'important');
  }
  return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))));
})()"""
OVERLAYS_BACK = """(() => {
  for (const el of document.body.querySelectorAll('*')) el.style.removeProperty('visibility');
  return true;
})()"""


async def wait_streaming(page: Page, timeout: float = 45.0) -> None:
    await page.wait_for(
        "window.visionflow && window.visionflow.state === 'open'"
        " && window.visionflow.frames > 0 && window.visionflow.nodes > 0",
        timeout=timeout,
    )


async def settle(page: Page, timeout: float) -> bool:
    """Wait (bounded) for the layout to come to rest; whether it did."""
    try:
        await page.wait_for("window.visionflow.settled === true", timeout=timeout)
    except AssertionError:
        return False
    return True


async def reveal(page: Page, selector: str) -> tuple[float, float]:
    """Open the closed <details> around an element as a user would (a click on each summary),
    scroll it into view; the centre of the element, which must be what is there."""
    for _ in range(5):
        summary = await page.evaluate(
            f"""(() => {{
              const el = document.querySelector({json.dumps(selector)});
              const d = el.closest('details:not([open])');
              if (!d) return null;
              const s = d.querySelector(':scope > summary');
              s.scrollIntoView({{block: 'center'}});
              const r = s.getBoundingClientRect();
              return [r.left + r.width / 2, r.top + r.height / 2];
            }})()"""
        )
        if summary is None:
            break
        await page.click(*summary)
        await asyncio.sleep(0.1)
    x, y, hit = await page.evaluate(
        f"""(() => {{
          const el = document.querySelector({json.dumps(selector)});
          el.scrollIntoView({{block: 'center'}});
          const r = el.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
          const at = document.elementFromPoint(x, y);
          return [x, y, !!at && (at === el || el.contains(at))];
        }})()"""
    )
    assert hit, f"{selector} is covered or hidden at ({x}, {y})"
    return x, y


def drawn_pixels(png: bytes, tolerance: int = 24) -> tuple[int, int, tuple[int, ...]]:
    """(pixels differing from the background, all pixels, background colour); the background
    is the colour most of the four corners have."""
    width, height, channels, px = decode_png(png)

    def at(x: int, y: int) -> tuple[int, ...]:
        i = (y * width + x) * channels
        return tuple(px[i : i + min(channels, 3)])

    corners = [at(0, 0), at(width - 1, 0), at(0, height - 1), at(width - 1, height - 1)]
    background = Counter(corners).most_common(1)[0][0]
    differ = 0
    n = min(channels, 3)
    for i in range(0, len(px), channels):
        if sum(abs(px[i + k] - background[k]) for k in range(n)) > tolerance:
            differ += 1
    return differ, width * height, background


async def test_page_loads_draws_with_webgl2_and_no_console_errors(page: Page) -> None:
    assert "VisionFlow" in await page.evaluate("document.title")
    await wait_streaming(page)
    assert await page.evaluate("window.visionflow.webgl") is True
    # the page's CSP lets it compile its own WebAssembly kernel for steady keyframes
    assert await page.evaluate("window.visionflow.steadyPath") == "wasm"
    await page.evaluate(CANVAS_ONLY)
    png = await page.screenshot()
    await page.evaluate(OVERLAYS_BACK)
    differ, total, background = await anyio.to_thread.run_sync(drawn_pixels, png)
    # 20 knowledge nodes and 3 agents (about 16k pixels when this was written): 500 at least
    assert differ >= 500, f"only {differ} of {total} pixels differ from the background {background}"
    assert page.console_errors == []


async def test_agents_show_and_a_spawn_from_the_swarm_panel_adds_one(page: Page) -> None:
    await wait_streaming(page)
    await page.wait_for("window.visionflow.agents.length >= 3", timeout=30)
    agents: list[dict[str, Any]] = await page.evaluate("window.visionflow.agents")
    assert all(isinstance(a.get("colour"), str) and a["colour"] for a in agents), agents
    await page.wait_for(
        "document.querySelectorAll('#agent-list li[data-id]').length"
        " === window.visionflow.agents.length",
        timeout=10,
    )
    before = {a["agent_id"] for a in agents}

    # a type the simulator takes as it is (claude-flow 2.x renames some, e.g. coordinator)
    chosen = await page.evaluate(
        """(() => {
          const el = document.getElementById('spawn-type');
          if (el.tagName === 'SELECT' &&
              ![...el.options].some(o => o.value === 'tester')) return null;
          el.value = 'tester';
          el.dispatchEvent(new Event('input', {bubbles: true}));
          el.dispatchEvent(new Event('change', {bubbles: true}));
          return el.value;
        })()"""
    )
    assert chosen == "tester", "#spawn-type does not offer 'tester'"
    x, y = await reveal(page, "#spawn-button")
    await page.click(x, y)
    await page.wait_for(
        f"window.visionflow.agents.length === {len(agents) + 1}"
        f" && window.visionflow.agents.some(a => a.type === 'tester'"
        f" && !{json.dumps(sorted(before))}.includes(a.agent_id))",
        timeout=30,
    )
    await asyncio.sleep(0.5)  # an error shown a moment after the agent would be caught too
    shown = await page.evaluate(
        "(e => [e.textContent.trim(), e.className])(document.getElementById('swarm-error'))"
    )
    assert shown[0] == "", f"#swarm-error (class {shown[1]!r}) says {shown[0]!r} after a spawn"
    assert page.console_errors == []


async def test_a_dragged_node_stays_where_the_page_dropped_it(page: Page, service: Stack) -> None:
    await wait_streaming(page)
    await settle(page, 20)  # a node at rest is easier to hit; a moving one is still draggable
    candidates = await page.evaluate(
        f"""(() => {{
          const vf = window.visionflow, W = innerWidth, H = innerHeight;
          const canvas = document.getElementById('view'), out = [];
          for (const id of vf.nodeIds()) {{
            if (!(id & {KNOWLEDGE_FLAG})) continue;
            const s = vf.screenOf(id);
            if (!s) continue;
            const [x, y] = s;
            if (x < 100 || x > W - 180 || y < 100 || y > H - 100) continue;
            if (document.elementFromPoint(x, y) !== canvas) continue;
            if (document.elementFromPoint(x + 80, y) !== canvas) continue;
            out.push([Math.hypot(x - W / 2, y - H / 2), id, x, y]);
          }}
          return out.sort((a, b) => a[0] - b[0]);
        }})()"""
    )
    assert candidates, "no knowledge node on the canvas away from the edges and overlays"
    _, node, x, y = candidates[0]
    start = await page.evaluate(f"window.visionflow.positionOf({node})")

    await page.mouse_move(x, y)
    await page.mouse_down(x, y)
    for step in range(1, 11):
        await page.mouse_move(x + 8 * step, y, pressed=True)
        await asyncio.sleep(0.03)
    await page.mouse_up(x + 80, y)

    dropped = await page.evaluate(f"window.visionflow.positionOf({node})")
    assert dropped is not None and math.dist(dropped, start) > 1e-3, (start, dropped)
    sx, sy = await page.evaluate(f"window.visionflow.screenOf({node})")
    assert math.hypot(sx - (x + 80), sy - y) < 16, ((x, y), (sx, sy))

    # the server pins it (GET /api/graph/data says so) before the stream is compared: a node
    # still moving would never match the page's copy exactly
    async with httpx.AsyncClient(base_url=service.url, trust_env=False, timeout=30) as http:
        with anyio.fail_after(30):
            while True:
                data = (await http.get("/api/graph/data")).json()
                if any(n["flagged_id"] == node and n["pinned"] for n in data["nodes"]):
                    break
                await anyio.sleep(0.1)
    seen: list[tuple[float, ...]] = []
    origin = Origin(service.url)
    with anyio.move_on_after(30):
        async with connect(
            service.ws_url, origin=origin, proxy=None, max_size=None, compression=None
        ) as ws:
            async for message in ws:
                if isinstance(message, str):
                    continue
                magic, _, _, count, _ = HEADER.unpack_from(message)
                assert magic == b"VF"
                for i in range(count):
                    rid, px, py, pz, *_ = RECORD.unpack_from(message, HEADER.size + i * 28)
                    if rid != node:
                        continue
                    seen.append((px, py, pz))
                    # the page's own stream may be a frame behind this one (on a busy machine
                    # a delta from before the pin arrived after the drop): give it a moment
                    for _ in range(50):
                        now = await page.evaluate(f"window.visionflow.positionOf({node})")
                        if max(abs(a - b) for a, b in zip(seen[-1], now, strict=True)) <= 1e-3:
                            return
                        await asyncio.sleep(0.1)
    raise AssertionError(f"the stream never showed node {node} where the page has it: {seen[-5:]}")


async def test_a_physics_input_changes_the_servers_setting(page: Page, service: Stack) -> None:
    await wait_streaming(page)
    selector = f'input[data-setting="{REPEL}"]'
    await page.wait_for(
        f"document.querySelector('{selector}') && "
        f"document.querySelector('{selector}').value !== ''",
        timeout=20,
    )
    async with httpx.AsyncClient(base_url=service.url, trust_env=False, timeout=30) as http:
        old = (await http.get("/api/settings")).json()["settings"]["physics"]["knowledge"][
            "repel_k"
        ]
        try:
            # a new value the input accepts: twice the old one, or half when over its max
            value = await page.evaluate(
                f"""(() => {{
                  const el = document.querySelector('{selector}');
                  const max = el.max === '' ? Infinity : Number(el.max);
                  const min = el.min === '' ? 0 : Number(el.min);
                  const old = Number(el.value);
                  for (const v of [old * 2, old / 2, (min + Math.min(max, 10 * old)) / 2]) {{
                    el.value = String(v);
                    if (Number(el.value) !== old && Number(el.value) > 0) break;
                  }}
                  el.dispatchEvent(new Event('input', {{bubbles: true}}));
                  el.dispatchEvent(new Event('change', {{bubbles: true}}));
                  return Number(el.value);
                }})()"""
            )
            assert value != old
            deadline = time.monotonic() + 20
            while True:
                got = (await http.get("/api/settings")).json()["settings"]["physics"]["knowledge"]
                if math.isclose(got["repel_k"], value, rel_tol=1e-6):
                    break
                assert time.monotonic() < deadline, f"repel_k is {got['repel_k']}, not {value}"
                await anyio.sleep(0.1)
            error = await page.evaluate(
                f"(document.querySelector('[data-error-for=\"{REPEL}\"]') || {{}}).textContent"
            )
            assert not (error or "").strip(), error
        finally:
            await http.patch("/api/settings", json={"physics": {"knowledge": {"repel_k": old}}})
    assert page.console_errors == []


async def test_the_page_reconnects_when_the_service_comes_back(page: Page, service: Stack) -> None:
    await wait_streaming(page)
    await anyio.to_thread.run_sync(service.stop)
    await page.wait_for("window.visionflow.state !== 'open'", timeout=20)
    frames = await page.evaluate("window.visionflow.frames")
    await anyio.to_thread.run_sync(service.start)
    await page.wait_for("window.visionflow.state === 'open'", timeout=45)
    await page.wait_for(f"window.visionflow.frames > {frames}", timeout=20)
    assert await page.evaluate("window.visionflow.reconnects") >= 1
