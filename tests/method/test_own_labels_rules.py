"""Rules for the labels and starts a user brings: TP-only tables, data changed under a run, a refused start."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.method.cycle import run_relabel
from rfcx_kit.method.stage1 import run_stage1

from tiny import make_tiny, tiny_overrides


@pytest.mark.parametrize("fp_table", ["empty", "absent"])
def test_stage1_and_a_cycle_train_on_tp_only_labels(tmp_path: Path, fp_table: str) -> None:
    data = make_tiny(tmp_path / "data", n_train=12, n_test=3)
    fp = data / "train_fp.csv"
    if fp_table == "empty":
        fp.write_text(fp.read_text().splitlines()[0] + "\n")
    else:
        fp.unlink()
    run = tmp_path / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    folds = pd.read_csv(run / "folds.csv", dtype={"recording_id": str})
    assert len(folds) == 12 and set(folds["fold"]) == {0, 1, 2}
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert 0.0 <= metrics["cv_lwlrap"] <= 1.0
    run_relabel(run, cycles=1, overrides=("relabel.epochs=1", "relabel.threshold=0.05", "relabel.tp_quantile=0.0"),
                progress=False)
    cycle = json.loads((run / "cycle1" / "metrics.json").read_text())
    assert 0.0 <= cycle["cv_lwlrap"] <= 1.0 and json.loads((run / "kept.json").read_text())["stage"] in {"stage1", "cycle1"}


def test_relabel_control_and_oracle_refuse_labels_changed_since_stage1(tmp_path: Path) -> None:
    from rfcx_kit.core.errors import StateError
    from rfcx_kit.method.references import run_control, run_oracle

    data = make_tiny(tmp_path / "data", n_train=12, n_test=3, truth=True)
    run = tmp_path / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    tp = data / "train_tp.csv"
    rows = tp.read_text().splitlines()
    tp.write_text("\n".join(rows[:-1]) + "\n")  # a label removed after stage 1
    for start in (lambda: run_relabel(run, cycles=1, progress=False), lambda: run_control(run, progress=False),
                  lambda: run_oracle(run, progress=False)):
        with pytest.raises(StateError, match=r"changed since stage 1 \(train_tp\.csv"):
            start()
    assert not (run / "cycle1").exists() and not (run / "control" / "metrics.json").exists()


def test_a_start_refused_by_its_folds_leaves_no_run_and_the_fixed_rerun_goes(tmp_path: Path) -> None:
    from rfcx_kit.core.errors import RfcxError

    data = make_tiny(tmp_path / "data", n_train=12, n_test=3)
    run = tmp_path / "runs" / "a"
    with pytest.raises(RfcxError, match="fold"):
        run_stage1(data, run, overrides=tiny_overrides(epochs=1, folds=13), progress=False)
    assert not (tmp_path / "runs").exists()
    run_stage1(data, run, overrides=tiny_overrides(epochs=1, folds=3), progress=False)
    assert (run / "stage1" / "metrics.json").is_file()


def test_rate_and_top_frequency_come_from_the_recordings_unless_set() -> None:
    from types import SimpleNamespace

    from rfcx_kit.core.config import load_config
    from rfcx_kit.method.preflight import resolve_features

    rates = pd.DataFrame({"sample_rate": [48000, 22000, 44100]}, index=["a/x", "b/y", "c/z"])
    comp = SimpleNamespace(recordings=rates, root=Path("data"))
    cfg = load_config(None)
    resolve_features(cfg, comp)
    assert (cfg.features.sample_rate, cfg.features.fmax) == (48000, 11000.0)  # the highest rate, the lowest Nyquist
    cfg = load_config(None, ["features.fmax=8000"])
    resolve_features(cfg, comp)
    assert (cfg.features.sample_rate, cfg.features.fmax) == (48000, 8000.0)
    cfg = load_config(None, ["features.sample_rate=16000"])
    resolve_features(cfg, comp)
    assert (cfg.features.sample_rate, cfg.features.fmax) == (16000, 8000.0)
    cfg = load_config(None)
    resolve_features(cfg, SimpleNamespace(recordings=None))  # the competition's layout keeps the post's
    assert (cfg.features.sample_rate, cfg.features.fmax) == (32000, 16000.0)
    with pytest.raises(DataError, match=r"recordings.csv.*b/y.*features.fmax 20000"):  # above the data's: named
        resolve_features(load_config(None, ["features.fmax=20000"]), comp)
