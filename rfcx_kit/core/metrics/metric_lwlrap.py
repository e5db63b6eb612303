"""LWLRAP, the RFCX competition's metric (the function and its tie rule: ``core/metrics/__init__.py``)."""

from __future__ import annotations

from rfcx_kit.core.metrics import lwlrap
from rfcx_kit.core.metrics.registry import Metric

METRIC = Metric("lwlrap", lwlrap, higher_is_better=True, needs_positives=True, title="LWLRAP")
