"""Macro ROC-AUC over the classes that have a positive: BirdCLEF 2024-2026's metric (Kaggle's scorer drops every
class without a true positive in the solution before averaging scikit-learn's per-class AUC)."""

from __future__ import annotations

import numpy as np

from rfcx_kit.core.metrics.registry import Metric


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """``(R, K)`` 0/1 truth and scores -> the mean AUC of the classes with at least one positive and one negative
    (nan when none has both: a class that is positive in every row has no AUC either)."""
    from sklearn.metrics import roc_auc_score  # sklearn is slow to import; only needed here

    truth, scores = np.asarray(truth), np.asarray(scores, dtype=np.float64)
    positives = truth.sum(axis=0)
    scored = (positives > 0) & (positives < truth.shape[0])
    if not scored.any():
        return float("nan")
    return float(roc_auc_score(truth[:, scored], scores[:, scored], average="macro"))


METRIC = Metric("roc_auc", roc_auc, higher_is_better=True, needs_positives=True, title="macro ROC-AUC")
