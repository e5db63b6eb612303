"""train.select: the checkpoint a fold keeps is its best validation epoch (the post) or its last one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rfcx_kit.core.config import load_config
from rfcx_kit.method.run import Run, load_checkpoint
from rfcx_kit.method.stage1 import run_stage1
from rfcx_kit.report.markdown import selection_note
from tiny import make_tiny, tiny_overrides


@pytest.mark.parametrize("select", ["best", "last"])
def test_the_kept_epoch_follows_train_select(tmp_path: Path, select: str) -> None:
    data = make_tiny(tmp_path / "data", n_train=9, n_test=2)
    run_stage1(data, tmp_path / "run", overrides=tiny_overrides(epochs=3, folds=2) + (f"train.select={select}",),
               progress=False)
    run = Run(tmp_path / "run")
    for fold in range(2):
        history = pd.read_csv(run.fold_history("stage1", fold))
        done = json.loads(run.fold_done("stage1", fold).read_text())
        kept = load_checkpoint(run.checkpoint("stage1", fold, "best"))["epoch"] + 1
        want = 3 if select == "last" else int(history.loc[history["val_lwlrap"].idxmax(), "epoch"])
        assert done["best_epoch"] == kept == want, (fold, history)


def test_the_report_says_what_the_cv_owes_to_the_selection() -> None:
    assert "optimistic" in selection_note(load_config(None, []))
    assert "not chosen on them" in selection_note(load_config(None, ["train.select=last"]))
