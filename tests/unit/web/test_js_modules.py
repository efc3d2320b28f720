"""The viewer's JavaScript modules (visionflow/web/static/js/): their Node tests pass, their
test vectors match the Python encoder, and nothing in them is fetched from the internet."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
JS_TESTS = ROOT / "tests" / "js"
STATIC_JS = ROOT / "visionflow" / "web" / "static" / "js"

# A string literal (or template) that starts with an http(s) URL: what an import, fetch(),
# new Worker(), <script src> built in code or a WebSocket to a fixed host would need. A URL
# in a comment is not quoted that way and is allowed. URLs assembled from pieces are not
# caught: this guards against the ordinary mistake, not against someone hiding one.
_REMOTE_URL = re.compile(r"""["'`]\s*https?://""", re.IGNORECASE)


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    return int(match.group(1)) if match else 0


def test_node_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the JavaScript tests (tests/js/) need Node.js >= 18")
    if _node_major(node) < 18:
        pytest.skip("node:test needs Node.js >= 18")
    # The test files by name, not the directory: from Node 21 on the arguments of --test are
    # glob patterns and a bare directory is not one. Same files as `node --test tests/js/`.
    files = sorted(str(p.relative_to(ROOT)) for p in JS_TESTS.glob("*.test.mjs"))
    assert len(files) >= 2, files
    proc = subprocess.run(
        [node, "--test", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


def test_vectors_match_the_python_encoder() -> None:
    proc = subprocess.run(
        [sys.executable, str(JS_TESTS / "make_vectors.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_static_js_is_utf8_and_loads_nothing_remote() -> None:
    files = sorted(p for p in STATIC_JS.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"frames.js", "nodestate.js"} <= names, names
    for path in files:
        text = path.read_bytes().decode("utf-8")  # strict: raises on invalid UTF-8
        for number, line in enumerate(text.splitlines(), 1):
            rel = path.relative_to(ROOT)
            assert not _REMOTE_URL.search(line), f"{rel}:{number} quotes a remote URL: {line}"


def test_remote_url_pattern() -> None:
    """The check above catches quoted URLs and leaves comments and same-origin paths alone."""
    for bad in (
        'import x from "https://cdn.example.com/x.js";',
        "fetch('http://example.com/data')",
        "new WebSocket(`https://host/${path}`)",
    ):
        assert _REMOTE_URL.search(bad), bad
    for fine in (
        "// see https://developer.mozilla.org/en-US/docs/Web/API/WebSocket",
        " * https://example.com in JSDoc",
        'fetch("/api/graph/data")',
        "const url = `${proto}//${location.host}/wss`;",
    ):
        assert not _REMOTE_URL.search(fine), fine
