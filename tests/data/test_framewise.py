"""Framewise labels: boxes on frame centres, TP over FP, window labels and crops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import RFCX_DATA, requires_shared

from rfcx_kit.data.framewise import FramewiseLabels, box_frames, reduce_window_labels, window_labels_from_grid
from rfcx_kit.core.grid import window_positions

def centre(f: float) -> float:
    """Time (s) of frame f's centre: frames are 512 / 32000 = 16 ms apart, frame 0 at 0 s."""
    return f * 512 / 32000


def boxes(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["recording_id", "species_id", "t_min", "t_max", "label"])


def test_box_edges_on_frame_centres():
    """A box covers the frames whose centre lies in [t_min, t_max]: a box starting and ending exactly on a
    centre includes both; starting just after a centre excludes it; ending just before one excludes it."""
    first, stop = box_frames(np.array([centre(10), centre(30) + 1e-4, centre(40)]),
                             np.array([centre(20), centre(35), centre(50) - 1e-4]))
    assert first.tolist() == [10, 31, 40]
    assert stop.tolist() == [21, 36, 50]


def test_hand_made_boxes_on_the_grid():
    """Hand-made boxes give exactly the expected (24, T) grid: boundary centres included, a box shorter than
    a frame gets its nearest frame only, TP wins over an overlapping FP of the same species (FP keeps the
    rest), FP of another species stays -1, boxes of other recordings are ignored, and rows follow
    recording_ids order."""
    T = 100
    table = boxes([
        ("a", 0, centre(10), centre(20), 1),            # frames 10..20
        ("a", 1, centre(30) + 1e-4, centre(40), 1),     # starts just after centre 30: frames 31..40
        ("a", 2, centre(60.2), centre(60.6), 1),        # shorter than a frame, middle 60.4: frame 60
        ("a", 2, centre(70.7), centre(70.9), -1),       # short FP, middle 70.8: frame 71
        ("a", 3, centre(10), centre(20), 1),            # TP 10..20
        ("a", 3, centre(15), centre(30), -1),           # FP 15..30: TP wins on 15..20, FP on 21..30
        ("b", 5, centre(0), centre(99), -1),            # whole recording b, FP
        ("zzz", 0, centre(0), centre(99), 1),           # a recording not asked for
    ])
    labels = FramewiseLabels(table, ["b", "a"], frames=T)
    grid = labels.grid([0, 1])
    assert grid.shape == (2, 24, T) and grid.dtype == np.int8

    expected = np.zeros((2, 24, T), dtype=np.int8)
    expected[1, 0, 10:21] = 1
    expected[1, 1, 31:41] = 1
    expected[1, 2, 60] = 1
    expected[1, 2, 71] = -1
    expected[1, 3, 10:21] = 1
    expected[1, 3, 21:31] = -1
    expected[0, 5, :] = -1
    np.testing.assert_array_equal(grid, expected)
    np.testing.assert_array_equal(labels.grid([1]), expected[1:])  # a single row alone: the same


def test_boxes_at_the_recording_edges():
    """t_min = 0 covers frame 0 and t_max = 60 s covers the last frame 3750 of a 60 s recording."""
    labels = FramewiseLabels(boxes([("r", 4, 0.0, 0.05, 1), ("r", 4, 59.98, 60.0, -1)]), ["r"], frames=3751)
    grid = labels.grid([0])[0, 4]
    assert grid[0] == 1 and grid[3] == 1 and grid[4] == 0  # 0.05 s * 62.5 = 3.125 -> frames 0..3
    assert grid[3750] == -1 and grid[3749] == -1 and grid[3748] == 0  # 59.98 s = frame 3748.75 -> 3749..3750
    assert (grid != 0).sum() == 6


def test_boxes_past_the_end_of_a_short_recording_cover_nothing():
    """With a shortened recording (63 frames, 1 s), a box wholly past the end labels no frame and no window
    (it used to crash grid() with an IndexError and mark window [0, 512) positive); a box straddling the end
    keeps its in-recording frames."""
    table = boxes([("r", 0, 2.0, 3.0, 1), ("r", 1, 1.1, 3.0, -1), ("r", 2, 0.9, 3.0, 1)])
    labels = FramewiseLabels(table, ["r"], frames=63)
    grid = labels.grid([0])
    assert grid.shape == (1, 24, 63)
    assert not grid[0, :2].any()
    assert grid[0, 2, :57].sum() == 0 and (grid[0, 2, 57:] == 1).all()  # 0.9 s * 62.5 = 56.25 -> 57..62
    expected = np.zeros((1, 1, 24), dtype=np.int8)
    expected[0, 0, 2] = 1
    np.testing.assert_array_equal(labels.windows([[0, 512]]), expected)
    np.testing.assert_array_equal(labels.windows([[0, 512]]), window_labels_from_grid(grid, [[0, 512]]))


def test_window_labels_of_hand_made_boxes():
    """Window labels on the post's layout: a box inside the overlap of windows 0 and 1 labels both, one after
    the overlap only window 1; a window with both a TP and an FP frame of a species is positive; a window
    with only FP frames is negative; everything else unknown (0)."""
    pos = window_positions(3751, 512, 49)  # [0, 512], [463, 975], ...
    table = boxes([
        ("r", 0, centre(470), centre(480), 1),   # frames 470..480: windows 0 and 1
        ("r", 1, centre(520), centre(530), 1),   # window 1 only
        ("r", 2, centre(100), centre(110), 1),   # window 0 TP ...
        ("r", 2, centre(200), centre(210), -1),  # ... and FP in the same window: positive
        ("r", 3, centre(3700), 60.0, -1),        # last window only, FP
    ])
    win = FramewiseLabels(table, ["r"]).windows(pos)
    assert win.shape == (1, 8, 24)
    expected = np.zeros((8, 24), dtype=np.int8)
    expected[[0, 1], 0] = 1
    expected[1, 1] = 1
    expected[0, 2] = 1
    expected[7, 3] = -1
    np.testing.assert_array_equal(win[0], expected)


def random_boxes(rng: np.random.Generator, n_rec: int, n_boxes: int) -> tuple[pd.DataFrame, list[str]]:
    """Random TP/FP boxes: long and sub-frame ones, some at 0 s and 60 s, overlapping TP/FP, a foreign id."""
    ids = [f"r{i:03d}" for i in range(n_rec)]
    t_min = rng.uniform(0, 59, n_boxes)
    length = np.where(rng.random(n_boxes) < 0.2, rng.uniform(0.001, 0.015, n_boxes), rng.uniform(0.2, 12, n_boxes))
    t_min[:5] = 0.0
    t_max = np.minimum(t_min + length, 60.0)
    t_max[5:10] = 60.0
    rec = rng.choice(ids + ["foreign"], n_boxes)
    table = pd.DataFrame({"recording_id": rec, "species_id": rng.integers(0, 4, n_boxes),  # few species: overlaps
                          "t_min": t_min, "t_max": t_max, "label": rng.choice([1, -1], n_boxes)})
    return table, ids


@pytest.mark.parametrize("window, cover", [(512, 49), (512, 256), (256, 23), (100, 0)])
def test_windows_equal_the_grid_reference_on_random_boxes(window, cover):
    """FramewiseLabels.windows (box x window overlap, no dense grid) equals window_labels_from_grid
    (dense grid -> split_windows -> any TP / any FP) on random boxes, for several layouts and a row subset."""
    rng = np.random.default_rng(window + cover)
    table, ids = random_boxes(rng, 40, 400)
    labels = FramewiseLabels(table, ids)
    pos = window_positions(3751, window, cover)
    rows = np.arange(len(ids))
    np.testing.assert_array_equal(labels.windows(pos), window_labels_from_grid(labels.grid(rows), pos))
    subset = np.array([7, 3, 31])
    np.testing.assert_array_equal(labels.windows(pos, subset), window_labels_from_grid(labels.grid(subset), pos))
    assert (labels.windows(pos) == 1).any() and (labels.windows(pos) == -1).any()


@requires_shared
def test_windows_equal_the_grid_reference_on_the_real_boxes():
    """On the real train_tp.csv/train_fp.csv boxes (index over all 4727 recordings), window labels from the
    box index equal those from the dense grid for the post's training layout, checked on every recording
    that is in both tables (363, where TP and FP meet) plus 300 random others (the dense grid of all
    4727 would cost seconds)."""
    from rfcx_kit.data.reader import read_boxes

    tp = read_boxes(RFCX_DATA / "train_tp.csv")
    fp = read_boxes(RFCX_DATA / "train_fp.csv")
    table = pd.concat([tp.assign(label=1), fp.assign(label=-1)], ignore_index=True)
    ids = sorted(set(table["recording_id"]))
    labels = FramewiseLabels(table, ids)
    pos = window_positions(3751, 512, 49)
    fast = labels.windows(pos)
    assert fast.shape == (4727, 8, 24)
    index = {rid: i for i, rid in enumerate(ids)}
    both = sorted(index[r] for r in set(tp["recording_id"]) & set(fp["recording_id"]))
    assert len(both) == 363
    others = np.setdiff1d(np.arange(len(ids)), both)
    rows = np.concatenate([both, np.random.default_rng(0).choice(others, 300, replace=False)])
    for chunk in np.array_split(rows, 4):
        np.testing.assert_array_equal(fast[chunk], window_labels_from_grid(labels.grid(chunk), pos))
    # Every TP row's species is positive in some window of its recording.
    r = tp["recording_id"].map(index).to_numpy()
    assert (fast[r, :, tp["species_id"].to_numpy()] == 1).any(axis=1).all()


def test_crops_equal_the_grid_slice():
    """crops(rows, starts, width) equals reducing the grid slice [start, start + width) (zero beyond the
    last frame) for random rows and starts, including crops running past the end."""
    rng = np.random.default_rng(3)
    table, ids = random_boxes(rng, 20, 200)
    labels = FramewiseLabels(table, ids)
    rows = rng.integers(0, len(ids), 50)
    starts = rng.integers(0, 3751 - 100, 50)
    starts[:3] = [0, 3751 - 512, 3700]  # flush with the end, and past it
    width = 512
    got = labels.crops(rows, starts, width)
    grid = np.pad(labels.grid(rows), ((0, 0), (0, 0), (0, width)))
    expected = np.stack([reduce_window_labels(grid[i, :, s : s + width]) for i, s in enumerate(starts)])
    np.testing.assert_array_equal(got, expected)
    assert (got == 1).any() and (got == -1).any()


def test_bands_are_kept_in_box_order():
    """With f_min/f_max columns, each indexed box keeps its own band (aligned with its row and species)."""
    table = boxes([("b", 1, 1.0, 2.0, 1), ("a", 2, 3.0, 4.0, -1)]).assign(f_min=[100.0, 200.0], f_max=[900.0, 800.0])
    labels = FramewiseLabels(table, ["a", "b"])
    assert labels.row.tolist() == [0, 1] and labels.species.tolist() == [2, 1]
    np.testing.assert_array_equal(labels.bands, [[200.0, 800.0], [100.0, 900.0]])
    assert FramewiseLabels(table.drop(columns=["f_min", "f_max"]), ["a", "b"]).bands is None
