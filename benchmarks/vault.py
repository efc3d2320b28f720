"""Scanning and parsing a notes vault, and what one edit costs once it is watched:
``python benchmarks/vault.py [--sizes 1000,10000,50000] [--edits 10000]``.

Writes a generated vault per size into a temporary folder (not timed), then times
``scan_vault`` (walk, read, decode, parse every note) and ``build_graph`` (resolve the links,
weigh the edges), median of a few runs, and once more under tracemalloc for the peak of Python
memory (tracemalloc slows Python down, so the timed runs go without it). ``parse`` is
``parse_note`` over the same texts already in memory: the share of the scan that is not the
file system. The files were just written, so they are read from the page cache (a vault the
machine has read before; a cold disk adds its own time).

A generated note: 5-10 links to targets drawn from a power law (a few hubs, a long tail),
written in every form (``[[T]]``, ``[[T|label]]``, ``[[T#heading]]``, ``![[T]]``, ``[t](T.md)``)
with 1 in 20 to a page that does not exist; Obsidian front matter on half the notes (title,
aliases, tags), Logseq properties on a fifth, inline tags, a fenced code block in one note in
five, about 1.5 KB of text on average; folders, Logseq namespaces (``a___b.md``) and journals.

Target (issue 13): 10k notes loaded (scan + build) in under 5 s on 2 cores.

The second table (``--edits N``, default 10000; 0 skips it): a vault of N generated notes is
read as the service reads it (``LiveVault.read_all`` and the store's scoped replace through
``GraphChanges.load_notes``), then watched by the real ``VaultWatcher`` (watchfiles, the
batcher's 200 ms quiet period, a worker thread, ``GraphChanges.update_notes``,
``knowledge_changed``), and each edit is timed from the file saved (an editor's save: a
temporary file renamed over the note) to ``engine.wake()``: ``save->wake``. ``read+apply`` is
the part in the worker thread (the file read, the graph's delta, the store's change), ``sync``
what the engine's next step adds (``GraphStore.sync``: the dense arrays rebuilt for the new
topology). Kinds: a link added to a note that few notes link to; a new note with two links; a
note deleted; a hub renamed (its file renamed: a new id, and every note that links to it
resolved again). Median and max of the runs per kind.

Target (issue 13): an edit in a 10k-note vault reaches the engine in under 500 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anyio

from visionflow.changes import GraphChanges
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore
from visionflow.notes.build import build_graph
from visionflow.notes.live import LiveVault
from visionflow.notes.parse import page_name_from_path, parse_note
from visionflow.notes.vault import scan_vault
from visionflow.notes.watch import QUIET_S, Batch, VaultWatcher
from visionflow.protocol.messages import ServerMessage
from visionflow.supervisor import HealthRegistry

TARGET_NOTES = 10_000
TARGET_S = 5.0
EDIT_TARGET_MS = 500.0
EDIT_RUNS = 7
MAX_FILE_BYTES = 1 << 20

_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "te",
    "su",
    "no",
    "vi",
    "da",
    "pe",
    "ri",
    "zo",
    "an",
    "el",
    "or",
    "us",
    "in",
    "ta",
    "ge",
    "mo",
]
_TAGS = [f"topic-{i}" for i in range(60)]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))


def generate(root: Path, n: int, seed: int = 0) -> dict[str, str]:
    """Write a vault of ``n`` notes under ``root``; returns path -> text."""
    rng = random.Random(seed)
    titles = [f"{_word(rng).title()} {_word(rng)} {i}" for i in range(n)]
    paths: list[str] = []
    for i, title in enumerate(titles):
        kind = i % 10
        if kind == 0:
            day = dt.date(2020, 1, 1) + dt.timedelta(days=i // 10)
            paths.append(f"journals/{day:%Y_%m_%d}.md")
        elif kind == 1:
            paths.append(f"pages/{_word(rng)}___{title}.md")  # a Logseq namespace
        else:
            paths.append(f"notes/{_word(rng)[:2]}/{title}.md")
    # what a link calls each page: its front matter title (on every sixth note), else the
    # name its file gives (a journal's date, a namespace)
    names = [titles[i] if i % 6 == 0 else page_name_from_path(p) for i, p in enumerate(paths)]
    texts: dict[str, str] = {}
    for i, path in enumerate(paths):
        lines: list[str] = []
        if i % 2 == 0:
            lines += ["---", f'title: "{titles[i]}"'] if i % 6 == 0 else ["---"]
            if i % 5 == 0:
                lines.append(f"aliases: [{_word(rng)} {i}, {_word(rng)}{i}]")
            lines += ["tags:", *(f"  - {rng.choice(_TAGS)}" for _ in range(rng.randint(1, 3)))]
            lines += ["---", ""]
        elif i % 5 == 1:
            lines += [f"tags:: {rng.choice(_TAGS)}, [[{rng.choice(_TAGS)}]]", ""]
        for k in range(rng.randint(5, 10)):
            j = min(n - 1, int(n * rng.random() ** 3))  # power law: low indexes are hubs
            target = names[j]
            if rng.random() < 0.05:
                target = f"Missing {_word(rng)}"
            form = rng.random()
            if form < 0.6:
                link = f"[[{target}]]"
            elif form < 0.7:
                link = f"[[{target}|{_word(rng)}]]"
            elif form < 0.8:
                link = f"[[{target}#{_word(rng)}]]"
            elif form < 0.85:
                link = f"![[{target}]]"
            else:
                rel = os.path.relpath(paths[j], os.path.dirname(path)).replace(" ", "%20")
                link = f"[{_word(rng)}]({rel})"
            prose = " ".join(_word(rng) for _ in range(rng.randint(20, 45)))
            tag = f" #{rng.choice(_TAGS)}" if k % 4 == 0 else ""
            lines.append(f"- {prose} {link}{tag} {_word(rng)}.")
        if i % 5 == 0:
            lines += ["", "```python", "x = '[[Not A Link]]'  # #notatag", "```"]
        texts[path] = "\n".join(lines) + "\n"
    for path, text in texts.items():
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
    return texts


def measure(n: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as tmp:
        root = Path(tmp)
        texts = generate(root, n)
        megabytes = sum(len(t.encode()) for t in texts.values()) / 1e6
        scans, builds, parses = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            scan = scan_vault(root, max_file_bytes=MAX_FILE_BYTES, max_notes=n)
            t1 = time.perf_counter()
            doc = build_graph(scan.notes)
            t2 = time.perf_counter()
            for path, text in texts.items():
                parse_note(text, path)
            t3 = time.perf_counter()
            scans.append(t1 - t0)
            builds.append(t2 - t1)
            parses.append(t3 - t2)
            assert len(scan.notes) == n, scan.problems
            assert scan.problem_count == 0, scan.problems
        tracemalloc.start()
        doc = build_graph(scan_vault(root, max_file_bytes=MAX_FILE_BYTES, max_notes=n).notes)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    scan_s, build_s = statistics.median(scans), statistics.median(builds)
    return {
        "notes": n,
        "mb": megabytes,
        "files_s": n / scan_s,
        "scan": scan_s,
        "parse": statistics.median(parses),
        "build": build_s,
        "total": scan_s + build_s,
        "peak": peak / 2**20,
        "nodes": len(doc["nodes"]),
        "edges": len(doc["edges"]),
    }


class _Engine:
    """Records when it is woken (what GraphChanges.knowledge_changed calls last)."""

    def __init__(self) -> None:
        self.woken_at = 0.0
        self.woken: anyio.Event | None = None

    def wake(self) -> None:
        self.woken_at = time.perf_counter()
        if self.woken is not None:
            self.woken.set()

    def restart_warmup(self) -> None: ...

    def publish(self, message: ServerMessage) -> None: ...


def _save(path: Path, text: str) -> None:
    """As an editor saves: a temporary file in the same folder, renamed over the note."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def measure_edits(n: int) -> tuple[float, list[dict[str, object]]]:
    """Load a generated vault of ``n`` notes, then time each kind of edit while it is watched.
    Returns the load's seconds and one row per kind."""
    with tempfile.TemporaryDirectory(prefix="vault-edit-bench-") as tmp:
        root = Path(tmp)
        texts = generate(root, n)
        store = GraphStore()
        engine = _Engine()
        changes = GraphChanges(store, AgentGraph(store), engine, engine)
        vault = LiveVault(root, max_file_bytes=MAX_FILE_BYTES, max_notes=n + 1000)
        t0 = time.perf_counter()
        changes.load_notes(vault)
        load_s = time.perf_counter() - t0
        changes.knowledge_changed()
        store.sync()
        paths = list(texts)
        # notes few link to: the last ones (link targets follow a power law over the index)
        leaves = iter(paths[-1 : -4 * EDIT_RUNS : -1])
        hubs = iter(p for p in paths[2:] if p.startswith("notes/"))  # named by their file
        fresh = iter(range(10**6))

        def link_added() -> None:
            path = next(leaves)
            _save(root / path, texts[path] + f"\n- see [[{page_name_from_path(paths[7])}]]\n")

        def note_added() -> None:
            links = f"[[{page_name_from_path(paths[2])}]] [[{page_name_from_path(paths[3])}]]"
            _save(root / f"notes/New note {next(fresh)}.md", links + "\n")

        def note_deleted() -> None:
            os.remove(root / next(leaves))

        def hub_renamed() -> None:
            path = next(hubs)
            os.rename(root / path, root / f"{path[:-3]} renamed.md")

        kinds: list[tuple[str, Callable[[], None]]] = [
            ("link added", link_added),
            ("note added", note_added),
            ("note deleted", note_deleted),
            ("hub renamed", hub_renamed),
        ]
        rows = anyio.run(_watched_edits, vault, changes, engine, store, kinds)
    return load_s, rows


async def _watched_edits(
    vault: LiveVault,
    changes: GraphChanges,
    engine: _Engine,
    store: GraphStore,
    kinds: list[tuple[str, Callable[[], None]]],
) -> list[dict[str, object]]:
    applied: list[float] = []  # seconds each batch took in the worker thread
    caught_up = anyio.Event()

    async def apply(batch: Batch) -> None:  # what the service does with a batch
        paths = None if batch.everything else batch.paths

        def work() -> None:
            t0 = time.perf_counter()
            changes.update_notes(vault, paths)
            applied.append(time.perf_counter() - t0)

        await anyio.to_thread.run_sync(work)
        changes.knowledge_changed()
        caught_up.set()

    health = HealthRegistry("bench").register("notes")
    watcher = VaultWatcher(vault, health, apply)
    rows: list[dict[str, object]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        with anyio.fail_after(60):
            await caught_up.wait()  # the start's catch-up read
        for name, edit in kinds:
            wakes, works, syncs = [], [], []
            for _ in range(EDIT_RUNS):
                engine.woken = anyio.Event()
                before = len(applied)
                t0 = time.perf_counter()
                await anyio.to_thread.run_sync(edit)
                with anyio.fail_after(10):
                    await engine.woken.wait()
                wakes.append(engine.woken_at - t0)
                works.append(sum(applied[before:]))
                t1 = time.perf_counter()
                store.sync()  # the engine's next step
                syncs.append(time.perf_counter() - t1)
                await anyio.sleep(QUIET_S + 0.1)  # the next edit is a batch of its own
            rows.append(
                {
                    "kind": name,
                    "wake_med": statistics.median(wakes) * 1000,
                    "wake_max": max(wakes) * 1000,
                    "work_med": statistics.median(works) * 1000,
                    "work_max": max(works) * 1000,
                    "sync_med": statistics.median(syncs) * 1000,
                }
            )
        tg.cancel_scope.cancel()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated note counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--edits", type=int, default=TARGET_NOTES, help="notes in the watched vault (0: skip)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"vault: scan (walk+read+parse) and build; median of {args.repeats}; {now}")
    print(f"CPUs {os.cpu_count()}, loadavg before: {load}")
    header = (
        f"{'notes':>7} {'MB':>6} {'files/s':>8} {'scan+parse s':>12} {'parse s':>8}"
        f" {'build s':>8} {'total s':>8} {'peak MiB':>9} {'nodes':>7} {'edges':>7}"
    )
    print(header)
    verdict = ""
    for n in sizes:
        r = measure(n, args.repeats if n <= TARGET_NOTES else 1)
        print(
            f"{r['notes']:>7} {r['mb']:>6.1f} {r['files_s']:>8.0f} {r['scan']:>12.2f}"
            f" {r['parse']:>8.2f} {r['build']:>8.2f} {r['total']:>8.2f} {r['peak']:>9.1f}"
            f" {r['nodes']:>7} {r['edges']:>7}"
        )
        if n == TARGET_NOTES:
            met = r["total"] < TARGET_S
            verdict = (
                f"target: {TARGET_NOTES} notes loaded in under {TARGET_S:g} s: "
                f"{'met' if met else 'NOT met'} ({r['total']:.2f} s)"
            )
    with open("/proc/loadavg") as f:
        print(f"loadavg after: {f.read().strip()}")
    if verdict:
        print(verdict)
    if args.edits:
        print()
        print(f"vault edits while watched: {args.edits} notes; {EDIT_RUNS} runs per kind")
        with open("/proc/loadavg") as f:
            print(f"loadavg before: {f.read().strip()}")
        load_s, rows = measure_edits(args.edits)
        print(f"load (LiveVault.read_all + the store's scoped replace): {load_s:.2f} s")
        print(
            f"{'edit':<14} {'save->wake ms':>13} {'max':>7} {'read+apply ms':>13} {'max':>7}"
            f" {'sync ms':>8}"
        )
        for r in rows:
            print(
                f"{r['kind']!s:<14} {r['wake_med']:>13.0f} {r['wake_max']:>7.0f}"
                f" {r['work_med']:>13.1f} {r['work_max']:>7.1f} {r['sync_med']:>8.1f}"
            )
        with open("/proc/loadavg") as f:
            print(f"loadavg after: {f.read().strip()}")
        worst = max(float(str(r["wake_max"])) for r in rows)
        met = worst < EDIT_TARGET_MS
        print(
            f"target: an edit in a {args.edits}-note vault reaches the engine in under"
            f" {EDIT_TARGET_MS:g} ms: {'met' if met else 'NOT met'} (worst {worst:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
