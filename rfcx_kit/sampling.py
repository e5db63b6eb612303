"""What a training epoch is made of: crops or windows, each with a (24,) target and loss weight.

Three ways, each a vectorised draw from a seeded generator (same seed, fold and epoch -> same epoch):

* ``tp_crops`` (the post's stage 1): a crop of ``window`` frames around every TP box of the training
  recordings (randomly placed around the box when ``crop_jitter``), plus ``fp_per_tp`` crops around FP boxes;
* ``all_windows``: every fixed window of every training recording;
* ``table`` (cycle re-labeling): fixed windows carrying original or pseudo labels; a batch slot holds an
  originally labelled window with probability ``keep_original_p`` (the 2nd-place team's guard against labels
  going soft), otherwise a pseudo-labelled one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfcx_kit.framewise import FramewiseLabels


@dataclass
class Items:
    """An epoch's samples. ``rows``, ``starts``: (M,); ``target``, ``weight``: (M, 24) float32."""

    rows: np.ndarray
    starts: np.ndarray
    target: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray) -> Items:
        return Items(self.rows[index], self.starts[index], self.target[index], self.weight[index])


def labels_to_loss_arrays(labels: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 24)`` int8 (+1/-1/0) -> target, weight.

    ``clipwise_bce`` (the post's stage 1): every species not positive is a 0 target (weight 1 everywhere).
    ``masked``: TP -> 1, FP -> 0, unknown -> weight 0 (left out of the loss).
    """
    target = (labels == 1).astype(np.float32)
    weight = np.ones_like(target) if loss == "clipwise_bce" else (labels != 0).astype(np.float32)
    return target, weight


def _box_crop_starts(first: np.ndarray, stop: np.ndarray, width: int, frames: int, jitter: bool,
                     rng: np.random.Generator) -> np.ndarray:
    """Start of a ``width``-frame crop holding each box (or the box's middle part if it is longer)."""
    length = stop - first
    lo = np.where(length >= width, first, stop - width)
    hi = np.where(length >= width, stop - width, first)
    if jitter:
        start = lo + np.floor(rng.random(len(first)) * (hi - lo + 1)).astype(np.int64)
    else:
        start = (lo + hi) // 2
    return np.clip(start, 0, max(0, frames - width))


def tp_crops(labels: FramewiseLabels, rows: np.ndarray, width: int, fp_per_tp: float, jitter: bool,
             loss: str, rng: np.random.Generator) -> Items:
    """Crops around the TP boxes of ``rows`` plus ``fp_per_tp`` times as many crops around FP boxes."""
    in_rows = np.isin(labels.row, rows)
    tp = np.flatnonzero(in_rows & (labels.label > 0))
    fp = np.flatnonzero(in_rows & (labels.label < 0))
    n_fp = min(len(fp), int(round(fp_per_tp * len(tp))))
    chosen = np.concatenate([tp, rng.choice(fp, size=n_fp, replace=False)]) if n_fp else tp
    starts = _box_crop_starts(labels.first[chosen], labels.stop[chosen], width, labels.frames, jitter, rng)
    box_rows = labels.row[chosen]
    crop_labels = labels.crops(box_rows, starts, width)
    target, weight = labels_to_loss_arrays(crop_labels, loss)
    return Items(box_rows, starts, target, weight)


def all_windows(window_labels: np.ndarray, rows: np.ndarray, positions: list[list[int]], loss: str) -> Items:
    """Every fixed window of ``rows``; ``window_labels`` is ``(R, N, 24)`` int8 over all recordings."""
    n = len(positions)
    starts = np.tile(np.asarray([p[0] for p in positions]), len(rows))
    item_rows = np.repeat(rows, n)
    target, weight = labels_to_loss_arrays(window_labels[rows].reshape(-1, window_labels.shape[-1]), loss)
    return Items(item_rows, starts, target, weight)


def table_windows(target: np.ndarray, weight: np.ndarray, original: np.ndarray, rows: np.ndarray,
                  positions: list[list[int]], keep_original_p: float, size: int | None,
                  rng: np.random.Generator) -> Items:
    """Windows with original or pseudo labels, mixed so originals keep a share of every batch.

    Args:
        target, weight: ``(R, N, 24)`` from the cycle's label table (weight 0 = unknown).
        original: ``(R, N, 24)`` int8 original labels (non-zero = TP/FP).
        rows: training recordings.
        size: samples in the epoch (None: as many as there are labelled windows).
    """
    n = len(positions)
    sub_w = weight[rows]
    known = sub_w.reshape(len(rows) * n, -1).sum(-1) > 0
    has_original = (original[rows] != 0).reshape(len(rows) * n, -1).any(-1)
    pool_original = np.flatnonzero(has_original)
    pool_pseudo = np.flatnonzero(known & ~has_original)
    size = int(size or known.sum())
    if len(pool_pseudo) == 0 or keep_original_p >= 1.0:
        picks = rng.choice(pool_original, size=size, replace=size > len(pool_original))
    elif len(pool_original) == 0 or keep_original_p <= 0.0:
        picks = rng.choice(pool_pseudo, size=size, replace=size > len(pool_pseudo))
    else:
        from_original = rng.random(size) < keep_original_p
        picks = np.where(from_original,
                         pool_original[rng.integers(0, len(pool_original), size)],
                         pool_pseudo[rng.integers(0, len(pool_pseudo), size)])
    local_row, win = np.divmod(picks, n)
    item_rows = rows[local_row]
    starts = np.asarray([p[0] for p in positions])[win]
    return Items(item_rows, starts, target[item_rows, win], weight[item_rows, win])
