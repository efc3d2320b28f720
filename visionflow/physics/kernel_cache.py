"""Where numba keeps the compiled CPU kernels (``cache=True``): a directory we can write.

numba tries ``NUMBA_CACHE_DIR``, then ``__pycache__`` beside the sources, then a directory
under ``HOME``; when none is writable (an installed package run by a user without a writable
HOME: ``docker run --user``, systemd ``DynamicUser=``) its decorators raise at import
("cannot cache function ...: no locator available") and the service cannot start.  So the
directory is chosen here, when ``visionflow.physics`` is imported and before any kernel is
decorated, in this order: ``NUMBA_CACHE_DIR``; beside the sources; ``$XDG_CACHE_HOME`` or
``~/.cache``, under ``visionflow/numba``; a private directory in the temp dir; else no on-disk
cache (every start compiles).  A fallback past the usual places comes with ``note``, which
the engine logs once.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class KernelCache:
    enabled: bool  # False: compile at every start, cache nothing on disk
    directory: str | None  # None: numba's own choice (NUMBA_CACHE_DIR or beside the sources)
    note: str | None = None  # one log line, when a usual place could not be used


def _unwritable(path: Path) -> str | None:
    """None when numba can cache in ``path`` (the test numba itself makes), else why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _private_temp_dir() -> Path | None:
    """``<tmp>/visionflow-numba-<uid>``, only if it is ours and no one else can write to it:
    numba loads pickled code from its cache, so a directory another user planted is refused."""
    try:
        path = Path(tempfile.gettempdir()) / f"visionflow-numba-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return path


def choose(environ: Mapping[str, str], sources: Path) -> KernelCache:
    """The first usable place for the kernels of the modules in ``sources``."""
    tried: list[str] = []
    user = environ.get("NUMBA_CACHE_DIR")
    if user:
        why = _unwritable(Path(user))
        if why is None:
            return KernelCache(True, None)
        tried.append(f"NUMBA_CACHE_DIR {user}: {why}")
    in_tree = sources / "__pycache__"
    why = _unwritable(in_tree)
    if why is None:
        note = f"{'; '.join(tried)}; caching compiled kernels in {in_tree}" if tried else None
        return KernelCache(True, str(in_tree) if tried else None, note)
    tried.append(f"{in_tree}: {why}")
    base = environ.get("XDG_CACHE_HOME") or (
        str(Path(environ["HOME"]) / ".cache") if environ.get("HOME") else ""
    )
    if base:
        home = Path(base) / "visionflow" / "numba"
        why = _unwritable(home)
        if why is None:
            note = f"{'; '.join(tried)}; caching compiled kernels in {home}" if user else None
            return KernelCache(True, str(home), note)
        tried.append(f"{home}: {why}")
    else:
        tried.append("neither XDG_CACHE_HOME nor HOME is set")
    temp = _private_temp_dir()
    if temp is not None and _unwritable(temp) is None:
        return KernelCache(
            True,
            str(temp),
            f"no writable kernel cache directory ({'; '.join(tried)}): caching compiled "
            f"kernels in {temp} instead (set NUMBA_CACHE_DIR to keep them elsewhere)",
        )
    return KernelCache(
        False,
        None,
        f"no writable kernel cache directory ({'; '.join(tried)}; no private temp dir): "
        "kernels are compiled at every start, not cached (set NUMBA_CACHE_DIR to a writable "
        "directory)",
    )


def configure() -> KernelCache:
    """Choose, and point numba there (the environment, and numba's config if it is loaded)."""
    choice = choose(os.environ, Path(__file__).resolve().parent)
    if choice.directory is not None:
        os.environ["NUMBA_CACHE_DIR"] = choice.directory
        config = sys.modules.get("numba.core.config")
        if config is not None:  # numba read the environment already
            config.CACHE_DIR = choice.directory  # type: ignore[attr-defined]
    return choice
