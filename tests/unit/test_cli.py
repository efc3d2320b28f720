"""The command line's own surface: --version, and help text for every command and option."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from visionflow import __version__, cli


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"visionflow": parser, **sub.choices}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"visionflow {__version__}\n"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_and_option_has_plain_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _commands()[command]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert all(choice.help for choice in action._choices_actions)
        else:
            assert action.help, f"{command} {action.option_strings or action.dest}: no help"
    argv = [] if command == "visionflow" else [command]
    assert cli.main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out  # no reStructuredText markup
    assert parser.description and parser.description in " ".join(out.split())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--tick", "nan"], "argument --tick: 'nan': must be a finite number >= 0"),
        (["--tick", "-1"], "must be a finite number >= 0"),  # 0 is a frozen swarm
        (["--delay", "-5"], "argument --delay: '-5': must be a finite number >= 0"),
        (["--delay", "inf"], "must be a finite number >= 0"),
        (["--drop-after", "-1"], "argument --drop-after: '-1': must be a finite number >= 0"),
        (["--garbage-every", "0"], "must be a finite number >= 1"),
        (["--drip", "1.5"], "argument --drip: '1.5' is not an integer"),
        (["--huge-line", "0"], "must be a finite number >= 1"),
    ],
)
def test_mcp_sim_refuses_values_that_mean_nothing(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Usage errors, exit 2, before anything starts (they were taken as given)."""
    assert cli.main(["mcp-sim", *args]) == 2
    assert said in capsys.readouterr().err


def test_check_config_notes_the_old_models_layout_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "old.toml"
    f.write_text("[physics.agents]\nspring_k = 0.5\nrepel_k = 5.0\ndamping = 0.95\n")
    assert cli.main(["check-config", str(f)]) == 0  # valid, so exit 0
    captured = capsys.readouterr()
    assert (
        "# note: " in captured.err
        and "physics.agents sets spring_k, repel_k, damping" in captured.err
    )
    assert "[physics.agents]" in captured.out


_LEAVES_A_THREAD = """
import threading, time
import anyio
from visionflow import cli, threads

def main(argv=None):
    async def serve():
        with anyio.move_on_after(0.2):  # the shutdown abandons it
            await threads.run_abandonable(lambda: time.sleep(600), name="graph import")
    anyio.run(serve)
    return {code}

cli.main = main
cli.entry()
"""


@pytest.mark.parametrize("code", [0, 3])
def test_the_program_exits_at_once_leaving_abandoned_work_and_says_so(code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LEAVES_A_THREAD.format(code=code)],
        capture_output=True,
        text=True,
        timeout=120,  # the abandoned call sleeps 600 s
    )
    assert done.returncode == code, done.stderr
    assert "exiting without waiting for: graph import" in done.stderr


def test_the_program_exits_as_usual_when_nothing_was_left_running() -> None:
    script = _LEAVES_A_THREAD.replace("time.sleep(600)", "None").format(code=0)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "exiting without waiting" not in done.stderr
