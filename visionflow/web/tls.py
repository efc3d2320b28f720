"""TLS files checked at start: ``server.certfile`` and ``server.keyfile`` (hypercorn loads them).

hypercorn reads the files only when it starts listening, and its errors name neither the file
nor the setting ("[SSL] PEM lib"); an encrypted key would even make OpenSSL prompt for a
password on the terminal, hanging a service. Here each file is read and checked first, and a bad
one fails start-up with one line (a :class:`~visionflow.errors.StartupError`) saying which
setting, which file and what is wrong with it.
"""

from __future__ import annotations

import os
import ssl
import stat

from visionflow.errors import StartupError

#: A PEM certificate chain or key is a few KiB; a path to /dev/zero must not be read for ever.
MAX_PEM_BYTES = 1024 * 1024


def _readable(setting: str, path: str) -> None:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StartupError(f"{setting} {path!r} is not a regular file")
        if info.st_size > MAX_PEM_BYTES:
            raise StartupError(f"{setting} {path!r} is over {MAX_PEM_BYTES} bytes: not a PEM file")
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise StartupError(f"{setting} {path!r} does not exist") from None
    except PermissionError:
        raise StartupError(f"{setting} {path!r} cannot be read: permission denied") from None
    except OSError as exc:
        raise StartupError(f"{setting} {path!r} cannot be read: {exc.strerror}") from None


def _no_password() -> str:
    raise StartupError("server.keyfile is encrypted: give an unencrypted key (mode 0600)")


def check_tls_files(certfile: str, keyfile: str) -> None:
    """Raise StartupError unless ``certfile`` holds a PEM certificate and ``keyfile`` the
    unencrypted PEM private key of it."""
    _readable("server.certfile", certfile)
    _readable("server.keyfile", keyfile)
    try:
        ssl.create_default_context(cafile=certfile)
    except ssl.SSLError as exc:
        raise StartupError(
            f"server.certfile {certfile!r} holds no PEM certificate ({exc.reason or exc})"
        ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(
                f"server.keyfile {keyfile!r} is not the key of the certificate in "
                f"server.certfile {certfile!r}"
            ) from None
        why = f" ({exc.reason})" if exc.reason else ""  # else OpenSSL's "PEM lib (_ssl.c:...)"
        raise StartupError(
            f"server.keyfile {keyfile!r} holds no usable PEM private key{why}"
        ) from None
