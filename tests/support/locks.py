"""Helpers for tests of what must not wait for the graph store's lock."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from visionflow.graph.store import GraphStore


@contextlib.contextmanager
def lock_held_elsewhere(store: GraphStore) -> Iterator[None]:
    """Another thread holds the store's lock for the duration (as an import would)."""
    held = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with store.lock:
            held.set()
            done.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        yield
    finally:
        done.set()
        thread.join(30)
