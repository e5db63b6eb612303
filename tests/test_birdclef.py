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
