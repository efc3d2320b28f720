"""Settings: msgspec schema, loading from TOML, environment overrides and validation.

Every key has a default and a documented range (the ``Meta`` of its annotation). Validation walks
the raw document against the schema itself instead of stopping at msgspec's first error, so a user
sees every problem in a file at once, each naming the key path, the value and the rule.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import typing
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from visionflow.errors import MISSING, ConfigError, ConfigIssue

ENV_PREFIX = "VISIONFLOW__"

Port = Annotated[int, Meta(ge=0, le=65535, description="TCP port; 0 picks a free one")]
Seconds = Annotated[float, Meta(ge=0.0, le=3600.0)]
PositiveSeconds = Annotated[float, Meta(gt=0.0, le=3600.0)]
#: ``*``, ``name``, ``.domain``, ``[ipv6]``, each with an optional ``:port``.
HOST_PATTERN = r"^(\*|\.?[A-Za-z0-9_.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)$"
#: ``*`` or ``scheme://host[:port]``.
ORIGIN_PATTERN = r"^(\*|[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+/?)$"


class ServerSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    host: Annotated[str, Meta(min_length=1, max_length=255)] = "127.0.0.1"
    port: Port = 4000
    token: Annotated[str, Meta(max_length=1024)] = ""
    # Host and Origin allow-lists (see visionflow/web/security.py): loopback names by default.
    allowed_hosts: list[Annotated[str, Meta(pattern=HOST_PATTERN)]] = msgspec.field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"]
    )
    allowed_origins: list[Annotated[str, Meta(pattern=ORIGIN_PATTERN)]] = []
    shutdown_grace: Annotated[float, Meta(ge=0.0, le=300.0)] = 5.0
    max_request_bytes: Annotated[int, Meta(ge=1024, le=1 << 30)] = 64 * 1024 * 1024
    # HTTP limits (docs/operations.md, "HTTP limits and TLS"): mutating requests per second
    # per client address (token bucket; 0 = no limit) and how many may come at once.
    rate_limit: Annotated[float, Meta(ge=0.0, le=100_000.0)] = 20.0
    rate_burst: Annotated[int, Meta(ge=1, le=100_000)] = 200
    # Graph imports run one at a time; this many more wait their turn (the rest get 503).
    max_queued_imports: Annotated[int, Meta(ge=0, le=64)] = 4
    # Time to send a request's headers (from connecting or from the previous response; also
    # how long an idle keep-alive connection stays open) and to finish a TLS handshake.
    header_timeout: Annotated[float, Meta(ge=0.5, le=300.0)] = 5.0
    max_header_bytes: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = 16 * 1024
    # TLS (hypercorn's): both set = https and wss on the same port; PEM files, key unencrypted.
    certfile: Annotated[str, Meta(max_length=4096)] = ""
    keyfile: Annotated[str, Meta(max_length=4096)] = ""


class LogSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["human", "json"] = "human"
    access_log: bool = False


class WebSocketSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    max_connections: Annotated[int, Meta(ge=1, le=100_000)] = 256
    # From one client address (behind a reverse proxy every viewer has the proxy's address).
    max_connections_per_client: Annotated[int, Meta(ge=1, le=100_000)] = 32
    max_inbound_bytes: Annotated[int, Meta(ge=64, le=64 * 1024 * 1024)] = 1024 * 1024
    max_messages_per_second: Annotated[float, Meta(gt=0.0, le=10_000.0)] = 100.0
    heartbeat_interval: PositiveSeconds = 15.0
    idle_timeout: PositiveSeconds = 60.0
    # Judged by a frame's age when it is written: a physics tick (up to 1 s at 1 Hz) plus the
    # loop's jitter under load; 1e-9 (in the old "(0, 3600]") closed every viewer with 1013.
    max_lag: Annotated[float, Meta(ge=0.5, le=3600.0)] = 5.0
    send_timeout: PositiveSeconds = 10.0
    deadband: Annotated[float, Meta(ge=0.0, le=1000.0)] = 0.01
    default_interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 33
    min_interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 16
    max_interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 1000
    compression: bool = False


class PhysicsParams(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One graph's layout parameters (docs/architecture.md section 9 gives the ranges)."""

    enabled: bool = True
    spring_k: Annotated[float, Meta(ge=0.0001, le=10.0)] = 1.0
    rest_length: Annotated[float, Meta(ge=0.1, le=10_000.0)] = 1.0
    repel_k: Annotated[float, Meta(ge=0.0001, le=10_000.0)] = 1.0
    center_gravity_k: Annotated[float, Meta(ge=0.0, le=10.0)] = 0.05
    damping: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.8
    dt: Annotated[float, Meta(gt=0.0, le=1.0)] = 1.0
    max_velocity: Annotated[float, Meta(ge=0.001, le=1000.0)] = 10.0
    max_force: Annotated[float, Meta(ge=0.001, le=100_000.0)] = 100.0
    enable_bounds: bool = True
    bounds_size: Annotated[float, Meta(ge=1.0, le=100_000.0)] = 5000.0
    boundary_damping: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.5
    warmup_iterations: Annotated[int, Meta(ge=0, le=10_000)] = 0
    softening: Annotated[float, Meta(ge=1e-9, le=10.0)] = 0.0001
    theta: Annotated[float, Meta(ge=0.1, le=2.0)] = 1.0
    cooling_steps: Annotated[int, Meta(ge=1, le=100_000)] = 300
    linlog: bool = True


class PhysicsSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    backend: Literal["auto", "cpu", "cuda"] = "auto"
    rate_hz: Annotated[float, Meta(ge=1.0, le=240.0)] = 60.0
    # An early rest: once the mean 0.5|v|^2 per node is under it (no node over 10x it, see
    # physics.engine.SETTLE_PEAK_FACTOR), every node is cooled at once. 0 = off: the layout
    # rests when its cooling schedule (cooling_steps) has run out, which is soon enough.
    settle_energy: Annotated[float, Meta(ge=0.0, le=1e6, description="per-node KE")] = 0.0
    max_nodes: Annotated[int, Meta(ge=1, le=(1 << 30) - 1)] = 2_000_000
    max_edges: Annotated[int, Meta(ge=0, le=1 << 31)] = 20_000_000
    knowledge: PhysicsParams = msgspec.field(default_factory=PhysicsParams)
    agents: PhysicsParams = msgspec.field(default_factory=PhysicsParams)


class KnowledgeSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    path: str = ""
    max_note_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    max_notes: Annotated[int, Meta(ge=1, le=2_000_000)] = 100_000


#: An HTTP header name (RFC 9110 token) and a value without CR, LF or NUL.
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}\Z"
HEADER_VALUE_PATTERN = r"^[^\r\n\x00]*\Z"
ENDPOINT_NAME_PATTERN = r"^[A-Za-z0-9_.-]+\Z"
MCP_URL_PATTERN = r"^(https?://[^\s/?#]+[^\s]*)?\Z"
ENV_NAME_PATTERN = r"^[^=\x00]+\Z"
HEADER_NAME = Annotated[str, Meta(pattern=HEADER_NAME_PATTERN)]
HEADER_VALUE = Annotated[str, Meta(max_length=8192, pattern=HEADER_VALUE_PATTERN)]
#: Set by the MCP client itself on every request: a header of the user's must not clash.
RESERVED_HEADERS = frozenset(
    {
        *("accept", "accept-encoding", "content-type", "content-length", "host", "connection"),
        *("transfer-encoding", "last-event-id", "mcp-session-id", "mcp-protocol-version"),
    }
)
#: The TCP line transport's defaults when only one of host/port is given.
TCP_DEFAULT_HOST, TCP_DEFAULT_PORT = "127.0.0.1", 9500


class McpEndpoint(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One MCP server to watch, reached by exactly one transport (docs/mcp.md): ``url``
    (Streamable HTTP, with ``headers``), ``command`` (stdio, with ``args``, ``env``, ``cwd``)
    or ``host``/``port`` (newline-delimited JSON-RPC over TCP, e.g. a socat bridge)."""

    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=ENDPOINT_NAME_PATTERN)]
    url: Annotated[str, Meta(max_length=2048, pattern=MCP_URL_PATTERN)] = ""
    headers: dict[HEADER_NAME, HEADER_VALUE] = {}
    # A list is the whole argv (the old form); a string is the program, as .mcp.json has it.
    command: str | list[str] = []
    args: list[str] = []
    env: dict[Annotated[str, Meta(pattern=ENV_NAME_PATTERN)], str] = {}
    cwd: str = ""
    host: Annotated[str, Meta(max_length=255)] = ""  # "" with a port: 127.0.0.1
    port: Annotated[int, Meta(ge=0, le=65535)] = 0  # 0 with a host: 9500
    poll_interval: Annotated[float, Meta(ge=0.1, le=3600.0)] = 2.0

    @property
    def transports(self) -> list[str]:
        """The transports this endpoint names (valid settings name exactly one)."""
        tcp = bool(self.host or self.port)
        old_defaults = self.host in ("", TCP_DEFAULT_HOST) and self.port in (0, TCP_DEFAULT_PORT)
        if self.command and not self.url and old_defaults:
            # host and port had these defaults before Dec 2026 and check-config and /api/settings
            # printed them with every endpoint: a file saved from there still means the command
            tcp = False
        given = [("http", bool(self.url)), ("stdio", bool(self.command)), ("tcp", tcp)]
        return [name for name, present in given if present]

    @property
    def transport(self) -> Literal["http", "stdio", "tcp"]:
        kinds = self.transports
        return "http" if "http" in kinds else "stdio" if "stdio" in kinds else "tcp"

    @property
    def argv(self) -> list[str]:
        """The launched server's command line: ``command`` (program or argv) and ``args``."""
        head = [self.command] if isinstance(self.command, str) else list(self.command)
        return [part for part in head if part] + list(self.args)

    @property
    def tcp_address(self) -> tuple[str, int]:
        return self.host or TCP_DEFAULT_HOST, self.port or TCP_DEFAULT_PORT


class McpSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    max_line_bytes: Annotated[int, Meta(ge=1024, le=1 << 30)] = 8 * 1024 * 1024
    call_timeout: PositiveSeconds = 10.0
    connect_timeout: PositiveSeconds = 5.0
    backoff_initial: PositiveSeconds = 0.5
    backoff_max: PositiveSeconds = 30.0
    breaker_threshold: Annotated[int, Meta(ge=1, le=1000)] = 5
    breaker_cooldown: PositiveSeconds = 30.0
    max_agents_per_endpoint: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    endpoints: list[McpEndpoint] = []


class StateSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    dir: Annotated[str, Meta(min_length=1)] = ".visionflow-state"
    save_interval: PositiveSeconds = 5.0


class SupervisorSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    backoff_initial: PositiveSeconds = 0.5
    backoff_max: PositiveSeconds = 30.0
    backoff_jitter: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.2
    restart_budget: Annotated[int, Meta(ge=0, le=1000)] = 5
    restart_window: PositiveSeconds = 60.0


#: "" (off), or NATS server URLs separated by commas: ``nats://host:port`` or ``tls://host:port``.
#: No credentials in it (no ``@``): settings are shown by check-config and /api/settings.
NATS_URL_PATTERN = r"^((nats|tls)://[^\s,/?#@]+(,(nats|tls)://[^\s,/?#@]+)*)?$"
SUBJECT_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


class ClusterSettings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``[cluster]``: publish frames to NATS for ``visionflow relay`` processes (docs/cluster.md).
    Needs the asyncio backend (nats-py is asyncio only)."""

    nats_url: Annotated[str, Meta(max_length=2048, pattern=NATS_URL_PATTERN)] = ""
    subject_prefix: Annotated[
        str, Meta(min_length=1, max_length=128, pattern=SUBJECT_PREFIX_PATTERN)
    ] = "visionflow"
    # A whole frame this often even when every tick went out (a relay that joins late starts
    # from it), also while the layout rests.
    keyframe_interval: Annotated[float, Meta(ge=0.1, le=60.0)] = 2.0
    # Ticks published per second at most (the newest then, a delta against the last one sent):
    # relays' viewers get at most this rate. 30 = websocket.default_interval_ms's rate.
    max_rate_hz: Annotated[float, Meta(ge=1.0, le=240.0)] = 30.0
    # Control messages waiting for the broker; beyond it the oldest are dropped (counted).
    max_pending: Annotated[int, Meta(ge=1, le=10_000)] = 256
    # A relay's drag or API request to the simulation; then 504 / an `error` to the viewer.
    request_timeout: Annotated[float, Meta(gt=0.0, le=60.0)] = 5.0
    connect_timeout: PositiveSeconds = 2.0
    backoff_initial: PositiveSeconds = 0.2
    backoff_max: PositiveSeconds = 5.0


class Settings(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    websocket: WebSocketSettings = msgspec.field(default_factory=WebSocketSettings)
    physics: PhysicsSettings = msgspec.field(default_factory=PhysicsSettings)
    knowledge: KnowledgeSettings = msgspec.field(default_factory=KnowledgeSettings)
    mcp: McpSettings = msgspec.field(default_factory=McpSettings)
    state: StateSettings = msgspec.field(default_factory=StateSettings)
    supervisor: SupervisorSettings = msgspec.field(default_factory=SupervisorSettings)
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)


# --------------------------------------------------------------------------- validation


def _rule_for(info: msgspec.inspect.Type) -> str:
    """A human sentence for the type and constraints of one field."""
    mi = msgspec.inspect
    if isinstance(info, mi.BoolType):
        return "must be true or false"
    if isinstance(info, mi.IntType | mi.FloatType):
        kind = "an integer" if isinstance(info, mi.IntType) else "a number"
        parts = []
        if info.ge is not None:
            parts.append(f">= {info.ge:g}")
        if info.gt is not None:
            parts.append(f"> {info.gt:g}")
        if info.le is not None:
            parts.append(f"<= {info.le:g}")
        if info.lt is not None:
            parts.append(f"< {info.lt:g}")
        return f"must be {kind}" + (f" {' and '.join(parts)}" if parts else "")
    if isinstance(info, mi.StrType):
        words = _PATTERN_WORDS.get(info.pattern or "")
        rule = f"must be {words}" if words else "must be a string"
        sizes = []
        if info.min_length:
            sizes.append(f"at least {info.min_length} character(s)")
        if info.max_length is not None:
            sizes.append(f"at most {info.max_length} characters")
        if sizes:
            rule += f" ({', '.join(sizes)})" if words else f" of {' and of '.join(sizes)}"
        if info.pattern and not words:
            rule += f" matching {info.pattern}"
        return rule
    if isinstance(info, mi.LiteralType):
        return "must be one of " + ", ".join(repr(v) for v in info.values)
    if isinstance(info, mi.ListType):
        item = _rule_for(_unwrap(info.item_type)).removeprefix("must be ")
        return f"must be a list (each item {item})"
    if isinstance(info, mi.DictType):
        value = _rule_for(_unwrap(info.value_type)).removeprefix("must be ")
        return f"must be a table of keys to values (each value {value})"
    if isinstance(info, mi.UnionType):
        rules = [_rule_for(_unwrap(t)).removeprefix("must be ") for t in info.types]
        return "must be " + " or ".join(rules)
    return f"must be a {type(info).__name__.removesuffix('Type').lower()}"


# What each pattern allows, said for people (a regular expression was quoted at them).
_PATTERN_WORDS: dict[str, str] = {
    HOST_PATTERN: "a host name or address, with an optional :port; .example.com for its "
    "subdomains; [::1] for IPv6; * for any",
    ORIGIN_PATTERN: "scheme://host[:port], or * for any",
    HEADER_NAME_PATTERN: "an HTTP header name: letters, digits and !#$%&'*+.^_`|~-",
    HEADER_VALUE_PATTERN: "no line break or NUL",
    ENDPOINT_NAME_PATTERN: "letters, digits, '_', '.' and '-'",
    MCP_URL_PATTERN: "an http:// or https:// URL",
    ENV_NAME_PATTERN: "a variable name: no '=' or NUL",
    NATS_URL_PATTERN: "nats://HOST:PORT or tls://HOST:PORT, several separated by commas, "
    "with no path and no user:password@ (broker credentials are not supported)",
    SUBJECT_PREFIX_PATTERN: "NATS subject tokens (letters, digits, '_' and '-') joined by '.'",
}


def _unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return info


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Struct)


def _validate_value(tp: Any, value: object, path: str, issues: list[ConfigIssue]) -> None:
    if _is_struct(tp):
        _validate_struct(tp, value, path, issues)
        return
    if getattr(tp, "__origin__", None) is list and _is_struct(tp.__args__[0]):
        if not isinstance(value, list):
            issues.append(ConfigIssue(path, value, "must be a list of tables ([[...]])"))
            return
        for i, item in enumerate(value):
            _validate_struct(tp.__args__[0], item, f"{path}[{i}]", issues)
        return
    if getattr(tp, "__origin__", None) is dict and isinstance(value, Mapping):
        # Item by item, and never echoing a value: these tables (headers, env) hold secrets.
        key_tp, value_tp = tp.__args__
        for key, item in value.items():
            sub = f"{path}.{key}"
            if not _converts(key, key_tp):
                rule = _rule_for(_unwrap(msgspec.inspect.type_info(key_tp)))
                issues.append(ConfigIssue(sub, MISSING, f"the name {rule}"))
            elif not _converts(item, value_tp):
                rule = _rule_for(_unwrap(msgspec.inspect.type_info(value_tp)))
                issues.append(ConfigIssue(sub, MISSING, f"the value (not shown) {rule}"))
        return
    if isinstance(value, float) and not math.isfinite(value):
        # msgspec lets nan through an unbounded float; no setting of ours means anything by it.
        issues.append(ConfigIssue(path, value, "must be a finite number"))
        return
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError:
        issues.append(ConfigIssue(path, value, _rule_for(_unwrap(msgspec.inspect.type_info(tp)))))


def _converts(value: object, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError:
        return False
    return True


def _validate_struct(cls: type[Struct], raw: object, path: str, issues: list[ConfigIssue]) -> None:
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue(path or "(top level)", raw, "must be a table"))
        return
    known = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    for key, value in raw.items():
        sub = f"{path}.{key}" if path else str(key)
        field = known.get(key)
        if field is None:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            allowed = ", ".join(sorted(known))
            issues.append(
                ConfigIssue(sub, MISSING, f"unknown setting{hint} (known here: {allowed})")
            )
            continue
        _validate_value(field.type, value, sub, issues)
    for field in known.values():
        if field.required and field.encode_name not in raw:
            sub = f"{path}.{field.encode_name}" if path else field.encode_name
            issues.append(ConfigIssue(sub, MISSING, "is required"))


def _cross_checks(settings: Settings) -> Iterator[ConfigIssue]:
    server = settings.server
    if bool(server.certfile) != bool(server.keyfile):
        missing, given = ("keyfile", "certfile") if server.certfile else ("certfile", "keyfile")
        yield ConfigIssue(
            f"server.{missing}",
            MISSING,
            f"must be set too when server.{given} is set (TLS needs both)",
        )
    ws = settings.websocket
    if ws.min_interval_ms > ws.max_interval_ms:
        yield ConfigIssue(
            "websocket.min_interval_ms",
            ws.min_interval_ms,
            f"must be <= websocket.max_interval_ms ({ws.max_interval_ms})",
        )
    if not ws.min_interval_ms <= ws.default_interval_ms <= ws.max_interval_ms:
        yield ConfigIssue(
            "websocket.default_interval_ms",
            ws.default_interval_ms,
            "must lie between websocket.min_interval_ms and websocket.max_interval_ms",
        )
    sup = settings.supervisor
    if sup.backoff_initial > sup.backoff_max:
        yield ConfigIssue(
            "supervisor.backoff_initial", sup.backoff_initial, "must be <= supervisor.backoff_max"
        )
    if settings.cluster.backoff_initial > settings.cluster.backoff_max:
        yield ConfigIssue(
            "cluster.backoff_initial",
            settings.cluster.backoff_initial,
            "must be <= cluster.backoff_max",
        )
    if settings.mcp.backoff_initial > settings.mcp.backoff_max:
        yield ConfigIssue(
            "mcp.backoff_initial", settings.mcp.backoff_initial, "must be <= mcp.backoff_max"
        )
    names: set[str] = set()
    for i, ep in enumerate(settings.mcp.endpoints):
        if ep.name in names:
            yield ConfigIssue(f"mcp.endpoints[{i}].name", ep.name, "must be unique")
        names.add(ep.name)
        yield from _endpoint_checks(f"mcp.endpoints[{i}]", ep)


_TRANSPORT_KEYS = {"http": "url", "stdio": "command", "tcp": "host/port"}
_ONE_TRANSPORT = (
    'give exactly one transport: url = "http://host:port/mcp" (Streamable HTTP), '
    'command = "program" with args (stdio), or host/port (TCP line bridge)'
)


def _endpoint_checks(path: str, ep: McpEndpoint) -> Iterator[ConfigIssue]:
    kinds = ep.transports
    if len(kinds) != 1:
        given = ", ".join(_TRANSPORT_KEYS[k] for k in kinds) or "none"
        yield ConfigIssue(path, ep.name, f"{_ONE_TRANSPORT} (given: {given})")
        return
    problem = url_problem(ep.url) if ep.url else None
    if problem is not None:  # "http://[::1": the pattern lets it by, httpx would not
        yield ConfigIssue(f"{path}.url", ep.url, f"is not a URL: {problem}")
    if ep.headers and ep.transport != "http":
        yield ConfigIssue(f"{path}.headers", MISSING, "applies only to an endpoint with url")
    for key, value in (("args", ep.args), ("env", ep.env), ("cwd", ep.cwd)):
        if value and ep.transport != "stdio":
            yield ConfigIssue(f"{path}.{key}", MISSING, "applies only to an endpoint with command")
    for header in ep.headers:
        if header.lower() in RESERVED_HEADERS:
            yield ConfigIssue(
                f"{path}.headers", header, "is a header the MCP client sets itself: remove it"
            )


def validate(
    raw: Mapping[str, Any],
    source: str = "settings",
    sources: Mapping[str, str] | None = None,
    *,
    unrecorded: str | None = None,
) -> Settings:
    """Turn a raw document into Settings, or raise ConfigError listing every issue.

    ``sources`` says where values came from (see :func:`record_sources`); each issue names the
    source of its value: ``unrecorded`` (default ``source``) for a value not in it.
    """
    issues: list[ConfigIssue] = []
    _validate_struct(Settings, raw, "", issues)
    if not issues:
        try:
            settings = msgspec.convert(raw, Settings, strict=True)
        except msgspec.ValidationError as exc:  # a rule the walker does not know: say where
            raise ConfigError([ConfigIssue("(document)", MISSING, str(exc))], source) from exc
        issues.extend(_cross_checks(settings))
    if issues:
        fallback = source if unrecorded is None else unrecorded
        raise _error([_attributed(i, sources or {}, fallback) for i in issues], source)
    return settings


# --------------------------------------------------------------------------- sources


def record_sources(
    sources: dict[str, str], patch: Mapping[str, Any], source: str, prefix: str = ""
) -> None:
    """Note ``source`` for every value ``patch`` sets, as :func:`merge` applies it.

    Keys are dotted paths; a list (an array of tables too) is one value.
    """
    for key, value in patch.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            record_sources(sources, value, source, path + ".")
        else:
            _set_source(sources, path, source)


def _set_source(sources: dict[str, str], path: str, source: str) -> None:
    # A value replaces everything under it: what was recorded there is no longer in effect.
    for old in [p for p in sources if p.startswith((path + ".", path + "["))]:
        del sources[old]
    sources[path] = source


def source_of(path: str, sources: Mapping[str, str], default: str) -> str:
    """The source of the value at ``path`` ("mcp.endpoints[0].name"): its own or its parent's,
    else the one source of everything under it (an unknown table made by one variable)."""
    key = path
    while key:
        if key in sources:
            return sources[key]
        key = key[: max(key.rfind("."), key.rfind("["), 0)]
    below = {v for k, v in sources.items() if k.startswith((path + ".", path + "["))}
    return below.pop() if len(below) == 1 else default


def _attributed(issue: ConfigIssue, sources: Mapping[str, str], default: str) -> ConfigIssue:
    if issue.source:
        return issue
    return dataclasses.replace(issue, source=source_of(issue.path, sources, default))


def _error(issues: list[ConfigIssue], source: str) -> ConfigError:
    """A ConfigError headed by the one source of all ``issues``, or by ``source`` if several;
    no secret in it (:func:`_without_secret`)."""
    origins = {issue.source or source for issue in issues}
    return ConfigError(
        [_without_secret(i) for i in issues], origins.pop() if len(origins) == 1 else source
    )


def _without_secret(issue: ConfigIssue) -> ConfigIssue:
    """``issue`` as it may be shown (stderr, logs, a PATCH answer): a secret setting's value is
    not, an MCP URL's password and query values are ``***``, as everywhere else."""
    if issue.value is MISSING:
        return issue
    secret = any(issue.path == f"{section}.{key}" for section, key in SECRET_KEYS)
    if not secret and issue.path.endswith(".url") and isinstance(issue.value, str):
        if url_problem(issue.value) is None:
            return dataclasses.replace(issue, value=redact_url(issue.value))
        secret = True  # not even a URL to redact ("http://[::1"): not shown
    if secret:
        return dataclasses.replace(issue, value=MISSING, rule=f"the value (not shown) {issue.rule}")
    return issue


# --------------------------------------------------------------------------- loading


def _parse_env_value(text: str) -> object:
    """Read an environment value as a TOML value when it is one (numbers, bools, lists)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):  # [[[[...: a string, then refused
        return text


def env_source(name: str) -> str:
    """How an error names a value that came from the environment variable ``name``."""
    return f"environment variable {name}"


def _apply_env(
    raw: dict[str, Any],
    environ: Mapping[str, str],
    issues: list[ConfigIssue],
    sources: dict[str, str],
) -> None:
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            rule = "malformed: use VISIONFLOW__SECTION__KEY"
            issues.append(ConfigIssue(name, text, rule, "environment"))
            continue
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                issues.append(ConfigIssue(name, text, f"'{part}' is not a table", "environment"))
                break
            node = child
        else:
            # A string setting takes the text as it is unless it is a quoted TOML string: a
            # token of digits, a host "true" or a path that reads as a TOML date stay strings.
            value = _parse_env_value(text)
            if _field_type(Settings, parts) is str and not isinstance(value, str):
                value = text
            node[parts[-1]] = value
            _set_source(sources, ".".join(parts), env_source(name))


def _field_type(cls: type[Struct], parts: list[str]) -> Any:
    """The annotated type at ``parts`` under ``cls`` (None when there is no such field)."""
    tp: Any = cls
    for part in parts:
        if not _is_struct(tp):
            return None
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(tp)}
        if part not in fields:
            return None
        tp = fields[part]
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``base`` (tables merge, everything else replaces)."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class Loaded(Struct, frozen=True):
    settings: Settings
    source: str
    file_found: bool
    notes: tuple[str, ...] = ()  # valid but doubtful settings, for the log and check-config


# What settings.toml shipped for the layout before the force model of Dec 2026 (knowledge,
# agents). A file copied from then still validates, but these values were tuned for that model:
# with them the current one barely moves (dt 0.016) before its schedule cools it.
OLD_MODEL_VALUES: dict[str, dict[str, float]] = {
    "knowledge": {
        "spring_k": 0.1,
        "rest_length": 30.0,
        "repel_k": 2.0,
        "damping": 0.85,
        "dt": 0.016,
        "max_velocity": 5.0,
        "warmup_iterations": 200,
    },
    "agents": {
        "spring_k": 0.5,
        "rest_length": 30.0,
        "repel_k": 5.0,
        "damping": 0.95,
        "dt": 0.016,
        "max_velocity": 1.0,
        "warmup_iterations": 200,
    },
}


def old_model_notes(raw: Mapping[str, Any], source: str) -> list[str]:
    """A note per layout table of ``raw`` that holds three or more of ``OLD_MODEL_VALUES``."""
    notes = []
    physics = raw.get("physics")
    for group, old in OLD_MODEL_VALUES.items():
        table = physics.get(group) if isinstance(physics, Mapping) else None
        if not isinstance(table, Mapping):
            continue
        same = [k for k, v in old.items() if k in table and table[k] == v]
        if len(same) >= 3:
            notes.append(
                f"{source}: physics.{group} sets {', '.join(same)} to the values shipped before "
                "the layout model of Dec 2026; they were tuned for the old model and make the "
                "current one slow and flat: remove them to get the current defaults"
            )
    return notes


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "command line",
) -> Loaded:
    """Read ``path`` (default ./settings.toml), then environment overrides, then ``overrides``.

    A missing file means defaults (the caller says so once in the log); an unreadable or
    malformed one is a ConfigError. An invalid value is reported with where it came from: the
    file, the environment variable (by name) or ``overrides_source``.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None
    file = Path(path) if path is not None else Path("settings.toml")
    source = str(file)
    raw: dict[str, Any] = {}
    found = False
    try:
        text = file.read_text(encoding="utf-8")
        found = True
    except FileNotFoundError:
        if explicit:
            raise ConfigError([ConfigIssue(source, MISSING, "file not found")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(source, MISSING, f"cannot read: {exc}")], source) from exc
    if found:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                [ConfigIssue(source, MISSING, f"not valid TOML: {exc}")], source
            ) from exc
        except RecursionError as exc:  # tomllib recurses per nesting level
            raise ConfigError([ConfigIssue(source, MISSING, "nested too deeply")], source) from exc
    issues: list[ConfigIssue] = []
    sources: dict[str, str] = {}
    record_sources(sources, raw, source)
    _apply_env(raw, environ, issues, sources)
    if overrides:
        raw = merge(raw, overrides)
        record_sources(sources, overrides, overrides_source)
    if issues:
        raise _error(issues, source)
    # Several sources: the head says "settings" and each issue names its own.
    settings = validate(raw, "settings", sources, unrecorded="default")
    return Loaded(settings, source, found, tuple(old_model_notes(raw, source)))


def to_dict(settings: Settings) -> dict[str, Any]:
    result = msgspec.to_builtins(settings)
    assert isinstance(result, dict)
    return result


#: Settings never shown (``check-config``, ``GET /api/settings``): a set one reads "***".
SECRET_KEYS = (("server", "token"),)


def masked(doc: dict[str, Any], *, commands: bool = False) -> dict[str, Any]:
    """``doc`` (from :func:`to_dict`) with every secret that is set replaced by "***"; with
    ``commands``, also each MCP endpoint's ``command`` and ``cwd`` (a command line may carry an
    API key, e.g. ``--api-key``)."""
    out = dict(doc)
    for section, key in SECRET_KEYS:
        table = out.get(section)
        if isinstance(table, dict) and table.get(key):
            out[section] = {**table, key: "***"}
    mcp = out.get("mcp")
    if isinstance(mcp, dict) and isinstance(mcp.get("endpoints"), list):
        out["mcp"] = {
            **mcp,
            "endpoints": [_masked_endpoint(ep, commands) for ep in mcp["endpoints"]],
        }
    return out


def _masked_endpoint(ep: dict[str, Any], commands: bool) -> dict[str, Any]:
    """Header and environment values are always secrets (a bearer token, an API key), and so
    are a URL's password and query values; ``commands`` hides the command line too."""
    out = dict(ep)
    for key in ("headers", "env"):
        if isinstance(ep.get(key), dict):
            out[key] = dict.fromkeys(ep[key], "***")
    if isinstance(ep.get("url"), str):
        out["url"] = redact_url(ep["url"])
    if commands:
        out["command"] = ["***"] if ep.get("command") else []
        out["args"] = ["***"] if ep.get("args") else []
        out["cwd"] = "***" if ep.get("cwd") else ""
    return out


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be taken apart ("Invalid IPv6 URL", a port that is not one), or
    None; a regular expression lets such URLs by."""
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018  (read for its ValueError)
    except ValueError as exc:
        return str(exc)
    return None


def redact_url(url: str) -> str:
    """``url`` with its password and each query value replaced by ``***`` (for logs and
    status: a token in a URL is as secret as one in a header)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = "&".join(
        f"{name}=***" if sep else name
        for name, sep, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def to_toml(settings: Settings, *, mask: bool = True) -> str:
    """Render effective settings as TOML (for ``check-config``), secrets masked."""
    doc = to_dict(settings)
    return to_toml_table(masked(doc) if mask else doc)


def to_toml_table(doc: Mapping[str, Any]) -> str:
    """Render a document of tables, arrays of tables and plain values as TOML."""
    return _render_table(doc, [])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table (an endpoint's headers, env)
        items = (f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def _render_table(table: Mapping[str, Any], path: list[str]) -> str:
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) or (
            isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value)
        ):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = []
    if path and lines:
        out.append(f"[{'.'.join(path)}]")
    out.extend(lines)
    for key, value in nested:
        if isinstance(value, list):
            for item in value:
                out.append(f"\n[[{'.'.join([*path, key])}]]")
                out.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
        else:
            block = _render_table(value, [*path, key])
            out.append("\n" + block if out else block)
    return "\n".join(out)
