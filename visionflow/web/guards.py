"""What every mutating route checks first: the token, and a body within the size limit."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from visionflow import jsonsafe
from visionflow.web.auth import presented_token, token_ok
from visionflow.web.context import ServiceContext
from visionflow.web.errors import error_response


def require_token(ctx: ServiceContext, request: Request) -> Response | None:
    """None when the request may mutate state; else the 401 response to send."""
    if token_ok(ctx.live.current.server.token, presented_token(request.headers)):
        return None
    return error_response(
        401,
        "unauthorized",
        "this route needs 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The raw body, or a 413 response once it passes ``limit`` bytes (declared or read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return error_response(413, "too_large", f"request body over {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            return error_response(413, "too_large", f"request body over {limit} bytes")
    return bytes(chunks)


async def read_json_body(request: Request, limit: int) -> object | Response:
    """The parsed JSON body, or the error response (413 too large, 400 not JSON)."""
    data = await read_body(request, limit)
    if isinstance(data, Response):
        return data
    try:
        body: object = jsonsafe.decode(data)
    except msgspec.DecodeError as exc:
        return error_response(400, "bad_json", f"body is not valid JSON: {exc}")
    return body
