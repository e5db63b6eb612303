"""Stage 2, cycle re-labeling: label tables per cycle, soft weights in the loss, sampling, resume, early stop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rfcx_kit.cycle as cycle_module
import rfcx_kit.stage1 as stage1_module
from rfcx_kit.cycle import _improved, run_relabel
from rfcx_kit.losses import masked_bce
from rfcx_kit.pseudo import build_label_table, read_label_table, table_to_arrays
from rfcx_kit.sampling import table_windows
from rfcx_kit.stage1 import run_stage1
from rfcx_kit.train import load_context, train_fold

from tiny import make_tiny, tiny_overrides


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("relabel")
    data = make_tiny(root / "data")
    run_stage1(data, root / "runs" / "base", overrides=tiny_overrides(epochs=1), progress=False)
    return root / "runs" / "base"


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_soft_pseudo_weights_reach_the_loss() -> None:
    """A pseudo-positive with weight 0.5 is sampled with weight 0.5 and counts half in the masked loss."""
    ids = ["a", "b"]
    original = np.zeros((2, 2, 24), dtype=np.int8)
    original[0, 0, 3] = 1  # a TP window
    preds = np.full((2, 2, 24), 0.1)
    preds[1, 1, 5] = 0.9  # becomes a pseudo-positive
    table = build_label_table(ids, original, preds, threshold=0.5, pseudo_weight=0.5)
    target, weight = table_to_arrays(table, ids, 2)
    assert weight[1, 1, 5] == 0.5 and target[1, 1, 5] == 1.0 and weight[0, 0, 3] == 1.0
    items = table_windows(target, weight, original, np.arange(2), [[0, 10], [5, 15]], keep_original_p=0.5,
                          size=200, rng=np.random.default_rng(0))
    pseudo_items = items.weight[:, 5] > 0
    assert np.all(items.weight[pseudo_items, 5] == 0.5)
    assert 0.35 < pseudo_items.mean() < 0.65  # keep_original_p = 0.5 of slots hold the original window
    # the loss: one TP cell (w=1) and one pseudo cell (w=0.5) -> weighted mean of the two BCE terms
    logits = torch.tensor([[0.3, -0.2]], requires_grad=True)
    loss = masked_bce(logits, torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.5]]))
    terms = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(1, 2), reduction="none")[0]
    torch.testing.assert_close(loss, (terms[0] + 0.5 * terms[1]) / 1.5)


def test_keep_original_p_sets_the_share_of_original_windows() -> None:
    """With p = 0.8, about 80% of an epoch's windows carry original labels."""
    r, n = 50, 4
    original = np.zeros((r, n, 24), dtype=np.int8)
    original[:5, 0, 1] = 1
    target = (original == 1).astype(np.float32)
    weight = (original != 0).astype(np.float32)
    target[10:, 2, 7] = 1.0
    weight[10:, 2, 7] = 1.0
    items = table_windows(target, weight, original, np.arange(r), [[0, 8], [6, 14], [12, 20], [18, 26]], 0.8,
                          size=4000, rng=np.random.default_rng(1))
    share = (items.weight[:, 1] > 0).mean()
    assert abs(share - 0.8) < 0.03


def test_relabel_runs_cycles_and_never_overwrites_original_labels(stage1_run: Path, tmp_path: Path) -> None:
    """Two cycles: label tables keep every TP/FP window, pseudo-positives only where unknown, reports written."""
    run = _copy_run(stage1_run, tmp_path / "run")
    history = run_relabel(run, cycles=2, overrides=("relabel.epochs=1", "relabel.threshold=0.3"), progress=False)
    assert [h["stage"] for h in history] == ["stage1", "cycle1", "cycle2"]
    ctx = load_context(run)
    for cycle in (1, 2):
        table = read_label_table(run / f"cycle{cycle}" / "labels.csv")
        index = {rid: i for i, rid in enumerate(ctx.train_ids)}
        rows = table["recording_id"].map(index).to_numpy()
        orig = ctx.window_labels[rows, table["window"].to_numpy(), table["species_id"].to_numpy()]
        src = table["source"].to_numpy()
        assert np.all(orig[src == "tp"] == 1) and np.all(orig[src == "fp"] == -1)
        assert np.all(orig[src == "pseudo_positive"] == 0)
        assert (src == "tp").sum() == (ctx.window_labels == 1).sum()
        assert (src == "fp").sum() == (ctx.window_labels == -1).sum()
        metrics = json.loads((run / f"cycle{cycle}" / "metrics.json").read_text())
        assert metrics["pseudo_positives"] == (src == "pseudo_positive").sum()
        for k in range(3):
            assert (run / f"cycle{cycle}" / f"fold{k}" / "test.csv").exists()
    assert (run / "report" / "relabel.md").exists() and (run / "report" / "relabel.png").stat().st_size > 5000
    table = pd.read_csv(run / "report" / "relabel.csv")
    assert table["stage"].tolist() == ["stage1", "cycle1", "cycle2"]


def test_killed_relabel_resumes_at_the_cycle_and_fold(stage1_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill during cycle 1's fold 1 resumes there: fold 0 is not retrained, results equal a straight run."""
    straight = _copy_run(stage1_run, tmp_path / "straight")
    killed = _copy_run(stage1_run, tmp_path / "killed")
    overrides = ("relabel.epochs=2",)
    run_relabel(straight, cycles=1, overrides=overrides, progress=False)

    class Killed(BaseException):
        pass

    def dying_train_fold(fold: int, **kwargs):  # noqa: ANN202
        if fold == 1:
            def die(epoch: int) -> None:
                raise Killed()
            kwargs["on_epoch_end"] = die
        return train_fold(fold, **kwargs)

    monkeypatch.setattr(stage1_module, "train_fold", dying_train_fold)
    with pytest.raises(Killed):
        run_relabel(killed, cycles=1, overrides=overrides, progress=False)
    monkeypatch.undo()
    done0 = killed / "cycle1" / "fold0" / "done.json"
    assert done0.exists() and not (killed / "cycle1" / "fold1" / "done.json").exists()
    assert (killed / "cycle1" / "fold1" / "last.pt").exists()
    stamp = done0.stat().st_mtime_ns
    run_relabel(killed, cycles=1, progress=False)
    assert done0.stat().st_mtime_ns == stamp  # fold 0 was not redone
    a = pd.read_csv(straight / "cycle1" / "test.csv")
    b = pd.read_csv(killed / "cycle1" / "test.csv")
    pd.testing.assert_frame_equal(a, b)


def test_improvement_rule() -> None:
    """A stage improves only if it beats every earlier stage on the chosen metric."""
    h = [{"cv_lwlrap": 0.5}, {"cv_lwlrap": 0.6}, {"cv_lwlrap": 0.55}]
    assert _improved("cv", h[:2]) and not _improved("cv", h)
    with pytest.raises(Exception, match="truth"):
        _improved("truth", h)


def test_early_stop_ends_the_loop(stage1_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With early stop on, the first cycle that does not improve is the last one run."""
    run = _copy_run(stage1_run, tmp_path / "run")
    monkeypatch.setattr(cycle_module, "_improved", lambda metric, history: False)
    history = run_relabel(run, cycles=3, overrides=("relabel.epochs=1", "relabel.early_stop=true"), progress=False)
    assert [h["stage"] for h in history] == ["stage1", "cycle1"]
    assert not (run / "cycle2").exists()


def test_pseudo_quality_by_hand_and_with_no_pseudo_positives() -> None:
    """Precision/recall of pseudo-positives against planted calls; a cycle whose threshold nothing reaches
    (0 pseudo-positives) reports precision NaN and recall 0 instead of failing."""
    from types import SimpleNamespace

    from rfcx_kit.cycle import pseudo_quality

    ctx = SimpleNamespace(train_ids=["a", "b"], window_labels=np.zeros((2, 3, 24), dtype=np.int8))
    ctx.window_labels[0, 0, 5] = 1  # an original TP: not counted as recoverable
    truth = np.zeros((2, 3, 24), dtype=bool)
    truth[0, 0, 5] = truth[0, 1, 5] = truth[1, 2, 7] = truth[1, 0, 3] = True
    table = pd.DataFrame({"recording_id": ["a", "a", "b", "b"], "window": [0, 1, 2, 1],
                          "species_id": [5, 5, 7, 7], "source": ["original", "pseudo_positive", "pseudo_positive",
                                                                 "pseudo_positive"], "weight": 1.0})
    out = pseudo_quality(table, ctx, truth)
    assert out["pseudo_positives"] == 3
    assert out["pseudo_precision"] == pytest.approx(2 / 3)  # (a,1,5) and (b,2,7) hit; (b,1,7) does not
    assert out["pseudo_recall"] == pytest.approx(2 / 3)  # 3 planted cells unknown to the labels, 2 recovered
    empty = pseudo_quality(table[table["source"] == "original"], ctx, truth)
    assert empty["pseudo_positives"] == 0 and np.isnan(empty["pseudo_precision"]) and empty["pseudo_recall"] == 0
    assert pseudo_quality(table, ctx, None) == {"pseudo_positives": 3.0}
