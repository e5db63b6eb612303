"""What a training epoch is made of: crops or windows, each with a (K,) target and loss weight.

Two ways, each a vectorised draw from a seeded generator (same seed, fold and epoch -> same epoch):

* ``tp_crops`` (the post's stage 1): a crop of ``window`` frames around every positive box of the training
  recordings (randomly placed around the box when ``crop_jitter``), plus ``fp_per_tp`` crops around FP
  boxes. Positive boxes are the TP boxes, and in a re-labeling cycle also its pseudo-positive boxes, so every
  stage trains the same way and only the labels change;
* ``all_windows``: every fixed window of every training recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfcx_kit.data.framewise import FramewiseLabels


@dataclass
class Items:
    """An epoch's samples. ``rows``, ``starts``: (M,); ``target``, ``weight``: (M, K) float32; ``test``: (M,)
    bool, True where ``rows`` indexes the test recordings (pseudo-labelled test audio, ``relabel.test_pseudo``;
    None: all train)."""

    rows: np.ndarray
    starts: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    test: np.ndarray | None = None
    soft: np.ndarray | None = None  # (M,) bool: a pseudo-labelled window (relabel.soft_share); None: none is

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray) -> Items:
        return Items(self.rows[index], self.starts[index], self.target[index], self.weight[index],
                     None if self.test is None else self.test[index], None if self.soft is None else self.soft[index])

    def on_test(self) -> Items:
        """The same items, marked as crops of test recordings."""
        return Items(self.rows, self.starts, self.target, self.weight, np.ones(len(self.rows), dtype=bool), self.soft)


def labels_to_loss_arrays(labels: np.ndarray, loss: str, unlabeled_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(M, K)`` int8 (+1/-1/0) -> target, weight.

    ``clipwise_bce`` (the post's stage 1): every species not positive is a 0 target; an unknown one (an
    implicit negative) weighs ``unlabeled_weight``, a TP or FP one 1.
    ``masked``: TP -> 1, FP -> 0, unknown -> weight 0 (left out of the loss).
    """
    target = (labels == 1).astype(np.float32)
    if loss == "clipwise_bce":
        weight = np.where(labels == 0, np.float32(unlabeled_weight), np.float32(1.0))
    else:
        weight = (labels != 0).astype(np.float32)
    return target, weight


def _box_crop_starts(first: np.ndarray, stop: np.ndarray, width: int, frames: np.ndarray, jitter: bool,
                     rng: np.random.Generator) -> np.ndarray:
    """Start of a ``width``-frame crop holding each box (or the box's middle part if it is longer), inside the
    box's recording (``frames``: its length, ``(M,)``)."""
    length = stop - first
    lo = np.where(length >= width, first, stop - width)
    hi = np.where(length >= width, stop - width, first)
    if jitter:
        start = lo + np.floor(rng.random(len(first)) * (hi - lo + 1)).astype(np.int64)
    else:
        start = (lo + hi) // 2
    return np.clip(start, 0, np.maximum(0, frames - width))


def tp_crop_count(labels: FramewiseLabels, rows: np.ndarray, fp_per_tp: float) -> int:
    """How many crops :func:`tp_crops` draws for ``rows``: one per positive box plus the FP crops."""
    in_rows = np.isin(labels.row, rows)
    n_tp = int((in_rows & labels.anchor).sum())
    return n_tp + min(int((in_rows & (labels.label < 0)).sum()), int(round(fp_per_tp * n_tp)))


def tp_crops(labels: FramewiseLabels, rows: np.ndarray, width: int, fp_per_tp: float, jitter: bool,
             loss: str, rng: np.random.Generator, unlabeled_weight: float = 1.0) -> Items:
    """Crops around the positive (TP, pseudo-positive) boxes of ``rows`` plus ``fp_per_tp`` times as many
    crops around FP boxes."""
    in_rows = np.isin(labels.row, rows)
    tp = np.flatnonzero(in_rows & labels.anchor)
    fp = np.flatnonzero(in_rows & (labels.label < 0))
    n_fp = min(len(fp), int(round(fp_per_tp * len(tp))))
    chosen = np.concatenate([tp, rng.choice(fp, size=n_fp, replace=False)]) if n_fp else tp
    starts = _box_crop_starts(labels.first[chosen], labels.stop[chosen], width, labels.lengths[labels.row[chosen]],
                              jitter, rng)
    box_rows = labels.row[chosen]
    # the masked loss leaves every unknown species out: an implicit negative of weight 0
    target, weight = labels.crop_targets(box_rows, starts, width, 0.0 if loss == "masked" else unlabeled_weight)
    return Items(box_rows, starts, target, weight)


def all_windows(window_labels: np.ndarray, rows: np.ndarray, positions: list[list[int]], loss: str,
                unlabeled_weight: float = 1.0, valid: np.ndarray | None = None) -> Items:
    """Every fixed window of ``rows``; ``window_labels`` is ``(R, N, K)`` int8 over all recordings; ``valid``
    ``(R, N)`` bool leaves out the windows past a recording's end (padding, not sound)."""
    n = len(positions)
    starts = np.tile(np.asarray([p[0] for p in positions]), len(rows))
    item_rows = np.repeat(rows, n)
    target, weight = labels_to_loss_arrays(window_labels[rows].reshape(-1, window_labels.shape[-1]), loss,
                                           unlabeled_weight)
    items = Items(item_rows, starts, target, weight)
    if valid is not None and not valid[rows].all():
        items = items.take(np.flatnonzero(valid[rows].reshape(-1)))
    return items


def soft_targets(teacher: np.ndarray, window_labels: np.ndarray, power: float = 1.0, floor: float = 0.0) -> np.ndarray:
    """The targets of pseudo-labelled windows: ``(R, N, K)`` float32 from the teacher's ``(R, N, K)`` window
    probabilities (NaN past a recording's end) and the original ``(R, N, K)`` int8 labels.

    A TP window is 1 and an FP window 0 whatever the teacher says; every unknown cell is the teacher's probability
    raised to ``power`` (the BirdCLEF winners' sharpening: ``power > 1`` pushes the doubtful middle towards 0 and
    leaves sure calls near 1); a probability below ``floor`` is 0 before that. NaN stays NaN (a window that is not
    sound is never drawn).
    """
    if teacher.shape != window_labels.shape:
        raise ValueError(f"teacher {teacher.shape} and labels {window_labels.shape} differ")
    if not power > 0:
        raise ValueError(f"power must be positive, got {power}")
    probability = np.clip(teacher.astype(np.float32), 0.0, 1.0)
    probability = np.where(probability < np.float32(floor), np.float32(0.0), probability)  # NaN stays NaN
    soft = np.power(probability, np.float32(power))
    soft = np.where(window_labels == 1, np.float32(1.0), np.where(window_labels == -1, np.float32(0.0), soft))
    return soft.astype(np.float32)


def soft_windows(targets: np.ndarray, rows: np.ndarray, positions: list[list[int]], n: int,
                 rng: np.random.Generator) -> Items:
    """``n`` fixed windows of the recordings ``rows``, drawn uniformly with replacement among those that are
    sound (no NaN target), each with its soft ``(K,)`` target (:func:`soft_targets`) at weight 1.

    Args:
        targets: ``(R, N, K)`` float32 over all recordings; ``rows``: the fold's training recordings.
    Returns:
        Items with ``rows``, window ``starts``, ``target`` and ``weight`` ``(n, K)``.
    """
    n_windows, k = targets.shape[1], targets.shape[2]
    valid = ~np.isnan(targets[rows]).any(axis=-1)  # (len(rows), N)
    cells = np.flatnonzero(valid.reshape(-1))
    if n <= 0 or not len(cells):
        return Items(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, k), np.float32),
                     np.zeros((0, k), np.float32))
    pick = cells[rng.integers(0, len(cells), size=n)]
    item_rows = np.asarray(rows, dtype=np.int64)[pick // n_windows]
    window = pick % n_windows
    starts = np.asarray([p[0] for p in positions], dtype=np.int64)[window]
    target = targets[item_rows, window].astype(np.float32)
    return Items(item_rows, starts, target, np.ones_like(target), soft=np.ones(len(item_rows), dtype=bool))


def concat_items(*parts: Items) -> Items:
    """One epoch's items from several draws, in the given order."""
    flags = {}
    for name in ("test", "soft"):
        if any(getattr(p, name) is not None for p in parts):
            flags[name] = np.concatenate([np.zeros(len(p), bool) if getattr(p, name) is None else getattr(p, name)
                                          for p in parts])
    return Items(np.concatenate([p.rows for p in parts]), np.concatenate([p.starts for p in parts]),
                 np.concatenate([p.target for p in parts]), np.concatenate([p.weight for p in parts]),
                 flags.get("test"), flags.get("soft"))


def injection_plan(soft: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """``relabel.soft_inject: mixup``: each labelled item of a batch (``soft`` False) is mixed 50/50 with one of the
    batch's pseudo-labelled windows, drawn at random; the windows themselves stay as they are. Returns ``(partner
    (M,), lam (M,))`` as :func:`model.augment.mixup_plan` gives them, or None when the batch has no window or no
    labelled item."""
    soft = np.asarray(soft, dtype=bool)
    windows, labelled = np.flatnonzero(soft), np.flatnonzero(~soft)
    if not len(windows) or not len(labelled):
        return None
    partner = np.arange(len(soft))
    partner[labelled] = windows[rng.integers(0, len(windows), size=len(labelled))]
    lam = np.where(soft, 1.0, 0.5).astype(np.float32)
    return partner, lam
