"""Access lines: one per HTTP request (log.access_log), with method, path, route, status,
duration and client as top-level fields of a JSON line; no query string ever logged."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from support.servicekit import JSON, running

from visionflow import logs


def _access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [d for d in docs if "route" in d]


@pytest.mark.anyio
async def test_every_request_has_one_json_line_with_the_access_fields(anyio_backend: str) -> None:
    stream = io.StringIO()
    sink = logger.add(logs._json_sink(stream), level="INFO")
    try:
        async with running({"log": {"access_log": True}}) as (_, client):
            assert (await client.get("/api/notes/12?token=secret")).status_code == 404
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.delete("/healthz")).status_code == 405
            assert (await client.get("/no/such/%0Apath")).status_code == 404
            r = await client.post("/api/settings", content=b"{", headers=JSON)
            assert r.status_code == 400
    finally:
        logger.remove(sink)
    lines = _access_lines(stream)
    assert [(d["method"], d["route"], d["status"]) for d in lines] == [
        ("GET", "/api/notes/{id:int}", 404),
        ("GET", "/healthz", 200),
        ("DELETE", "/healthz", 405),
        ("GET", "(unmatched)", 404),
        ("POST", "/api/settings", 400),
    ]
    first = lines[0]
    assert first["path"] == "/api/notes/12"  # the query string (a token) is never logged
    assert "secret" not in stream.getvalue()
    assert first["subsystem"] == "http" and first["level"] == "INFO"
    assert first["client"] == "127.0.0.1"
    assert isinstance(first["duration_ms"], float) and 0 <= first["duration_ms"] < 10_000
    assert "extra" not in first  # the fields are not repeated under extra
    assert first["message"].startswith("GET /api/notes/12 404 ")
    # as the client sent it: a percent-encoded newline stays encoded, one line per request
    assert lines[3]["path"] == "/no/such/%0Apath"


@pytest.mark.anyio
async def test_no_access_lines_unless_asked(anyio_backend: str) -> None:
    stream = io.StringIO()
    sink = logger.add(logs._json_sink(stream), level="DEBUG")
    try:
        async with running({}) as (_, client):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/nope")).status_code == 404
    finally:
        logger.remove(sink)
    assert _access_lines(stream) == []
    assert '"/healthz' not in stream.getvalue()


@pytest.mark.anyio
async def test_human_lines_say_method_path_status_duration_and_client(anyio_backend: str) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, format=logs.HUMAN_FORMAT, level="INFO")
    try:
        async with running({"log": {"access_log": True}}) as (_, client):
            assert (await client.get("/readyz")).status_code == 200
    finally:
        logger.remove(sink)
    access = [line for line in lines if "GET /readyz" in line]
    assert len(access) == 1, lines
    assert " | http " in access[0]
    assert access[0].rstrip().endswith("ms (client 127.0.0.1)")


@pytest.mark.anyio
async def test_the_access_log_is_switched_on_at_runtime(anyio_backend: str, tmp_path: Path) -> None:
    stream = io.StringIO()
    sink = logger.add(logs._json_sink(stream), level="INFO")
    try:
        async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
            assert (await client.get("/healthz")).status_code == 200
            patch = {"log": {"access_log": True}}
            assert (await client.patch("/api/settings", json=patch)).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
    finally:
        logger.remove(sink)
    # the PATCH itself is logged: its answer ends after the change applied
    lines = [(d["method"], d["route"]) for d in _access_lines(stream)]
    assert lines == [("PATCH", "/api/settings"), ("GET", "/readyz")]
