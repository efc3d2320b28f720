"""A small Chrome DevTools Protocol client: one headless Chromium, pages driven over CDP.

Enough for the viewer tests and no more: launch, a page target attached with a flattened
session, navigate, evaluate, screenshot, mouse events, and the page's console errors. It runs
on asyncio (the ``websockets`` client is asyncio-only). Every wait has a deadline; ``close``
kills the browser's whole process group and removes its profile directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: Generous: two busy cores, a cold Chromium start and SwiftShader compiling shaders.
LAUNCH_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0

BASE_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in CI; the sandbox refuses root
    "--remote-debugging-port=0",  # the port it picked is read from DevToolsActivePort
    "--window-size=1280,800",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--no-proxy-server",  # loopback only, whatever the environment says
    "--disable-dev-shm-usage",
    # keep requestAnimationFrame and timers at full rate in a window nobody looks at
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)

#: WebGL2 in headless Chromium 156 (Debian) on a machine without a GPU, checked with
#: ``document.createElement('canvas').getContext('webgl2')`` and its UNMASKED_RENDERER_WEBGL:
#: - no flags: a context, but only through the *deprecated* automatic fallback to SwiftShader,
#:   which logs a warning ("Automatic fallback to software WebGL has been deprecated. Please use
#:   the --enable-unsafe-swiftshader flag ...") and is going away in upstream Chromium;
#: - ``--use-angle=swiftshader`` alone: the same warning (it picks the backend, does not opt in);
#: - ``--enable-unsafe-swiftshader``: a context, no warning (the explicit opt-in);
#: - ``--disable-software-rasterizer`` or ``--use-gl=disabled``: null (no software path left).
#: With both flags the renderer is "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device
#: (Subzero) ...)), SwiftShader driver)" here and wherever the tests run, GPU or not.
WEBGL_FLAGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")


class CdpError(RuntimeError):
    """A CDP call failed, a JS expression threw, or the browser went away."""


class Browser:
    """A headless Chromium process and the CDP connection to its browser endpoint."""

    def __init__(self, proc: subprocess.Popen[bytes], profile: Path, log: Path) -> None:
        self.proc, self.profile, self.log = proc, profile, log
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[Callable[[str, dict[str, Any]], None]]] = {}
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def spawn(cls, executable: str, flags: tuple[str, ...]) -> Browser:
        """Start Chromium (not yet connected) with a fresh profile directory."""
        profile = Path(tempfile.mkdtemp(prefix="visionflow-chromium-"))
        log = profile / "chromium.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [executable, *BASE_FLAGS, f"--user-data-dir={profile}", *flags, "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: close() kills every helper
            )
        return cls(proc, profile, log)

    @classmethod
    async def launch(
        cls,
        executable: str,
        *,
        flags: tuple[str, ...] = WEBGL_FLAGS,
        timeout: float = LAUNCH_TIMEOUT,
    ) -> Browser:
        browser = cls.spawn(executable, flags)
        try:
            await browser._connect(timeout)
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _connect(self, timeout: float) -> None:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while len(lines) < 2:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise CdpError(f"no DevToolsActivePort within {timeout}s: {self.log_tail()}")
            await asyncio.sleep(0.1)
            with contextlib.suppress(FileNotFoundError):
                lines = active.read_text().split()
        port, path = int(lines[0]), lines[1]
        self._ws = await connect(
            f"ws://127.0.0.1:{port}{path}",
            max_size=None,  # screenshots are megabytes of base64
            ping_interval=None,
            open_timeout=max(1.0, deadline - time.monotonic()),
            compression=None,
            proxy=None,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return "(no log)"

    async def close(self) -> None:
        """Close the connection, kill the process group, remove the profile. Never raises."""
        if self._closed:
            return
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        self._fail_pending(CdpError("browser closed"))
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        # helpers of the group that outlived the browser itself; give them a moment to go
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            await asyncio.sleep(0.1)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol ----------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                for listener in list(self._listeners.get(msg.get("method", ""), ())):
                    listener(msg.get("sessionId", ""), msg.get("params", {}))
        except ConnectionClosed:
            pass
        finally:
            self._fail_pending(CdpError(f"the CDP connection closed: {self.log_tail(500)}"))

    def _fail_pending(self, exc: Exception) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = CALL_TIMEOUT,
    ) -> dict[str, Any]:
        if self._ws is None or self._closed:
            raise CdpError(f"{method}: the browser is closed")
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut
        try:
            await self._ws.send(json.dumps(message))
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CdpError(f"{method}: no answer within {timeout}s") from None
        except ConnectionClosed as exc:
            raise CdpError(f"{method}: the CDP connection closed") from exc
        finally:
            self._pending.pop(call_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')} {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def on(self, method: str, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``listener(session_id, params)`` for every event ``method``."""
        self._listeners.setdefault(method, []).append(listener)

    def off(self, method: str, listener: Callable[[str, dict[str, Any]], None]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[method].remove(listener)

    async def new_page(self, *, width: int = 1280, height: int = 800) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, target["targetId"], attached["sessionId"])
        await page._enable(width, height)
        return page


class Page:
    """One page target, driven through its flattened session."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self.browser, self.target_id, self.session_id = browser, target_id, session_id
        #: Console errors, uncaught exceptions and error log entries, as text, oldest first.
        self.console_errors: list[str] = []
        browser.on("Runtime.consoleAPICalled", self._console)
        browser.on("Runtime.exceptionThrown", self._exception)
        browser.on("Log.entryAdded", self._log_entry)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = CALL_TIMEOUT
    ) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    async def _enable(self, width: int, height: int) -> None:
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        await self.send("Page.bringToFront")

    # -- events ------------------------------------------------------------------------------

    def _console(self, session_id: str, params: dict[str, Any]) -> None:
        if session_id == self.session_id and params.get("type") == "error":
            args = params.get("args", [])
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            self.console_errors.append(f"console.error: {text}")

    def _exception(self, session_id: str, params: dict[str, Any]) -> None:
        if session_id == self.session_id:
            self.console_errors.append(f"uncaught: {_exception_text(params['exceptionDetails'])}")

    def _log_entry(self, session_id: str, params: dict[str, Any]) -> None:
        entry = params.get("entry", {})
        if session_id == self.session_id and entry.get("level") == "error":
            where = f" ({entry['url']})" if entry.get("url") else ""
            self.console_errors.append(f"log {entry.get('source')}: {entry.get('text')}{where}")

    async def wait_event(
        self, method: str, action: Any, *, timeout: float = CALL_TIMEOUT
    ) -> dict[str, Any]:
        """Run ``action`` (an awaitable) and wait for this session's next event ``method``."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def listener(session_id: str, params: dict[str, Any]) -> None:
            if session_id == self.session_id and not fut.done():
                fut.set_result(params)

        self.browser.on(method, listener)
        try:
            await action
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CdpError(f"no {method} within {timeout}s") from None
        finally:
            self.browser.off(method, listener)

    # -- helpers -----------------------------------------------------------------------------

    async def navigate(self, url: str, *, timeout: float = 60.0) -> None:
        """Load ``url`` and wait for its load event."""
        result: dict[str, Any] = {}

        async def go() -> None:
            result.update(await self.send("Page.navigate", {"url": url}, timeout=timeout))
            if result.get("errorText"):
                raise CdpError(f"navigate {url}: {result['errorText']}")

        await self.wait_event("Page.loadEventFired", go(), timeout=timeout)

    async def evaluate(
        self, expression: str, *, await_promise: bool = True, timeout: float = CALL_TIMEOUT
    ) -> Any:
        """The value of a JS expression (JSON-like, by value); raises on a JS exception."""
        reply = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": await_promise,
                "returnByValue": True,
                "userGesture": True,
            },
            timeout=timeout,
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression!r} threw: {_exception_text(reply['exceptionDetails'])}")
        return reply.get("result", {}).get("value")

    async def wait_for(
        self, expression: str, *, timeout: float = 30.0, interval: float = 0.1
    ) -> Any:
        """Poll a JS expression until it is truthy; its value. A JS exception counts as falsy
        until the deadline (the page may still be loading); then the last one is reported."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = await self.evaluate(
                    expression, timeout=max(1.0, deadline - time.monotonic())
                )
                if last:
                    return last
            except CdpError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression!r} not truthy within {timeout}s: last {last!r}")
            await asyncio.sleep(interval)

    async def screenshot(self, *, timeout: float = 60.0) -> bytes:
        """The viewport as PNG bytes."""
        shot = await self.send("Page.captureScreenshot", {"format": "png"}, timeout=timeout)
        return base64.b64decode(shot["data"])

    async def _mouse(self, kind: str, x: float, y: float, button: str, buttons: int) -> None:
        await self.send(
            "Input.dispatchMouseEvent",
            {
                "type": kind,
                "x": x,
                "y": y,
                "button": button,
                "buttons": buttons,
                "clickCount": 1 if kind != "mouseMoved" else 0,
            },
        )

    async def mouse_move(self, x: float, y: float, *, pressed: bool = False) -> None:
        await self._mouse("mouseMoved", x, y, "left" if pressed else "none", 1 if pressed else 0)

    async def mouse_down(self, x: float, y: float) -> None:
        await self._mouse("mousePressed", x, y, "left", 1)

    async def mouse_up(self, x: float, y: float) -> None:
        await self._mouse("mouseReleased", x, y, "left", 0)

    async def click(self, x: float, y: float) -> None:
        await self.mouse_move(x, y)
        await self.mouse_down(x, y)
        await self.mouse_up(x, y)

    async def close(self) -> None:
        for method, listener in (
            ("Runtime.consoleAPICalled", self._console),
            ("Runtime.exceptionThrown", self._exception),
            ("Log.entryAdded", self._log_entry),
        ):
            self.browser.off(method, listener)
        with contextlib.suppress(CdpError):
            await self.browser.send("Target.closeTarget", {"targetId": self.target_id}, timeout=10)


def _exception_text(details: dict[str, Any]) -> str:
    exc = details.get("exception", {})
    text = exc.get("description") or exc.get("value") or details.get("text", "")
    where = details.get("url", "")
    if where:
        text = f"{text} at {where}:{details.get('lineNumber', 0) + 1}"
    return str(text)


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """``(width, height, channels, pixels)`` of an 8-bit, non-interlaced greyscale, RGB or RGBA
    PNG (what Chromium's screenshots are), rows top to bottom, no padding. Stdlib only."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(
            f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}"
        )
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    out = bytearray(stride * height)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad PNG filter {kind} on row {y}")
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return width, height, channels, bytes(out)
