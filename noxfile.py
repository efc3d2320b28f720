"""Developer sessions.

- `nox -s tests`: the suite on every supported Python found on the machine (3.11, 3.12, 3.13),
  each installed from the lock (requirements/test.txt), as the README's test command does.
- `nox -s latest`: the suite against the newest releases of every dependency, lock ignored, so
  that drift is found on purpose rather than by users.
- `nox -s lowest`: the suite against the lowest versions `pyproject.toml` admits, so its lower
  bounds stay true.
- `nox -s lock`: regenerate requirements/*.txt (universal, hashed) with uv.
- `nox -s lint typecheck bench`: ruff, mypy, the CPU benchmarks.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False

PYTHONS = ["3.11", "3.12", "3.13"]

# lock name -> extras of pyproject.toml. requirements/build.in adds setuptools, so that the
# editable install builds with --no-build-isolation from locked versions only.
LOCKS: dict[str, list[str]] = {
    "run": [],
    "cuda": ["cuda"],
    "test": ["test"],
    "dev": ["dev", "bench"],
}


def install_locked(session: nox.Session, lock: str) -> None:
    session.install("--require-hashes", "-r", f"requirements/{lock}.txt")
    session.install("--no-deps", "--no-build-isolation", "-e", ".")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    install_locked(session, "test")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[-1])
def latest(session: nox.Session) -> None:
    """Newest releases of everything, no lock: warnings stay errors, so deprecations show."""
    session.install("--upgrade", "-e", ".[test]")
    session.run("python", "-m", "pip", "list")
    session.run("python", "-m", "pytest", *session.posargs)


def uv_compile(session: nox.Session, out: str, *args: str) -> None:
    """``uv pip compile`` of pyproject.toml for the oldest supported Python into ``out``."""
    session.install("uv")
    session.run(
        "uv", "pip", "compile", "pyproject.toml", *args,
        "--python-version", PYTHONS[0], "--quiet", "-o", out,
    )  # fmt: skip


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The lowest direct dependency versions pyproject.toml allows (resolved by uv)."""
    pins = f"{session.virtualenv.location}/lowest.txt"
    uv_compile(session, pins, "--extra", "test", "--resolution", "lowest-direct")
    session.install("-r", pins)
    session.install("--no-deps", "-e", ".")
    session.run("python", "-m", "pip", "list")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lock(session: nox.Session) -> None:
    """Regenerate requirements/{run,cuda,test,dev}.txt for every supported Python and platform."""
    for name, extras in LOCKS.items():
        extra_args = [arg for extra in extras for arg in ("--extra", extra)]
        uv_compile(
            session,
            f"requirements/{name}.txt",
            "requirements/build.in",
            *extra_args,
            "--universal",
            "--generate-hashes",
            "--no-header",
            *session.posargs,  # e.g. --upgrade-package numpy
        )


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    install_locked(session, "test")
    session.run("ruff", "check", "visionflow", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "visionflow", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    install_locked(session, "test")
    session.run("mypy")


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """The CPU benchmarks (the GPU ones need a device or NVVM: see benchmarks/README.md)."""
    install_locked(session, "dev")  # fanout.py's viewers use websockets
    for script in ("encode", "bandwidth", "fanout", "physics", "piles"):
        session.run("python", f"benchmarks/{script}.py")
