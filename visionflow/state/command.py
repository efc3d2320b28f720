"""``visionflow state backup FILE`` and ``visionflow state restore FILE`` (docs/operations.md,
"Backup and restore").

backup: when a service holds ``state.dir`` (its lock file names the URL it answers at), ask it
for a backup (``GET /api/state/backup``, with ``server.token``); when none does, read the files
under the directory's lock. Either way the backup is checked as a restore would check it before
it is written to FILE (atomically: a failed backup leaves no half file behind).

restore: refused while a service holds ``state.dir``: stop it first. Every problem is one line
on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import http.client
import os
import ssl
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import msgspec

from visionflow import jsonsafe
from visionflow.fileio import read_bounded, write_atomic
from visionflow.settings import Settings, to_dict, url_problem
from visionflow.state.archive import MAX_BACKUP_BYTES, BackupError, Summary, unpack
from visionflow.state.backup import check_members, files_backup, restore_backup
from visionflow.state.lockfile import StateDirBusyError, describe

EXIT_OK, EXIT_FAILED = 0, 1
ROUTE = "/api/state/backup"
#: How long the service may take to answer (a 1M-node graph takes tens of seconds).
FETCH_TIMEOUT_S = 600.0
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


def _err(message: str) -> None:
    print(f"visionflow: {message}", file=sys.stderr)


def _counts(s: Summary) -> str:
    return (
        f"{s.knowledge_nodes} knowledge node(s), {s.edges} edge(s), {s.positions} position(s), "
        f"{s.overrides} settings override(s)"
    )


def reachable(url: str) -> str:
    """The URL a client on this machine uses for a service listening at ``url``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit(":", 1)
    if host[0] in _WILDCARDS:
        host[0] = _WILDCARDS[host[0]]
        return urllib.parse.urlunsplit(parts._replace(netloc=":".join(host)))
    return url


class _ErrorBody(msgspec.Struct):
    class _Error(msgspec.Struct):
        message: str = ""

    error: _Error | None = None


_ERROR_BODY = msgspec.json.Decoder(_ErrorBody)


def _check_url(url: str) -> None:
    """BackupError unless ``url`` is an http(s) URL with a host (and a port that is one)."""
    problem = url_problem(url)
    if problem is not None:  # e.g. "Invalid IPv6 URL"
        raise BackupError(f"--url {url!r} is not a URL: {problem}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackupError(
            f"--url {url!r}: expected the service's http:// or https:// address, as its log "
            "says it (ready at http://127.0.0.1:4000)"
        )


def fetch(url: str, token: str) -> bytes:
    """The backup the service at ``url`` makes; BackupError saying why there is none."""
    _check_url(url)
    target = reachable(url).rstrip("/") + ROUTE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # no proxy: the service is this machine's (an http_proxy setting would send it elsewhere)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(
            urllib.request.Request(target, headers=headers), timeout=FETCH_TIMEOUT_S
        ) as r:
            data: bytes = r.read(MAX_BACKUP_BYTES + 1)
    except urllib.error.HTTPError as exc:
        try:
            body = jsonsafe.decode(exc.read(64 * 1024), _ERROR_BODY)
            said = body.error.message if body.error is not None else ""
        except (msgspec.DecodeError, OSError):
            said = ""
        if exc.code == 401:
            raise BackupError(
                f"the service at {url} needs its token: give this command the same "
                "server.token (settings file or VISIONFLOW__SERVER__TOKEN) as the service"
            ) from None
        raise BackupError(
            f"the service at {url} answered {exc.code}: {said or exc.reason}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        # ValueError: what urllib and http.client refuse to send (a token with a line break)
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise BackupError(
                f"cannot reach the service at {url}: its TLS certificate is not trusted here "
                f"({reason.verify_message}): give the CA that signed it (or the certificate "
                "itself) as SSL_CERT_FILE=PATH, and --url https://NAME:PORT with the name it "
                "was issued for"
            ) from None
        raise BackupError(f"cannot reach the service at {url}: {reason}") from None
    if len(data) > MAX_BACKUP_BYTES:
        raise BackupError(f"the service at {url} sent more than {MAX_BACKUP_BYTES} bytes")
    return data


_NOT_A_FILE = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFIFO: "a pipe",
    stat.S_IFSOCK: "a socket",
}


def backup_target(file: str) -> Path:
    """Where the backup goes: ``file``, or the file a symlink there names. The file is replaced
    by a rename, which would turn a device, pipe or the link itself into a plain file
    (``/dev/full`` became one, and ``/dev/stdout`` would): anything but a file is refused."""
    target = Path(os.path.realpath(file))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError:
        return target  # said when the write fails, with its reason
    if not stat.S_ISREG(mode):
        kind = _NOT_A_FILE.get(stat.S_IFMT(mode), "not a regular file")
        raise BackupError(f"{file} is {kind}: give the path of a file to write")
    return target


def backup(settings: Settings, file: str, url: str | None) -> int:
    state_dir = settings.state.dir
    base = to_dict(settings)
    try:
        target = backup_target(file)
        if url is None:
            try:
                data, summary = files_backup(state_dir, base)
            except StateDirBusyError as exc:
                holder = exc.holder
                if holder is None or holder.role != "serve":
                    _err(f"cannot back up now: {exc}; try again when it is done")
                    return EXIT_FAILED
                if holder.url is None:
                    _err(
                        f"cannot back up now: {state_dir} is in use by {describe(holder)}; "
                        "try again once it is ready"
                    )
                    return EXIT_FAILED
                url = holder.url
            else:
                source = f"the files in {state_dir} (no service running)"
        if url is not None:
            data = fetch(url, settings.server.token)
            _, summary = check_members(unpack(data).members, base)
            source = f"the running service at {url}"
        write_atomic(target, data)
    except BackupError as exc:
        _err(f"cannot back up: {exc}")
        return EXIT_FAILED
    except OSError as exc:
        _err(f"cannot write {file}: {exc.strerror or exc}")
        return EXIT_FAILED
    print(f"backed up {_counts(summary)} from {source} to {file} ({len(data)} bytes)")
    return EXIT_OK


def restore(settings: Settings, file: str) -> int:
    state_dir = settings.state.dir
    try:
        data = read_bounded(Path(file), MAX_BACKUP_BYTES)
    except FileNotFoundError:
        _err(f"cannot restore: no such file {file}")
        return EXIT_FAILED
    except OSError as exc:
        _err(f"cannot restore: cannot read {file}: {exc.strerror or exc}")
        return EXIT_FAILED
    try:
        backup = unpack(data)
        done = restore_backup(backup, state_dir, to_dict(settings))
    except BackupError as exc:
        _err(f"cannot restore {file}: {exc}")
        return EXIT_FAILED
    except StateDirBusyError as exc:
        if exc.holder is not None and exc.holder.role == "serve":
            _err(
                f"cannot restore while {describe(exc.holder)} uses {state_dir}: stop it first "
                "(it would overwrite the restored files with its own state), restore, then "
                "start it again"
            )
        else:
            _err(f"cannot restore now: {exc}; try again when it is done")
        return EXIT_FAILED
    except OSError as exc:
        _err(
            f"cannot restore into {state_dir}: {exc.strerror or exc} (files already replaced, "
            f"if any, are in {state_dir}/replaced-*)"
        )
        return EXIT_FAILED
    m = backup.manifest
    kept = f"; the files it replaced are in {done.replaced}" if done.replaced else ""
    print(
        f"restored {_counts(done.summary)} into {state_dir} from {file} (made {m.created} by "
        f"VisionFlow {m.visionflow_version} from the {m.source}){kept}"
    )
    return EXIT_OK
