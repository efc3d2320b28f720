"""``GET /api/docs``: the HTTP API's reference page, rendered in the browser from /openapi.json.

A page of our own, in the package (``static/apidocs.html``, ``static/js/apidocs.js`` and
``static/css/apidocs.css``): no CDN and no third-party script, so it works offline and under the
same Content-Security-Policy as the viewer (scripts, styles and fetches from this origin only).
The module builds the page with DOM calls and ``textContent``: nothing from the document is
parsed as HTML.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

PAGE = Path(str(files("visionflow.web") / "static" / "apidocs.html"))

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def api_docs(request: Request) -> Response:
    """The API reference: every operation of /openapi.json with its parameters and schemas."""
    return FileResponse(PAGE, media_type="text/html", headers=HEADERS)
