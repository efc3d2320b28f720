"""Fixtures of the real-browser tests: headless Chromium against a real ``visionflow serve``.

``stack`` (one per module): ``visionflow mcp-sim`` and ``visionflow serve`` as subprocesses in
a temporary directory, the service watching the simulator, a small knowledge graph imported and
a swarm started over REST. ``stack.stop()`` / ``stack.start()`` restart the service on the same
port. ``browser`` is a fresh Chromium per test; ``page`` a tab with the viewer loaded.

Without Chromium on PATH every test here is skipped (``.ci/run`` installs it when it can).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cdp import Browser, Page
from support.clikit import child_env, cli

LISTEN = re.compile(r"listening on http://([\d.]+):(\d+)")
SIM_LISTEN = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
#: Starting the service imports numba and friends: seconds on an idle machine, more on a busy one.
START_TIMEOUT = 90.0
#: The swarm the fixture starts; the simulator runs frozen (``--tick 0``), so only the tests'
#: own calls change it.
SWARM_TYPES = ("coordinator", "coder", "researcher")


def _reap(proc: subprocess.Popen[bytes], *, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always waits for the child."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _tail(log: Path, size: int = 3000) -> str:
    try:
        return log.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return "(no log)"


def _wait_for_log(
    proc: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], start: int, timeout: float
) -> re.Match[str] | None:
    """The first match of ``pattern`` in ``log`` after byte ``start``; None if the process
    exited first. Raises when neither happens within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        m = pattern.search(log.read_bytes()[start:].decode(errors="replace"))
        if m:
            return m
        if proc.poll() is not None:
            return None
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern.pattern!r} within {timeout}s: {_tail(log)}")
        time.sleep(0.05)


def small_graph() -> dict[str, Any]:
    """Twenty knowledge nodes in two groups: a ring with a few chords."""
    n = 20
    nodes = [
        {"id": f"n{i}", "label": f"Note {i}", "group": "even" if i % 2 == 0 else "odd"}
        for i in range(n)
    ]
    edges: list[dict[str, object]] = [
        {"source": f"n{i}", "target": f"n{(i + 1) % n}"} for i in range(n)
    ]
    edges += [
        {"source": f"n{i}", "target": f"n{(i + 7) % n}", "weight": 0.5} for i in range(0, n, 4)
    ]
    return {"nodes": nodes, "edges": edges}


class Stack:
    """``visionflow mcp-sim`` plus ``visionflow serve`` watching it, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sim: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.sim_port = 0
        self.port = 0  # chosen by the first start (--port 0), kept by restarts
        self.serve_log = root / "serve.log"
        self.sim_log = root / "mcp-sim.log"
        self.settings = root / "settings.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/wss"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- the simulator -----------------------------------------------------------------------

    def start_sim(self) -> None:
        with self.sim_log.open("ab") as out:
            self.sim = subprocess.Popen(
                cli("mcp-sim", "--port", "0", "--tick", "0", "--seed", "7"),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=child_env(),
            )
        m = _wait_for_log(self.sim, self.sim_log, SIM_LISTEN, 0, START_TIMEOUT)
        assert m, f"mcp-sim exited with {self.sim.returncode}: {_tail(self.sim_log)}"
        self.sim_port = int(m[1])
        self.settings.write_text(
            "[server]\n"
            "shutdown_grace = 2.0\n"
            "[state]\n"
            f'dir = "{self.root / "state"}"\n'
            "[knowledge]\n"
            'path = "none"\n'  # the graph is the one imported below, not the example vault
            "[[mcp.endpoints]]\n"
            'name = "sim"\n'
            'host = "127.0.0.1"\n'
            f"port = {self.sim_port}\n"
            "poll_interval = 0.5\n"
        )

    # -- the service -------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start ``visionflow serve`` (on the port of the first start, if any) and wait until
        ``/readyz`` answers 200. A restart retries while the old socket is still in the way."""
        assert not self.running, "already running"
        deadline = time.monotonic() + timeout
        while True:
            start = self.serve_log.stat().st_size if self.serve_log.exists() else 0
            with self.serve_log.open("ab") as out:
                self.proc = subprocess.Popen(
                    cli("serve", "--config", str(self.settings), "--port", str(self.port)),
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                    env=child_env(),
                )
            m = _wait_for_log(
                self.proc, self.serve_log, LISTEN, start, max(1.0, deadline - time.monotonic())
            )
            if m:
                self.port = int(m[2])
                break
            busy = "address already in use" in _tail(self.serve_log, 500)
            if not (busy and self.port and time.monotonic() < deadline):
                raise AssertionError(
                    f"visionflow serve exited with {self.proc.returncode}: {_tail(self.serve_log)}"
                )
            time.sleep(0.5)
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.running, f"visionflow serve exited: {_tail(self.serve_log)}"
            time.sleep(0.1)
        raise AssertionError(f"/readyz not 200 within {timeout}s: {_tail(self.serve_log)}")

    def stop(self) -> None:
        """SIGTERM and wait for the exit (the settings give it a 2 s drain)."""
        if self.proc is not None:
            _reap(self.proc)
            self.proc = None

    def stop_sim(self) -> None:
        """SIGTERM the simulator and wait for its exit: the endpoint goes down."""
        if self.sim is not None:
            _reap(self.sim)
            self.sim = None

    def close(self) -> None:
        self.stop()
        self.stop_sim()

    # -- REST --------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30, trust_env=False, **kwargs)

    def post_json(self, path: str, body: object) -> httpx.Response:
        return self.request("POST", path, json=body)  # httpx sets application/json

    def seed(self, timeout: float = 60.0) -> None:
        """Import the knowledge graph; start a swarm once the endpoint is connected."""
        r = self.post_json("/api/graph/import?mode=replace", small_graph())
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + timeout
        while True:
            status = self.request("GET", "/api/bots/status").json()["endpoints"]
            if status and status[0].get("connected"):
                break
            assert time.monotonic() < deadline, f"endpoint never connected: {status}"
            time.sleep(0.2)
        body = {"topology": "mesh", "maxAgents": 100, "agentTypes": list(SWARM_TYPES)}
        r = self.post_json("/api/bots/initialize-swarm", body)
        assert r.status_code == 200, r.text
        while len(self.request("GET", "/api/bots/data").json().get("agents", [])) < len(
            SWARM_TYPES
        ):
            assert time.monotonic() < deadline, "the swarm's agents never showed in /api/bots/data"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("browser tests need chromium on PATH (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def stack(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("browser-stack"))
    try:
        s.start_sim()
        s.start()
        s.seed()
        yield s
    finally:
        s.close()


@pytest.fixture
def service(stack: Stack) -> Stack:
    """The stack, its service running (a test that stopped it may have left it down)."""
    if not stack.running:
        stack.start()
    return stack


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the CDP client and the websockets client are asyncio-only


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    b = await Browser.launch(chromium)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def page(browser: Browser, service: Stack) -> AsyncIterator[Page]:
    """A tab with the viewer at ``GET /`` loaded."""
    p = await browser.new_page()
    try:
        await p.navigate(f"{service.url}/")
        yield p
    finally:
        await p.close()
