"""Which requests a browser page may make of this service: Host, Origin and Content-Type rules.

Sans-IO: pure functions over header strings and the server settings. The HTTP middleware
(:class:`visionflow.web.guards.RequestGuard`) and the ``/wss`` upgrade check
(:func:`visionflow.web.ws.parse_connect`) are their only users. docs/security.md explains why.

- **Host** (every request): DNS rebinding makes a foreign page same-origin with the service, but
  the browser still sends the attacker's name as ``Host``. Allowed: the names in
  ``server.allowed_hosts`` (``name`` any port, ``name:port``, ``.domain`` for it and its
  subdomains, ``*`` anything), the configured ``server.host`` itself, and, when the service listens
  on every interface (0.0.0.0 or ::), any IP address (a rebinding attack always arrives with a
  name, never with an address).
- **Origin** (mutating requests and ``/wss``): a browser sends it on every cross-site request and a
  page cannot forge it. Allowed: none at all (a script, not a browser), the same origin as the
  request's ``Host``, or one listed in ``server.allowed_origins`` (``*`` any).
- **Content-Type** (mutating requests): ``application/json``, so a page cannot slip a body in
  through an HTML form or a CORS "simple" request (``text/plain``, form encodings), which a
  browser sends cross-site without asking the server first. A route may take other types
  (:data:`BODY_TYPES`: the graph import takes GraphML, GEXF and CSV) as long as each is none of
  those three: a page can send any other type cross-site only after a CORS preflight, which
  this service never approves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from visionflow.settings import ServerSettings

#: Methods that change nothing here; every other method counts as mutating.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: ``server.host`` values meaning "every interface".
WILDCARD_ADDRESSES: Final = frozenset({"0.0.0.0", "::", "[::]"})
#: Origins whose scheme we know the default port of (what a browser page can be served from).
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_NAME: Final = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")

#: What a browser sends cross-site without a preflight (the CORS-safelisted Content-Types):
#: never accepted as a body, whatever a route takes.
SIMPLE_TYPES: Final = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
#: Body types a route takes besides ``application/json``, by path. Each needs a preflight.
BODY_TYPES: Final[dict[str, frozenset[str]]] = {
    "/api/graph/import": frozenset(
        {
            "application/graphml+xml",
            "application/gexf+xml",
            "application/xml",
            "text/xml",
            "text/csv",
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP refusal in the project's error shape: status, code, message, path (a header)."""

    status: int
    code: str
    message: str
    path: str


# --------------------------------------------------------------------------- parsing


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def split_host(text: str) -> tuple[str, int | None] | None:
    """``Host``-style ``name[:port]`` as (lower-case name, port), IPv6 kept in brackets.

    None when it is not a well-formed host: a browser only ever sends well-formed ones, so
    anything else is refused rather than guessed at.
    """
    text = text.strip().lower()
    port_text: str | None = None
    if text.startswith("["):
        name, sep, rest = text.partition("]")
        ip = _ip(name[1:]) if sep else None
        if not isinstance(ip, ipaddress.IPv6Address) or (rest and not rest.startswith(":")):
            return None
        name = f"[{ip.compressed}]"
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = text.partition(":")
        name = name.removesuffix(".")  # "localhost." is localhost
        if not _NAME.match(name) or ":" in port_text:
            return None
        port_text = port_text if sep else None
    if port_text is None:
        return name, None
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        return None
    return name, int(port_text)


def _bracketed(host: str) -> str:
    """A bare IPv6 address (as ``server.host`` takes it) in the brackets a Host header uses."""
    return f"[{host}]" if host.count(":") > 1 and not host.startswith("[") else host


def split_origin(origin: str) -> tuple[str, str, int] | None:
    """An http(s) ``Origin`` as (scheme, name, port) with the default port filled in; else None."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        return None
    parsed = split_host(rest.removesuffix("/"))
    if parsed is None:
        return None
    name, port = parsed
    return scheme, name, DEFAULT_PORTS[scheme] if port is None else port


def _origin_key(origin: str) -> tuple[str, str, int] | str:
    """What two origins are compared by: parsed where we can, else the lower-case text."""
    return split_origin(origin) or origin.strip().lower().removesuffix("/")


# --------------------------------------------------------------------------- the rules


def _host_matches(entry: str, name: str, port: int | None) -> bool:
    entry = entry.strip().lower()
    if entry == "*":
        return True
    if entry.startswith("."):  # the domain and every subdomain, any port
        return name == entry[1:] or name.endswith(entry)
    parsed = split_host(_bracketed(entry))
    return parsed is not None and parsed[0] == name and parsed[1] in (None, port)


def host_allowed(host: str | None, allowed_hosts: Sequence[str], bind_host: str) -> bool:
    """Whether a request's ``Host`` names this service (see the module docstring)."""
    if "*" in allowed_hosts:
        return True
    parsed = split_host(host or "")
    if parsed is None:
        return False
    name, port = parsed
    entries = list(allowed_hosts)
    if bind_host in WILDCARD_ADDRESSES:
        if _ip(name) is not None:
            return True
    else:
        entries.append(bind_host)
    return any(_host_matches(entry, name, port) for entry in entries)


def same_origin(origin: str, host: str | None) -> bool:
    """Whether an http(s) ``Origin`` has the request ``Host``'s name and port."""
    parsed_origin = split_origin(origin)
    parsed_host = split_host(host or "")
    if parsed_origin is None or parsed_host is None:
        return False
    scheme, name, port = parsed_origin
    host_name, host_port = parsed_host
    # A Host without a port is on the default port of the scheme the page was served with.
    return name == host_name and port == (DEFAULT_PORTS[scheme] if host_port is None else host_port)


def origin_allowed(origin: str | None, host: str | None, allowed_origins: Sequence[str]) -> bool:
    """No Origin (a script), the same origin, or one in ``server.allowed_origins``."""
    if origin is None or "*" in allowed_origins:
        return True
    if _origin_key(origin) in {_origin_key(o) for o in allowed_origins}:
        return True
    return same_origin(origin, host)


def media_type(content_type: str | None) -> str:
    """The type without parameters (``charset``), lower-case."""
    return (content_type or "").partition(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """``application/json``, with or without parameters such as ``charset``."""
    return media_type(content_type) == "application/json"


def body_type_allowed(content_type: str | None, path: str = "") -> bool:
    """JSON, or a type the route at ``path`` takes besides (never a CORS-safelisted one)."""
    media = media_type(content_type)
    if media == "application/json":
        return True
    return media in BODY_TYPES.get(path, frozenset()) and media not in SIMPLE_TYPES


def is_mutating(method: str) -> bool:
    return method.upper() not in SAFE_METHODS


# --------------------------------------------------------------------------- decisions


def _host_refusal(server: ServerSettings, host: str | None) -> str | None:
    if host_allowed(host, server.allowed_hosts, server.host):
        return None
    if not host:
        return "the request has no Host header"
    return f"Host {host!r} is not allowed (add it to server.allowed_hosts)"


def _origin_refusal(server: ServerSettings, host: str | None, origin: str | None) -> str | None:
    if origin_allowed(origin, host, server.allowed_origins):
        return None
    return f"Origin {origin!r} is not this server nor in server.allowed_origins"


def http_refusal(
    server: ServerSettings,
    method: str,
    host: str | None,
    origin: str | None,
    content_type: str | None,
    path: str = "",
) -> Refusal | None:
    """None when an HTTP request may proceed; else how to refuse it (Host, Origin, type).
    ``path`` is the request's, for the body types a route takes besides JSON."""
    reason = _host_refusal(server, host)
    if reason is not None:
        return Refusal(403, "host_not_allowed", reason, "Host")
    if not is_mutating(method):
        return None
    reason = _origin_refusal(server, host, origin)
    if reason is not None:
        return Refusal(403, "origin_not_allowed", f"cross-site request refused: {reason}", "Origin")
    if not body_type_allowed(content_type, path):
        types = ", ".join(["application/json", *sorted(BODY_TYPES.get(path, ()))])
        return Refusal(
            415,
            "unsupported_media_type",
            f"{method.upper()} needs Content-Type: {types}, "
            + (f"not {content_type!r}" if content_type is not None else "and has none"),
            "Content-Type",
        )
    return None


def websocket_refusal(server: ServerSettings, host: str | None, origin: str | None) -> str | None:
    """None when a ``/wss`` upgrade passes the Host and Origin rules; else the close reason."""
    return _host_refusal(server, host) or _origin_refusal(server, host, origin)
