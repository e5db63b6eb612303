"""THE METRIC REGISTRY: the figure that picks a fold's epoch, the kept stage and the report's headline.

Each metric is one file in this folder, ``metric_<name>.py``, holding one function ``(truth (R, K) 0/1, scores
(R, K)) -> float`` and a module-level ``METRIC = Metric(...)`` that says its name, whether higher is better and
whether it needs a positive label to be defined (LWLRAP: a recording without one drops out; a class without one
has no AP). The config key ``train.metric`` names one (default ``lwlrap``); a run's metrics then carry
``val_<name>`` per epoch and ``cv_<name>`` per stage, beside the competition's LWLRAP.

Adding a metric: a new ``metric_<name>.py`` and its test; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.registry import discover

DEFAULT = "lwlrap"


@dataclass(frozen=True)
class Metric:
    """One figure of clip predictions.

    Attributes:
        name: the config's and the metrics files' name (``cv_<name>``, ``val_<name>``).
        fn: ``(truth (R, K) 0/1, scores (R, K)) -> float`` (nan where undefined).
        higher_is_better: the direction a choice by this metric takes.
        needs_positives: undefined (nan) without a positive label; the rows or classes without one drop out.
        title: how tables and figures name it.
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool = True
    needs_positives: bool = True
    title: str = ""

    def __call__(self, truth: np.ndarray, scores: np.ndarray) -> float:
        return float(self.fn(truth, scores))

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` beats ``b`` (a nan never does)."""
        if not np.isfinite(a):
            return False
        if not np.isfinite(b):
            return True
        return a > b if self.higher_is_better else a < b


def metrics() -> dict[str, Metric]:
    """Every registered metric by name: the ``metric_*.py`` modules of this folder, in name order."""
    return {metric.name: metric for metric in discover("rfcx_kit.core.metrics", "metric_", "METRIC")}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; a ConfigError lists the registered ones."""
    known = metrics()
    if name not in known:
        raise ConfigError(f"train.metric: {name!r} is not a registered metric ({', '.join(known)}; each is a "
                          "rfcx_kit/core/metrics/metric_<name>.py)")
    return known[name]
