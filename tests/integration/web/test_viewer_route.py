"""The viewer page and its static files, served by the real service (hypercorn, ephemeral port)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support.servicekit import running

STATIC = Path(__file__).resolve().parents[3] / "visionflow" / "web" / "static"


def _raw(tmp_path: Path) -> dict[str, Any]:
    return {"state": {"dir": str(tmp_path / "state")}}


@pytest.mark.anyio
async def test_the_page_and_every_file_it_names_are_served(tmp_path: Path) -> None:
    async with running(_raw(tmp_path)) as (_, client):
        r = await client.get("/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert r.headers["cache-control"] == "no-store"  # a ?token= page URL
        assert "<title>VisionFlow</title>" in r.text
        named = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
        assert "/static/js/app.js" in named and "/static/css/viewer.css" in named
        modules = [f"/static/js/{p.name}" for p in (STATIC / "js").glob("*.js")]
        for path in named + modules:
            got = await client.get(path)
            assert got.status_code == 200, path
            assert got.headers["x-content-type-options"] == "nosniff"
        js = await client.get("/static/js/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        # every module an ES module imports is served too (no build step, no CDN)
        for p in (STATIC / "js").glob("*.js"):
            for dep in re.findall(r'from "\./([^"]+)"', p.read_text()):
                assert (STATIC / "js" / dep).is_file(), f"{p.name} imports missing {dep}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    ["/static/../viewer.py", "/static/%2e%2e/viewer.py", "/static/js/../../viewer.py", "/static/"],
)
async def test_nothing_outside_the_static_folder_is_served(tmp_path: Path, path: str) -> None:
    async with running(_raw(tmp_path)) as (_, client):
        r = await client.get(path)
        assert r.status_code == 404
        assert "import" not in r.text


@pytest.mark.anyio
async def test_the_page_obeys_the_host_rule(tmp_path: Path) -> None:
    # DNS rebinding: a page under an attacker's host name must not be served the viewer either
    async with running(_raw(tmp_path)) as (_, client):
        r = await client.get("/", headers={"Host": "evil.example"})
        assert r.status_code == 403
