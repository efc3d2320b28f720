"""Developer sessions: `nox -s tests lint typecheck bench`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", "visionflow", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "visionflow", "tests", "benchmarks", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.13")
    session.run("mypy")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The CPU benchmarks (the GPU ones need a device or NVVM: see benchmarks/README.md)."""
    session.install("-e", ".[bench,test]")  # fanout.py's viewers use websockets
    for script in ("encode", "bandwidth", "fanout", "physics", "piles"):
        session.run("python", f"benchmarks/{script}.py")
