"""Probabilities or logits: one rule for telling them apart, and the conversion.

A probability never leaves [0, 1], so one value outside proves an input is not probabilities (we call any
such score a logit). The converse is a presumption only: logits that all happen to fall in [0, 1] look like
probabilities, so callers that know better declare the scale. Averaging the two kinds is never done silently.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError

_SPECIES_COLUMN = re.compile(r"^s\d+$")  # the clip tables' species columns s0..s{K-1}

PROBABILITY = "prob"
LOGIT = "logit"
SCALES = ("auto", PROBABILITY, LOGIT)  # auto: probabilities if every value lies in [0, 1] (detect_scale)


def detect_scale(values: pd.DataFrame | np.ndarray) -> str:
    """:data:`PROBABILITY` if every finite value lies in [0, 1], else :data:`LOGIT`.

    A frame's non-species columns (``recording_id``, ``patch``) are ignored, and so are non-finite values.
    """
    if isinstance(values, pd.DataFrame):
        columns = [c for c in values.columns if _SPECIES_COLUMN.match(str(c))] or list(values.columns)
        array = values[columns].to_numpy(dtype=np.float64)
    else:
        array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0 and np.asarray(values).size == 0:
        raise DataError("cannot detect the scale of an empty prediction")
    return LOGIT if array.size and (array.min() < 0.0 or array.max() > 1.0) else PROBABILITY


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logits -> probabilities, float64, without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def to_prob(values: np.ndarray, scale: str) -> np.ndarray:
    """Predictions as float64 probabilities: ``prob`` unchanged, ``logit`` through the sigmoid, ``auto`` as detected."""
    v = np.asarray(values, dtype=np.float64)
    if scale == "auto":
        scale = detect_scale(v)
    if scale == PROBABILITY:
        return v
    if scale == LOGIT:
        return sigmoid(v)
    raise ValueError(f"scale must be '{PROBABILITY}', '{LOGIT}' or 'auto', got {scale!r}")
