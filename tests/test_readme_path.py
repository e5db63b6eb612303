"""The README's real-competition path, command by command, on a synthetic set in the precomputed layout.

Each step is the README's command (run as a user would, through the installed CLI), with `--set` overrides
that make it tiny; `download` and the real `submit` are replaced by `synth` and `submit --dry-run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TINY = ["--set", "features.seconds=10", "--set", "model.backbone=mobilenetv3_small_050", "--set", "train.epochs=1",
        "--set", "train.folds=3", "--set", "relabel.votes=2", "--set", "train.threads=1"]


def rfcx(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "rfcx_kit", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=400, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, f"rfcx-kit {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.timeout(600)
def test_readme_real_competition_path_on_precomputed_spectrograms(tmp_path: Path) -> None:
    """synth (npy) -> stage1 -> relabel -> ensemble -> validate -> submit --dry-run -> report."""
    data = tmp_path / "data" / "rfcx-npy"
    rfcx("synth", "--out", str(data), "--train", "24", "--test", "8", "--seconds", "10", "--format", "npy",
         "--seed", "5", "--no-progress", cwd=tmp_path)
    assert not (data / "features_cache").exists()
    out = rfcx("features", "--data", str(data), cwd=tmp_path)
    assert "no cache needed" in out and not (data / "features_cache").exists()
    rfcx("stage1", "--data", str(data), "--pipeline", str(Path(__file__).parents[1] / "pipelines" / "method-post-resnet18.yaml"),
         "--run", "runs/resnet18-npy", "--no-progress", *TINY, cwd=tmp_path)
    run = tmp_path / "runs" / "resnet18-npy"
    assert json.loads((run / "stage1" / "metrics.json").read_text())["stage"] == "stage1"
    out = rfcx("relabel", "--run", "runs/resnet18-npy", "--cycles", "2", "--no-progress",
               "--set", "relabel.epochs=1", cwd=tmp_path)
    assert "cycle2:" in out
    rfcx("ensemble", "--run", "runs/resnet18-npy", "--stage", "latest", "--out", "submissions/resnet18.csv", cwd=tmp_path)
    sub = tmp_path / "submissions" / "resnet18.csv"
    rfcx("validate", str(sub), "--data", str(data), cwd=tmp_path)
    out = rfcx("submit", str(sub), "-m", "resnet18 stage1 + 2 cycles", "--data", str(data), "--dry-run", cwd=tmp_path)
    assert "sha256" in out.lower()
    assert not (tmp_path / "submissions" / "log.csv").exists()  # a dry run logs nothing
    rfcx("report", "--run", "runs/resnet18-npy", cwd=tmp_path)
    assert (run / "report.md").exists() and (run / "report" / "recording.png").exists()
    cv = pd.read_csv(tmp_path / "runs" / "cv_table.csv")
    assert cv["stage"].tolist() == ["stage1", "cycle1", "cycle2"]
    # the recipe's fold votes: cycle 1's labels came from every fold model's vote on all train recordings
    assert (run / "stage1" / "fold0" / "train_pred.npz").exists()
