"""Soft pseudo-labelled windows: targets, draws and the epoch they join, on hand-made arrays."""

import numpy as np
import pytest

from rfcx_kit.method.sampling import Items, concat_items, soft_targets, soft_windows


def test_targets_by_hand():
    teacher = np.array([[[0.5, 0.9, 0.2], [0.3, 0.1, 0.8]]], dtype=np.float32)  # (R=1, N=2, K=3)
    labels = np.array([[[1, 0, -1], [0, 0, 0]]], dtype=np.int8)
    out = soft_targets(teacher, labels, power=2.0)
    # TP stays 1 and FP 0 whatever the teacher says; unknown cells are p ** 2
    np.testing.assert_allclose(out, [[[1.0, 0.81, 0.0], [0.09, 0.01, 0.64]]], rtol=1e-6)
    np.testing.assert_allclose(soft_targets(teacher, labels, 1.0)[0, 1], [0.3, 0.1, 0.8])


def test_power_sharpens_towards_zero_and_keeps_order():
    p = np.linspace(0.05, 0.95, 10, dtype=np.float32)[None, None, :]
    zero = np.zeros_like(p, dtype=np.int8)
    hard = soft_targets(p, zero, 1 / 0.55)  # the BirdCLEF 2025 winner's third-round power
    assert (hard < p).all() and (np.diff(hard[0, 0]) > 0).all()


def test_nan_windows_are_never_drawn():
    targets = np.full((2, 3, 2), 0.5, dtype=np.float32)
    targets[0, 2] = np.nan  # recording 0's last window is past its end
    targets[1] = np.nan  # recording 1 is not in the rows' sound at all
    items = soft_windows(targets, np.array([0, 1]), [[0, 10], [8, 18], [16, 26]], 200, np.random.default_rng(1))
    assert len(items) == 200
    assert set(items.rows.tolist()) == {0}
    assert set(items.starts.tolist()) == {0, 8}
    assert (items.weight == 1).all() and np.allclose(items.target, 0.5)


def test_draws_only_the_given_rows_and_are_seeded():
    targets = np.random.default_rng(0).random((5, 4, 3)).astype(np.float32)
    rows = np.array([1, 3])
    positions = [[0, 4], [4, 8], [8, 12], [12, 16]]
    a = soft_windows(targets, rows, positions, 50, np.random.default_rng(7))
    b = soft_windows(targets, rows, positions, 50, np.random.default_rng(7))
    assert set(a.rows.tolist()) <= {1, 3}
    np.testing.assert_array_equal(a.rows, b.rows)
    window = a.starts // 4
    np.testing.assert_array_equal(a.target, targets[a.rows, window])


def test_no_draw_and_concat():
    targets = np.zeros((1, 2, 3), dtype=np.float32)
    empty = soft_windows(targets, np.array([0]), [[0, 4], [4, 8]], 0, np.random.default_rng(0))
    assert len(empty) == 0 and empty.target.shape == (0, 3)
    one = Items(np.array([0]), np.array([0]), np.ones((1, 3), np.float32), np.ones((1, 3), np.float32))
    both = concat_items(one, empty, one)
    assert len(both) == 2 and both.target.shape == (2, 3)


def test_bad_shapes_and_power():
    with pytest.raises(ValueError):
        soft_targets(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 2), np.int8))
    with pytest.raises(ValueError):
        soft_targets(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 3), np.int8), power=0)


def test_floor_zeroes_the_small_probabilities_before_the_power():
    teacher = np.array([[[0.05, 0.2, np.nan, 0.9]]], dtype=np.float32)
    labels = np.zeros((1, 1, 4), dtype=np.int8)
    out = soft_targets(teacher, labels, power=2.0, floor=0.1)
    assert out[0, 0, 0] == 0.0 and out[0, 0, 1] == pytest.approx(0.04) and np.isnan(out[0, 0, 2])
    assert out[0, 0, 3] == pytest.approx(0.81)
    labels[0, 0, 0] = 1  # a TP window stays 1 whatever the floor
    assert soft_targets(teacher, labels, floor=0.5)[0, 0, 0] == 1.0


def test_pseudo_labelled_windows_are_flagged_and_the_flags_survive_take_and_concat():
    targets = np.random.default_rng(0).random((3, 2, 4)).astype(np.float32)
    soft = soft_windows(targets, np.array([0, 2]), [[0, 8], [8, 16]], 5, np.random.default_rng(1))
    assert soft.soft is not None and soft.soft.all()
    plain = Items(np.array([1]), np.array([0]), np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32))
    both = concat_items(plain, soft)
    assert both.soft.tolist() == [False] + [True] * 5
    assert both.take(np.array([5, 0])).soft.tolist() == [True, False]


def test_mixup_injection_pairs_every_labelled_crop_with_a_window_of_its_batch():
    from rfcx_kit.method.sampling import injection_plan

    flags = np.array([False, True, False, False, True, False])
    partner, lam = injection_plan(flags, np.random.default_rng(0))
    labelled = np.flatnonzero(~flags)
    assert flags[partner[labelled]].all() and (lam[labelled] == 0.5).all()  # each with a window, half and half
    assert (partner[flags] == np.flatnonzero(flags)).all() and (lam[flags] == 1.0).all()  # windows unmixed
    again = injection_plan(flags, np.random.default_rng(0))
    assert (again[0] == partner).all()  # seeded
    assert injection_plan(np.zeros(4, bool), np.random.default_rng(0)) is None
    assert injection_plan(np.ones(4, bool), np.random.default_rng(0)) is None


def test_soft_label_quality_and_calibration_by_hand():
    from types import SimpleNamespace

    from rfcx_kit.method.cycle import soft_quality

    # 1 recording, 2 windows, 3 species: one known TP cell (left out), one window past the end (NaN)
    labels = np.zeros((1, 2, 3), dtype=np.int8)
    labels[0, 0, 0] = 1
    soft = np.array([[[1.0, 0.95, 0.05], [np.nan, np.nan, np.nan]]], dtype=np.float32)
    truth = np.array([[[True, True, True], [False, True, False]]])
    figures, table = soft_quality(soft, SimpleNamespace(window_labels=labels), truth, threshold=0.5)
    assert figures["soft_cells"] == 2 and figures["soft_true_cells"] == 2  # (0, 0, 1) and (0, 0, 2)
    assert figures["soft_precision"] == 1.0 and figures["soft_recall"] == 0.5
    # two bins of one cell each: |0.95 - 1| and |0.05 - 1|, weighted by their cells
    assert figures["soft_ece"] == pytest.approx((0.05 + 0.95) / 2)
    assert table["cells"].sum() == 2 and table.loc[9, "share_true"] == 1.0 and np.isnan(table.loc[5, "share_true"])
    assert soft_quality(soft, SimpleNamespace(window_labels=labels), None) == ({}, None)
