"""The spread of a result over runs: the paired difference of two stages with its t interval.

A re-labeling gain is never one run's figure. Each run (a data seed and a training seed) gives the kept stage and
the control on the same data and the same stage 1, so the two are compared pair by pair: the differences
``d_i = a_i - b_i`` have a mean, a standard deviation and a Student-t interval over the runs,

    mean ± t(1 - alpha/2, n - 1) * sd / sqrt(n),

which holds when the differences are roughly normal; with a handful of runs it is wide, as it should be.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over ``n`` paired runs: mean, sd (n - 1 in the denominator), the t interval and its level."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    confidence: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """The interval lies above 0 (a gain) or below it (a loss); False when it is undefined."""
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        """``+0.043 ± 0.012 (95 % CI +0.031 to +0.055, n = 6)``."""
        if self.n == 0:
            return "no runs"
        if not math.isfinite(self.sd):
            return f"{self.mean:+.{digits}f} (n = 1: no spread)"
        return (f"{self.mean:+.{digits}f} ± {self.sd:.{digits}f} ({self.confidence:.0%} CI {self.low:+.{digits}f} to "
                f"{self.high:+.{digits}f}, n = {self.n})").replace("%", " %")


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


def paired_difference(a: Any, b: Any, confidence: float = 0.95) -> PairedDifference:
    """Mean, sd and t interval of ``a - b`` over paired runs.

    Args:
        a, b: ``(n,)`` figures of the same runs (e.g. the kept stage's and the control's test LWLRAP); a pair
            with a NaN on either side is left out.
        confidence: the interval's level, in (0, 1).
    Returns:
        the difference; with one pair the sd and the interval are NaN, with none the mean is NaN too.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired figures need two (n,) arrays, got {a.shape} and {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n = len(d)
    nan = float("nan")
    if n == 0:
        return PairedDifference(0, nan, nan, nan, nan, confidence)
    mean = float(d.mean())
    if n == 1:
        return PairedDifference(1, mean, nan, nan, nan, confidence)
    sd = float(d.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return PairedDifference(n, mean, sd, mean - half, mean + half, confidence)
