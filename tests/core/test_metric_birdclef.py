"""BirdCLEF's metrics in the registry: macro ROC-AUC over the classes with a positive (2024-2026) and padded cmAP
(2023), each against hand-computed figures and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from rfcx_kit.core.metrics.registry import get_metric


def test_roc_auc_by_hand_skipping_a_class_without_positives() -> None:
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    scores = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.1], [0.4, 0.3, 0.9], [0.5, 0.6, 0.2]])
    # class 0: positives 0.9, 0.4 against negatives 0.1, 0.5 -> 3 of 4 pairs ordered: 0.75
    # class 1: positives 0.8, 0.6 against 0.2, 0.3 -> 1.0; class 2 has no positive: left out
    assert get_metric("roc_auc")(truth, scores) == pytest.approx((0.75 + 1.0) / 2)
    assert np.isnan(get_metric("roc_auc")(np.zeros((3, 2)), np.random.default_rng(0).random((3, 2))))
    assert get_metric("roc_auc").higher_is_better and get_metric("roc_auc").needs_positives


def test_roc_auc_against_scikit_learn_on_the_scored_classes() -> None:
    rng = np.random.default_rng(1)
    truth = (rng.random((60, 8)) < 0.2).astype(int)
    truth[:, 3] = 0  # a class nobody heard
    scores = rng.random((60, 8))
    scored = truth.sum(0) > 0
    assert get_metric("roc_auc")(truth, scores) == pytest.approx(
        roc_auc_score(truth[:, scored], scores[:, scored], average="macro"), abs=1e-12)


def test_padded_cmap_by_hand_and_against_scikit_learn() -> None:
    truth = np.array([[1, 0], [0, 0]])
    scores = np.array([[0.9, 0.8], [0.2, 0.1]])
    # class 0: 6 positives (1 + the 5 pad rows of score 1) ranked first, the negative last -> AP 1
    # class 1: 5 positives (pad, score 1) first, then 2 negatives -> AP 1 too; a perfect ranking scores 1
    assert get_metric("padded_cmap")(truth, scores) == pytest.approx(1.0)
    scores = np.array([[0.9, 0.8], [0.95, 0.1]])  # class 0's negative now outranks its real positive
    # class 0 ranking: five 1.0 pads (hits 1-5), 0.95 (miss), 0.9 (hit 6): AP = (5 * 1 + 6/7) / 6
    assert get_metric("padded_cmap")(truth, scores) == pytest.approx(((5 + 6 / 7) / 6 + 1.0) / 2)
    rng = np.random.default_rng(2)
    truth = (rng.random((30, 5)) < 0.25).astype(int)
    scores = rng.random((30, 5))
    padded = average_precision_score(np.vstack([truth, np.ones((5, 5))]), np.vstack([scores, np.ones((5, 5))]),
                                     average="macro")
    assert get_metric("padded_cmap")(truth, scores) == pytest.approx(padded, abs=1e-12)
