"""The backup file: one gzip-compressed tar of the state files with a manifest first.

Members, in this order (each state file only when there is one):

    MANIFEST.json              what this is, who made it, when, and each member's checksum
    graph.json                 the saved knowledge graph (state/graphfile.py)
    layout.json                positions, ids, id counter and revision (state/layout.py)
    settings-overrides.toml    runtime settings changes (visionflow/live_settings.py)

The manifest::

    {"format": "visionflow-state-backup", "format_version": 1,
     "visionflow_version": "0.1.0", "created": "2026-12-05T13:22:11Z", "source": "service",
     "members": [{"name": "graph.json", "size": 1234, "sha256": "...", "version": 2}, ...],
     "summary": {"knowledge_nodes": 10, "edges": 12, "positions": 14, "overrides": 1}}

A tar so that an operator can look inside with ``tar tzf`` and take a file out by hand; the
manifest so that a restore can tell a backup from any other archive, refuse a newer format, and
find a damaged member by its checksum. Reading never trusts the archive: it is read as a stream
(nothing is extracted to disk), every size is capped before it is read (the decompressed stream
as a whole too, so a gzip bomb stops at the cap), and only the members above, as regular files,
each once, are accepted. Every problem is a :class:`BackupError` whose message says what is
wrong with the file. Sans-IO: bytes in, bytes out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from visionflow import jsonsafe
from visionflow.errors import VisionflowError
from visionflow.fileio import OVERRIDES_FILE_MAX, STATE_FILE_MAX
from visionflow.live_settings import OVERRIDES_FILE
from visionflow.state.graphfile import GRAPH_FILE
from visionflow.state.layout import LAYOUT_FILE

BACKUP_FORMAT = "visionflow-state-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
MANIFEST_MAX = 64 * 1024
#: Each state file a backup may hold, with the largest size the service itself would read.
MEMBER_LIMITS: dict[str, int] = {
    GRAPH_FILE: STATE_FILE_MAX,
    LAYOUT_FILE: STATE_FILE_MAX,
    OVERRIDES_FILE: OVERRIDES_FILE_MAX,
}
MEMBER_ORDER = tuple(MEMBER_LIMITS)
# Tar headers and padding around the members: a few KB; the cap leaves room for them.
_TAR_SLACK = 1 << 20
MAX_UNPACKED = MANIFEST_MAX + sum(MEMBER_LIMITS.values()) + _TAR_SLACK
# gzip compresses JSON about tenfold: a backup file bigger than the unpacked cap is not one.
MAX_BACKUP_BYTES = MAX_UNPACKED
# Level 1: several times faster than the default on JSON, and still a fifth to a tenth of it.
COMPRESS_LEVEL = 1


class BackupError(VisionflowError):
    """A backup file that cannot be made, read or restored; the message says why."""


class MemberInfo(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int
    sha256: str
    version: int


class Summary(msgspec.Struct, forbid_unknown_fields=True):
    knowledge_nodes: int = 0
    edges: int = 0
    positions: int = 0
    overrides: int = 0


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    format_version: int
    visionflow_version: str
    created: str
    source: str
    members: list[MemberInfo]
    summary: Summary


class _Head(msgspec.Struct):
    """What any manifest of any version has: enough to tell foreign and newer files apart."""

    format: str | None = None
    format_version: int | None = None
    visionflow_version: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """A state file to put in a backup, with its format version."""

    name: str
    data: bytes
    version: int


@dataclass(frozen=True, slots=True)
class Backup:
    manifest: Manifest
    members: dict[str, bytes]  # name -> bytes, checksums verified


def pack(
    members: Sequence[Member],
    *,
    visionflow_version: str,
    created: str,
    source: str,
    summary: Summary,
) -> bytes:
    """The backup file's bytes. ``members`` are state files of the names in MEMBER_LIMITS."""
    for m in members:
        if m.name not in MEMBER_LIMITS:
            raise BackupError(f"{m.name!r} is not a state file")
    members = sorted(members, key=lambda m: MEMBER_ORDER.index(m.name))
    infos = []
    for m in members:
        digest = hashlib.sha256(m.data).hexdigest()
        infos.append(MemberInfo(m.name, len(m.data), digest, m.version))
    manifest = Manifest(
        BACKUP_FORMAT, FORMAT_VERSION, visionflow_version, created, source, infos, summary
    )
    out = io.BytesIO()
    mtime = _epoch(created)  # what `tar tzvf` shows; the gzip header's stays 0
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add(tar, MANIFEST, msgspec.json.format(msgspec.json.encode(manifest)), mtime)
        for m in members:
            _add(tar, m.name, m.data, mtime)
    return out.getvalue()


def _epoch(created: str) -> int:
    try:
        return int(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o600  # a backup holds the whole graph: readable by its owner only
    tar.addfile(info, io.BytesIO(data))


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Bounded(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes came out of ``inner``."""

    def __init__(self, inner: _Readable, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise BackupError(f"unpacks to more than {MAX_UNPACKED} bytes: not a backup")
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def unpack(data: bytes) -> Backup:
    """Read and check a backup file; BackupError saying what is wrong with it."""
    if len(data) > MAX_BACKUP_BYTES:
        raise BackupError(f"{len(data)} bytes, over the limit of {MAX_BACKUP_BYTES}")
    if data[:2] != b"\x1f\x8b":
        raise BackupError("not a VisionFlow state backup (not a gzip-compressed tar file)")
    stream = io.BufferedReader(_Bounded(gzip.GzipFile(fileobj=io.BytesIO(data)), MAX_UNPACKED))
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            return _read_members(tar)
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error) as exc:
        raise BackupError(f"not a readable backup (damaged or not a tar file: {exc})") from None
    except EOFError:
        raise BackupError("truncated: the file ends before the backup does") from None


def _read_members(tar: tarfile.TarFile) -> Backup:
    manifest: Manifest | None = None
    found: dict[str, bytes] = {}
    for info in tar:
        if manifest is None:
            if info.name != MANIFEST:
                raise BackupError(f"not a VisionFlow state backup (no {MANIFEST} first)")
            manifest = _manifest(_read(tar, info, MANIFEST_MAX))
            continue
        if info.name not in MEMBER_LIMITS:
            raise BackupError(f"holds {info.name!r}, which is not a state file")
        if info.name in found:
            raise BackupError(f"holds {info.name!r} twice")
        found[info.name] = _read(tar, info, MEMBER_LIMITS[info.name])
    if manifest is None:
        raise BackupError("empty: not a VisionFlow state backup")
    listed = {m.name: m for m in manifest.members}
    for name in found.keys() - listed.keys():
        raise BackupError(f"holds {name!r}, which its manifest does not list")
    for name, listing in listed.items():
        data = found.get(name)
        if data is None:
            raise BackupError(f"its manifest lists {name!r}, which it does not hold")
        if len(data) != listing.size or hashlib.sha256(data).hexdigest() != listing.sha256:
            raise BackupError(f"{name} is damaged (its checksum does not match the manifest)")
    return Backup(manifest, found)


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo, limit: int) -> bytes:
    if not info.isreg():
        raise BackupError(f"{info.name!r} is not a regular file in the archive")
    if info.size > limit:
        raise BackupError(f"{info.name} is {info.size} bytes, over the limit of {limit}")
    f = tar.extractfile(info)
    assert f is not None  # a regular file always has one
    data = f.read()
    if len(data) != info.size:
        raise BackupError("truncated: the file ends before the backup does")
    return data


def _manifest(data: bytes) -> Manifest:
    try:
        head = jsonsafe.decode(data, msgspec.json.Decoder(_Head))
    except msgspec.DecodeError:
        raise BackupError(f"not a VisionFlow state backup ({MANIFEST} is not one)") from None
    if head.format != BACKUP_FORMAT:
        raise BackupError(f"not a VisionFlow state backup ({MANIFEST} names {head.format!r})")
    version = head.format_version
    if not isinstance(version, int) or version < 1:
        raise BackupError(f"{MANIFEST}: format_version {version!r} is not a version")
    if version > FORMAT_VERSION:
        raise BackupError(
            f"backup format {version} (made by VisionFlow {head.visionflow_version}) is newer "
            f"than this VisionFlow reads (format {FORMAT_VERSION}): restore it with that "
            "version or a later one"
        )
    try:
        return jsonsafe.decode(data, msgspec.json.Decoder(Manifest))
    except msgspec.DecodeError as exc:
        raise BackupError(f"{MANIFEST} is damaged: {exc}") from None


def summary_of(members: Mapping[str, bytes]) -> str:
    """'graph.json, layout.json': what a backup holds, for messages."""
    return ", ".join(n for n in MEMBER_ORDER if n in members) or "no state files"
