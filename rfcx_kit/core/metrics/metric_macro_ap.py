"""Macro average precision: the mean over species of each species' AP across recordings (species without a
positive drop out). Where LWLRAP ranks the species inside each recording, this ranks the recordings for each
species: what a detector's user, who reviews one species' hits at a time, sees."""

from __future__ import annotations

import numpy as np

from rfcx_kit.core.metrics import per_species_ap
from rfcx_kit.core.metrics.registry import Metric


def macro_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    """``(R, K)`` 0/1 truth and scores -> the mean of the species' APs (nan when no species has a positive)."""
    ap = per_species_ap(truth, scores)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


METRIC = Metric("macro_ap", macro_ap, higher_is_better=True, needs_positives=True, title="macro AP")
