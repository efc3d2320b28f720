"""Hovering a node shows its label and details; clicking selects it (GPU picking, real mouse)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cdp import Page

pytestmark = pytest.mark.anyio

AGENT = """(() => {
  const v = window.visionflow;
  const a = v.agents.find((x) => x.id != null && v.positionOf(x.id) && v.screenOf(x.id));
  return a ? { id: a.id, name: a.name, status: a.status } : null;
})()"""


async def test_hover_shows_an_agents_name_and_status_and_a_click_selects_it(page: Page) -> None:
    await page.wait_for("window.visionflow.state === 'open' && window.visionflow.agents.length > 0")
    await page.wait_for("window.visionflow.settled === true", timeout=60)
    agent = await page.wait_for(AGENT, timeout=30)
    x, y = await page.evaluate(f"window.visionflow.screenOf({agent['id']})")
    await page.mouse_move(x, y)
    label = await page.wait_for(
        "Array.from(document.querySelectorAll('#labels div')).map((d) => d.textContent)"
        ".find((t) => t.includes('status:')) || null",
        timeout=20,
    )
    assert agent["name"] in label and f"status: {agent['status']}" in label
    await page.click(x, y)
    title = await page.wait_for(
        "!document.getElementById('details').hidden"
        " && document.getElementById('details-title').textContent",
        timeout=20,
    )
    assert title == agent["name"]
