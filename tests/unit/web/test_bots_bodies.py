"""What the swarm routes accept is what claude-flow's tools accept (found by the fuzzer)."""

from __future__ import annotations

import msgspec
import pytest

from visionflow.web.routes_bots import InitializeSwarm


def test_max_agents_is_1_to_100_as_swarm_init_takes() -> None:
    assert (
        msgspec.convert({"topology": "mesh", "maxAgents": 100}, InitializeSwarm).max_agents == 100
    )
    for wrong in (0, 101, 272):
        with pytest.raises(msgspec.ValidationError, match=r"maxAgents"):
            msgspec.convert({"topology": "mesh", "maxAgents": wrong}, InitializeSwarm, strict=True)
