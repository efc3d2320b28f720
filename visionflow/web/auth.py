"""Access token checks shared by REST routes and the WebSocket endpoint (Origin: security.py)."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, QueryParams


def presented_token(headers: Headers, query: QueryParams | None = None) -> str | None:
    """The token a client presented: ``Authorization: Bearer`` first, then ``?token=``."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query is not None:
        return query.get("token")
    return None


def token_ok(expected: str, presented: str | None) -> bool:
    """No token configured means open; otherwise a constant-time comparison."""
    if not expected:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
