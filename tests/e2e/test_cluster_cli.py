"""`visionflow serve` with a nats_url and two `visionflow relay` processes, as a user runs them."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clikit import child_env, cli
from support.natskit import Broker, broker_in
from websockets.sync.client import connect

from visionflow.protocol.frames import FrameKind, decode_frame

LISTEN = re.compile(rb"listening on (http://[\d.]+:\d+)")

pytestmark = pytest.mark.slow  # three processes start: ~30 s on two busy cores


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with broker_in(tmp_path / "nats") as nats:
        yield nats


def start(args: list[str], cwd: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(cli(*args), cwd=cwd, stderr=subprocess.PIPE, env=child_env(**env))
    assert proc.stderr is not None
    deadline = time.monotonic() + 60  # imports alone take seconds on a busy machine
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = LISTEN.search(line)
        if m:
            return proc, m[1].decode()
    proc.kill()
    raise AssertionError(f"{args[0]} never said where it listens")


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    return code


def until_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


def test_two_relays_serve_the_services_graph_and_page(broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        svc, svc_url = start(
            ["serve", "--port", "0"],
            tmp_path / "svc",
            VISIONFLOW__CLUSTER__NATS_URL=broker.url,
            VISIONFLOW__SERVER__SHUTDOWN_GRACE="3",
            VISIONFLOW__KNOWLEDGE__PATH="none",
        )
        procs.append(svc)
        relays = []
        for _ in range(2):
            proc, url = start(["relay", "--nats", broker.url, "--port", "0"], tmp_path)
            procs.append(proc)
            relays.append(url)
        until_ready(svc_url)
        nodes = [{"id": f"n{i}"} for i in range(30)]
        edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(29)]
        doc = {"nodes": nodes, "edges": edges}
        assert httpx.post(f"{svc_url}/api/graph/import", json=doc).status_code == 200
        page = httpx.get(f"{svc_url}/").text
        for url in relays:
            until_ready(url)
            assert httpx.get(f"{url}/").text == page
            data = httpx.get(f"{url}/api/graph/data").json()
            assert data["node_count"] == 30
            with connect(url.replace("http", "ws") + "/wss", open_timeout=10) as ws:
                first = ws.recv(10)
                assert isinstance(first, str) and "connection_established" in first
                while isinstance(message := ws.recv(10), str):
                    pass
                frame = decode_frame(message)
                assert frame.kind is FrameKind.KEYFRAME and len(frame) == 30
    finally:
        codes = [stop(proc) for proc in reversed(procs)]
    assert codes == [0] * len(procs)
