"""``hyperws.BoundedDeflate``: wsproto's permessage-deflate, inflating no further than the limit."""

from __future__ import annotations

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from visionflow.web.hyperws import BoundedDeflate

LIMIT = 1 << 16


class CountingDeflate(BoundedDeflate):
    inflated = 0

    def _count(self, out: bytes) -> bytes | CloseReason:
        self.inflated += len(out)
        return super()._count(out)


def pair(server_ext: BoundedDeflate | None = None) -> tuple[Connection, Connection]:
    client_ext, server_ext = PerMessageDeflate(), server_ext or BoundedDeflate(LIMIT)
    assert server_ext.accept("permessage-deflate") is not None
    client_ext.finalize("permessage-deflate")
    return Connection(ConnectionType.CLIENT, [client_ext]), Connection(
        ConnectionType.SERVER, [server_ext]
    )


def deliver(client: Connection, server: Connection, *events: Event) -> list[Event]:
    for event in events:
        server.receive_data(client.send(event))
    return list(server.events())


def payload(events: list[Event]) -> bytes:
    return b"".join(bytes(e.data) for e in events if isinstance(e, BytesMessage))


def test_messages_up_to_the_limit_inflate_whole_also_in_fragments_and_in_a_row() -> None:
    client, server = pair()
    exact = bytes(range(256)) * (LIMIT // 256)
    got = deliver(client, server, BytesMessage(data=exact))
    assert payload(got) == exact and got[-1].message_finished  # type: ignore[attr-defined]
    parts = [b"a" * 30_000, b"b" * 30_000, b"c" * (LIMIT - 60_000)]
    fragments = [
        BytesMessage(data=part, message_finished=i == len(parts) - 1)
        for i, part in enumerate(parts)
    ]
    assert payload(deliver(client, server, *fragments)) == b"".join(parts)
    for _ in range(3):  # the count starts again with each message
        assert payload(deliver(client, server, BytesMessage(data=exact))) == exact
    got = deliver(client, server, TextMessage(data="é" * 1000))
    assert "".join(e.data for e in got if isinstance(e, TextMessage)) == "é" * 1000


def test_one_byte_over_the_limit_is_too_big_however_it_is_split() -> None:
    client, server = pair()
    got = deliver(client, server, BytesMessage(data=bytes(LIMIT + 1)))
    assert isinstance(got[-1], CloseConnection) and got[-1].code == 1009
    assert payload(got) == b""  # nothing of it was handed on
    client, server = pair()
    halves = [bytes(LIMIT // 2), bytes(LIMIT // 2 + 1)]
    got = deliver(
        client,
        server,
        BytesMessage(data=halves[0], message_finished=False),
        BytesMessage(data=halves[1]),
    )
    assert isinstance(got[-1], CloseConnection) and got[-1].code == 1009
    assert len(payload(got)) <= LIMIT


def test_a_bomb_inflates_at_most_one_byte_past_the_limit() -> None:
    counting = CountingDeflate(LIMIT)
    client, server = pair(counting)
    wire = client.send(BytesMessage(data=bytes(64 << 20)))  # ~64 KiB on the wire
    assert len(wire) < 128 << 10
    for at in range(0, len(wire), 1 << 14):  # as it arrives from the socket
        server.receive_data(wire[at : at + (1 << 14)])
    events = list(server.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009
    assert counting.inflated == LIMIT + 1
