"""Numbers of the ``/wss`` contract (docs/protocol.md) that need no codec: node id flags and
WebSocket close codes.

Imports nothing, so the graph store (which hands out wire ids) and the web shells can use them
without loading the numba frame packer; ``frames.py`` re-exports the id constants as part of
the codec.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AGENT_FLAG",
    "CLOSE_BAD_PARAM",
    "CLOSE_BAD_TOKEN",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_SHUTDOWN",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN",
    "FLAG_MASK",
    "ID_MASK",
    "KNOWLEDGE_FLAG",
]

# A wire id is a 30-bit raw node id with exactly one kind flag (docs/protocol.md section 1).
AGENT_FLAG: Final = 0x8000_0000
KNOWLEDGE_FLAG: Final = 0x4000_0000
FLAG_MASK: Final = AGENT_FLAG | KNOWLEDGE_FLAG
ID_MASK: Final = 0x3FFF_FFFF

# Close codes (docs/protocol.md, the close code table).
CLOSE_NORMAL: Final = 1000  # idle timeout
CLOSE_SHUTDOWN: Final = 1001
CLOSE_POLICY: Final = 1008  # Host/Origin refused, message rate exceeded
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL: Final = 1011
CLOSE_TRY_AGAIN: Final = 1013  # full, lagging, not reading
CLOSE_BAD_PARAM: Final = 4400
CLOSE_BAD_TOKEN: Final = 4401
