"""A method the viewer's files do not take is a 405 naming GET and HEAD, not a 415.

Found by fuzzing /openapi.json (tests/fuzz): a Mount matches every method, so the guard took
``DELETE /static/...`` for a route that takes a body and asked for JSON (415), and the 405
StaticFiles gave to a JSON request named no method at all (``Allow:`` empty, the mount's scope
not matching the app's routes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.servicekit import JSON, running

pytestmark = pytest.mark.anyio


async def test_a_file_answers_405_with_get_and_head(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        assert (await client.get("/static/js/app.js")).status_code == 200
        for headers in ({}, JSON):
            r = await client.delete("/static/js/app.js", headers=headers)
            assert r.status_code == 405, (headers, r.status_code, r.text)
            assert r.headers["allow"] == "GET, HEAD"
            assert r.json()["error"]["code"] == "method_not_allowed"
