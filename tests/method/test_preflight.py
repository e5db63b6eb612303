"""Pre-flight: every problem that refuses a stage-1 run is named in one pass, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rfcx_kit.core.errors import ConfigError, DataError, RfcxError, StateError
from rfcx_kit.method.preflight import Problems
from rfcx_kit.method.stage1 import run_stage1

from tiny import make_tiny, tiny_overrides


def test_three_problems_are_named_in_one_refusal(tmp_path: Path) -> None:
    data = make_tiny(tmp_path / "data", n_train=6, n_test=2)
    tp = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})
    tp.loc[2, ["f_min", "f_max"]] = [17000.0, 20000.0]  # wholly above the features' 16 kHz band: never heard
    tp.to_csv(data / "train_tp.csv", index=False)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("train: {}\n")  # a run is there, and no --resume
    before = sorted(p.name for p in run.iterdir())
    overrides = tiny_overrides(epochs=1)[:1] + ("model.backbone=no_such_backbone",) + tiny_overrides(epochs=1)[2:]
    with pytest.raises(RfcxError) as info:
        run_stage1(data, run, overrides=overrides, progress=False)
    message = str(info.value)
    assert type(info.value) is DataError  # the first problem's kind, so its exit code
    assert "stage 1 cannot start: 3 problems (nothing was written)" in message
    lines = message.splitlines()[1:]
    assert len(lines) == 3, message
    assert "train_tp.csv" in lines[0] and "outside the features' band" in lines[0]
    assert "already holds a run" in lines[1]
    assert "model.backbone" in lines[2] and "no_such_backbone" in lines[2]
    assert sorted(p.name for p in run.iterdir()) == before


def test_one_problem_is_raised_as_it_is() -> None:
    problems = Problems()
    assert problems.check(lambda: 3) == 3 and problems.check(lambda: None, ok=True) is True
    problems.raise_all("x")  # none: nothing raised

    def refuse() -> None:
        raise StateError("the run is busy")

    assert problems.check(refuse, ok=True) is False and problems
    with pytest.raises(StateError, match="^the run is busy$"):
        problems.raise_all("x")
    problems.add(ConfigError("model.backbone: no"))
    with pytest.raises(StateError, match=r"x cannot start: 2 problems"):
        problems.raise_all("x")


def test_a_problem_that_is_not_a_refusal_is_not_swallowed() -> None:
    problems = Problems()
    with pytest.raises(ZeroDivisionError):
        problems.check(lambda: 1 / 0)
