from __future__ import annotations

import tomllib
from pathlib import Path

import anyio
import pytest

from visionflow import settings as s
from visionflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def issues_of(exc: ConfigError) -> dict[str, str]:
    return {i.path: str(i) for i in exc.issues}


def test_defaults_are_valid() -> None:
    settings = s.validate({})
    assert settings.server.port == 4000
    assert settings.physics.backend == "auto"


def test_shipped_file_documents_every_key_with_its_default() -> None:
    shipped = tomllib.loads((ROOT / "settings.toml").read_text())
    defaults = s.to_dict(s.Settings())
    defaults["mcp"].pop("endpoints")  # shown as a commented example
    assert shipped == defaults
    text = (ROOT / "settings.toml").read_text()
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#") and not line.startswith("["):
            key = line.split("=")[0].strip()
            assert "#" in line or key in {
                "enabled",
                "spring_k",
                "rest_length",
                "repel_k",
                "center_gravity_k",
                "damping",
                "dt",
                "max_velocity",
                "max_force",
                "enable_bounds",
                "bounds_size",
                "boundary_damping",
                "warmup_iterations",
                "softening",
                "theta",
                "cooling_steps",
                "linlog",
            }, f"undocumented key {key}"


def test_valid_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        "[server]\nport = 4100\n[physics.knowledge]\ndamping = 0.5\n"
        '[[mcp.endpoints]]\nname = "local"\nport = 9600\n'
    )
    loaded = s.load(f, environ={})
    assert loaded.file_found
    assert loaded.settings.server.port == 4100
    assert loaded.settings.physics.knowledge.damping == 0.5
    assert loaded.settings.physics.agents.damping == 0.8  # the other set is independent
    assert loaded.settings.mcp.endpoints[0].port == 9600


def test_bad_value_names_path_value_and_rule() -> None:
    with pytest.raises(ConfigError) as info:
        s.validate({"physics": {"knowledge": {"damping": 1.7}}})
    text = str(info.value)
    assert "physics.knowledge.damping = 1.7" in text
    assert "<= 1" in text


def test_an_error_never_shows_a_secret() -> None:
    """The token's value is not shown (a too-long one is still the secret), an MCP URL's
    password and query values are masked, as in check-config and the status routes."""
    with pytest.raises(ConfigError) as info:
        s.load(
            None,
            environ={"VISIONFLOW__SERVER__TOKEN": "S3CRET" * 200},
            overrides={
                "mcp": {
                    "endpoints": [
                        {"name": "a", "url": "ftp://me:pw0rd@host/mcp?key=k3y&flag"},
                    ]
                }
            },
        )
    text = str(info.value)
    assert "S3CRET" not in text and "pw0rd" not in text and "k3y" not in text, text
    issues = issues_of(info.value)
    assert issues["server.token"].startswith("server.token: the value (not shown) must be a string")
    assert "ftp://me:***@host/mcp?key=***&flag" in text
    # one that does not even parse (the pattern lets it by; the connection would fail later)
    with pytest.raises(ConfigError) as info:
        s.validate({"mcp": {"endpoints": [{"name": "b", "url": "http://me:pw0rd@[::1"}]}})
    assert issues_of(info.value) == {
        "mcp.endpoints[0].url": "mcp.endpoints[0].url: the value (not shown) is not a URL: "
        "Invalid IPv6 URL"
    }


def test_unknown_key_suggests_close_match() -> None:
    with pytest.raises(ConfigError) as info:
        s.validate({"physics": {"knowledge": {"dampng": 0.5}}})
    msg = issues_of(info.value)["physics.knowledge.dampng"]
    assert "unknown setting" in msg and "did you mean 'damping'" in msg


def test_unknown_section_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        s.validate({"sever": {"port": 1}})
    assert "did you mean 'server'" in issues_of(info.value)["sever"]


def test_all_errors_reported_at_once() -> None:
    raw = {
        "server": {"port": 70000, "host": ""},
        "physics": {"backend": "gpu", "knowledge": {"theta": 5.0, "dt": 0.0}},
        "websocket": {"compression": "yes"},
        "mcp": {"endpoints": [{"port": 1}]},
    }
    with pytest.raises(ConfigError) as info:
        s.validate(raw)
    paths = set(issues_of(info.value))
    assert paths == {
        "server.port",
        "server.host",
        "physics.backend",
        "physics.knowledge.theta",
        "physics.knowledge.dt",
        "websocket.compression",
        "mcp.endpoints[0].name",
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_refused(value: float) -> None:
    with pytest.raises(ConfigError, match="finite"):
        s.validate({"physics": {"agents": {"spring_k": value}}})


def test_wrong_types_refused() -> None:
    with pytest.raises(ConfigError) as info:
        s.validate({"server": "x", "physics": {"knowledge": {"enabled": 3}}})
    found = issues_of(info.value)
    assert "must be a table" in found["server"]
    assert "true or false" in found["physics.knowledge.enabled"]


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError) as info:
        s.validate(
            {
                "websocket": {"min_interval_ms": 500, "max_interval_ms": 100},
                "mcp": {"endpoints": [{"name": "a"}, {"name": "a"}]},
            }
        )
    paths = set(issues_of(info.value))
    assert {"websocket.min_interval_ms", "mcp.endpoints[1].name"} <= paths


def test_env_overrides_nested_keys(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[server]\nport = 4100\n")
    env = {
        "VISIONFLOW__SERVER__PORT": "4001",
        "VISIONFLOW__PHYSICS__KNOWLEDGE__DAMPING": "0.9",
        "VISIONFLOW__SERVER__ALLOWED_ORIGINS": '["http://a"]',
        "VISIONFLOW__KNOWLEDGE__PATH": "/notes dir",
        "UNRELATED": "1",
    }
    settings = s.load(f, environ=env).settings
    assert settings.server.port == 4001
    assert settings.physics.knowledge.damping == 0.9
    assert settings.server.allowed_origins == ["http://a"]
    assert settings.knowledge.path == "/notes dir"


def test_env_text_for_a_string_setting_stays_text() -> None:
    # "12345678" reads as a TOML integer, "true" as a boolean and 2024-01-01 as a date: a
    # token, a host or a path made of them were refused as "must be a string".
    env = {
        "VISIONFLOW__SERVER__TOKEN": "12345678",
        "VISIONFLOW__SERVER__HOST": "true",
        "VISIONFLOW__STATE__DIR": "2024-01-01",
        "VISIONFLOW__KNOWLEDGE__PATH": '"quoted notes"',  # a TOML string is still unquoted
    }
    settings = s.load(None, environ=env).settings
    assert settings.server.token == "12345678" and settings.server.host == "true"
    assert settings.state.dir == "2024-01-01" and settings.knowledge.path == "quoted notes"


def test_no_loose_conversions(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[physics]\nrate_hz = "6e1"\n[physics.knowledge]\nenabled = 1\n')
    with pytest.raises(ConfigError) as info:
        s.load(f, environ={})
    assert set(issues_of(info.value)) == {"physics.rate_hz", "physics.knowledge.enabled"}


def test_env_override_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        s.load(
            None,
            environ={
                "VISIONFLOW__PHYSICS__KNOWLEDGE__DAMPNG": "0.9",
                "VISIONFLOW__SERVER__PORT": "abc",
            },
        )
    paths = set(issues_of(info.value))
    assert paths == {"physics.knowledge.dampng", "server.port"}


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = s.load(None, environ={})
    assert not loaded.file_found
    assert loaded.settings == s.Settings()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        s.load(tmp_path / "nope.toml", environ={})


def test_malformed_toml_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        s.load(f, environ={})


def test_overrides_apply_last(tmp_path: Path) -> None:
    settings = s.load(
        None, environ={"VISIONFLOW__SERVER__PORT": "5"}, overrides={"server": {"port": 0}}
    ).settings
    assert settings.server.port == 0


def test_effective_settings_render_back_to_the_same_settings() -> None:
    raw = {
        "mcp": {"endpoints": [{"name": "a", "command": ["npx", "x"]}]},
        "server": {"allowed_origins": ["http://x"]},
    }
    settings = s.validate(raw)
    assert s.validate(tomllib.loads(s.to_toml(settings))) == settings


# --------------------------------------------------------------------------- sources


def test_env_value_error_names_the_variable_not_the_file(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[server]\nport = 4100\n")
    with pytest.raises(ConfigError) as info:
        s.load(f, environ={"VISIONFLOW__SERVER__PORT": "99999"})
    (issue,) = info.value.issues
    assert issue.source == "environment variable VISIONFLOW__SERVER__PORT"
    text = info.value.render()
    assert "VISIONFLOW__SERVER__PORT" in text and str(f) not in text


def test_each_issue_names_its_own_source(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[physics.knowledge]\ndamping = 1.7\n")
    with pytest.raises(ConfigError) as info:
        s.load(
            f,
            environ={"VISIONFLOW__SERVER__PORT": "99999", "VISIONFLOW__NOPE__X": "1"},
            overrides={"server": {"host": ""}},
        )
    sources = {i.path: i.source for i in info.value.issues}
    assert sources == {
        "physics.knowledge.damping": str(f),
        "server.port": "environment variable VISIONFLOW__SERVER__PORT",
        "nope": "environment variable VISIONFLOW__NOPE__X",  # the table it made up
        "server.host": "command line",
    }
    text = info.value.render()
    assert f"physics.knowledge.damping = 1.7 (from {f})" in text
    assert "server.port = 99999 (from environment variable VISIONFLOW__SERVER__PORT)" in text


def test_a_cross_check_blames_where_the_reported_value_came_from(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[websocket]\nmin_interval_ms = 500\n")
    with pytest.raises(ConfigError) as info:
        s.load(f, environ={"VISIONFLOW__WEBSOCKET__MAX_INTERVAL_MS": "100"})
    sources = {i.path: i.source for i in info.value.issues}
    assert sources["websocket.min_interval_ms"] == str(f)
    assert sources["websocket.default_interval_ms"] == "default"


def test_patch_and_overrides_file_keep_their_own_source(tmp_path: Path) -> None:
    from visionflow.live_settings import OVERRIDES_FILE, LiveSettings

    saved = tmp_path / OVERRIDES_FILE
    saved.write_text("[websocket]\nmin_interval_ms = 20\n")
    live = LiveSettings(s.to_dict(s.Settings()), tmp_path)
    live.load_overrides()
    assert live.current.websocket.min_interval_ms == 20
    with pytest.raises(ConfigError) as info:
        anyio.run(live.patch, {"websocket": {"max_interval_ms": 18}})
    sources = {i.path: i.source for i in info.value.issues}
    assert sources == {
        "websocket.min_interval_ms": str(saved),  # 20 > 18: the value saved by an earlier run
        "websocket.default_interval_ms": "start-up settings",  # 33 is not between them
    }
    assert info.value.render().startswith("patch: 2 invalid settings")
    with pytest.raises(ConfigError) as info:
        anyio.run(live.patch, {"websocket": {"deadband": -1}})
    assert [i.source for i in info.value.issues] == ["patch"]


def test_an_overrides_file_from_the_old_layout_model_loses_its_layout_values(
    tmp_path: Path,
) -> None:
    from loguru import logger

    from visionflow.live_settings import LAYOUT_MODEL_MARK, OVERRIDES_FILE, LiveSettings

    saved = tmp_path / OVERRIDES_FILE
    saved.write_text(
        "# Written by PATCH /api/settings; applied over settings.toml.\n"
        "[physics]\nsettle_energy = 0.02\nrate_hz = 30.0\n"
        "[physics.knowledge]\nrepel_k = 2.0\ndt = 0.016\nenabled = false\n"
        "[websocket]\ndeadband = 0.5\n"
    )
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        live = LiveSettings(s.to_dict(s.Settings()), tmp_path)
        live.load_overrides()
    finally:
        logger.remove(sink)
    cur = live.current
    assert cur.physics.knowledge.repel_k == s.PhysicsParams().repel_k  # dropped
    assert cur.physics.knowledge.dt == s.PhysicsParams().dt
    assert cur.physics.settle_energy == 0.0
    assert cur.physics.knowledge.enabled is False  # same meaning in both models: kept
    assert cur.physics.rate_hz == 30.0 and cur.websocket.deadband == 0.5
    assert any(
        "physics.settle_energy, physics.knowledge.repel_k, physics.knowledge.dt" in line
        for line in lines
    ), lines
    text = saved.read_text()
    assert LAYOUT_MODEL_MARK in text and "repel_k" not in text and "deadband" in text
    again = LiveSettings(s.to_dict(s.Settings()), tmp_path)
    anyio.run(again.patch, {"physics": {"knowledge": {"repel_k": 3.0}}})
    fresh = LiveSettings(s.to_dict(s.Settings()), tmp_path)
    fresh.load_overrides()  # a file written now keeps its layout values
    assert fresh.current.physics.knowledge.repel_k == 3.0


def test_a_file_with_the_old_models_layout_values_gets_a_note(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        "[physics.knowledge]\nspring_k = 0.1\nrest_length = 30.0\ndt = 0.016\n"
        "[physics.agents]\ndt = 0.016\n"  # one old value alone is a choice, not a copy
    )
    loaded = s.load(f, environ={})
    assert loaded.settings.physics.knowledge.dt == 0.016  # valid: applied as written
    assert len(loaded.notes) == 1
    assert "physics.knowledge sets spring_k, rest_length, dt" in loaded.notes[0]
    assert s.load(ROOT / "settings.toml", environ={}).notes == ()


def test_max_lag_has_a_floor_that_keeps_viewers_connected() -> None:
    # 1e-9 was inside the old (0, 3600] range and closed every viewer with 1013
    with pytest.raises(ConfigError) as info:
        s.validate({"websocket": {"max_lag": 1e-9}})
    (issue,) = info.value.issues
    assert issue.path == "websocket.max_lag" and "0.5" in issue.rule
    assert s.validate({"websocket": {"max_lag": 0.5}}).websocket.max_lag == 0.5


def test_a_pattern_is_said_in_words_not_as_a_regular_expression() -> None:
    for raw, words in [
        ({"cluster": {"nats_url": "nats://u:p@127.0.0.1:1"}}, "no user:password@"),
        ({"server": {"allowed_hosts": ["a b"]}}, "a host name or address"),
        ({"mcp": {"endpoints": [{"name": "a b", "port": 1}]}}, "letters, digits"),
    ]:
        with pytest.raises(ConfigError) as info:
            s.validate(raw)
        text = info.value.render()
        assert words in text and "^" not in text, text  # it quoted the regex
