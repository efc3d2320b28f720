"""Settings that change while the service runs (``PATCH /api/settings``).

The effective settings are file + environment + a runtime overrides file kept under
``state.dir``. A patch is validated as a whole (every error at once, nothing applied on error),
written atomically, and announced to subscribers (the physics engine re-reads its parameters on
its next step). Keys that only take effect at start-up are refused with a message saying so.
"""

from __future__ import annotations

import errno
import tomllib
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import msgspec
from loguru import logger

from visionflow.errors import MISSING, ConfigError, ConfigIssue
from visionflow.fileio import OVERRIDES_FILE_MAX, read_bounded, write_atomic
from visionflow.settings import (
    Settings,
    masked,
    merge,
    record_sources,
    to_dict,
    to_toml_table,
    validate,
)
from visionflow.threads import run_abandonable

log = logger.bind(subsystem="settings")

OVERRIDES_FILE = "settings-overrides.toml"
#: How long a patch waits for the overrides file to be written before it gives up (503).
WRITE_TIMEOUT_S = 10.0
#: How errors name where a value came from (the overrides file is named by its path).
PATCH_SOURCE = "patch"
BASE_SOURCE = "start-up settings"

# Key paths (prefixes) a running service applies without a restart.
RUNTIME_KEYS = (
    "physics.knowledge.",
    "physics.agents.",
    "physics.rate_hz",
    "physics.settle_energy",
    "websocket.deadband",
    "websocket.default_interval_ms",
    "websocket.min_interval_ms",
    "websocket.max_interval_ms",
    "websocket.max_lag",
    "log.level",
    "log.access_log",  # read per request (web/access.py)
)


# The overrides file says which force model its layout values were chosen for. A file without
# the mark predates the model of Dec 2026 (docs/architecture.md, "Physics"): the same keys
# meant other scales there (repulsion without masses, a linear centre pull, dt 0.016), so its
# layout values are dropped, with a warning naming them, rather than applied to the new model.
LAYOUT_MODEL_MARK = "# layout model: 2"
# Layout keys whose meaning did not change with the model: kept from an unmarked file.
MODEL_NEUTRAL_KEYS = {"enabled", "enable_bounds", "bounds_size", "theta"}


def _drop_old_model_keys(doc: dict[str, Any]) -> list[str]:
    """Remove from ``doc`` the physics values an unmarked overrides file holds; their paths."""
    physics = doc.get("physics")
    if not isinstance(physics, dict):
        return []
    dropped: list[str] = []
    if "settle_energy" in physics:  # was the only rest criterion, now an optional early one
        del physics["settle_energy"]
        dropped.append("physics.settle_energy")
    for group in ("knowledge", "agents"):
        table = physics.get(group)
        if isinstance(table, dict):
            for key in [k for k in table if k not in MODEL_NEUTRAL_KEYS]:
                del table[key]
                dropped.append(f"physics.{group}.{key}")
            if not table:
                del physics[group]
    if not physics:
        del doc["physics"]
    return dropped


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_leaves(value, path + "."))
        else:
            out.append((path, value))
    return out


def _runtime_issues(patch: Mapping[str, Any], source: str) -> list[ConfigIssue]:
    rule = "cannot change while running: edit settings.toml and restart"
    return [
        ConfigIssue(path, value, rule, source)
        for path, value in _leaves(patch)
        if not any(path == k or path.startswith(k) for k in RUNTIME_KEYS)
    ]


Listener = Callable[[Settings], None]


def _checked(sent: Mapping[str, Any], effective: Mapping[str, Any]) -> dict[str, Any]:
    """``sent``'s shape with the validated values of ``effective`` in it; empty sections
    (``{"log": {}}``) left out: they override nothing (no runtime setting is a table)."""
    out: dict[str, Any] = {}
    for key, value in sent.items():
        if not isinstance(value, Mapping):
            out[key] = effective[key]
        elif inner := _checked(value, effective[key]):
            out[key] = inner
    return out


class LiveSettings:
    """Holds the current Settings; ``base`` is file + environment, ``overrides`` the patches."""

    def __init__(self, base: Mapping[str, Any], state_dir: Path) -> None:
        self._base = dict(base)
        self._overrides: dict[str, Any] = {}
        # Where each override came from (this run's patches, or the file an earlier run
        # saved), so that an error blames the patch or the file, not the start-up settings.
        self._sources: dict[str, str] = {}
        self._path = state_dir / OVERRIDES_FILE
        self._listeners: list[Listener] = []
        self.current: Settings = validate(self._base)
        self.revision = 0
        self._lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveSettings:
        return cls(to_dict(settings), Path(settings.state.dir))

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def load_overrides(self) -> None:
        """Apply the overrides saved by an earlier run; a bad file is reported and ignored.

        A file from before the force model of Dec 2026 loses its layout values (see
        ``LAYOUT_MODEL_MARK``) and is rewritten without them.
        """
        try:
            text = read_bounded(self._path, OVERRIDES_FILE_MAX).decode("utf-8")
            doc = tomllib.loads(text)
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            log.warning("ignoring {}: unreadable ({})", self._path, exc)
            return
        except RecursionError:  # tomllib recurses per nesting level
            log.warning("ignoring {}: nested too deeply", self._path)
            return
        dropped = [] if LAYOUT_MODEL_MARK in text else _drop_old_model_keys(doc)
        if dropped:
            log.warning(
                "{}: not applying {} (set for the layout model before Dec 2026, whose scales "
                "differ; the defaults are tuned for the current one, see docs/architecture.md)",
                self._path,
                ", ".join(dropped),
            )
        try:
            self._apply(doc, persist=False, source=str(self._path))
        except ConfigError as exc:
            log.warning("ignoring {}: {}", self._path, exc.render())
            return
        log.info("applied runtime overrides from {}", self._path)
        if dropped:  # once: the rewritten file carries the mark
            try:
                self._write(self._overrides)
            except OSError as exc:
                log.warning("could not rewrite {} without them: {}", self._path, exc)

    async def patch(self, patch: object) -> Settings:
        """Validate, save and apply ``patch``; raise ConfigError (nothing applied) if refused,
        OSError if it cannot be saved (TimeoutError after ``WRITE_TIMEOUT_S``; not applied)."""
        if not isinstance(patch, Mapping):
            raise ConfigError([ConfigIssue("(body)", MISSING, "must be a JSON object")], "patch")
        async with self._lock:  # one patch at a time: each merges over the one before
            overrides, settings, sources = self._prepare(patch, PATCH_SOURCE)
            if overrides == self._overrides:
                # nothing to change ({}, {"log": {}}, a value restated): not saved, no new
                # revision, and no viewer told to read the settings again
                return self.current
            # Saved and applied together or not at all: a cancelled request must not leave
            # a saved patch that applies only at the next start. Shielded, but bounded: a
            # hung disk must not hold the request (or a shutdown) for ever.
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(WRITE_TIMEOUT_S):
                    await run_abandonable(partial(self._write, overrides), name="settings write")
                    return self._commit(overrides, settings, sources)
            log.warning(
                "saving {} took more than {:g} s; the patch is not applied (the write, left "
                "behind, may still land and then applies at the next start)",
                self._path,
                WRITE_TIMEOUT_S,
            )
            raise TimeoutError(errno.ETIMEDOUT, f"no answer within {WRITE_TIMEOUT_S:g} s")

    def _apply(
        self, patch: Mapping[str, Any], *, persist: bool, source: str = PATCH_SOURCE
    ) -> Settings:
        overrides, settings, sources = self._prepare(patch, source)
        if persist:
            self._write(overrides)
        return self._commit(overrides, settings, sources)

    def _prepare(
        self, patch: Mapping[str, Any], source: str
    ) -> tuple[dict[str, Any], Settings, dict[str, str]]:
        issues = _runtime_issues(patch, source)
        overrides = merge(self._overrides, patch)
        sources = dict(self._sources)
        record_sources(sources, patch, source)
        settings = self.current
        try:
            merged = merge(self._base, overrides)
            settings = validate(merged, source, sources, unrecorded=BASE_SOURCE)
        except ConfigError as exc:
            issues.extend(exc.issues)
        if issues:
            raise ConfigError(issues, source)
        # Keep the checked values, not what was sent ("30" for 30.0, 1 for true).
        return _checked(overrides, msgspec.to_builtins(settings)), settings, sources

    def _commit(
        self, overrides: dict[str, Any], settings: Settings, sources: dict[str, str]
    ) -> Settings:
        self._overrides = overrides
        self._sources = sources
        self.current = settings
        self.revision += 1
        for listener in self._listeners:
            listener(settings)
        return settings

    def _write(self, overrides: Mapping[str, Any]) -> None:
        """Save the overrides; OSError propagates (the server's problem, not the request's)."""
        text = "# Written by PATCH /api/settings; applied over settings.toml.\n"
        text += LAYOUT_MODEL_MARK + "\n"
        write_atomic(self._path, (text + to_toml_table(overrides)).encode())

    @property
    def overrides_path(self) -> Path:
        return self._path

    def as_json(self, *, details: bool = True) -> dict[str, Any]:
        """For GET /api/settings; ``details=False`` also hides launched commands (see there)."""
        return {
            "settings": masked(to_dict(self.current), commands=not details),
            "overrides": self._overrides,
            "revision": self.revision,
            "runtime_keys": list(RUNTIME_KEYS),
        }
