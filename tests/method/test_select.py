"""train.select: the checkpoint a fold keeps is its best validation epoch (the post) or its last one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rfcx_kit.core.config import load_config
from rfcx_kit.method.run import Run
from rfcx_kit.method.checkpoint import load_checkpoint
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


def test_train_metric_chooses_the_epoch_and_the_kept_stage(tmp_path: Path) -> None:
    """train.metric=macro_ap: each fold's history carries val_macro_ap beside val_lwlrap, the stage's metrics
    cv_macro_ap, the best.pt is the epoch with the best val_macro_ap, and the loop keeps by cv_macro_ap."""
    from rfcx_kit.method.cycle import run_relabel

    data = make_tiny(tmp_path / "data", n_train=8, n_test=2)
    run = tmp_path / "run"
    run_stage1(data, run, overrides=(*tiny_overrides(epochs=2, folds=2), "train.val_every=1", "train.metric=macro_ap"),
               progress=False)
    history = pd.read_csv(Run(run).fold_history("stage1", 0))
    assert {"val_lwlrap", "val_macro_ap"} <= set(history.columns)
    best = load_checkpoint(Run(run).checkpoint("stage1", 0))
    assert best["score"] == pytest.approx(history["val_macro_ap"].max())
    metrics = json.loads(Run(run).metrics("stage1").read_text())
    assert 0 <= metrics["cv_macro_ap"] <= 1 and "cv_lwlrap" in metrics
    run_relabel(run, 1, ("relabel.epochs=1",), progress=False)
    kept = json.loads(Run(run).kept.read_text())
    assert kept["metric"] == "cv_macro_ap" and set(kept["candidates"]) == {"stage1", "cycle1"}
