"""BirdCLEF end to end, one small folder per year's layout: detect -> train -> predict -> a submission.csv that
validates against the folder's own sample_submission.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.data.synth.birdclef import BirdclefSynth, write_birdclef


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("year", [2023, 2024, 2025, 2026])
def test_a_year_goes_from_its_folder_to_a_valid_submission(tmp_path: Path, year: int) -> None:
    data = tmp_path / f"birdclef-{year}"
    write_birdclef(BirdclefSynth(year=year, species=3, clips_per_species=4, soundscapes=3, test=2,
                                 soundscape_seconds=12.0, clip_seconds=(4.0, 9.0), labelled_soundscapes=0.34),
                   data, progress=False)
    run = tmp_path / "run"
    metric = "padded_cmap" if year == 2023 else "roc_auc"
    _invoke(["stage1", "--data", str(data), "--run", str(run), "--pipeline", "birdclef-scratch", "--no-progress",
             "--set", "train.epochs=2", "--set", "train.steps_per_epoch=4", "--set", "train.val_every=2",
             "--set", f"train.metric={metric}"])
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert 0.0 <= metrics[f"cv_{metric}"] <= 1.0 and metrics["truth_test_rows"] == 2 * 3  # 2 x 12 s: 3 rows each
    assert 0.0 <= metrics[f"truth_test_rows_{metric}"] <= 1.0
    oof = pd.read_csv(run / "stage1" / "oof.csv", dtype={"recording_id": str})
    unlabelled = [r for r in oof["recording_id"] if "soundscapes/" in r]
    assert len(unlabelled) == (0 if year == 2023 else 3)  # predicted out of fold: what pseudo-labels come from
    out = tmp_path / "submission.csv"
    _invoke(["predict", "--run", str(run), "--stage", "stage1", "--audio", str(data / "test_soundscapes"),
             "--out", str(out), "--rows", "5", "--sample-submission", str(data / "sample_submission.csv"),
             "--device", "cpu", "--no-progress"])
    said = _invoke(["validate", str(out), "--data", str(data)])
    assert said.startswith(f"OK: {out}: 6 rows x 3 classes")
    submission, sample = pd.read_csv(out), pd.read_csv(data / "sample_submission.csv")
    assert list(submission.columns) == list(sample.columns) and submission["row_id"].equals(sample["row_id"])


def test_the_birdclef_demo_scores_every_stage_on_the_test_rows(tmp_path: Path) -> None:
    from rfcx_kit.app.demo_birdclef import run_birdclef_demo

    fast = ("train.epochs=2", "train.steps_per_epoch=4", "train.val_every=2", "relabel.epochs=1")
    summary = run_birdclef_demo(tmp_path / "demo", seed=1, overrides=fast, cycles=1, progress=False, n_test=3)
    stages = {row["stage"]: row for row in summary["stages"]}
    assert set(stages) == {"stage1", "cycle1", "control", "oracle"}
    assert summary["prior"] == pytest.approx(0.5)  # a constant score per class: macro ROC-AUC 0.5 by construction
    for row in stages.values():
        assert 0.0 <= row["test_rows_roc_auc"] <= 1.0 and 0.0 <= row["cv_roc_auc"] <= 1.0
    assert stages["stage1"]["gap_closed"] == 0.0 and stages["oracle"]["gap_closed"] == pytest.approx(1.0) \
        or stages["oracle"]["test_rows_roc_auc"] <= stages["stage1"]["test_rows_roc_auc"]
    kept = summary["kept"]["stage"]
    assert summary["kept_minus_control"] == pytest.approx(stages[kept]["test_rows_roc_auc"]
                                                         - stages["control"]["test_rows_roc_auc"])
    submission = pd.read_csv(summary["submission"])
    assert len(submission) == 3 * 6 and json.loads((tmp_path / "demo" / "summary.json").read_text())["metric"] == "roc_auc"
