"""[[mcp.endpoints]]: exactly one transport, secrets masked; and `check-config --mcp-json`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from visionflow import cli
from visionflow import settings as s
from visionflow.errors import ConfigError
from visionflow.mcp.mcpjson import convert

SECRET = "sk-live-0123456789"


def endpoints(*eps: dict[str, Any]) -> s.Settings:
    return s.validate({"mcp": {"endpoints": list(eps)}})


def issues_of(*eps: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        endpoints(*eps)
    return [str(issue) for issue in info.value.issues]


def test_each_transport_alone_and_the_old_forms_stay_valid() -> None:
    url, launched, argv, tcp, host_only = endpoints(
        {"name": "u", "url": "http://127.0.0.1:3001/mcp", "headers": {"Authorization": "x"}},
        {"name": "c", "command": "npx", "args": ["claude-flow", "mcp", "start"], "env": {"K": "v"}},
        {"name": "a", "command": ["npx", "claude-flow", "mcp", "start"], "cwd": "/tmp"},
        {"name": "t", "port": 9600},
        {"name": "h", "host": "10.0.0.2"},
    ).mcp.endpoints
    assert [e.transport for e in (url, launched, argv, tcp, host_only)] == [
        "http",
        "stdio",
        "stdio",
        "tcp",
        "tcp",
    ]
    assert launched.argv == argv.argv == ["npx", "claude-flow", "mcp", "start"]
    assert tcp.tcp_address == ("127.0.0.1", 9600) and host_only.tcp_address == ("10.0.0.2", 9500)


def test_a_command_with_the_old_default_host_and_port_stays_a_command() -> None:
    # what check-config printed for a command endpoint before host/port lost their defaults
    old = {"name": "c", "host": "127.0.0.1", "port": 9500, "command": ["npx", "x"], "cwd": ""}
    (endpoint,) = endpoints(old).mcp.endpoints
    assert endpoint.transport == "stdio" and endpoint.transports == ["stdio"]
    (issue,) = issues_of({**old, "port": 9600})  # a port of its own is a second transport
    assert "(given: command, host/port)" in issue


@pytest.mark.parametrize(
    ("endpoint", "given"),
    [
        ({"name": "none"}, "none"),
        ({"name": "two", "url": "http://x/mcp", "port": 9500}, "url, host/port"),
        ({"name": "two", "command": "npx", "host": "h"}, "command, host/port"),
    ],
)
def test_none_or_two_transports_is_a_clear_error(endpoint: dict[str, Any], given: str) -> None:
    (issue,) = issues_of(endpoint)
    assert issue.startswith("mcp.endpoints[0] = ")
    assert "exactly one transport" in issue and f"(given: {given})" in issue


def test_options_of_another_transport_and_reserved_headers_are_refused() -> None:
    issues = issues_of(
        {"name": "a", "port": 1, "headers": {"X": "y"}, "args": ["z"]},
        {"name": "b", "url": "http://x/mcp", "headers": {"Mcp-Session-Id": "1"}},
    )
    assert "mcp.endpoints[0].headers: applies only to an endpoint with url" in issues
    assert "mcp.endpoints[0].args: applies only to an endpoint with command" in issues
    assert any("Mcp-Session-Id" in i and "sets itself" in i for i in issues)


def test_a_bad_header_or_env_value_is_named_but_never_shown() -> None:
    issues = issues_of(
        {"name": "a", "url": "http://x/mcp", "headers": {"Authorization": f"Bearer {SECRET}\n"}},
        {"name": "b", "command": "x", "env": {"KEY": 5}},
        {"name": "c", "url": "ftp://x"},
    )
    assert any(
        i.startswith("mcp.endpoints[0].headers.Authorization: the value (not shown)")
        for i in issues
    )
    assert any(i.startswith("mcp.endpoints[1].env.KEY: the value (not shown)") for i in issues)
    assert any(i.startswith("mcp.endpoints[2].url = 'ftp://x'") for i in issues)
    assert not [i for i in issues if SECRET in i]


def test_secrets_are_masked_in_check_config_and_api_output() -> None:
    settings = endpoints(
        {
            "name": "u",
            "url": f"https://me:{SECRET}@mcp.example/mcp?key={SECRET}&flag",
            "headers": {"Authorization": f"Bearer {SECRET}"},
        },
        {"name": "c", "command": "npx", "args": ["--key", SECRET], "env": {"KEY": SECRET}},
    )
    # check-config shows a command line as it is (it runs where the file is read); the rest
    # of the secrets never
    shown = s.to_toml(settings).replace(f'"--key", "{SECRET}"', "")
    assert SECRET not in shown
    assert 'url = "https://me:***@mcp.example/mcp?key=***&flag"' in shown
    assert 'headers = {"Authorization" = "***"}' in shown and 'env = {"KEY" = "***"}' in shown
    anonymous = s.masked(s.to_dict(settings), commands=True)
    assert SECRET not in json.dumps(anonymous)
    # the rendering reads back as the same settings (values and all, unmasked)
    assert s.validate(tomllib.loads(s.to_toml(settings, mask=False))) == settings


MCP_JSON = {
    "mcpServers": {
        "claude-flow": {"command": "npx", "args": ["claude-flow", "mcp", "start"]},
        "remote api": {
            "type": "http",
            "url": "https://mcp.example/mcp",
            "headers": {"Authorization": f"Bearer {SECRET}"},
            "disabled": False,
        },
        "everything": {"type": "streamable-http", "url": "http://127.0.0.1:3001/mcp"},
        "keyed": {"command": "node", "args": ["s.js"], "env": {"API_KEY": SECRET}, "cwd": "/srv"},
    }
}


def test_mcp_servers_json_becomes_endpoints() -> None:
    out = convert(MCP_JSON)
    assert not out.issues
    assert out.endpoints == [
        {"name": "claude-flow", "command": "npx", "args": ["claude-flow", "mcp", "start"]},
        {
            "name": "remote-api",
            "url": "https://mcp.example/mcp",
            "headers": {"Authorization": f"Bearer {SECRET}"},
        },
        {"name": "everything", "url": "http://127.0.0.1:3001/mcp"},
        {
            "name": "keyed",
            "command": "node",
            "args": ["s.js"],
            "env": {"API_KEY": SECRET},
            "cwd": "/srv",
        },
    ]
    assert any("'remote-api'" in n for n in out.notes)
    assert any("disabled" in n for n in out.notes)
    endpoints(*out.endpoints)  # valid settings as they are


def test_the_legacy_sse_transport_and_unknown_types_are_refused_with_what_to_do() -> None:
    out = convert(
        {"mcpServers": {"old": {"type": "sse", "url": "http://x/sse"}, "ws": {"type": "ws"}}}
    )
    assert not out.endpoints
    sse, ws = (str(i) for i in out.issues)
    assert sse.startswith("mcpServers.old: uses the legacy HTTP+SSE transport")
    assert '"type": "http"' in sse
    assert 'only "stdio" and "http"' in ws


def test_check_config_mcp_json_prints_toml_to_paste(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / ".mcp.json"
    f.write_text(json.dumps(MCP_JSON))
    assert cli.main(["check-config", "--mcp-json", str(f)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "--show-secrets" in out
    assert cli.main(["check-config", "--mcp-json", str(f), "--show-secrets"]) == 0
    shown = capsys.readouterr().out
    parsed = tomllib.loads(shown)
    settings = s.validate(parsed)
    assert [e.name for e in settings.mcp.endpoints] == [
        "claude-flow",
        "remote-api",
        "everything",
        "keyed",
    ]
    assert settings.mcp.endpoints[1].headers == {"Authorization": f"Bearer {SECRET}"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"other": 1}', '"mcpServers"'),
        ('{"mcpServers": {"x": {"url": "ftp://nope"}}}', "mcpServers.x.url = 'ftp://nope'"),
        ('{"mcpServers": {"x": {"command": 5}}}', "mcpServers.x.command: is required"),
    ],
)
def test_check_config_mcp_json_refuses_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    f = tmp_path / "m.json"
    f.write_text(text)
    assert cli.main(["check-config", "--mcp-json", str(f)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
