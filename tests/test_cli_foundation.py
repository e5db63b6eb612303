"""The command line of the foundation: `rfcx-kit --help` lists every command, and the `features` and
`windows` commands document every option."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import COMMANDS, main


def rfcx_kit_command() -> list[str]:
    script = Path(sys.executable).parent / "rfcx-kit"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from rfcx_kit.app.cli import main; main()"]


def squash(text: str) -> str:
    """Help text with click's line wrapping undone (runs of whitespace -> one space)."""
    return re.sub(r"\s+", " ", text)


def test_top_level_help_lists_every_command():
    """`rfcx-kit --help` (the installed script) exits 0 and lists every registered command with a short
    description, in the method's order."""
    result = subprocess.run([*rfcx_kit_command(), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split("Commands:", 1)[1]
    names = [command.name for command in COMMANDS]
    for name in names:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", listing, re.M), f"{name} missing from --help"
    assert "features" in names and "windows" in names
    listed = re.findall(r"^  (\S+)\s", listing, re.M)
    assert listed == names, listed  # the method's order, not the alphabet's
    assert "..." not in listing  # each command's first line whole


def test_the_command_line_loads_without_torch_or_matplotlib():
    """Every command is imported by the group (the import graph sees them), yet none of torch, timm, matplotlib or
    scikit-learn is: those load inside the commands that use them, so --help and light commands stay fast."""
    code = ("import sys, rfcx_kit.app.cli; "
            "print(sorted(m for m in ('torch', 'timm', 'matplotlib', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_top_level_help_works_in_process():
    """The same listing through click's CliRunner (as other tests and tools call it): the decision to list
    placeholders must not depend on the host process's sys.argv (it used to import every module and fail)."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert re.search(rf"^\s+{re.escape(command.name)}\s+\S", result.output, re.M)


def test_sub_command_runs_when_invoked_programmatically(monkeypatch):
    """main(["windows"]) from a program whose own sys.argv has no arguments runs the real command (it used to
    resolve to an empty placeholder and print nothing)."""
    monkeypatch.setattr(sys, "argv", ["some-program"])
    result = CliRunner().invoke(main, ["windows", "--cover", "256"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 14


@pytest.mark.parametrize("name", ["features", "windows"])
def test_sub_command_help_describes_every_option(name):
    """`rfcx-kit NAME --help` names every option of the command and shows that option's own help text."""
    command = main.get_command(click.Context(main), name)  # the real (imported) command
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    text = squash(result.output)
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert len(options) >= (7 if name == "features" else 4)
    for option in options:
        assert option.help, f"{name} {option.opts} has no help text"
        for flag in option.opts:
            assert flag in text, f"{flag} missing from `{name} --help`"
        assert squash(option.help) in text, f"help of {option.opts} missing from `{name} --help`"
    assert squash(command.help.split("\n\n")[0]) in text


def test_features_help_names_the_options_of_the_issue():
    """The options the issue and README rely on are there: --data (required), --cache, --n-jobs, --set."""
    result = CliRunner().invoke(main, ["features", "--help"])
    for flag in ("--data", "--cache", "--split", "--n-jobs", "--batch-size", "--pipeline", "--set"):
        assert flag in result.output
    assert "[required]" in squash(result.output).split("--data", 1)[1].split("--cache", 1)[0]


def test_features_without_data_is_a_usage_error():
    """`rfcx-kit features` without --data exits 2 naming the missing option; a missing folder is a clear
    error (exit 2), not a traceback."""
    result = CliRunner().invoke(main, ["features"])
    assert result.exit_code == 2 and "--data" in result.output
    result = CliRunner().invoke(main, ["features", "--data", "/nonexistent/rfcx"])
    assert result.exit_code == 2 and "/nonexistent/rfcx" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
