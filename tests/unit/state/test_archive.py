"""The backup file: a round trip, and every damaged, foreign or hostile file refused by name."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile

import pytest

from visionflow.state import archive as ar

GRAPH = b'{"version": 2, "nodes": [{"id": "a"}], "edges": [], "revision": 1}'
LAYOUT = b'{"version": 2, "nodes": [], "revision": 1, "next_id": 2}'


def _backup(**kw: object) -> bytes:
    return ar.pack(
        [ar.Member("layout.json", LAYOUT, 2), ar.Member("graph.json", GRAPH, 2)],
        visionflow_version="0.1.0",
        created="2026-12-05T13:00:00Z",
        source="files",
        summary=ar.Summary(knowledge_nodes=1),
    )


def _raw_manifest() -> bytes:
    with tarfile.open(fileobj=io.BytesIO(_backup()), mode="r:gz") as tar:
        f = tar.extractfile(ar.MANIFEST)
        assert f is not None
        return f.read()


def _tar(
    members: list[tuple[str, bytes]], *, gz: bool = True, kind: bytes = tarfile.REGTYPE
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind if name != ar.MANIFEST else tarfile.REGTYPE
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            if info.type == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return gzip.compress(out.getvalue()) if gz else out.getvalue()


def test_round_trip_manifest_first_members_in_order_checksums_listed() -> None:
    data = _backup()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == ["MANIFEST.json", "graph.json", "layout.json"]
        assert all(m.mode == 0o600 for m in tar.getmembers())
        # `tar tzvf` shows when it was made (2026-12-05T13:00:00Z)
        assert {m.mtime for m in tar.getmembers()} == {1796475600}
    got = ar.unpack(data)
    assert got.members == {"graph.json": GRAPH, "layout.json": LAYOUT}
    m = got.manifest
    assert (m.format, m.format_version, m.source) == ("visionflow-state-backup", 1, "files")
    assert [(i.name, i.size, i.version) for i in m.members] == [
        ("graph.json", len(GRAPH), 2),
        ("layout.json", len(LAYOUT), 2),
    ]
    assert m.members[0].sha256 == hashlib.sha256(GRAPH).hexdigest()
    assert _backup() == data  # the bytes depend on the state only


def test_only_state_files_go_in() -> None:
    with pytest.raises(ar.BackupError, match="'passwd' is not a state file"):
        ar.pack(
            [ar.Member("passwd", b"x", 1)],
            visionflow_version="",
            created="",
            source="",
            summary=ar.Summary(),
        )


def _tampered() -> bytes:
    raw = _raw_manifest()
    return _tar(
        [(ar.MANIFEST, raw), ("graph.json", GRAPH.replace(b'"a"', b'"b"')), ("layout.json", LAYOUT)]
    )


CASES = {
    "empty": (b"", "not a VisionFlow state backup (not a gzip-compressed tar file)"),
    "text": (b"hello\n", "not a gzip-compressed tar file"),
    "plain tar": (_tar([("x", b"1")], gz=False), "not a gzip-compressed tar file"),
    "gzip of text": (gzip.compress(b"just text " * 100), "not a readable backup"),
    "foreign tar": (_tar([("README", b"hi")]), "no MANIFEST.json first"),
    "truncated": (_backup()[:-30], "truncated"),
    "half": (_backup()[:200], "truncated"),
    "tampered": (_tampered(), "graph.json is damaged (its checksum does not match"),
    "manifest not json": (_tar([(ar.MANIFEST, b"{nope")]), "MANIFEST.json is not one"),
    "foreign manifest": (
        _tar([(ar.MANIFEST, b'{"format": "someone-else", "format_version": 1}')]),
        "MANIFEST.json names 'someone-else'",
    ),
    "newer": (
        _tar(
            [
                (
                    ar.MANIFEST,
                    b'{"format": "visionflow-state-backup", "format_version": 2, '
                    b'"visionflow_version": "9.9"}',
                )
            ]
        ),
        "backup format 2 (made by VisionFlow 9.9) is newer than this VisionFlow reads",
    ),
    "version not a number": (
        _tar([(ar.MANIFEST, b'{"format": "visionflow-state-backup", "format_version": 0}')]),
        "format_version 0 is not a version",
    ),
    "manifest damaged": (
        _tar([(ar.MANIFEST, b'{"format": "visionflow-state-backup", "format_version": 1}')]),
        "MANIFEST.json is damaged",
    ),
    "unknown member": (
        _tar([(ar.MANIFEST, _raw_manifest()), ("../../etc/cron.d/x", b"1")]),
        "holds '../../etc/cron.d/x', which is not a state file",
    ),
    "twice": (
        _tar([(ar.MANIFEST, _raw_manifest()), ("graph.json", GRAPH), ("graph.json", GRAPH)]),
        "holds 'graph.json' twice",
    ),
    "missing": (
        _tar([(ar.MANIFEST, _raw_manifest()), ("graph.json", GRAPH)]),
        "lists 'layout.json', which it does not hold",
    ),
    "unlisted": (
        _tar(
            [
                (ar.MANIFEST, _raw_manifest()),
                ("graph.json", GRAPH),
                ("layout.json", LAYOUT),
                ("settings-overrides.toml", b""),
            ]
        ),
        "holds 'settings-overrides.toml', which its manifest does not list",
    ),
    "symlink": (
        _tar([(ar.MANIFEST, _raw_manifest()), ("graph.json", b"")], kind=tarfile.SYMTYPE),
        "'graph.json' is not a regular file",
    ),
    "empty tar": (gzip.compress(b"\0" * 1024), "empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_what_is_wrong(case: str) -> None:
    data, message = CASES[case]
    with pytest.raises(ar.BackupError, match=re.escape(message)):
        ar.unpack(data)


def test_a_member_over_its_cap_is_refused_before_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(ar.MEMBER_LIMITS, "graph.json", 10)
    with pytest.raises(ar.BackupError, match=r"graph.json is \d+ bytes, over the limit of 10"):
        ar.unpack(_backup())


def test_a_gzip_bomb_stops_at_the_unpacked_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # a pax header that claims 64 MiB (tarfile reads a pax header whole, into memory): it
    # compresses to ~64 KB; with the cap at 1 MiB, reading stops there
    monkeypatch.setattr(ar, "MAX_UNPACKED", 1 << 20)
    info = tarfile.TarInfo("pax")
    info.type, info.size = tarfile.XHDTYPE, 64 << 20
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    bomb = gzip.compress(header + b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    with pytest.raises(ar.BackupError, match="unpacks to more than 1048576 bytes"):
        ar.unpack(bomb)


def test_a_file_over_the_size_cap_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ar, "MAX_BACKUP_BYTES", 100)
    with pytest.raises(ar.BackupError, match="over the limit of 100"):
        ar.unpack(_backup())


def test_summary_of() -> None:
    assert ar.summary_of({"layout.json": b"", "graph.json": b""}) == "graph.json, layout.json"
    assert ar.summary_of({}) == "no state files"
