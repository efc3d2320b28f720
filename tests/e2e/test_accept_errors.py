"""Out of file descriptors: one warning per burst, not a traceback per failed accept."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.clikit import child_env, cli

LISTEN = re.compile(r"listening on http://([\d.]+):(\d+)")
FD_LIMIT = 160  # the service starts with well under this open


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_running_out_of_descriptors_logs_one_line_per_burst(tmp_path: Path, backend: str) -> None:
    proc = subprocess.Popen(
        cli("serve", "--port", "0", "--backend", backend),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        preexec_fn=_limit_fds,  # noqa: PLW1509 (no threads in this test process spawn children)
    )
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 120
        url = None
        # the flood comes once serving: a start-up compile out of descriptors is another story
        # (numba cannot open its sources; the child crashes and its supervisor restarts it)
        while time.monotonic() < deadline and not (
            url and any("physics kernels ready" in line for line in list(lines))
        ):
            found = [LISTEN.search(line) for line in list(lines)]
            url = next((f"http://{m[1]}:{m[2]}" for m in found if m), None)
            time.sleep(0.05)
        assert url and any("kernels ready" in line for line in lines), "".join(lines)
        time.sleep(1.0)  # the hub's frame packer compiles right after
        host, port = url.removeprefix("http://").split(":")
        for _ in range(2 * FD_LIMIT):  # far more connections than descriptors
            try:
                held.append(socket.create_connection((host, int(port)), timeout=2))
            except TimeoutError:
                break  # the listen backlog is full too: the server is surely out of them
        assert len(held) > FD_LIMIT // 2
        time.sleep(3.0)  # asyncio retries accept every second, trio every 100 ms
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # it serves again once the connections are gone
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the service did not recover:\n" + "".join(lines[-20:]))
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(30)
        reader.join(10)
        proc.stderr.close()
    text = "".join(lines)
    accept_lines = [line for line in lines if "accept" in line.lower()]
    assert 1 <= len(accept_lines) <= 2, "".join(accept_lines[:10])
    assert "cannot accept connections" in accept_lines[0]
    assert "Traceback" not in text, text
