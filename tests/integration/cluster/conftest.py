"""The cluster runs on asyncio only (nats-py): these tests too, against a real nats-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.natskit import Broker, broker_in


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with broker_in(tmp_path / "nats") as nats:
        yield nats
