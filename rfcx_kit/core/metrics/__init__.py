"""Scores of clip-level predictions: LWLRAP (the competition metric), per-species AP, precision and recall.

LWLRAP, label-weighted label-ranking average precision: for recording ``s`` with positive species ``P_s``
and ``r_s(c)`` the 1-based rank of species ``c`` by descending score,

    Prec(s, c) = |{c' in P_s : r_s(c') <= r_s(c)}| / r_s(c)
    lwlrap     = sum_s sum_{c in P_s} Prec(s, c) / sum_s |P_s|

so every positive label weighs the same and recordings without a positive drop out.

Tie rule: **scikit-learn's**. Tied scores all get the worst (largest) rank of their tie group, so
``lwlrap(y, s) == label_ranking_average_precision_score(y, s, sample_weight=y.sum(1))``. The DCASE 2019
reference breaks ties by sort order instead (``np.argsort(scores)[::-1]``: among tied scores, the later
class ranks first); the two differ only where scores tie. Example (a Kaggle discussion's
"0.444 vs 0.417"): truth ``[[0,1,0,0],[1,0,1,0]]`` with every score 0.5 gives 5/12 = 0.417 here
(each positive ranked 4th) and 4/9 = 0.444 with the DCASE rule. The worst-rank rule cannot be gamed by
ties: a constant prediction scores like the worst ordering of its tie group, not like a lucky one.

``rfcx-kit score FILE --truth LABELS.csv`` prints these figures for any submission-format file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import Species


def _check_pair(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(R, K)`` truth (0/1) and finite scores of the same shape; return bool truth, float scores."""
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.ndim != 2 or truth.shape != scores.shape:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must both be (recordings, species)")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError("truth must hold only 0 and 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    return truth.astype(bool), scores


def _precision_at_hits(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``Prec(s, c)`` for every cell, 0 where the label is negative: ``(R, K)`` float64.

    One sort per row (no loop over samples). After sorting each row by descending score, a label's
    worst-case rank is one past the last position of its tie group, and the positives ranked at or above
    it are the cumulative count of positives up to that same position.
    """
    n_rows, n_labels = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_truth = np.take_along_axis(truth, order, axis=1)

    # Last position of each tie group: where the next score differs, or the row ends.
    positions = np.broadcast_to(np.arange(n_labels), (n_rows, n_labels))
    is_group_end = np.ones((n_rows, n_labels), dtype=bool)
    is_group_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    # For each position, the nearest group end at or after it (reverse running minimum).
    ends = np.where(is_group_end, positions, n_labels)
    group_end = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]

    rank = group_end + 1
    hits_above = np.take_along_axis(np.cumsum(sorted_truth, axis=1), group_end, axis=1)
    precision_sorted = np.where(sorted_truth, hits_above / rank, 0.0)

    precision = np.empty_like(precision_sorted)
    np.put_along_axis(precision, order, precision_sorted, axis=1)
    return precision


def lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (scikit-learn tie rule, see the module docstring).

    Args:
        truth: ``(R, K)`` 0/1 labels.
        scores: ``(R, K)`` scores of any monotone scale (probabilities or logits).
    Returns:
        LWLRAP in [0, 1]; ``nan`` if ``truth`` holds no positive at all.
    """
    truth, scores = _check_pair(truth, scores)
    n_positive = truth.sum()
    if n_positive == 0:
        return math.nan
    return float(_precision_at_hits(truth, scores).sum() / n_positive)


def lwlrap_per_class(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each class's contribution to LWLRAP, as in the DCASE 2019 reference (but with sklearn's tie rule).

    Args:
        truth, scores: ``(R, K)`` as for :func:`lwlrap`.
    Returns:
        ``(per_class_lwlrap, weight)``, both ``(K,)``. ``per_class_lwlrap[c]`` is the mean of ``Prec(s, c)``
        over the recordings where ``c`` is positive (``nan`` for a class with no positive); ``weight[c]`` is
        the class's share of all positive labels (sums to 1, 0 for a class with no positive), so
        ``np.nansum(per_class_lwlrap * weight) == lwlrap(truth, scores)``.
    """
    truth, scores = _check_pair(truth, scores)
    positives_per_class = truth.sum(axis=0)
    precision_sum = _precision_at_hits(truth, scores).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(positives_per_class > 0, precision_sum / positives_per_class, np.nan)
        weight = positives_per_class / positives_per_class.sum()
    return per_class, weight


def prior_scores(train_presence: np.ndarray, n_recordings: int) -> np.ndarray:
    """The *prior*: every recording scored with one constant ranking of the species by their train frequency.

    Args:
        train_presence: ``(R_train, K)`` 0/1, where each species calls in each train recording.
        n_recordings: rows of the result.
    Returns:
        ``(n_recordings, K)`` float64 scores ``K - rank`` (the most frequent species ``K``); equal frequencies
        rank by species order, so the prior never profits from (or is hurt by) a tie.
    """
    freq = np.asarray(train_presence, dtype=np.float64).mean(axis=0)
    k = freq.shape[0]
    order = np.lexsort((np.arange(k), -freq))  # by frequency, descending; then by species id
    scores = np.empty(k)
    scores[order] = k - np.arange(k)
    return np.tile(scores, (n_recordings, 1))


def prior_lwlrap(train_presence: np.ndarray, test_presence: np.ndarray) -> float:
    """LWLRAP of :func:`prior_scores` on ``test_presence``: what learning the base rates alone scores."""
    return lwlrap(test_presence, prior_scores(train_presence, len(test_presence)))


def per_species_ap(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """sklearn ``average_precision_score`` of each column: ``(K,)``; ``nan`` where a class has no positive."""
    from sklearn.metrics import average_precision_score  # sklearn is slow to import; only needed here

    truth, scores = _check_pair(truth, scores)
    ap = np.full(truth.shape[1], np.nan)
    # A loop over the species, not over samples: each column is one sklearn call.
    for k in np.flatnonzero(truth.any(axis=0)):
        ap[k] = average_precision_score(truth[:, k], scores[:, k])
    return ap


def precision_recall(truth: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """Micro-averaged precision and recall over all (recording, species) cells at ``score > threshold``.

    The threshold applies to the values as given: 0.5 for probabilities, 0 for logits.
    Returns ``(precision, recall)``; precision is ``nan`` when no cell is predicted positive, recall is
    ``nan`` when ``truth`` has no positive.
    """
    truth, scores = _check_pair(truth, scores)
    predicted = scores > threshold
    true_positive = int((predicted & truth).sum())
    n_predicted, n_positive = int(predicted.sum()), int(truth.sum())
    precision = true_positive / n_predicted if n_predicted else math.nan
    recall = true_positive / n_positive if n_positive else math.nan
    return precision, recall


# ----------------------------------------------------------------------------------------------------------
# rfcx-kit score


def _read_submission_format(path: Path, what: str, n_species: int | None = None) -> pd.DataFrame:
    """Read a ``recording_id,s0..s{K-1}`` CSV indexed by recording_id; DataError on any malformation.

    ``n_species``: ``K`` (None: as many ``s0, s1, ...`` columns as the file has, at least one)."""
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} as CSV ({exc})") from exc
    if n_species is None:
        n_species = 0
        while f"s{n_species}" in frame.columns:
            n_species += 1
    columns = Species.numbered(max(1, n_species)).columns
    missing = [c for c in ["recording_id", *columns] if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: {what} lacks column(s) {', '.join(missing)} (want recording_id,s0..{columns[-1]})")
    duplicated = frame["recording_id"][frame["recording_id"].duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: {what} repeats recording_id {duplicated.iloc[0]!r}")
    values = frame[columns].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: {what} row {row + 2} (recording {frame['recording_id'].iloc[row]!r}), "
            f"column {columns[col]}: '{frame[columns[col]].iloc[row]}' is not a finite number"
        )
    return values.set_axis(frame["recording_id"].to_numpy()).astype(np.float64)


def _name_ids(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return f"{len(ids)} ({shown}{', ...' if len(ids) > limit else ''})"


def read_aligned(pred_path: Path, truth_path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read both files; align predictions to the truth's rows: ``(ids, truth (R, K), scores (R, K))``; the truth's
    columns say ``K``."""
    truth = _read_submission_format(truth_path, "truth")
    if not len(truth):
        raise DataError(f"{truth_path}: the truth has no recordings after the header")
    pred = _read_submission_format(pred_path, "prediction", truth.shape[1])
    columns = Species.numbered(truth.shape[1]).columns
    values = truth.to_numpy()
    if not np.isin(values, (0.0, 1.0)).all():
        row, col = np.argwhere(~np.isin(values, (0.0, 1.0)))[0]
        raise DataError(
            f"{truth_path}: truth must be 0/1; recording {truth.index[row]!r}, "
            f"column {columns[col]} holds {values[row, col]:g}"
        )
    missing = [rid for rid in truth.index if rid not in pred.index]
    extra = [rid for rid in pred.index if rid not in truth.index]
    problems = []
    if missing:
        problems.append(f"missing {_name_ids(missing)} recording(s) of the truth")
    if extra:
        problems.append(f"has {_name_ids(extra)} recording(s) not in the truth")
    if problems:
        raise DataError(f"{pred_path}: " + "; ".join(problems))
    return list(truth.index), values.astype(np.int8), pred.loc[truth.index].to_numpy()
