"""Padded cmAP: BirdCLEF 2023's metric. Five rows of ones are appended to both the truth and the scores, then the
macro average precision is taken over every class: the padding gives each class positives (none is undefined)
and softens the classes with few."""

from __future__ import annotations

import numpy as np

from rfcx_kit.core.metrics.registry import Metric

PAD = 5  # the competition's padding_factor


def padded_cmap(truth: np.ndarray, scores: np.ndarray) -> float:
    """``(R, K)`` 0/1 truth and scores -> scikit-learn's macro average precision after :data:`PAD` rows of ones."""
    from sklearn.metrics import average_precision_score  # sklearn is slow to import; only needed here

    truth, scores = np.asarray(truth, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    ones = np.ones((PAD, truth.shape[1]))
    return float(average_precision_score(np.vstack([truth, ones]), np.vstack([scores, ones]), average="macro"))


METRIC = Metric("padded_cmap", padded_cmap, higher_is_better=True, needs_positives=False, title="padded cmAP")
