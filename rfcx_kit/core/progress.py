"""Progress bars where someone watches them: one rule for every long step.

A bar is drawn when the command asks for one (no ``--no-progress``) and standard error is a terminal; a log file
or a CI console gets the step's log lines instead of thousands of carriage-return redraws.
``RFCX_KIT_PROGRESS=1`` draws bars anyway (a terminal multiplexer that hides its TTY), ``=0`` never.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV = "RFCX_KIT_PROGRESS"


def shown(enabled: bool = True) -> bool:
    """Whether a bar is drawn: asked for, and a terminal to draw it on (or forced by ``RFCX_KIT_PROGRESS``)."""
    forced = os.environ.get(ENV, "").strip()
    if not enabled or forced == "0":
        return False
    return forced == "1" or sys.stderr.isatty()


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """``tqdm(iterable, **kwargs)`` drawn only where :func:`shown` says (rate and ETA as tqdm gives them)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not shown(enabled), **kwargs)
