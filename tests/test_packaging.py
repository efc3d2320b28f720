"""The source distribution carries what a release needs to be tested, not only installed."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from visionflow.notes.example import EXAMPLE_VAULT

ROOT = Path(__file__).resolve().parents[1]


def build(kind: str, out: Path) -> Path:
    """``setuptools.build_meta.build_<kind>`` (sdist, wheel) into ``out``, in a child process."""
    code = f"import sys; from setuptools import build_meta as b; print(b.build_{kind}(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_sdist_has_license_tests_settings_docs_and_benchmarks(tmp_path: Path) -> None:
    with tarfile.open(build("sdist", tmp_path)) as tar:
        prefix = tar.getnames()[0].split("/")[0]
        names = {name.removeprefix(prefix + "/") for name in tar.getnames()}
        pkg_info = tar.extractfile(f"{prefix}/PKG-INFO")
        assert pkg_info is not None
        metadata = pkg_info.read().decode()
    for needed in (
        "LICENSE",
        "README.md",
        "settings.toml",
        "noxfile.py",
        "requirements/test.txt",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "benchmarks/physics.py",
        "benchmarks/README.md",
        "docs/protocol.md",
        "visionflow/cli.py",
        "visionflow/notes/example/VisionFlow.md",
    ):
        assert needed in names, needed
    assert "License-Expression: MIT" in metadata


@pytest.mark.slow
def test_wheel_carries_the_viewer_and_the_example_vault(tmp_path: Path) -> None:
    with zipfile.ZipFile(build("wheel", tmp_path)) as wheel:
        names = set(wheel.namelist())
    example = {n for n in names if n.startswith("visionflow/notes/example/")}
    shipped = {f"visionflow/notes/example/{p.name}" for p in EXAMPLE_VAULT.glob("*.md")}
    assert example == shipped
    assert "visionflow/web/static/index.html" in names
