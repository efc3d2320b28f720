"""``/wss`` applies the Host and Origin rules (docs/security.md): refused with close 1008."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest
from support.wsharness import Client, running

pytestmark = pytest.mark.anyio

EVIL = "http://evil.example"


async def welcome(client: Client) -> None:
    assert (await client.json())["type"] == "connection_established"
    await client.aclose()


async def refused(client: Client) -> str:
    close = await client.closed()
    assert close.code == 1008, close
    return close.reason


async def connect_as(url: str, host: str, **kwargs: Any) -> Client:
    """Connect to the real server with a URL naming ``host``: that is the Host header sent."""
    authority = url.removeprefix("ws://").split("/")[0]
    address, port = authority.rsplit(":", 1)
    sock = await anyio.to_thread.run_sync(socket.create_connection, (address, int(port)), 5.0)
    return await Client.connect(url.replace(authority, f"{host}:{port}"), sock=sock, **kwargs)


def own_origin(url: str) -> str:
    return url.replace("ws://", "http://").removesuffix("/wss")


async def test_a_foreign_host_is_closed_1008() -> None:
    with anyio.fail_after(20):
        async with running() as h:
            # DNS rebinding: the page's own name, now pointing here, is the Host and the Origin.
            port = h.url.rsplit(":", 1)[1].split("/")[0]
            rebound = await connect_as(h.url, "evil.example", origin=f"{EVIL}:{port}")
            assert "allowed_hosts" in await refused(rebound)
            assert "allowed_hosts" in await refused(await connect_as(h.url, "evil.example"))
            await welcome(await connect_as(h.url, "localhost"))


async def test_a_foreign_origin_is_closed_1008_by_default() -> None:
    with anyio.fail_after(20):
        async with running() as h:
            assert "allowed_origins" in await refused(await Client.connect(h.url, origin=EVIL))
            await welcome(await Client.connect(h.url, origin=own_origin(h.url)))
            await welcome(await Client.connect(h.url))  # a script sends no Origin


async def test_no_origin_is_admitted_when_allowed_origins_is_set() -> None:
    # It was closed with 1008: scripts send no Origin, and the token is their check.
    overrides = {"server": {"token": "k", "allowed_origins": ["http://ok.example"]}}
    with anyio.fail_after(20):
        async with running(overrides) as h:
            await welcome(await Client.connect(h.url + "?token=k"))
            await welcome(await Client.connect(h.url + "?token=k", origin="http://ok.example"))
            await welcome(await Client.connect(h.url + "?token=k", origin=own_origin(h.url)))
            await refused(await Client.connect(h.url + "?token=k", origin=EVIL))
            no_token = await Client.connect(h.url)
            assert (await no_token.closed()).code == 4401
