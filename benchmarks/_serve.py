"""Shared by the benchmarks: a real ``visionflow serve`` in its own process, on port 0."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def serve(
    tmp: Path,
    server: str = "",
    *,
    extra: str = "",
    state_dir: Path | None = None,
    log_name: str = "serve.log",
    probe: bool = False,
    wrapper: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start it with its state under ``tmp``; its process and URL once it says it is ready.
    ``server``: more lines for its ``[server]`` table (``"header_timeout = 2.0"``);
    ``extra``: more TOML after the ``[state]`` table (other tables, ``[[mcp.endpoints]]``);
    ``state_dir``: another state directory than ``tmp/state``; ``log_name``: the log file under
    ``tmp`` (a restart of the same state gets its own); ``probe``: run the same command line
    under ``benchmarks/_probe.py``, which writes the process's task and thread counts to
    ``tmp/probe.jsonl`` (see there); ``wrapper``: a Python script of benchmarks/ that runs the
    same command line its own way (``_glibc_default.py``); ``env``: more environment variables."""
    state = state_dir if state_dir is not None else tmp / "state"
    (tmp / "settings.toml").write_text(
        f'[server]\nport = 0\n{server}\n[state]\ndir = "{state}"\n{extra}\n'
    )
    exe = shutil.which("visionflow") or str(Path(sys.executable).parent / "visionflow")
    command = [exe, "serve", "--config", str(tmp / "settings.toml")]
    if probe:
        probe_py = str(Path(__file__).with_name("_probe.py"))
        command = [sys.executable, probe_py, str(tmp / "probe.jsonl"), *command[1:]]
    elif wrapper is not None:
        command = [sys.executable, str(Path(__file__).with_name(wrapper)), *command[1:]]
    log_path = tmp / log_name
    log = log_path.open("wb")
    proc = subprocess.Popen(
        command, stdout=log, stderr=log, cwd=tmp, env={**os.environ, **(env or {})}
    )
    return proc, wait_ready(proc, log_path)


def wait_ready(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    """The URL a starting ``visionflow serve`` logs once ready (it is killed after 120 s)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(rb"ready at (http://[0-9.:]+)", log_path.read_bytes())
        if m:
            return m.group(1).decode()
        if proc.poll() is not None:
            raise SystemExit("visionflow serve exited: " + log_path.read_text())
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("visionflow serve did not become ready in 120 s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def free_port() -> int:
    """A TCP port free on loopback now (for a server that must come back on the same port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mcp_sim(tmp: Path, port: int, *args: str, log_name: str = "sim.log") -> subprocess.Popen[bytes]:
    """``visionflow mcp-sim --port PORT ARGS`` (the claude-flow simulator over TCP), once it
    accepts connections."""
    exe = shutil.which("visionflow") or str(Path(sys.executable).parent / "visionflow")
    log = (tmp / log_name).open("ab")
    proc = subprocess.Popen(
        [exe, "mcp-sim", "--port", str(port), *args], stdout=log, stderr=log, cwd=tmp
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("visionflow mcp-sim exited: " + (tmp / log_name).read_text())
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("visionflow mcp-sim did not listen in 60 s")
