"""MCP protocol revisions: which we speak, and what to make of the server's answer.

The client offers :data:`LATEST` in ``initialize``; the server answers the same or another it
supports. We accept any of :data:`SUPPORTED` (what differs between them that we use: only the
HTTP transport's ``MCP-Protocol-Version`` header, sent from 2025-03-26 on, harmless before);
anything else is :class:`UnsupportedProtocolVersionError`: the spec says to disconnect, and the
endpoint shows which version the server wanted.
"""

from __future__ import annotations

from visionflow.errors import RemoteProtocolError

__all__ = ["LATEST", "SUPPORTED", "UnsupportedProtocolVersionError", "negotiated"]

#: Newest first. 2025-06-18: no JSON-RPC batches (we send none, and still read one), the HTTP
#: version header. 2025-03-26: Streamable HTTP. 2024-11-05: what claude-flow 2.x speaks.
SUPPORTED: tuple[str, ...] = ("2025-06-18", "2025-03-26", "2024-11-05")
LATEST = SUPPORTED[0]


class UnsupportedProtocolVersionError(RemoteProtocolError):
    """The server answered ``initialize`` with a revision we do not speak."""

    def __init__(self, endpoint: str, version: object) -> None:
        # the refused one as the status shows it: a number too (it read null), at most 80
        # characters; None only when the server gave none
        if version is None:
            self.version: str | None = None
            said = "no MCP protocol version (initialize's result has no protocolVersion)"
        else:
            self.version = (version if isinstance(version, str) else repr(version))[:80]
            said = f"MCP protocol version {self.version!r}"
        super().__init__(
            f"{endpoint}: server speaks {said}, which this client does not understand "
            f"(it speaks {', '.join(SUPPORTED)})"
        )


def negotiated(endpoint: str, answer: object) -> str:
    """The version to use for the server's ``protocolVersion`` answer, or raise."""
    if isinstance(answer, str) and answer in SUPPORTED:
        return answer
    raise UnsupportedProtocolVersionError(endpoint, answer)
