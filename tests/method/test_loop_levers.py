"""The loop's levers end to end on a tiny run: soft pseudo-labelled windows and pseudo-labelled test recordings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rfcx_kit.core.config import ConfigError, load_config
from rfcx_kit.method.cycle import run_relabel
from rfcx_kit.method.context import load_context
from rfcx_kit.method.sampling import Items
from rfcx_kit.method.stage1 import run_stage1
from rfcx_kit.method.train import batch_input, sample_epoch, stage_boxes, stage_soft_targets, stage_test_boxes
from rfcx_kit.model.inputs import crop_batch

from tiny import make_tiny, tiny_overrides


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("levers")
    data = make_tiny(root / "data", n_train=18, n_test=6, truth=True)
    run_stage1(data, root / "base", overrides=tiny_overrides(epochs=2) + ("relabel.source=vote",
               "relabel.threshold=0.05", "relabel.tp_quantile=0.0"), progress=False)
    return root / "base"


def copy_of(base: Path, name: str) -> Path:
    dst = base.parent / name
    shutil.copytree(base, dst)
    return dst


def test_test_pseudo_labels_train_on_test_crops(base: Path) -> None:
    run = copy_of(base, "test_pseudo")
    run_relabel(run, cycles=1, overrides=("relabel.test_pseudo=true", "relabel.epochs=1", "relabel.init=stage1"),
                progress=False)
    table = pd.read_csv(run / "cycle1" / "test_labels.csv", dtype={"recording_id": str})
    boxes = pd.read_csv(run / "cycle1" / "test_pseudo_boxes.csv", dtype={"recording_id": str})
    ctx = load_context(run)
    assert len(table) and set(table["source"]) == {"pseudo_positive"}
    assert set(table["recording_id"]) <= set(ctx.comp.test_ids)
    assert len(boxes) == len(table)
    assert (boxes["t_min"] >= 0).all() and (boxes["t_max"] <= 10.0).all() and (boxes["t_max"] > boxes["t_min"]).all()
    # the cap: at most ceil(max_pseudo_per_tp x TP rows x test / train) per species
    n_tp = np.bincount(ctx.comp.tp["species_id"], minlength=ctx.n_species)
    cap = np.ceil(ctx.cfg.relabel.max_pseudo_per_tp * n_tp * len(ctx.comp.test_ids) / len(ctx.train_ids))
    assert (np.bincount(table["species_id"], minlength=ctx.n_species) <= cap).all()
    metrics = json.loads((run / "cycle1" / "metrics.json").read_text())
    assert metrics["test_pseudo_positives"] == len(table)
    assert 0.0 <= metrics["test_pseudo_precision"] <= 1.0
    # every fold's epoch holds a crop around every test box, marked as test crops
    test_labels = stage_test_boxes(ctx, "cycle1")
    rows = np.flatnonzero(ctx.folds["fold"].to_numpy() != 0)
    ctx.cfg.relabel.windows_per_epoch = 4000  # many passes over the crops: every box appears
    items = sample_epoch(ctx, "cycle1", rows, np.random.default_rng(0), stage_boxes(ctx, "cycle1"), None, test_labels)
    assert items.test is not None and items.test.any() and not items.test.all()
    index = {rid: i for i, rid in enumerate(ctx.comp.test_ids)}
    assert set(items.rows[items.test].tolist()) == {index[r] for r in boxes["recording_id"]}
    # a test crop's target is 1 for its box's species and never an FP's 0 at weight 1 (nothing is labelled there)
    test_items = items.take(np.flatnonzero(items.test))
    assert (test_items.target.sum(axis=1) >= 1).all()
    assert np.allclose(test_items.weight[test_items.target == 0], ctx.cfg.train.unlabeled_weight)


def test_batch_input_reads_each_crop_from_its_split(base: Path) -> None:
    ctx = load_context(base)
    batch = Items(np.array([0, 1, 2, 0]), np.array([0, 10, 20, 30]), np.zeros((4, 24), np.float32),
                  np.ones((4, 24), np.float32), np.array([False, True, False, True]))
    x = batch_input(ctx, batch, None, None, None)
    cfg = ctx.cfg
    for i in range(4):
        split = "test" if batch.test[i] else "train"
        ids = ctx.comp.test_ids if batch.test[i] else ctx.train_ids
        stats = ctx.test_stats if batch.test[i] else ctx.train_stats
        frames = ctx.test_frames if batch.test[i] else ctx.train_frames
        one = crop_batch(ctx.store, split, ids, stats, batch.rows[i:i + 1], batch.starts[i:i + 1], cfg.windows.window,
                         cfg.model.normalize, cfg.model.in_channels, None, None, None, frames)
        torch.testing.assert_close(x[i:i + 1], one)
    assert not torch.equal(x[0], x[3])  # row 0 of train and row 0 of test are other recordings


def test_soft_windows_join_the_epoch(base: Path) -> None:
    run = copy_of(base, "soft")
    run_relabel(run, cycles=1, overrides=("relabel.soft_share=0.5", "relabel.soft_power=2", "relabel.epochs=1",
                                          "relabel.init=stage1", "relabel.windows_per_epoch=40"), progress=False)
    ctx = load_context(run)
    soft = stage_soft_targets(ctx, "cycle1")
    assert soft.shape == ctx.window_labels.shape
    assert (soft[ctx.window_labels == 1] == 1).all() and (soft[ctx.window_labels == -1] == 0).all()
    rows = np.flatnonzero(ctx.folds["fold"].to_numpy() != 0)
    items = sample_epoch(ctx, "cycle1", rows, np.random.default_rng(1), stage_boxes(ctx, "cycle1"), soft)
    assert len(items) == 40
    # the soft half: targets strictly between 0 and 1 appear only there, at weight 1
    fractional = ((items.target > 0) & (items.target < 1)).any(axis=1)
    assert fractional.sum() <= 20 and fractional.any()
    assert (items.weight[fractional] == 1).all()


def test_test_pseudo_needs_votes() -> None:
    with pytest.raises(ConfigError, match="source: vote"):
        load_config(None, ("relabel.test_pseudo=true", "relabel.source=oof"))


def test_pseudo_crops_false_keeps_the_controls_crops_with_new_labels(base: Path) -> None:
    run = copy_of(base, "same_crops")
    run_relabel(run, cycles=1, overrides=("relabel.pseudo_crops=false", "relabel.epochs=1", "relabel.init=stage1"),
                progress=False)
    ctx = load_context(run)
    assert ctx.cfg.relabel.pseudo_crops is False
    labels = stage_boxes(ctx, "cycle1")
    n_pseudo = len(pd.read_csv(run / "cycle1" / "pseudo_boxes.csv"))
    assert n_pseudo > 0
    rows = np.flatnonzero(ctx.folds["fold"].to_numpy() != 0)
    cycle = sample_epoch(ctx, "cycle1", rows, np.random.default_rng(3), labels)
    control = sample_epoch(ctx, "control", rows, np.random.default_rng(3), ctx.labels)
    # the very crops the control draws from the same generator
    assert np.array_equal(cycle.rows, control.rows) and np.array_equal(cycle.starts, control.starts)
    # labels only gained: a TP stays 1, and where they differ an implicit 0 became a pseudo-positive's 1
    assert (cycle.target >= control.target).all()
    changed = cycle.target != control.target
    assert changed.any(), "no crop holds a pseudo-positive box: the test data is too small to show the lever"
    assert np.allclose(control.weight[changed], ctx.cfg.train.unlabeled_weight)
    # pseudo_crops=true (the default) centres crops on the pseudo-positive boxes too: other crops
    ctx.cfg.relabel.pseudo_crops = True
    centred = sample_epoch(ctx, "cycle1", rows, np.random.default_rng(3), labels)
    assert not (len(centred) == len(control) and np.array_equal(centred.starts, control.starts)
                and np.array_equal(centred.rows, control.rows))
