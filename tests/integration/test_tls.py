"""Optional TLS (``server.certfile`` / ``server.keyfile``) with a throwaway CA from trustme: https
and wss on the real hypercorn, and bad files refused at start with one line."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from support.clikit import child_env, cli
from support.servicekit import running
from support.wsharness import Client

from visionflow.errors import StartupError
from visionflow.state.archive import BackupError
from visionflow.state.command import fetch
from visionflow.web.tls import check_tls_files


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))  # leaf first
    cert.private_key_pem.write_to_path(str(keyfile))
    keyfile.chmod(0o600)
    return certfile, keyfile


def tls_settings(tmp_path: Path, files: tuple[Path, Path]) -> dict[str, Any]:
    certfile, keyfile = files
    return {
        "state": {"dir": str(tmp_path / "state")},
        "server": {"certfile": str(certfile), "keyfile": str(keyfile)},
    }


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.anyio
async def test_https_and_wss_are_served_with_the_configured_certificate(
    tmp_path: Path, ca: trustme.CA, files: tuple[Path, Path]
) -> None:
    raw = tls_settings(tmp_path, files)
    async with running(raw) as (svc, _):
        url = str(svc.http.url)
        assert url.startswith("https://127.0.0.1:")
        port = url.rsplit(":", 1)[1]
        async with httpx.AsyncClient(base_url=url, verify=_trusting(ca), timeout=30) as client:
            assert (await client.get("/healthz")).status_code == 200
            # a page served over https posts with its https origin: the same origin
            r = await client.post(
                "/api/graph/import",
                json={"nodes": [{"id": "a"}]},
                headers={"Origin": f"https://127.0.0.1:{port}"},
            )
            assert r.status_code == 200, r.text
        # a client that does not trust the CA is refused by the handshake
        async with httpx.AsyncClient(base_url=url, timeout=30) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/healthz")
        # plain HTTP on the TLS port is not served
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/healthz")
        ws = await Client.connect(f"wss://127.0.0.1:{port}/wss", ssl=_trusting(ca))
        try:
            assert (await ws.json())["type"] == "connection_established"
        finally:
            ws.ws.close()


@pytest.mark.anyio
async def test_a_handshake_that_never_comes_is_cut_at_the_header_timeout(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    certfile, keyfile = files
    raw = {
        "state": {"dir": str(tmp_path / "state")},
        "server": {"certfile": str(certfile), "keyfile": str(keyfile), "header_timeout": 1.0},
    }
    async with running(raw) as (svc, _):
        port = int(str(svc.http.url).rsplit(":", 1)[1])
        start = anyio.current_time()
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"\x16")  # the first byte of a ClientHello, then nothing
            # hypercorn's own handshake timeout is 60 s: only the setting cuts it this soon
            with anyio.fail_after(30), contextlib.suppress(anyio.EndOfStream, OSError):
                while await stream.receive():
                    pass
        assert 0.9 <= anyio.current_time() - start < 30


def _mismatched(tmp_path: Path, ca: trustme.CA) -> Path:
    other = tmp_path / "other-key.pem"
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(other))
    return other


def _encrypted(tmp_path: Path, keyfile: Path) -> Path:
    key = serialization.load_pem_private_key(keyfile.read_bytes(), None)
    path = tmp_path / "encrypted-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


def test_bad_tls_files_are_named_with_what_is_wrong(
    tmp_path: Path, ca: trustme.CA, files: tuple[Path, Path]
) -> None:
    certfile, keyfile = files
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        (tmp_path / "missing.pem", keyfile, "server.certfile '{c}' does not exist"),
        (certfile, tmp_path / "missing.pem", "server.keyfile '{k}' does not exist"),
        (tmp_path, keyfile, "server.certfile '{c}' is not a regular file"),
        (junk, keyfile, "server.certfile '{c}' holds no PEM certificate"),
        (keyfile, keyfile, "server.certfile '{c}' holds no PEM certificate"),
        (certfile, junk, "server.keyfile '{k}' holds no usable PEM private key"),
        (
            certfile,
            _mismatched(tmp_path, ca),
            "server.keyfile '{k}' is not the key of the certificate in server.certfile '{c}'",
        ),
        (certfile, _encrypted(tmp_path, keyfile), "server.keyfile is encrypted"),
    ]
    for cert, key, message in cases:
        with pytest.raises(StartupError) as caught:
            check_tls_files(str(cert), str(key))
        assert message.format(c=cert, k=key) in str(caught.value)
    check_tls_files(str(certfile), str(keyfile))  # the good pair passes


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_named(tmp_path: Path, files: tuple[Path, Path]) -> None:
    certfile, keyfile = files
    keyfile.chmod(0)
    with pytest.raises(StartupError, match="cannot be read: permission denied"):
        check_tls_files(str(certfile), str(keyfile))


def test_serve_with_a_mismatched_key_exits_1_with_one_line(
    tmp_path: Path, ca: trustme.CA, files: tuple[Path, Path]
) -> None:
    certfile, _ = files
    other = _mismatched(tmp_path, ca)
    r = subprocess.run(
        cli("serve", "--port", "0"),
        cwd=tmp_path,
        capture_output=True,
        env=child_env(
            VISIONFLOW__SERVER__CERTFILE=str(certfile), VISIONFLOW__SERVER__KEYFILE=str(other)
        ),
        timeout=120,
    )
    assert r.returncode == 1, r.stderr.decode()[-2000:]
    assert b"Traceback" not in r.stderr
    assert b"is not the key of the certificate in server.certfile" in r.stderr
    assert b"listening on" not in r.stderr  # refused before the port opened


def test_only_one_of_the_two_files_is_a_settings_error(tmp_path: Path) -> None:
    r = subprocess.run(
        cli("check-config"),
        cwd=tmp_path,
        capture_output=True,
        env=child_env(VISIONFLOW__SERVER__CERTFILE="cert.pem"),
        timeout=120,
    )
    assert r.returncode == 2
    assert b"server.keyfile" in r.stderr + r.stdout
    assert b"must be set too when server.certfile is set" in r.stderr + r.stdout


@pytest.mark.anyio
async def test_a_backup_of_a_tls_service_says_how_to_trust_it(
    tmp_path: Path, ca: trustme.CA, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tls_settings(tmp_path, files)
    async with running(raw) as (svc, _):
        url = str(svc.http.url)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(BackupError) as info:
            await anyio.to_thread.run_sync(fetch, url, "")
        # it was OpenSSL's "CERTIFICATE_VERIFY_FAILED" alone, nothing on what to do
        assert "its TLS certificate is not trusted here" in str(info.value)
        assert "SSL_CERT_FILE=PATH" in str(info.value)
        trusted = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(trusted))
        monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
        data = await anyio.to_thread.run_sync(fetch, url, "")
        assert data[:2] == b"\x1f\x8b"  # the backup: a gzip-compressed tar
