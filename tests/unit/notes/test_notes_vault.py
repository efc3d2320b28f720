"""Reading a vault from disk: what is read, what is skipped and reported, and that no path, link
or encoding trick leads outside the vault."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from visionflow.notes import vault
from visionflow.notes.parse import NoteError
from visionflow.notes.vault import MAX_PROBLEMS_KEPT, Problem, read_note_text, scan_vault

LIMIT = 4096


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the vault with a secret note and a secret folder."""
    out = tmp_path / "outside"
    write(out, "secret.md", "# secret [[Leak]]")
    write(out, "folder/secret.md", "# secret [[Leak]]")
    return out


@pytest.fixture
def obsidian(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "Obsidian Vault"
    write(root, "Home.md", "---\naliases: [Start]\n---\nSee [[Projects/Plan]] and [[Ideas]].\n")
    write(root, "Projects/Plan.md", "---\ntitle: The Plan\ntags: [work]\n---\n[[Home]] #todo\n")
    write(root, "Projects/Old Plan.md", "\ufeffBOM note [[Plan]]")  # a BOM is fine
    write(root, "Ideas.md", "```\n[[Not A Link]]\n```\n[[Home|home]]\n")
    write(root, "Daily/2024-01-05.md", "[plan](../Projects/Plan.md)")
    write(root, "attachments/pic.png", b"\x89PNG\r\n")
    write(root, "attachments/notes.txt", "[[Not a note]]")
    write(root, "drawing.canvas", "{}")
    write(root, ".obsidian/workspace.md", "[[Config]]")
    write(root, ".obsidian/app.json", "{}")
    write(root, ".trash/Deleted.md", "[[Gone]]")
    write(root, ".hidden.md", "[[Hidden]]")
    write(root, "Projects/.draft.md", "[[Hidden]]")
    write(root, "Broken/Latin1.md", "caf\xe9".encode("latin-1"))
    write(root, "Broken/Huge.md", "x" * (LIMIT + 1))
    write(root, "Broken/Bad Front Matter.md", "---\ntitle: ok\ntags: [a, b\n---\n[[Home]]\n")
    (root / "Broken/Link Out.md").symlink_to(outside / "secret.md")
    (root / "Folder Out").symlink_to(outside / "folder", target_is_directory=True)
    (root / "Dangling.md").symlink_to(root / "missing.md")
    (root / "Loop").symlink_to(root, target_is_directory=True)
    (root / "Self.md").symlink_to(root / "Self.md")
    (root / "Link To Home.md").symlink_to(root / "Home.md")  # in the vault: read at Home.md
    (root / "Link To Config.md").symlink_to(root / ".obsidian/workspace.md")
    (root / "attachments/outside.png").symlink_to(outside / "secret.md")  # not a note: quiet
    (root / "attachments/gone.png").symlink_to(root / "nothing.png")
    return root


def test_an_obsidian_vault(obsidian: Path) -> None:
    scan = scan_vault(obsidian, max_file_bytes=LIMIT, max_notes=100)
    assert [n.path for n in scan.notes] == [
        "Home.md",
        "Ideas.md",
        "Daily/2024-01-05.md",
        "Projects/Old Plan.md",
        "Projects/Plan.md",
    ]
    by_path = {n.path: n for n in scan.notes}
    assert by_path["Projects/Plan.md"].title == "The Plan"
    assert by_path["Projects/Old Plan.md"].title == "Old Plan"
    assert [link.target for link in by_path["Ideas.md"].links] == ["Home"]
    assert scan.complete
    assert scan.problem_count == len(scan.problems) == 7  # listed in the next test


def test_every_problem_is_reported_once_with_its_reason(obsidian: Path) -> None:
    scan = scan_vault(obsidian, max_file_bytes=LIMIT, max_notes=100)
    assert sorted(scan.problems, key=lambda p: p.path) == [
        Problem("Broken/Bad Front Matter.md", "line 3: front matter: '[' not closed on this line"),
        Problem("Broken/Huge.md", f"{LIMIT + 1} bytes, over the limit of {LIMIT}: not read"),
        Problem("Broken/Latin1.md", "not UTF-8 (byte 3): not read"),
        Problem("Broken/Link Out.md", "symlink to outside the vault: not followed"),
        Problem("Dangling.md", "broken symlink (or a symlink loop): not followed"),
        Problem("Folder Out", "symlink to outside the vault: not followed"),
        Problem("Self.md", "broken symlink (or a symlink loop): not followed"),
    ]


@pytest.fixture
def logseq(tmp_path: Path) -> Path:
    root = tmp_path / "logseq-graph"
    write(root, "logseq/config.edn", "{:meta/version 1}")
    write(root, "logseq/custom.css", "")
    write(root, "logseq/bak/pages/Old.md", "[[Backup]]")
    write(root, "logseq/version-files/x.md", "[[Version]]")
    write(root, "journals/2024_01_05.md", "- met [[Alice]] about [[project/alpha]] #meeting\n")
    write(root, "pages/project___alpha.md", "alias:: alpha\ntags:: project\n\n- [[Alice]]\n")
    write(root, "pages/Alice.md", "title:: Alice Smith\n- [[Jan 5th, 2024]]\n")
    write(root, "pages/notes%2Flegacy.md", "- [[alpha]]\n")
    write(root, "pages/sub/logseq/inner.md", "- a folder called logseq below the top is read\n")
    write(root, ".git/HEAD.md", "ref")
    write(root, "draws/x.excalidraw", "{}")
    return root


def test_a_logseq_vault(logseq: Path) -> None:
    scan = scan_vault(logseq, max_file_bytes=LIMIT, max_notes=100)
    assert scan.problems == () and scan.problem_count == 0 and scan.complete
    assert [(n.path, n.title) for n in scan.notes] == [
        ("journals/2024_01_05.md", "Jan 5th, 2024"),
        ("pages/Alice.md", "Alice Smith"),
        ("pages/notes%2Flegacy.md", "notes/legacy"),
        ("pages/project___alpha.md", "project/alpha"),
        ("pages/sub/logseq/inner.md", "inner"),
    ]
    alpha = scan.notes[3]
    assert (alpha.aliases, alpha.tags) == (("alpha",), ("project",))


def test_problems_are_all_counted_and_the_first_twenty_kept(tmp_path: Path) -> None:
    for i in range(MAX_PROBLEMS_KEPT + 5):
        write(tmp_path, f"bad{i:02}.md", b"\xff")
    write(tmp_path, "good.md", "fine")
    scan = scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=100)
    assert [n.path for n in scan.notes] == ["good.md"]
    assert scan.problem_count == MAX_PROBLEMS_KEPT + 5
    assert [p.path for p in scan.problems] == [f"bad{i:02}.md" for i in range(MAX_PROBLEMS_KEPT)]


def test_the_note_limit_stops_the_walk(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path, f"n{i}.md", "x")
    scan = scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=3)
    assert [n.path for n in scan.notes] == ["n0.md", "n1.md", "n2.md"]
    assert not scan.complete
    assert scan.problems == (Problem("n3.md", "more than 3 notes: the walk stopped here"),)
    assert scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=5).complete


def test_the_entry_limit_stops_the_walk(tmp_path: Path) -> None:
    for i in range(10):
        write(tmp_path, f"junk/{i}.png", b"")
    write(tmp_path, "a.md", "x")
    scan = scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=100, max_entries=8)
    assert not scan.complete
    assert scan.problems == (Problem("junk", "more than 8 folder entries: the walk stopped here"),)
    assert [n.path for n in scan.notes] == ["a.md"]


def test_a_fifo_and_a_folder_named_like_a_note(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")  # opening it must not wait for a writer
    write(tmp_path, "folder.md/inside.md", "x")
    write(tmp_path, "empty.md", "")
    scan = scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=100)
    assert [n.path for n in scan.notes] == ["empty.md", "folder.md/inside.md"]
    assert scan.problems == (Problem("pipe.md", "not a regular file"),)


def test_a_name_that_is_not_utf8_is_reported_and_not_read(tmp_path: Path) -> None:
    """Linux hands such a name over as lone surrogates, which no id, JSON answer or layout
    file can carry (they made the graph's routes answer 500): a note or folder so named is a
    problem showing the name's bytes, anything else under it is not read, the rest loads."""
    root = os.fsencode(tmp_path)
    with open(os.path.join(root, b"B\xe9.md"), "wb") as f:
        f.write(b"# B [[A]]\n")
    os.makedirs(os.path.join(root, b"d\xff", b"sub"))
    with open(os.path.join(root, b"d\xff", b"sub", b"in.md"), "wb") as f:
        f.write(b"x")
    with open(os.path.join(root, b"pic\xe9.png"), "wb") as f:
        f.write(b"")  # not a note: no problem either
    write(tmp_path, "A.md", "[[B]]")
    scan = scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=100)
    assert [n.path for n in scan.notes] == ["A.md"]
    reason = "its name is not UTF-8: not read (renamed, it would be)"
    assert scan.problems == (Problem("B\\xe9.md", reason), Problem("d\\xff", reason))
    for problem in scan.problems:
        problem.path.encode("utf-8")  # what the health and API answers carry


def test_an_unreadable_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "locked/x.md", "x")
    write(tmp_path, "open.md", "x")
    real_scandir = os.scandir

    def scandir(path: str) -> object:  # chmod 0 would not stop a test run as root
        if path.endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(vault.os, "scandir", scandir)
    scan = scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=100)
    assert [n.path for n in scan.notes] == ["open.md"]
    assert scan.problems == (Problem("locked", "folder cannot be read: Permission denied"),)
    monkeypatch.setattr(vault.os, "scandir", lambda path: scandir(path + "/locked"))
    with pytest.raises(NoteError, match="the vault folder cannot be read: Permission denied"):
        scan_vault(tmp_path, max_file_bytes=LIMIT, max_notes=100)


def test_the_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NoteError, match="the vault folder does not exist"):
        scan_vault(tmp_path / "missing", max_file_bytes=LIMIT, max_notes=10)
    write(tmp_path, "file.md", "x")
    with pytest.raises(NoteError, match="the vault is not a folder"):
        scan_vault(tmp_path / "file.md", max_file_bytes=LIMIT, max_notes=10)
    with pytest.raises(ValueError, match="limits"):
        scan_vault(tmp_path, max_file_bytes=-1, max_notes=10)


def test_a_root_that_is_a_symlink_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/a.md", "x")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    scan = scan_vault(tmp_path / "link", max_file_bytes=LIMIT, max_notes=10)
    assert [n.path for n in scan.notes] == ["a.md"] and scan.problem_count == 0


def test_a_file_swapped_for_a_symlink_is_not_read(tmp_path: Path, outside: Path) -> None:
    """What the walk saw as a note or a folder may be a symlink by the time it is opened."""
    vault_dir = tmp_path / "v"
    write(vault_dir, "x.md", "x")
    top = os.path.realpath(vault_dir)
    os.unlink(vault_dir / "x.md")
    (vault_dir / "x.md").symlink_to(outside / "secret.md")
    with pytest.raises(NoteError, match="is a symlink: not followed"):
        vault._read(os.path.join(top, "x.md"), top, "x.md", LIMIT)
    (vault_dir / "sub").symlink_to(outside / "folder", target_is_directory=True)
    with pytest.raises(NoteError, match="changed while being opened: led outside the vault"):
        vault._read(os.path.join(top, "sub", "secret.md"), top, "sub/secret.md", LIMIT)
    write(vault_dir, "real/y.md", "y")
    (vault_dir / "alias").symlink_to(vault_dir / "real", target_is_directory=True)
    with pytest.raises(NoteError, match="changed while being opened: led elsewhere"):
        vault._read(os.path.join(top, "alias", "y.md"), top, "alias/y.md", LIMIT)


def test_a_file_that_grows_past_the_limit_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "g.md", "x" * 10)
    real_read = os.read
    monkeypatch.setattr(vault.os, "read", lambda fd, n: real_read(fd, n) + b"y" * 20)
    top = os.path.realpath(tmp_path)
    with pytest.raises(NoteError, match="over the limit of 16 bytes"):
        vault._read(os.path.join(top, "g.md"), top, "g.md", 16)


# --------------------------------------------------------------------------- read_note_text


@pytest.fixture
def shelf(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "vault"
    write(root, "notes/plain.md", "plain text")
    write(root, "notes/my page.md", "\ufeffwith a BOM")
    write(root, "Über.md", "unicode")
    write(root, "100% done.md", "percent")
    write(root, "notes/x.txt", "not a note")
    write(root, ".obsidian/config.md", "hidden")
    write(root, ".trash/gone.md", "hidden")
    write(root, "logseq/bak/x.md", "config")
    write(root, "a/.hidden/x.md", "hidden")
    write(root, "big.md", "x" * (LIMIT + 1))
    write(root, "latin1.md", b"caf\xe9")
    write(root, "folder.md/inner.md", "x")
    os.mkfifo(root / "pipe.md")
    (root / "link-out.md").symlink_to(outside / "secret.md")
    (root / "dir-out").symlink_to(outside / "folder", target_is_directory=True)
    (root / "link-hidden.md").symlink_to(root / ".obsidian/config.md")
    (root / "link-txt.md").symlink_to(root / "notes/x.txt")
    (root / "link-in.md").symlink_to(root / "notes/plain.md")
    (root / "loop.md").symlink_to(root / "loop.md")
    (root / "dir-loop").symlink_to(root, target_is_directory=True)
    return root


@pytest.mark.parametrize(
    ("rel", "text"),
    [
        ("notes/plain.md", "plain text"),
        ("notes/my%20page.md", "with a BOM"),
        ("notes/my page.md", "with a BOM"),
        ("%C3%9Cber.md", "unicode"),
        ("Über.md", "unicode"),
        ("100%25%20done.md", "percent"),
        ("100% done.md", "percent"),  # a '%' that escapes nothing is itself
        ("link-in.md", "plain text"),  # a symlink inside the vault to a note
        ("dir-loop/notes/plain.md", "plain text"),
    ],
)
def test_read_note_text_reads_notes_of_the_vault(shelf: Path, rel: str, text: str) -> None:
    assert read_note_text(shelf, rel, LIMIT) == text


REFUSED: list[tuple[str, str]] = [
    ("", "empty path"),
    ("../outside/secret.md", "'..' part"),
    ("notes/../../outside/secret.md", "'..' part"),
    ("notes/../plain.md", "'..' part"),  # even when it would stay inside
    ("./notes/plain.md", "'.' or '..' part"),
    ("notes//plain.md", "empty, '.' or '..' part"),
    ("notes/plain.md/", "empty, '.' or '..' part"),
    ("/etc/passwd", "absolute path"),
    ("/notes/plain.md", "absolute path"),
    ("%2Fetc%2Fpasswd", "absolute path"),
    ("notes\\plain.md", "backslash"),
    ("..\\outside\\secret.md", "backslash"),
    ("notes%5cplain.md", "backslash"),
    ("notes/plain.md\x00.txt", "NUL or control character"),
    ("notes/plain.md%00", "NUL or control character"),
    ("notes/pl\nain.md", "NUL or control character"),
    ("%2e%2e/outside/secret.md", "'..' part"),
    ("%2E%2E%2Foutside%2Fsecret.md", "'..' part"),
    ("..%2foutside%2fsecret.md", "'..' part"),
    ("notes%2f..%2f..%2foutside%2fsecret.md", "'..' part"),
    ("%252e%252e/outside/secret.md", "percent-encoded twice"),
    ("%252E%252E%252Foutside%252Fsecret.md", "percent-encoded twice"),
    ("notes%252fplain.md", "percent-encoded twice"),
    ("notes%255cplain.md", "percent-encoded twice"),
    ("notes/plain.md%2500", "percent-encoded twice"),
    ("%25252e%25252e/x.md", "percent-encoded twice"),
    ("%c0%ae%c0%ae/outside/secret.md", "not UTF-8"),  # overlong '.'
    ("%ff.md", "not UTF-8"),
    (".obsidian/config.md", "hidden or configuration folder"),
    ("%2eobsidian/config.md", "hidden or configuration folder"),
    (".trash/gone.md", "hidden or configuration folder"),
    ("a/.hidden/x.md", "hidden or configuration folder"),
    ("logseq/bak/x.md", "hidden or configuration folder"),
    ("notes/x.txt", "not a .md note"),
    ("notes/plain", "not a .md note"),
    ("notes/plain.MD", "not a .md note"),
    ("link-out.md", "resolves outside the vault"),
    ("dir-out/secret.md", "resolves outside the vault"),
    ("link-hidden.md", "not a note of the vault"),
    ("link-txt.md", "not a note of the vault"),
    ("loop.md", "is a symlink: not followed"),
    ("missing.md", "No such file or directory"),
    ("folder.md", "not a regular file"),
    ("pipe.md", "not a regular file"),
    ("big.md", f"over the limit of {LIMIT}"),
    ("latin1.md", "not UTF-8"),
    ("x" * 5000 + ".md", "path too long"),
    ("%41" * 5000 + ".md", "path too long"),
]


@pytest.mark.parametrize(("rel", "words"), REFUSED)
def test_read_note_text_refuses(shelf: Path, rel: str, words: str) -> None:
    with pytest.raises(NoteError) as caught:
        read_note_text(shelf, rel, LIMIT)
    assert words in str(caught.value)
    assert "\x00" not in str(caught.value) and "\n" not in str(caught.value)


def test_read_note_text_needs_a_vault(tmp_path: Path) -> None:
    with pytest.raises(NoteError, match="does not exist"):
        read_note_text(tmp_path / "missing", "a.md", LIMIT)
