"""LiveVault: a vault read once, then path by path, always as a full scan would read it now."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from visionflow.notes import live
from visionflow.notes.build import build_graph
from visionflow.notes.live import LiveVault, VaultGoneError
from visionflow.notes.parse import NoteError
from visionflow.notes.vault import MAX_PROBLEMS_KEPT, scan_vault

LIMIT = 1 << 16


def write(root: Path, rel: str, text: str | bytes) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def same_as_a_scan(vault: LiveVault, root: Path) -> None:
    """The vault's graph and problems are what a full scan of ``root`` gives now."""
    scan = scan_vault(root, max_file_bytes=vault.max_file_bytes, max_notes=vault.max_notes)
    assert vault.graph.document() == build_graph(scan.notes)
    read = vault.read_all()  # the full read agrees too, and finds nothing to change
    assert not read.delta
    assert read.problem_count == scan.problem_count
    assert {p.path for p in read.problems} <= {p.path for p in scan.problems} | {
        p.path for p in read.problems
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    vault = tmp_path / "vault"
    write(vault, "A.md", "[[B]] [[C]]")
    write(vault, "B.md", "[[A]]")
    write(vault, "C.md", "#topic")
    write(vault, "folder/D.md", "[[A]]")
    return vault


def test_the_first_read_is_the_scan(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    read = vault.read_all()
    assert read.notes == 4 and read.parsed == 4 and read.complete
    assert vault.graph.document() == build_graph(
        scan_vault(root, max_file_bytes=LIMIT, max_notes=100).notes
    )
    assert len(read.delta.nodes) == read.nodes  # all new
    assert vault.top == os.path.realpath(root)


def test_an_edited_link_is_one_file_read_and_a_small_delta(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    path = write(root, "A.md", "[[B]] [[folder/D]]")
    read = vault.update([path])
    assert read is not None and read.parsed == 1
    assert read.delta.removed_edges == (("note:a", "note:c"),)
    assert [(e["source"], e["target"]) for e in read.delta.edges] == [("note:a", "note:d")]
    assert not read.delta.nodes and not read.delta.removed_nodes
    same_as_a_scan(vault, root)


def test_new_deleted_and_renamed_notes(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    read = vault.update([write(root, "E.md", "[[A]]")])
    assert read is not None and [n["id"] for n in read.delta.nodes] == ["note:e"]
    os.remove(root / "B.md")  # linked from A: a placeholder now
    read = vault.update([str(root / "B.md")])
    assert read is not None and read.delta.nodes[0]["group"] == "placeholder"
    os.rename(root / "C.md", root / "Sea.md")
    read = vault.update([str(root / "C.md"), str(root / "Sea.md")])
    assert read is not None and "note:sea" in {n["id"] for n in read.delta.nodes}
    same_as_a_scan(vault, root)


def test_folders_renamed_moved_in_and_deleted_are_read_whole(root: Path, tmp_path: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    os.rename(root / "folder", root / "renamed")  # watchfiles names the two folders only
    read = vault.update([str(root / "folder"), str(root / "renamed")])
    assert read is not None and vault.graph.notes.keys() >= {"renamed/D.md"}
    write(tmp_path / "outside", "sub/F.md", "[[A]]")
    os.rename(tmp_path / "outside", root / "moved")
    assert vault.update([str(root / "moved")]) is not None
    assert "moved/sub/F.md" in vault.graph.notes
    shutil.rmtree(root / "renamed")
    assert vault.update([str(root / "renamed"), str(root / "renamed/D.md")]) is not None
    assert "renamed/D.md" not in vault.graph.notes
    same_as_a_scan(vault, root)


def test_what_a_scan_skips_changes_nothing(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    changed = [
        write(root, ".obsidian/workspace.md", "[[X]]"),
        write(root, "logseq/bak/A.md", "[[X]]"),
        write(root, "picture.png", b"\x89PNG"),
        write(root, ".A.md.swp", "x"),
        "/elsewhere/x.md",
    ]
    assert vault.update(changed) is None


def test_a_file_that_breaks_a_rule_is_a_problem_until_it_is_fixed(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    read = vault.update([write(root, "bad.md", b"\xff\xfe\x80")])
    assert read is not None and read.problem_count == 1 and not read.delta
    assert read.problems[0].path == "bad.md" and "not UTF-8" in read.problems[0].reason
    read = vault.update([write(root, "bad.md", "fixed [[A]]")])
    assert read is not None and read.problem_count == 0 and "note:bad" in vault.graph.nodes
    os.symlink("/etc/hostname", root / "link.md")
    read = vault.update([str(root / "link.md")])
    assert (
        read is not None and read.problems[0].reason == "symlink to outside the vault: not followed"
    )
    os.remove(root / "link.md")
    read = vault.update([str(root / "link.md")])
    assert read is not None and read.problem_count == 0
    same_as_a_scan(vault, root)


def test_a_note_reached_only_through_a_symlinked_folder_is_not_read(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    os.symlink(root / "folder", root / "alias")
    assert vault.update([str(root / "alias/D.md")]) is None
    same_as_a_scan(vault, root)


def test_notes_beyond_max_notes_are_problems(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=5)
    vault.read_all()
    read = vault.update([write(root, "E.md", ""), write(root, "F.md", "")])
    assert read is not None and read.notes == 5 and not read.complete
    assert read.problems[0].reason == "more than 5 notes: the walk stopped here"


def test_problems_kept_are_the_first_by_path(tmp_path: Path) -> None:
    for i in range(MAX_PROBLEMS_KEPT + 5):
        write(tmp_path, f"bad{i:02}.md", b"\xff")
    read = LiveVault(tmp_path, max_file_bytes=LIMIT, max_notes=100).read_all()
    assert read.problem_count == MAX_PROBLEMS_KEPT + 5
    assert [p.path for p in read.problems] == [f"bad{i:02}.md" for i in range(MAX_PROBLEMS_KEPT)]


def test_a_vault_folder_gone_or_replaced_is_vault_gone_and_is_read_again_later(
    root: Path,
) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    backup = root.parent / "backup"
    shutil.copytree(root, backup)
    shutil.rmtree(root)
    assert not vault.present()
    with pytest.raises(VaultGoneError, match="gone"):
        vault.update([str(root / "A.md")])
    with pytest.raises(NoteError, match="does not exist"):
        vault.read_all()
    shutil.copytree(backup, root)  # another folder at the same path (maybe the same inode)
    assert vault.present()
    # a new inode says "replaced"; the same one reused, only the event on the folder tells
    with pytest.raises(VaultGoneError, match=r"itself changed|was replaced"):
        vault.update([str(root), str(root / "A.md")])  # as watchfiles reports a deletion
    read = vault.read_all()
    assert not read.delta  # the same pages: the graph keeps every id
    vault.check_top()


def test_an_unchanged_file_is_not_parsed_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RACY_NS", 0)  # trust files written before a read began
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    assert vault.read_all().parsed == 4
    assert vault.read_all().parsed == 0
    # (RACY_NS is 0 here: a write within the file system's timestamp granularity of the last
    # one would look unchanged, which is what RACY_NS guards against)
    time.sleep(0.05)
    write(root, "A.md", "[[B]] [[D]]")  # as long as before: the times tell
    read = vault.read_all()
    assert read.parsed == 1 and read.delta
    same_as_a_scan(vault, root)


def test_a_file_written_just_before_a_read_is_parsed_again(root: Path) -> None:
    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    assert vault.read_all().parsed == 4  # written within RACY_NS: not trusted


def test_update_before_read_all_is_a_bug(root: Path) -> None:
    with pytest.raises(RuntimeError):
        LiveVault(root, max_file_bytes=LIMIT, max_notes=100).update([str(root / "A.md")])


@pytest.mark.parametrize("seed", range(6))
def test_random_changes_reported_as_a_watcher_reports_them(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "v"
    root.mkdir()
    names = ["a", "b", "c", "d", "index"]
    folders = ["", "f/", "f/g/", "h/"]

    def text() -> str:
        return " ".join(f"[[{rng.choice(names)}]]" for _ in range(rng.randint(0, 3)))

    vault = LiveVault(root, max_file_bytes=LIMIT, max_notes=100)
    vault.read_all()
    for _ in range(25):
        op = rng.random()
        rel = rng.choice(folders) + rng.choice(names) + ".md"
        reported: list[str] = []
        if op < 0.5:
            reported.append(write(root, rel, text()))
        elif op < 0.7 and (root / rel).exists():
            os.remove(root / rel)
            reported.append(str(root / rel))
        elif op < 0.8:
            reported.append(write(root, rng.choice(folders) + "bad.md", b"\xff"))
        else:  # a folder renamed or removed: reported as the folder alone
            folder = rng.choice(["f", "h", "f/g"])
            if (root / folder).is_dir():
                if rng.random() < 0.5:
                    target = root / f"{folder}-{rng.randint(0, 9)}"
                    if not target.exists():
                        os.rename(root / folder, target)
                        reported += [str(root / folder), str(target)]
                else:
                    shutil.rmtree(root / folder)
                    reported.append(str(root / folder))
        vault.update(reported)
        scan = scan_vault(root, max_file_bytes=LIMIT, max_notes=100)
        assert vault.graph.document() == build_graph(scan.notes)
        held = [*vault.graph.notes, *vault._problems]
        assert vault._folders == Counter(a for p in held for a in live._ancestors(p))
    same_as_a_scan(vault, root)
