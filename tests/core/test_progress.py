"""Progress bars only where someone watches: asked for, and standard error a terminal (or forced)."""

from __future__ import annotations

import io
import sys

import pytest

from rfcx_kit.core.progress import ENV, progress_bar, shown


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty, env, enabled, expected", [
    (True, "", True, True), (False, "", True, False),      # a log file or a CI console gets no bar
    (True, "", False, False),                               # --no-progress
    (False, "1", True, True), (True, "0", True, False),     # forced either way
    (False, "1", False, False),                             # --no-progress wins over the environment
])
def test_a_bar_is_drawn_only_where_it_is_watched(monkeypatch: pytest.MonkeyPatch, tty: bool, env: str, enabled: bool,
                                                  expected: bool) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal() if tty else io.StringIO())
    monkeypatch.setenv(ENV, env)
    assert shown(enabled) is expected
    bar = progress_bar(range(3), enabled=enabled, file=sys.stderr)
    assert bar.disable is (not expected)  # before it runs: a finished bar reads as disabled
    assert list(bar) == [0, 1, 2]
    drawn = sys.stderr.getvalue()
    assert ("3/3" in drawn) is expected
