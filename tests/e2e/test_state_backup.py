"""`visionflow state backup|restore` as an operator runs them, against real `visionflow serve`
processes on ephemeral loopback ports: a backup of a running service (through its REST route),
of a stopped one (its files), a restore refused while the service runs, a restore into a fresh
state.dir that the next start serves with the same ids, positions and overrides, and restores
of damaged, foreign and newer files refused in one line."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from support.clikit import child_env, cli

from visionflow.state import archive

LISTEN = re.compile(r"listening on (http://[\d.]+:\d+)")
TOKEN = "backup-test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATE = ".visionflow-state"
OVERRIDE = {"physics": {"knowledge": {"spring_k": 2.0}}}


def env(**extra: str) -> dict[str, str]:
    values = {
        "VISIONFLOW__SERVER__TOKEN": TOKEN,
        "VISIONFLOW__KNOWLEDGE__PATH": "none",
        "VISIONFLOW__SERVER__SHUTDOWN_GRACE": "3",
    }
    return child_env(**{**values, **extra})


@contextmanager
def serving(cwd: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`visionflow serve --port 0` in ``cwd``; yields (process, URL, its log file)."""
    log = cwd / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cli("serve", "--port", "0"), cwd=cwd, stderr=out, stdout=out, env=env()
        )
    try:
        url = None
        deadline = time.monotonic() + 60  # generous: a busy machine
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            m = LISTEN.search(log.read_text(errors="replace"))
            url = m[1] if m else None
            time.sleep(0.05)
        assert url, log.read_text(errors="replace")[-2000:]
        wait_ready(url)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text(errors="replace")[-2000:]
    assert "Traceback" not in log.read_text(errors="replace")


def wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"/readyz not 200 within {timeout}s")


def state(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli("state", *args), cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=120
    )


def one_line_failure(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("visionflow: ") and r.stderr.count("\n") == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def page(url: str) -> dict[str, dict[str, Any]]:
    nodes = httpx.get(f"{url}/api/graph/data", headers=AUTH, timeout=10).json()["nodes"]
    return {n["key"]: n for n in nodes}


def layout_of(backup: Path) -> dict[str, list[float]]:
    members = archive.unpack(backup.read_bytes()).members
    entries: list[dict[str, Any]] = json.loads(members["layout.json"])["nodes"]
    return {e["id"]: e["p"] for e in entries}


GRAPH = {
    "nodes": [{"id": f"n{i}", "label": f"node {i}", "metadata": {"i": i}} for i in range(40)],
    "edges": [{"source": f"n{i}", "target": f"n{(i * 7 + 1) % 40}"} for i in range(40)],
}


def test_backup_running_and_stopped_then_restore_into_a_fresh_state_dir(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    live_backup, cold_backup = tmp_path / "live.tar.gz", tmp_path / "cold.tar.gz"
    with serving(first) as (proc, url, log):
        resp = httpx.post(f"{url}/api/graph/import", json=GRAPH, headers=AUTH, timeout=30)
        assert resp.status_code == 200, resp.text
        resp = httpx.patch(f"{url}/api/settings", json=OVERRIDE, headers=AUTH, timeout=10)
        assert resp.status_code == 200, resp.text
        deadline = time.monotonic() + 60
        while not all(n["position"] for n in page(url).values()):
            assert time.monotonic() < deadline, "no positions"
            time.sleep(0.1)

        # a running service: asked through its route (the URL is in state.dir's lock file)
        r = state(first, "backup", str(live_backup))
        assert r.returncode == 0, r.stderr
        assert f"from the running service at {url}" in r.stdout
        assert "40 knowledge node(s), 40 edge(s)" in r.stdout
        assert "1 settings override(s)" in r.stdout

        # without the token the service refuses, and the command says what to do
        one_line_failure(
            state(first, "backup", str(tmp_path / "x.tar.gz"), VISIONFLOW__SERVER__TOKEN=""),
            "needs its token",
        )
        assert not (tmp_path / "x.tar.gz").exists()
        # a restore under the running service is refused, naming it
        one_line_failure(
            state(first, "restore", str(live_backup)), f"pid {proc.pid}", url, "stop it first"
        )
        before = page(url)
        stop(proc, log)

    # a stopped service: its files, read under the directory's lock
    r = state(first, "backup", str(cold_backup))
    assert r.returncode == 0, r.stderr
    assert "no service running" in r.stdout and "40 knowledge node(s)" in r.stdout

    # into a fresh state.dir: the next start serves the same graph, ids, places and overrides
    r = state(second, "restore", str(live_backup))
    assert r.returncode == 0, r.stderr
    assert "restored 40 knowledge node(s), 40 edge(s)" in r.stdout
    assert "replaced" not in r.stdout  # there was nothing to replace
    saved = layout_of(live_backup)
    with serving(second) as (proc, url, log):
        after = page(url)
        assert {k: n["id"] for k, n in after.items()} == {k: n["id"] for k, n in before.items()}
        assert {k: n["label"] for k, n in after.items()} == {
            k: n["label"] for k, n in before.items()
        }
        for key, node in after.items():
            expected = saved[key]
            assert node["position"] is not None
            got = node["position"]
            assert len(got) == len(expected) == 3
            close = [abs(a - b) < 1e-3 * (1 + abs(b)) for a, b in zip(got, expected, strict=True)]
            assert all(close), (key, got, expected)
        overrides = httpx.get(f"{url}/api/settings", headers=AUTH, timeout=10).json()["overrides"]
        assert overrides == OVERRIDE
        stop(proc, log)

    # over existing files: they are kept aside, not lost
    r = state(second, "restore", str(cold_backup))
    assert r.returncode == 0, r.stderr
    kept = list((second / STATE).glob("replaced-*"))
    assert len(kept) == 1 and (kept[0] / "graph.json").is_file(), r.stdout
    assert f"{STATE}/{kept[0].name}" in r.stdout


def _tar_gz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_restore_refuses_damaged_foreign_and_newer_files_in_one_line(tmp_path: Path) -> None:
    good = archive.pack(
        [archive.Member("graph.json", b'{"version": 2, "nodes": [{"id": "a"}], "edges": []}', 2)],
        visionflow_version="0.1.0",
        created="2026-12-05T00:00:00Z",
        source="files",
        summary=archive.Summary(knowledge_nodes=1),
    )
    newer = _tar_gz(
        {
            "MANIFEST.json": json.dumps(
                {"format": archive.BACKUP_FORMAT, "format_version": 9, "visionflow_version": "9.0"}
            ).encode()
        }
    )
    cases = {
        "notes.txt": (b"just some text\n", "not a VisionFlow state backup"),
        "other.tar.gz": (_tar_gz({"README": b"hello"}), "not a VisionFlow state backup"),
        "truncated.tar.gz": (good[: len(good) // 2], "truncated"),
        "newer.tar.gz": (newer, "backup format 9 (made by VisionFlow 9.0) is newer"),
        "empty": (b"", "not a VisionFlow state backup"),
    }
    (tmp_path / STATE).mkdir()
    (tmp_path / STATE / "graph.json").write_bytes(b"precious")
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        one_line_failure(state(tmp_path, "restore", name), f"cannot restore {name}", message)
    one_line_failure(state(tmp_path, "restore", "absent.tar.gz"), "no such file")
    # nothing was touched
    assert (tmp_path / STATE / "graph.json").read_bytes() == b"precious"
    assert not list((tmp_path / STATE).glob("replaced-*"))
    # and a good one goes in
    (tmp_path / "good.tar.gz").write_bytes(good)
    r = state(tmp_path, "restore", "good.tar.gz")
    assert r.returncode == 0, r.stderr


def test_a_second_service_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path) as (proc, url, log):
        second = subprocess.run(
            cli("serve", "--port", "0"),
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1, second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        assert f"in use by a running VisionFlow service (pid {proc.pid} at {url})" in (
            second.stderr
        )
        stop(proc, log)


def test_a_backup_url_that_is_not_one_fails_in_one_line(tmp_path: Path) -> None:
    cases = {
        "notaurl": "expected the service's http:// or https:// address",
        "ftp://127.0.0.1:4000": "expected the service's http:// or https:// address",
        "http://": "expected the service's http:// or https:// address",
        "http://[::1": "is not a URL: Invalid IPv6 URL",
        "http://127.0.0.1:port": "is not a URL: Port could not be cast",
    }
    for url, message in cases.items():
        one_line_failure(state(tmp_path, "backup", "out.tar.gz", "--url", url), message)
    assert not (tmp_path / "out.tar.gz").exists()


def test_a_backup_never_replaces_what_is_not_a_file(tmp_path: Path) -> None:
    # the new file is renamed over FILE: as root, `state backup /dev/full` turned the device
    # into a plain file, and a symlink or a pipe would have gone the same way
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for name, kind in {"folder": "a folder", "pipe": "a pipe", "/dev/null": "a device"}.items():
        one_line_failure(state(tmp_path, "backup", name), f"{name} is {kind}")
    assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    # a symlink: the file it names gets the backup, and the link stays a link
    (tmp_path / STATE).mkdir()
    (tmp_path / STATE / "settings-overrides.toml").write_text(
        "[physics.knowledge]\nspring_k = 2.0\n"
    )
    (tmp_path / "real.tar.gz").write_bytes(b"old")
    (tmp_path / "link.tar.gz").symlink_to(tmp_path / "real.tar.gz")
    r = state(tmp_path, "backup", "link.tar.gz")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.tar.gz").is_symlink()
    assert archive.unpack((tmp_path / "real.tar.gz").read_bytes()).members
