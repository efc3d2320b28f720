"""`visionflow serve` and `check-config` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from support.clikit import child_env, cli

ROOT = Path(__file__).resolve().parents[2]
LISTEN = re.compile(rb"listening on http://([\d.]+):(\d+)")


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, started: float) -> None:
        self.proc, self.url, self.started = proc, url, started


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child the test left running, then close its stderr pipe."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    started = time.monotonic()
    proc = subprocess.Popen(
        cli("serve", "--port", "0"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        env=child_env(VISIONFLOW__SERVER__SHUTDOWN_GRACE="3"),
    )
    assert proc.stderr is not None
    url = None
    deadline = time.monotonic() + 60  # generous: imports alone take seconds on a busy machine
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = LISTEN.search(line)
        if m:
            url = f"http://{m[1].decode()}:{m[2].decode()}"
    assert url, "service never said where it listens"
    try:
        yield Served(proc, url, started)
    finally:
        _reap(proc)


def wait_ready(url: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"/readyz not 200 within {timeout}s")


def _logged_at(tail: bytes, text: bytes) -> datetime:
    """When the service logged the first line containing ``text`` (its human log format)."""
    for line in tail.splitlines():
        if text in line:
            return datetime.strptime(line[:23].decode(), "%Y-%m-%d %H:%M:%S.%f")
    raise AssertionError(f"no log line with {text!r} in: {tail.decode()[-2000:]}")


def sigterm_within_grace(served: Served) -> bytes:
    """SIGTERM; exit 0, having stopped within the fixture's 3 s grace; returns the rest of stderr.

    The grace is judged by the service's own log (signal received -> stopped), not by this
    process's clock, so a busy machine slowing the interpreter's exit cannot fail it.
    """
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0
    assert served.proc.stderr is not None
    tail = served.proc.stderr.read()
    took = _logged_at(tail, b"stopped") - _logged_at(tail, b"received SIGTERM")
    assert took.total_seconds() < 3 + 1, tail.decode()[-2000:]
    return tail


def test_serve_ready_health_metrics_and_clean_sigterm(served: Served) -> None:
    # Readiness never waits for numba's compile; the bound only catches that (seconds on an
    # idle machine, ~11 s cold compile), generous for a busy one.
    ready_at = wait_ready(served.url, 60)
    assert ready_at - served.started < 60
    health = httpx.get(f"{served.url}/api/health", timeout=2)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["subsystems"]["http"]["state"] == "running"
    metrics = httpx.get(f"{served.url}/metrics", timeout=2).text
    assert "visionflow_physics_step_seconds" in metrics
    tail = sigterm_within_grace(served)
    assert b"Traceback" not in tail
    assert b"received SIGTERM" in tail


def test_sigterm_with_a_stalled_request_in_flight_ends_without_tracebacks(
    served: Served,
) -> None:
    # A client that sent a body shorter than its Content-Length holds a request open across
    # the drain. hypercorn's drain and the service's deadline used to end at the same moment,
    # and the cancellation printed asyncio tracebacks.
    wait_ready(served.url, 60)
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as stalled:
        stalled.sendall(
            f"PATCH /api/settings HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.3)
        tail = sigterm_within_grace(served)
    assert b"Traceback" not in tail and b"ERROR" not in tail, tail.decode()[-2000:]


def test_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        r = subprocess.run(
            cli("serve", "--port", str(port)),
            cwd=tmp_path,
            capture_output=True,
            env=child_env(),
            timeout=30,
        )
    assert r.returncode == 1
    assert b"Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}: address already in use".encode() in r.stderr


def test_bad_settings_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[physics.knowledge]\ndamping = 1.7\nthetaa = 1\n[server]\nport = 'x'\n")
    r = subprocess.run(
        cli("serve", "--config", str(bad)),
        cwd=tmp_path,
        capture_output=True,
        env=child_env(),
        timeout=30,
    )
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "Traceback" not in err
    assert "3 invalid settings" in err
    assert "physics.knowledge.damping = 1.7" in err
    assert "did you mean 'theta'" in err
    assert "server.port = 'x'" in err


def test_bad_env_override_exit_2(tmp_path: Path) -> None:
    r = subprocess.run(
        cli("serve"),
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        env=child_env(VISIONFLOW__SERVER__PORT="99999"),
    )
    assert r.returncode == 2
    assert b"server.port = 99999" in r.stderr
    # the value came from the variable, not from a settings.toml (there is none here)
    assert b"VISIONFLOW__SERVER__PORT" in r.stderr and b"settings.toml" not in r.stderr
    assert b"Traceback" not in r.stderr


def test_check_config(tmp_path: Path) -> None:
    r = subprocess.run(
        cli("check-config", str(ROOT / "settings.toml")),
        capture_output=True,
        env=child_env(),
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert b"[physics.knowledge]" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    r = subprocess.run(
        cli("check-config", str(bad)), capture_output=True, env=child_env(), timeout=30
    )
    assert r.returncode == 2
    assert b"did you mean 'port'" in r.stderr


def test_json_logs_are_tagged_with_subsystem(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        cli("serve", "--port", "0"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        env=child_env(VISIONFLOW__LOG__FORMAT="json"),
    )
    assert proc.stderr is not None
    try:
        records = []
        for _ in range(20):
            line = proc.stderr.readline()
            if not line:
                break
            records.append(json.loads(line))
            if "ready at" in records[-1]["message"]:
                break
        subsystems = {r["subsystem"] for r in records}
        assert {"main", "http"} <= subsystems
        assert all({"ts", "level", "message"} <= r.keys() for r in records)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        _reap(proc)


def test_mcp_sim_serves_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        cli("mcp-sim", "--port", "0", "--flavor", "v3"), stderr=subprocess.PIPE, env=child_env()
    )
    assert proc.stderr is not None
    try:
        port = None
        for _ in range(20):
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", proc.stderr.readline())
            if m:
                port = int(m[1])
                break
        assert port, "the simulator never said where it listens"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            hello = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2024-11-05",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
            sock.sendall(json.dumps(hello).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["id"] == 1
        assert reply["result"]["serverInfo"]["version"].startswith("3.")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        _reap(proc)


def test_mcp_sim_busy_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        r = subprocess.run(
            cli("mcp-sim", "--port", str(port)), capture_output=True, env=child_env(), timeout=30
        )
    assert r.returncode == 1
    assert b"Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}".encode() in r.stderr


def test_serve_without_any_writable_kernel_cache_location(tmp_path: Path) -> None:
    # docker run --user / systemd DynamicUser=: an installed package (no writable __pycache__
    # beside the sources) and no writable HOME. Paths under a regular file cannot be created,
    # even by root; the package is copied so that its physics/__pycache__ can be a file too.
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "visionflow", site / "visionflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    (site / "visionflow" / "physics" / "__pycache__").write_text("")
    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "run").mkdir()
    env = child_env(
        HOME=str(blocker / "home"),
        XDG_CACHE_HOME=str(blocker / "cache"),
        NUMBA_CACHE_DIR=str(blocker / "numba"),
        TMPDIR=str(tmp_path / "tmp"),
        PYTHONPATH=str(site),
        PYTHONDONTWRITEBYTECODE="1",
        VISIONFLOW__SERVER__SHUTDOWN_GRACE="3",
    )
    proc = subprocess.Popen(
        cli("serve", "--port", "0"), cwd=tmp_path / "run", stderr=subprocess.PIPE, env=env
    )
    assert proc.stderr is not None
    try:
        head = b""
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            head += line
            m = LISTEN.search(line)
            if m:
                url = f"http://{m[1].decode()}:{m[2].decode()}"
        assert url, head.decode()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        # the cache is chosen when the physics starts, after the saved state and the notes
        # are read: stop only once it has said where the kernels go
        while b"numba kernel cache" not in head and time.monotonic() < deadline + 60:
            line = proc.stderr.readline()
            if not line:
                break
            head += line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        err = head + proc.stderr.read()
    finally:
        _reap(proc)
    text = err.decode()
    assert "Traceback" not in text, text
    cache = tmp_path / "tmp" / f"visionflow-numba-{os.getuid()}"
    warnings = [line for line in text.splitlines() if "numba kernel cache" in line]
    assert len(warnings) == 1 and str(cache) in warnings[0], text
    assert str(site / "visionflow" / "physics" / "__pycache__") in warnings[0]  # the copy ran
    assert re.search(r"physics backend: (cuda|cpu) \(.+\)", text), text


def test_second_sigint_during_the_drain_is_one_line_no_traceback(served: Served) -> None:
    # A stalled request keeps hypercorn draining; a second Ctrl-C then cancels the drain. The
    # app's lifespan, cancelled with it, used to end in a LifespanFailureError traceback.
    wait_ready(served.url, 10)
    assert served.proc.stderr is not None
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as stalled:
        stalled.sendall(
            b"PATCH /api/settings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.3)
        served.proc.send_signal(signal.SIGINT)
        seen = b""
        while b"shutting down" not in seen:
            line = served.proc.stderr.readline()
            assert line, seen.decode()
            seen += line
        served.proc.send_signal(signal.SIGINT)
        assert served.proc.wait(timeout=30) == 0
        tail = seen + served.proc.stderr.read()
    assert b"Traceback" not in tail and b"ERROR" not in tail, tail.decode()[-2000:]
    assert tail.count(b"again: stopping now") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_stop_is_done_changes_no_exit_code(
    served: Served, sig: signal.Signals
) -> None:
    # the stop of an idle service ends in milliseconds; the process exits a moment later, with
    # the signal receiver gone: a second signal then was Python's default (143 or 130)
    wait_ready(served.url, 10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # no compile left in a thread: a plain interpreter exit
        physics = httpx.get(f"{served.url}/api/health", timeout=5).json()["subsystems"]["physics"]
        if physics["detail"].get("compiling") is False:
            break
        time.sleep(0.1)
    assert served.proc.stderr is not None
    served.proc.send_signal(sig)
    seen = b""
    while True:  # the program's own last line (subsystems say "stopped" before it)
        line = served.proc.stderr.readline()
        assert line, seen.decode()
        seen += line
        if b"| main " in line and line.rstrip().endswith(b"| stopped"):
            break
    # again and again until it has exited: some land after the receiver closed, before the exit
    deadline = time.monotonic() + 30
    while served.proc.poll() is None and time.monotonic() < deadline:
        served.proc.send_signal(sig)
        time.sleep(0.005)
    assert served.proc.wait(timeout=30) == 0, (seen + served.proc.stderr.read()).decode()


def test_check_config_masks_the_token() -> None:
    r = subprocess.run(
        cli("check-config"),
        capture_output=True,
        env=child_env(VISIONFLOW__SERVER__TOKEN="s3cret-t0ken"),
        timeout=30,
        cwd=ROOT / "tests",  # no settings.toml there: defaults plus the environment
    )
    assert r.returncode == 0, r.stderr
    assert b"s3cret-t0ken" not in r.stdout
    assert b'token = "***"' in r.stdout


def test_check_config_into_a_closed_pipe_exits_quietly() -> None:
    # `visionflow check-config | head -1`: the reader is gone before the output is written.
    proc = subprocess.Popen(
        cli("check-config"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=30) == 141  # 128 + SIGPIPE, as `cat` reports it
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_mcp_sim_stops_on_sigterm_with_exit_0() -> None:
    proc = subprocess.Popen(cli("mcp-sim", "--port", "0"), stderr=subprocess.PIPE, env=child_env())
    assert proc.stderr is not None
    try:
        for _ in range(20):
            if b"listening on" in proc.stderr.readline():
                break
        else:
            raise AssertionError("the simulator never said it listens")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        tail = proc.stderr.read()
        assert b"received SIGTERM: stopping" in tail and b"stopped" in tail, tail.decode()
        assert b"Traceback" not in tail
    finally:
        _reap(proc)


def test_the_process_is_gone_soon_after_it_logs_stopped(served: Served) -> None:
    # A guard: after "stopped" only interpreter teardown remains (~0.2 s here). A worker
    # thread left running (a non-daemon one is joined at exit) would show as a gap. Measured
    # by waiting on the child: an orphan's exit shows late, when PID 1 gets round to reaping it.
    wait_ready(served.url, 10)
    assert served.proc.stderr is not None
    served.proc.send_signal(signal.SIGTERM)
    for line in iter(served.proc.stderr.readline, b""):
        if re.search(rb"\| main +\| stopped$", line.rstrip()):
            break
    else:
        raise AssertionError("the service never logged that it stopped")
    logged = time.monotonic()
    assert served.proc.wait(timeout=30) == 0
    assert time.monotonic() - logged < 5.0
