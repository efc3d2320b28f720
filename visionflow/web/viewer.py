"""The viewer page: ``GET /`` and its static files under ``/static/``, from inside the package.

Nothing is fetched from elsewhere at run time: the page is plain ES modules (no build step), and
the Content-Security-Policy says so to the browser as well (scripts, styles and connections to
this origin only), so an injected label cannot load or send anything.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from visionflow.web.openapi import TEXT, ApiRoute

STATIC = Path(str(files("visionflow.web") / "static"))

# 'self' covers ws:/wss: to this host in CSP level 3 browsers (Chromium, Firefox, Safari).
# 'wasm-unsafe-eval' lets the page compile the WebAssembly kernel it builds itself
# (static/js/steady.js), and nothing else: not eval() or new Function (docs/security.md).
CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # a token in the page URL (/?token=) must not be cached by an intermediary
    "Cache-Control": "no-store",
}


async def index(request: Request) -> Response:
    """The viewer page (WebGL2; docs/viewer.md)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


class _Static(StaticFiles):
    """StaticFiles with the page's security headers and a short cache (files change with the
    package version only, but a stale module after an upgrade would break the page)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"cache-control", b"no-cache"))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def routes() -> list[BaseRoute]:
    return [
        ApiRoute("/", index, methods=["GET", "HEAD"], media={"text/html": TEXT}),
        Mount("/static", app=_Static(directory=STATIC), name="static"),
    ]
