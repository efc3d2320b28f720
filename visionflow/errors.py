"""The one exception tree of VisionFlow (docs/architecture.md section 5).

Foreign exceptions (OSError, anyio stream errors, msgspec errors) are translated into these at
the edge of the subsystem that met them, with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


class VisionflowError(Exception):
    """Base of every error this package raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the settings: where, what was given, the rule it broke, and where the
    value came from (``source``: a file, an environment variable, a patch; "" when it is the
    source of the :class:`ConfigError` that carries it)."""

    path: str
    value: object
    rule: str
    source: str = ""

    def __str__(self) -> str:
        return self.describe()

    def describe(self, *, with_source: bool = False) -> str:
        where = f" (from {self.source})" if with_source and self.source else ""
        if self.value is MISSING:
            return f"{self.path}{where}: {self.rule}"
        return f"{self.path} = {self.value!r}{where}: {self.rule}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: Marks a :class:`ConfigIssue` that has no value to show (an unknown key, an unreadable file).
MISSING: object = _Missing()


class ConfigError(VisionflowError):
    """Settings are invalid. Carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue], source: str = "settings") -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.render())

    #: Issues spelled out by ``render`` (and listed by PATCH /api/settings); the rest are
    #: counted. 100k unknown keys made a 55 MB error message.
    MAX_SHOWN = 50

    def render(self) -> str:
        """A head naming ``source``; an issue whose value came from elsewhere says from where."""
        n = len(self.issues)
        head = f"{self.source}: {n} invalid setting{'s' if n != 1 else ''}"
        lines = [
            f"  - {issue.describe(with_source=issue.source not in ('', self.source))}"
            for issue in self.issues[: self.MAX_SHOWN]
        ]
        if n > self.MAX_SHOWN:
            lines.append(f"  (and {n - self.MAX_SHOWN} more)")
        return "\n".join([head, *lines])


class StartupError(VisionflowError):
    """A critical subsystem could not start (port busy, no CUDA device when one was required)."""


class ProtocolError(VisionflowError):
    """A protocol rule was broken, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """We tried to send something illegal: a bug on our side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent garbage: a bad frame, an oversize line, bad JSON."""


class FrameDecodeError(RemoteProtocolError):
    """A binary frame broke docs/protocol.md; ``offset`` is the byte where it went wrong."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"bad frame at byte {offset}: {reason}")


class RpcError(VisionflowError):
    """A JSON-RPC call to an MCP server failed."""


class RpcTransportError(RpcError):
    """Connect, read or write failed: retried with backoff."""


class RpcTimeoutError(RpcError):
    """No answer in time: retried for idempotent calls only."""


class RpcRemoteError(RpcError):
    """The server answered with a JSON-RPC error object: not retried."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"remote error {code}: {message}")


class WorkerBusyError(VisionflowError):
    """A daemon worker (visionflow/threads.py) still has a call waiting behind an abandoned
    one: the caller was cancelled twice while the first call ran on."""


class GraphError(VisionflowError):
    """A graph change was refused (unknown node, duplicate id, bad weight).

    ``path`` names the offending item, e.g. ``edges[3].target``.
    """

    def __init__(self, code: str, message: str, path: str = "") -> None:
        self.code = code
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
