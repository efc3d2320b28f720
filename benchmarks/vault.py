"""Scanning and parsing a notes vault: ``python benchmarks/vault.py [--sizes 1000,10000,50000]``.

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
from pathlib import Path

from visionflow.notes.build import build_graph
from visionflow.notes.parse import page_name_from_path, parse_note
from visionflow.notes.vault import scan_vault

TARGET_NOTES = 10_000
TARGET_S = 5.0
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated note counts")
    parser.add_argument("--repeats", type=int, default=3)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
