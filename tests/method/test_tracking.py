"""Experiment tracking: a tiny stage 1 with train.log_to, read back through each library's own reader."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.method import tracking
from rfcx_kit.method.run import Run
from rfcx_kit.method.stage1 import run_stage1
from tiny import make_tiny, tiny_overrides

KEYS = ("train_loss", "lr", "val_loss", "val_lwlrap")


def _finite(frame: pd.DataFrame, key: str) -> dict[int, float]:
    return {int(e): float(v) for e, v in zip(frame["epoch"], frame[key]) if math.isfinite(v)}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
    pytest.importorskip("mlflow", reason="the tracking extra (mlflow) is not installed")
    root = tmp_path_factory.mktemp("tracking")
    data = make_tiny(root / "data", n_train=9, n_test=2)
    run_dir = root / "run"
    run_stage1(data, run_dir, overrides=tiny_overrides(epochs=2, folds=2) + (
        "train.log_to=[tensorboard, mlflow]", "train.val_every=2"), progress=False)
    return run_dir


def test_tensorboard_events_equal_history(tracked: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = pd.read_csv(Run(tracked).history("stage1"))
    for fold, part in history.groupby("fold"):
        events = EventAccumulator(str(tracked / "tracking" / "tensorboard" / "stage1" / f"fold{fold}"))
        events.Reload()
        for key in KEYS:
            logged = {e.step: e.value for e in events.Scalars(key)}
            want = _finite(part, key)
            assert logged.keys() == want.keys(), (fold, key)  # val_* only where validation ran (epoch 2)
            assert all(logged[s] == pytest.approx(want[s], rel=1e-6) for s in want), (fold, key)
    summary = EventAccumulator(str(tracked / "tracking" / "tensorboard" / "stage1" / "summary"))
    summary.Reload()
    metrics = pd.read_json(Run(tracked).metrics("stage1"), typ="series")
    assert summary.Scalars("cv/cv_lwlrap")[0].value == pytest.approx(metrics["cv_lwlrap"], rel=1e-6)


def test_mlflow_run_metrics_equal_history(tracked: Path) -> None:
    from mlflow.tracking import MlflowClient

    run = Run(tracked)
    client = MlflowClient((tracked / "tracking" / "mlruns").resolve().as_uri())
    stage_id = (run.stage("stage1") / tracking.MLFLOW_ID).read_text().strip()
    history = pd.read_csv(run.history("stage1"))
    for fold, part in history.groupby("fold"):
        fold_id = (run.fold("stage1", fold) / tracking.MLFLOW_ID).read_text().strip()
        fold_run = client.get_run(fold_id)
        assert fold_run.data.tags["mlflow.parentRunId"] == stage_id
        assert fold_run.info.status == "FINISHED"
        for key in KEYS:
            logged = {m.step: m.value for m in client.get_metric_history(fold_id, key)}
            want = _finite(part, key)
            assert logged.keys() == want.keys(), (fold, key)
            assert all(logged[s] == pytest.approx(want[s], rel=1e-12) for s in want), (fold, key)
    stage = client.get_run(stage_id)
    metrics = pd.read_json(run.metrics("stage1"), typ="series")
    assert stage.data.metrics["cv_lwlrap"] == pytest.approx(metrics["cv_lwlrap"], rel=1e-12)
    assert stage.data.params["train.folds"] == "2" and stage.data.params["train.epochs"] == "2"
    assert "provenance.torch" in stage.data.tags or any(k.startswith("provenance.") for k in stage.data.tags)
    experiment = client.get_experiment(stage.info.experiment_id)
    assert experiment.name == "data"  # one experiment per data set: the data folder's name
    assert stage.info.run_name == f"{tracked.name}/stage1"
    # fold runs carry their params; the stage run its files, each fold's best.pt among them
    fold_run = client.get_run((run.fold("stage1", 0) / tracking.MLFLOW_ID).read_text().strip())
    assert fold_run.data.params["fold"] == "0" and fold_run.data.params["train.epochs"] == "2"

    def listed(path: str = "") -> list[str]:
        out = []
        for item in client.list_artifacts(stage_id, path):
            out += listed(item.path) if item.is_dir else [item.path]
        return out

    assert {"metrics.json", "history.csv", "oof.csv", "test.csv", "checkpoints/fold0/best.pt",
            "checkpoints/fold1/best.pt"} <= set(listed())


def test_the_report_and_the_lb_reach_the_stage_runs(tracked: Path) -> None:
    from mlflow.tracking import MlflowClient

    from rfcx_kit.method.tracking import log_report
    from rfcx_kit.report.markdown import write_report

    run = Run(tracked)
    write_report(tracked)
    client = MlflowClient((tracked / "tracking" / "mlruns").resolve().as_uri())
    stage_id = (run.stage("stage1") / tracking.MLFLOW_ID).read_text().strip()
    assert "report/report.md" in [a.path for a in client.list_artifacts(stage_id, "report")]
    assert any(a.path.endswith("lwlrap_by_stage.png") for a in client.list_artifacts(stage_id, "report/figures"))
    from rfcx_kit import api

    api.ensemble(tracked, stage="stage1", out=tracked.parent / "sub.csv")  # recorded in RUN/submissions.csv
    log_report(tracked, ["mlflow"], {"stage1": 0.8123}, [])  # what write_report passes once the log has an LB
    assert client.get_run(stage_id).data.metrics["LB"] == pytest.approx(0.8123)
    assert [a.path for a in client.list_artifacts(stage_id, "submissions")] == ["submissions/sub.csv"]


def test_tensorboard_summary_has_hparams_and_a_tag_per_species(tracked: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = EventAccumulator(str(tracked / "tracking" / "tensorboard" / "stage1" / "summary"))
    summary.Reload()
    session = EventAccumulator(str(tracked / "tracking" / "tensorboard" / "stage1" / "summary" / "hparams"))
    session.Reload()
    assert session.PluginTagToContent("hparams")  # the HParams tab's experiment and session of this stage
    assert session.Scalars("hparam/cv_lwlrap")[0].value == pytest.approx(
        pd.read_json(Run(tracked).metrics("stage1"), typ="series")["cv_lwlrap"], rel=1e-6)
    tags = summary.Tags()["scalars"]
    assert "cv/per_species_ap" not in tags and any(t.startswith("cv/per_species_ap/s") for t in tags)


def test_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B in its offline mode: a fold's epochs land in a local run folder, nothing reaches the network."""
    pytest.importorskip("wandb", reason="the tracking extra (wandb) is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    Run(run_dir).stage("stage1").mkdir(parents=True)
    tracker = tracking.FoldTracker(run_dir, "stage1", 0, ["wandb"], {"train": {"epochs": 2}})
    rows = [{"epoch": 1, "train_loss": 0.7, "lr": 1e-3}, {"epoch": 2, "train_loss": 0.5, "lr": 5e-4,
                                                           "val_lwlrap": 0.4}]
    for row in rows:
        tracker.epoch(row)
    tracker.close()
    runs = list((run_dir / "tracking" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), runs


def test_missing_library_is_refused_before_anything_is_written(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    data = make_tiny(tmp_path / "data", n_train=6, n_test=2)
    with pytest.raises(ConfigError, match=r"train.log_to: wandb needs the wandb package: pip install 'rfcx-kit\[wandb\]'"):
        run_stage1(data, tmp_path / "run", overrides=tiny_overrides(epochs=1, folds=2) + ("train.log_to=wandb",),
                   progress=False)
    assert not (tmp_path / "run").exists()


def test_log_to_is_checked_as_a_list_of_known_trackers() -> None:
    from rfcx_kit.core.config import load_config

    assert load_config(None, ["train.log_to=tensorboard"]).train.log_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="train.log_to: 'neptune' is not one of tensorboard, mlflow, wandb"):
        load_config(None, ["train.log_to=[tensorboard, neptune]"])
    with pytest.raises(ConfigError, match="names an entry twice"):
        load_config(None, ["train.log_to=[mlflow, mlflow]"])


def test_every_tracker_name_is_one_tracker_class() -> None:
    assert set(tracking.REGISTRY) == set(tracking.TRACKERS)
    for name, tracker in tracking.REGISTRY.items():
        assert isinstance(tracker, tracking.Tracker) and tracker.name == name
        assert type(tracker).open_fold is not tracking.Tracker.open_fold  # each writes its own way
        assert type(tracker).log_stage is not tracking.Tracker.log_stage
