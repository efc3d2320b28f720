"""An HTTP/2 connection opened with prior knowledge gets hypercorn's idle timer back.

hypercorn closes a connection that has no request in progress after ``keep_alive_timeout``
(``server.header_timeout``): that is what cuts off a client dripping its headers (slowloris).
The timer stops when the HTTP/1.1 parser has a request line and headers. A cleartext HTTP/2
client with prior knowledge starts with ``PRI * HTTP/2.0``, which the HTTP/1.1 parser takes for
a request, so the timer stops; hypercorn then switches the connection to HTTP/2 and never starts
it again until a stream has come and gone. A client that sent the preface and then nothing, or
dripped a HEADERS frame a byte a second, held its connection for ever (found by
``tests/integration/test_http_limits.py``). After that switch the wrapper here tells the
connection it is idle when no stream is open, which restarts the timer.
"""

from __future__ import annotations

import hypercorn.asyncio.tcp_server
import hypercorn.trio.tcp_server
from hypercorn.events import Event, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol


class IdleAwareProtocolWrapper(ProtocolWrapper):
    """hypercorn's ProtocolWrapper, restarting the idle timer after a switch to HTTP/2."""

    async def handle(self, event: Event) -> None:
        was_h2 = isinstance(self.protocol, H2Protocol)
        await super().handle(event)
        if not was_h2 and isinstance(self.protocol, H2Protocol) and self.protocol.idle:
            await self.send(Updated(idle=True))


def install() -> None:
    """Have hypercorn's TCP servers (both backends) use :class:`IdleAwareProtocolWrapper`.

    Idempotent: the same class is assigned every time, and nothing else changes.
    """
    hypercorn.trio.tcp_server.ProtocolWrapper = IdleAwareProtocolWrapper  # type: ignore[attr-defined]
    hypercorn.asyncio.tcp_server.ProtocolWrapper = IdleAwareProtocolWrapper  # type: ignore[attr-defined]
