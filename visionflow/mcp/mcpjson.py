"""The ``mcpServers`` JSON of MCP clients (``.mcp.json``, Claude Desktop's config, VS Code's
``servers``) as our ``[[mcp.endpoints]]`` tables, for ``visionflow check-config --mcp-json``.

Each entry is a stdio server (``command``, ``args``, ``env``, ``cwd``) or a Streamable HTTP one
(``url``, ``headers``; ``"type": "http"`` or ``"streamable-http"``). The legacy HTTP+SSE transport
(``"type": "sse"``) is refused with what to do instead; keys we have no use for (``disabled``,
``autoApprove``, ``timeout``, ...) are named in a note and left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from visionflow.errors import MISSING, ConfigIssue

__all__ = ["Converted", "convert"]

_STDIO_KEYS = {"command", "args", "env", "cwd"}
_HTTP_KEYS = {"url", "headers"}
_HTTP_TYPES = {"http", "streamable-http", "streamablehttp", "streamable_http"}
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
_SSE_REFUSAL = (
    'uses the legacy HTTP+SSE transport ("type": "sse"), which is not supported: if the server '
    'also serves Streamable HTTP (often at /mcp rather than /sse), give that url with "type": '
    '"http"; otherwise run it on stdio (command) or behind a TCP bridge (host/port)'
)


@dataclass
class Converted:
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    issues: list[ConfigIssue] = field(default_factory=list)


def _endpoint_name(name: str, taken: set[str]) -> str:
    base = _NAME_BAD.sub("-", name).strip("-.")[:64] or "server"
    candidate, n = base, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate, n = base[: 64 - len(suffix)] + suffix, n + 1
    taken.add(candidate)
    return candidate


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_table(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def convert(doc: object) -> Converted:
    """The endpoints of ``doc`` (a parsed JSON document), with notes and issues."""
    out = Converted()
    if not isinstance(doc, Mapping):
        out.issues.append(ConfigIssue("(document)", MISSING, "must be a JSON object"))
        return out
    servers = doc.get("mcpServers", doc.get("servers"))
    if not isinstance(servers, Mapping):
        rule = 'must hold "mcpServers": {name: {command, args, env} or {url, headers}}'
        out.issues.append(ConfigIssue("(document)", MISSING, rule))
        return out
    taken: set[str] = set()
    for raw_name, entry in servers.items():
        where = f"mcpServers.{raw_name}"
        if not isinstance(entry, Mapping):
            out.issues.append(ConfigIssue(where, MISSING, "must be an object"))
            continue
        name = _endpoint_name(str(raw_name), taken)
        if name != raw_name:
            out.notes.append(f"{where}: endpoint named {name!r} (letters, digits, . _ - only)")
        endpoint = _one(where, name, entry, out)
        if endpoint is not None:
            out.endpoints.append(endpoint)
    return out


def _one(where: str, name: str, entry: Mapping[str, Any], out: Converted) -> dict[str, Any] | None:
    kind = entry.get("type", entry.get("transport"))
    kind = kind.lower() if isinstance(kind, str) else None
    if kind == "sse":
        out.issues.append(ConfigIssue(where, MISSING, _SSE_REFUSAL))
        return None
    if kind is None:
        kind = "http" if "url" in entry and "command" not in entry else "stdio"
    if kind not in _HTTP_TYPES and kind != "stdio":
        rule = f'has "type": {kind!r}: only "stdio" and "http" (Streamable HTTP) are supported'
        out.issues.append(ConfigIssue(where, MISSING, rule))
        return None
    http = kind in _HTTP_TYPES
    keys = _HTTP_KEYS if http else _STDIO_KEYS
    ignored = sorted(k for k in entry if k not in keys and k not in ("type", "transport"))
    if ignored:
        out.notes.append(f"{where}: left out (no use here): {', '.join(ignored)}")
    endpoint: dict[str, Any] = {"name": name}
    if http:
        url, headers = entry.get("url"), entry.get("headers", {})
        if not isinstance(url, str) or not url:
            out.issues.append(ConfigIssue(f"{where}.url", MISSING, "is required (a string)"))
            return None
        if not _string_table(headers):
            out.issues.append(ConfigIssue(f"{where}.headers", MISSING, "must map names to strings"))
            return None
        endpoint["url"] = url
        if headers:
            endpoint["headers"] = dict(headers)
    else:
        command, args, env = entry.get("command"), entry.get("args", []), entry.get("env", {})
        cwd = entry.get("cwd", "")
        if not isinstance(command, str) or not command:
            out.issues.append(ConfigIssue(f"{where}.command", MISSING, "is required (a string)"))
            return None
        if not _strings(args):
            out.issues.append(ConfigIssue(f"{where}.args", MISSING, "must be a list of strings"))
            return None
        if not _string_table(env):
            out.issues.append(ConfigIssue(f"{where}.env", MISSING, "must map names to strings"))
            return None
        if not isinstance(cwd, str):
            out.issues.append(ConfigIssue(f"{where}.cwd", MISSING, "must be a string"))
            return None
        endpoint["command"] = command
        if args:
            endpoint["args"] = list(args)
        if env:
            endpoint["env"] = dict(env)
        if cwd:
            endpoint["cwd"] = cwd
    texts = [endpoint.get("url", ""), *endpoint.get("args", [])]
    texts += [*endpoint.get("headers", {}).values(), *endpoint.get("env", {}).values()]
    if any(_PLACEHOLDER.search(t) for t in texts):
        out.notes.append(
            f"{where}: ${{...}} placeholders are kept as they are (VisionFlow does not expand "
            "them): put the values in"
        )
    return endpoint


def to_toml(endpoints: list[dict[str, Any]], *, show_secrets: bool = False) -> str:
    """The endpoints as ``[[mcp.endpoints]]`` tables; header and env values ``***`` unless
    ``show_secrets``."""
    from visionflow import settings

    shown = endpoints
    if not show_secrets:
        shown = [
            {k: dict.fromkeys(v, "***") if k in ("headers", "env") else v for k, v in ep.items()}
            for ep in endpoints
        ]
    return settings.to_toml_table({"mcp": {"endpoints": shown}})


def check_mcp_json(path: str, *, show_secrets: bool = False) -> int:
    """``visionflow check-config --mcp-json FILE``: print the TOML, or every problem (exit 2)."""
    import sys

    import msgspec

    from visionflow import jsonsafe, settings
    from visionflow.errors import ConfigError

    def fail(issues: list[ConfigIssue]) -> int:
        print(f"visionflow: {ConfigError(issues, path).render()}", file=sys.stderr)
        return 2

    try:
        with open(path, "rb") as f:
            data = f.read(16 * 1024 * 1024 + 1)
    except OSError as exc:
        return fail([ConfigIssue(path, MISSING, f"cannot read: {exc.strerror or exc}")])
    if len(data) > 16 * 1024 * 1024:
        return fail([ConfigIssue(path, MISSING, "is over 16 MiB: not an MCP client config")])
    try:
        doc = jsonsafe.decode(data)
    except msgspec.DecodeError as exc:
        return fail([ConfigIssue(path, MISSING, f"not valid JSON: {exc}")])
    converted = convert(doc)
    if converted.issues:
        return fail(converted.issues)
    try:  # what a settings file with these tables would be told
        settings.validate({"mcp": {"endpoints": converted.endpoints}}, path)
    except ConfigError as exc:
        return fail([_renamed(issue, converted.endpoints) for issue in exc.issues])
    for note in converted.notes:
        print(f"# note: {note}", file=sys.stderr)
    if not converted.endpoints:
        print(f"# {path}: no servers in it", file=sys.stderr)
        return 0
    hidden = "" if show_secrets else " (header and env values hidden: --show-secrets prints them)"
    print(f"# from {path}: add to settings.toml{hidden}")
    print(to_toml(converted.endpoints, show_secrets=show_secrets))
    return 0


def _renamed(issue: ConfigIssue, endpoints: list[dict[str, Any]]) -> ConfigIssue:
    """``mcp.endpoints[2].url`` said as the server's own name: ``mcpServers.<name>.url``."""
    m = re.match(r"mcp\.endpoints\[(\d+)\](.*)", issue.path)
    if m is None or int(m[1]) >= len(endpoints):
        return issue
    name = endpoints[int(m[1])]["name"]
    return ConfigIssue(f"mcpServers.{name}{m[2]}", issue.value, issue.rule)
