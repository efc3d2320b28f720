"""Shared by the benchmarks: a real ``visionflow serve`` in its own process, on port 0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def serve(tmp: Path, server: str = "") -> tuple[subprocess.Popen[bytes], str]:
    """Start it with its state under ``tmp``; its process and URL once it says it is ready.
    ``server``: more lines for its ``[server]`` table (``"header_timeout = 2.0"``)."""
    (tmp / "settings.toml").write_text(
        f'[server]\nport = 0\n{server}\n[state]\ndir = "{tmp / "state"}"\n'
    )
    exe = shutil.which("visionflow") or str(Path(sys.executable).parent / "visionflow")
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [exe, "serve", "--config", str(tmp / "settings.toml")], stdout=log, stderr=log, cwd=tmp
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(rb"ready at (http://[0-9.:]+)", (tmp / "serve.log").read_bytes())
        if m:
            return proc, m.group(1).decode()
        if proc.poll() is not None:
            raise SystemExit("visionflow serve exited: " + (tmp / "serve.log").read_text())
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("visionflow serve did not become ready in 120 s")
