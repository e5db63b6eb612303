"""The metric registry: every metric a file of core/metrics, found by name; the config picks one; a toy metric is
one file; macro AP against hand-computed figures and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from rfcx_kit.core.config import load_config
from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.metrics import lwlrap
from rfcx_kit.core.metrics.registry import Metric, get_metric, metrics
from rfcx_kit.method.cycle import choose_kept


def test_the_registry_finds_each_metric_file_by_name() -> None:
    found = metrics()
    assert {"lwlrap", "macro_ap"} <= set(found)
    assert found["lwlrap"].fn is lwlrap and found["lwlrap"].higher_is_better
    with pytest.raises(ConfigError, match=r"train.metric: 'auc' is not a registered metric \(lwlrap, macro_ap"):
        get_metric("auc")


def test_the_config_names_a_registered_metric() -> None:
    assert load_config(None).train.metric == "lwlrap"
    assert load_config(None, ["train.metric=macro_ap"]).train.metric == "macro_ap"
    with pytest.raises(ConfigError, match="train.metric"):
        load_config(None, ["train.metric=accuracy"])


def test_macro_ap_by_hand_and_against_scikit_learn() -> None:
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.4, 0.1], [0.3, 0.8, 0.2]])
    # species 0: positives ranked 1st and 2nd of 3 -> AP 1; species 1: positives 1st (0.8), 2nd (0.4) -> AP 1
    assert get_metric("macro_ap")(truth, scores) == pytest.approx(1.0)
    scores[0, 1] = 0.95  # now a negative outranks both positives of species 1: AP (1/2 + 2/3) / 2
    assert get_metric("macro_ap")(truth, scores) == pytest.approx((1 + (1 / 2 + 2 / 3) / 2) / 2)
    rng = np.random.default_rng(0)
    truth = (rng.random((40, 6)) < 0.3).astype(int)
    truth[:, 5] = 0  # a species without a positive drops out
    scores = rng.random((40, 6))
    expected = np.mean([average_precision_score(truth[:, k], scores[:, k]) for k in range(5)])
    assert get_metric("macro_ap")(truth, scores) == pytest.approx(expected)


def test_the_kept_stage_follows_the_metric_and_its_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    """A toy metric where lower is better: registered as a file would register it, it chooses the other stage."""
    from rfcx_kit.core.metrics import registry

    toy = Metric("toy_error", lambda t, s: float(np.mean(np.abs(t - s))), higher_is_better=False, title="toy")
    known = registry.metrics()
    monkeypatch.setattr(registry, "metrics", lambda: {**known, "toy_error": toy})
    history = [{"stage": "stage1", "cv_lwlrap": 0.5, "cv_toy_error": 0.30, "per_species_ap": [0.1, 0.2]},
               {"stage": "cycle1", "cv_lwlrap": 0.6, "cv_toy_error": 0.40, "per_species_ap": [0.1, 0.2]}]
    assert choose_kept(history)["stage"] == "cycle1"
    kept = choose_kept(history, name="toy_error")
    assert kept["stage"] == "stage1" and kept["metric"] == "cv_toy_error"
