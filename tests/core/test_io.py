"""Strict JSON: every figure the toolkit writes parses with NaN and Infinity refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rfcx_kit.core.io import atomic_write_json, json_text, strict_json


def _refuse(token: str) -> None:
    raise ValueError(token)


def test_non_finite_numbers_become_null() -> None:
    value = {"a": float("nan"), "b": [1.0, math.inf, np.float32(-np.inf)], "c": np.array([0.5, np.nan]),
             "d": np.int64(3), "e": np.bool_(True), "f": {"g": np.float64(0.25)}}
    out = strict_json(value)
    assert out == {"a": None, "b": [1.0, None, None], "c": [0.5, None], "d": 3, "e": True, "f": {"g": 0.25}}
    assert json.loads(json_text(value), parse_constant=_refuse) == out


def test_atomic_write_json_is_strict(tmp_path) -> None:  # noqa: ANN001
    atomic_write_json(tmp_path / "m.json", {"x": float("nan")})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=_refuse) == {"x": None}
    with pytest.raises(ValueError):
        json.loads('{"x": NaN}', parse_constant=_refuse)
