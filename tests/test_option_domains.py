"""Every numeric option of every command declares its domain, and every value outside it is refused.

The cases are generated from the commands themselves (``rfcx_kit.app.cli.COMMANDS``), so a new option is
covered the day it is added: a plain ``int``/``float`` option fails the first test, and each declared domain
is walked through 0, negative, NaN, inf and too-large values by the second. Each refusal must be exit 2,
one ``Error:`` line naming the option, and nothing written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import COMMANDS, main
from rfcx_kit.app.options import FiniteFloatRange, JobsType


def _commands() -> Iterator[tuple[list[str], click.Command]]:
    def walk(path: list[str], command: click.Command) -> Iterator[tuple[list[str], click.Command]]:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk([*path, name], sub)
        else:
            yield path, command

    for command in COMMANDS:
        yield from walk([command.name], command)


NUMERIC = (click.types.IntParamType, click.types.FloatParamType, JobsType)
OPTIONS = [(path, param) for path, command in _commands() for param in command.params
           if isinstance(param, click.Option) and isinstance(param.type, NUMERIC)]


def _outside(kind: click.ParamType) -> list[str]:
    """Values outside the option's domain: beyond each bound, and NaN / inf for floats."""
    if isinstance(kind, JobsType):
        return ["0", "-2", "1.5", "x"]
    values = ["x"]
    step = 1 if isinstance(kind, click.IntRange) else 1e-6
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    if low is not None:
        values.append(repr(low - step if not getattr(kind, "min_open", False) else low))
    if high is not None:
        values.append(repr(high + step if not getattr(kind, "max_open", False) else high))
        values.append("1e12")
    if isinstance(kind, click.FloatRange):
        values += ["nan", "inf", "-inf"]
    else:
        values.append("1.5")
    return values


def test_every_numeric_option_declares_its_domain() -> None:
    assert len(OPTIONS) > 40  # the walk found the commands' options
    plain = [f"{' '.join(path)} {param.opts[-1]}" for path, param in OPTIONS
             if not isinstance(param.type, (click.IntRange, FiniteFloatRange, JobsType))]
    assert not plain, f"numeric options without a declared domain (use rfcx_kit.app.options): {plain}"
    unbounded = [f"{' '.join(path)} {param.opts[-1]}" for path, param in OPTIONS
                 if isinstance(param.type, click.IntRange) and param.type.min is None]
    assert not unbounded, f"integer options without a lower bound: {unbounded}"


CASES = [pytest.param(path, param.opts[-1], value, id=f"{'-'.join(path)} {param.opts[-1]}={value}")
         for path, param in OPTIONS for value in _outside(param.type)]


@pytest.mark.parametrize("path, option, value", CASES)
def test_a_value_outside_the_domain_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, path: list[str],
                                                                          option: str, value: str) -> None:
    before = os.getcwd()
    os.chdir(tmp_path)  # whatever a command would write by default would land here
    try:
        result = CliRunner().invoke(main, [*path, option, value])
    finally:
        os.chdir(before)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert option in lines[0], result.output
    assert not list(tmp_path.iterdir()), "something was written although the value was refused"


def test_finite_refuses_what_click_float_range_lets_through() -> None:
    from rfcx_kit.app.options import finite

    # click's own range lets NaN through (every comparison with NaN is false): the reason finite() exists
    assert math.isnan(click.FloatRange(0, 1).convert("nan", None, None))
    kind = finite(0, 1)
    for bad in ("nan", "inf", "-inf", "1.0000001", "-0.1"):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, None, None)
    assert kind.convert("0.25", None, None) == 0.25
    assert finite(0, None, low_open=True).convert("1e9", None, None) == 1e9


def test_no_help_shows_a_bound_of_none_and_the_demo_tp_share_is_the_profile_s() -> None:
    from rfcx_kit.data.synth.scene import PROFILES

    for path, command in _commands():
        text = CliRunner().invoke(main, [*path, "--help"], terminal_width=200).output
        assert "None]" not in text and "<=None" not in text, (path, text)
    synth = CliRunner().invoke(main, ["synth", "--help"], terminal_width=200).output
    assert f"{PROFILES['demo']['tp_share']:g} (demo)" in synth
