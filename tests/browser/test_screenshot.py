"""The README's screenshot, taken from a real run: ``VISIONFLOW_SCREENSHOT=docs/img/viewer.png``.

Skipped unless that variable names where to write it. The graph is one people would recognise:
six communities of notes (a stochastic block model), a few bridges, and the fixture's swarm.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

if TYPE_CHECKING:
    from cdp import Page
    from conftest import Stack

pytestmark = pytest.mark.anyio

TARGET = os.environ.get("VISIONFLOW_SCREENSHOT", "")


def communities(groups: int = 6, size: int = 60, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    names = ["design", "research", "runtime", "testing", "operations", "notes"][:groups]
    nodes = [
        {"id": f"{g}-{i}", "label": f"{names[g]} note {i}", "group": names[g]}
        for g in range(groups)
        for i in range(size)
    ]
    edges = []
    for g in range(groups):
        for i in range(size):
            for _ in range(2):
                j = rng.randrange(size)
                if j != i:
                    edges.append({"source": f"{g}-{i}", "target": f"{g}-{j}"})
    for _ in range(groups * 3):
        a, b = rng.sample(range(groups), 2)
        edges.append(
            {"source": f"{a}-{rng.randrange(size)}", "target": f"{b}-{rng.randrange(size)}"}
        )
    return {"nodes": nodes, "edges": edges}


@pytest.mark.skipif(not TARGET, reason="set VISIONFLOW_SCREENSHOT=PATH to write the screenshot")
async def test_readme_screenshot(page: Page, service: Stack) -> None:
    async with httpx.AsyncClient(base_url=service.url, trust_env=False, timeout=60) as http:
        r = await http.post("/api/graph/import?mode=replace", json=communities())
        assert r.status_code == 200, r.text
    await page.wait_for(
        "window.visionflow.state === 'open' && window.visionflow.edges > 600"
        " && window.visionflow.settled === true",
        timeout=60,
    )
    await page.evaluate("window.visionflow.fit()")
    # open the swarm panel, as a user would to look at the agents
    await page.evaluate("document.getElementById('swarm-panel').open = true")
    await page.wait_for("document.querySelectorAll('#agent-list li').length > 0", timeout=20)
    png = await page.screenshot()
    target = anyio.Path(TARGET)
    await target.parent.mkdir(parents=True, exist_ok=True)
    await target.write_bytes(png)
    assert len(png) > 10_000
