"""The domains of the command options, declared once.

Every numeric option of every command takes one of these types, so click refuses a value outside its domain
before the command runs (exit 2, one ``Error:`` line naming the option, nothing written).
``tests/test_option_domains.py`` walks every command and checks that no numeric option is left without one.
click's own ``FloatRange`` lets NaN through (every comparison with NaN is false) and infinity through an open
end; :func:`finite` refuses both.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN and +-inf."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        """The range click shows in --help: "finite" for a float with no bound (click would say ``x<=None``)."""
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


def finite(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> FiniteFloatRange:
    """A finite float in ``[low, high]`` (``low_open``/``high_open``: that end excluded; None: unbounded)."""
    return FiniteFloatRange(low, high, min_open=low_open, max_open=high_open)


def at_least(low: int, high: int | None = None) -> click.IntRange:
    """An integer in ``[low, high]`` (``high`` None: unbounded)."""
    return click.IntRange(low, high)


class JobsType(click.ParamType):
    """Worker processes: -1 (all cores) or a count >= 1."""

    name = "jobs"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        if number != -1 and number < 1:
            self.fail(f"{number} is neither -1 (all cores) nor a number of processes >= 1.", param, ctx)
        return number


JOBS = JobsType()
SEED = click.IntRange(0, 2**32 - 1)
PROBABILITY = finite(0, 1)
SHARE = finite(0, 1, low_open=True)  # a share of something that must not be empty: (0, 1]
