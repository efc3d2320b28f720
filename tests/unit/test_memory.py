"""release_freed gives freed heap pages back (glibc), and is harmless elsewhere."""

from __future__ import annotations

import gc
import os
import platform

import pytest

from visionflow.memory import keep_out_of_gc, no_gc_while, release_freed


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc and needs glibc")
def test_freed_small_objects_go_back_to_the_system() -> None:
    if platform.libc_ver()[0] != "glibc":
        assert release_freed() is False or release_freed() is True  # no crash off glibc
        return
    release_freed()
    before = _rss_mib()
    # malloc-sized objects (bytes over pymalloc's 512) freed between long-lived ones, as a
    # decoded document's are between the store's nodes: the heap cannot shrink from the top
    keep, junk = [], []
    for i in range(100_000):
        junk.append(bytes(2000))
        if i % 64 == 0:
            keep.append(bytes(2000))
    grown = _rss_mib()
    del junk
    kept = _rss_mib()
    assert release_freed() is True
    after = _rss_mib()
    assert grown - before > 100 and kept - before > 100  # allocated, and freed but kept
    assert after < before + 0.5 * (kept - before), (before, grown, kept, after)
    assert len(keep) > 1000


def test_no_gc_while_nests_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with no_gc_while():
        assert not gc.isenabled()
        with no_gc_while():  # another import at the same time
            assert not gc.isenabled()
        assert not gc.isenabled()  # still one block running
    assert gc.isenabled()
    gc.disable()
    try:
        with no_gc_while():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()


def test_keep_out_of_gc_freezes_what_is_alive() -> None:
    before = gc.get_freeze_count()
    graph = [{"node": i} for i in range(1000)]
    keep_out_of_gc()
    try:
        assert gc.get_freeze_count() >= before + len(graph)
    finally:
        gc.unfreeze()  # other tests expect a collector that sees everything
