"""What the swarm routes accept is what claude-flow's tools accept (found by the fuzzer)."""

from __future__ import annotations

import msgspec
import pytest

from visionflow.web.routes_bots import InitializeSwarm, _path_of


def test_max_agents_is_1_to_100_as_swarm_init_takes() -> None:
    assert (
        msgspec.convert({"topology": "mesh", "maxAgents": 100}, InitializeSwarm).max_agents == 100
    )
    for wrong in (0, 101, 272):
        with pytest.raises(msgspec.ValidationError, match=r"maxAgents"):
            msgspec.convert({"topology": "mesh", "maxAgents": wrong}, InitializeSwarm, strict=True)


class _Inner(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class _Outer(msgspec.Struct, forbid_unknown_fields=True):
    tasks: list[_Inner]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"tasks": [{"name": 1}]}, "tasks[0].name"),  # a wrong value: msgspec's location
        ({"tasks": [{}]}, "tasks[0].name"),  # a field missed inside an item
        ({"tasks": [{"name": "x", "bogus": 1}]}, "tasks[0].bogus"),  # one not known
        ({}, "tasks"),
        ({"tasks": [], "extra": 1}, "extra"),
    ],
)
def test_an_invalid_body_names_the_field_to_blame(body: dict[str, object], path: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(body, _Outer, strict=True)
    assert _path_of(str(caught.value)) == path
