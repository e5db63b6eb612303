"""The paired difference and its t interval, against figures computed by hand."""

import math

import numpy as np
import pytest

from rfcx_kit.core.stats import paired_difference, t_quantile


def test_three_pairs_by_hand():
    # d = 0.01, 0.03, 0.05: mean 0.03, sd 0.02, se 0.02 / sqrt(3) = 0.011547; t(0.975, 2) = 4.302653
    d = paired_difference([0.51, 0.53, 0.55], [0.50, 0.50, 0.50])
    assert d.n == 3
    assert d.mean == pytest.approx(0.03)
    assert d.sd == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert d.low == pytest.approx(0.03 - half, abs=1e-6)
    assert d.high == pytest.approx(0.03 + half, abs=1e-6)
    assert d.low == pytest.approx(-0.019683, abs=1e-6)
    assert not d.excludes_zero


def test_six_pairs_above_zero():
    # d = 0.04, 0.05, 0.06, 0.03, 0.05, 0.07: mean 0.05, sd sqrt(0.001 / 5) = 0.014142; t(0.975, 5) = 2.570582
    a = np.array([0.84, 0.85, 0.86, 0.83, 0.85, 0.87])
    d = paired_difference(a, np.full(6, 0.80))
    assert d.mean == pytest.approx(0.05)
    assert d.sd == pytest.approx(math.sqrt(0.001 / 5))
    assert d.low == pytest.approx(0.05 - 2.570582 * math.sqrt(0.001 / 5) / math.sqrt(6), abs=1e-6)
    assert d.excludes_zero and d.low > 0
    assert "n = 6" in d.text() and d.text().startswith("+0.050 ± 0.014")


def test_level_and_quantiles():
    assert t_quantile(0.975, 1) == pytest.approx(12.706205, abs=1e-5)
    assert t_quantile(0.975, 1000) == pytest.approx(1.962339, abs=1e-5)
    d90 = paired_difference([1.0, 2.0, 4.0], [0.0, 0.0, 0.0], confidence=0.90)
    d95 = paired_difference([1.0, 2.0, 4.0], [0.0, 0.0, 0.0], confidence=0.95)
    assert d90.high - d90.low < d95.high - d95.low


def test_nan_pairs_dropped_and_small_n():
    d = paired_difference([0.6, math.nan, 0.7], [0.5, 0.5, math.nan])
    assert d.n == 1 and d.mean == pytest.approx(0.1)
    assert math.isnan(d.sd) and math.isnan(d.low) and not d.excludes_zero
    assert "no spread" in d.text()
    empty = paired_difference([], [])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_bad_arguments():
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1, 2], confidence=1.0)
