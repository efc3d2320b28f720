"""A server closed while out of descriptors: asyncio's pending accept retries stay quiet.

asyncio answers a failed accept (EMFILE) by retrying a second later, up to 100 times per
wake-up; a server closed inside that second left each retry to fail on the closed socket with
a traceback in the log. Real parts: a child process with a low descriptor limit serves on
loopback, the test fills its descriptors, and the child closes its server while they are held.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

CHILD = r"""
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (48, hard))
from visionflow.web.server import _quiet_cancelled_callbacks

async def main() -> None:
    loop = asyncio.get_running_loop()
    _quiet_cancelled_callbacks(loop)
    async def handle(reader, writer):
        await reader.read()  # hold the connection (and its descriptor) until the peer goes
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "close"
    server.close()
    await asyncio.sleep(2.0)  # past asyncio's 1 s retry delay
    print("done", flush=True)

asyncio.run(main())
"""


def test_closing_a_server_out_of_descriptors_logs_no_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    held: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(120):  # far more than the child's 48 descriptors
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break  # the backlog is full too
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("cannot accept" in e for e in list(err)):
            time.sleep(0.05)
        assert any("cannot accept connections" in e for e in err), "".join(err)
        proc.stdin.write("close\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
    finally:
        for s in held:
            s.close()
        proc.kill()
        proc.wait(30)
        reader.join(10)
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    text = "".join(err)
    assert "Traceback" not in text and "_start_serving" not in text, text[:3000]
    assert text.count("cannot accept connections") == 1, text[:3000]
