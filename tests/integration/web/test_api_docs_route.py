"""GET /api/docs: our own page and files, under the viewer's Content-Security-Policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.servicekit import running

pytestmark = pytest.mark.anyio


async def test_the_docs_page_loads_only_files_of_this_service(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        r = await client.get("/api/docs")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "connect-src 'self'" in csp
        assert "default-src 'none'" in csp
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert "/static/js/apidocs.js" in refs and "/openapi.json" in refs
        for ref in refs:
            assert ref.startswith(("/", "#", "data:")), ref  # nothing from elsewhere
            if ref.startswith("/static/"):
                assert (await client.get(ref)).status_code == 200, ref
        assert "<script>" not in r.text  # no inline script: the CSP would block it
        assert (await client.head("/api/docs")).status_code == 200
