"""The Kaggle inference package: built from a BirdCLEF run, installed offline into a fresh environment (pip
--no-index from its wheels/), its predict.py writes a submission that validates and equals rfcx-kit predict's rows;
given a budget it cannot meet, it drops models instead of running over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.data.synth.birdclef import BirdclefSynth, write_birdclef


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kaggle")
    data, run, out = root / "data", root / "run", root / "package"
    # soundscapes of 25 s against chunks of 10 s: each file is cut into 3 chunks, the last padded
    write_birdclef(BirdclefSynth(year=2025, species=3, clips_per_species=4, soundscapes=2, test=3,
                                 soundscape_seconds=25.0, clip_seconds=(4.0, 9.0)), data, progress=False)
    _invoke(["stage1", "--data", str(data), "--run", str(run), "--pipeline", "birdclef-scratch", "--no-progress",
             "--set", "train.epochs=2", "--set", "train.steps_per_epoch=4", "--set", "train.val_every=2"])
    said = _invoke(["kaggle-package", "--run", str(run), "--stage", "stage1", "--out", str(out),
                    "--chunk-seconds", "10"])
    assert "3 model(s) of stage1, 3 classes" in said
    env_dir = root / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["PIP_NO_INDEX"] = "1"  # offline: only the package's wheels
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                           str(out / "wheels"), "onnxruntime", "soundfile"], capture_output=True, text=True,
                          timeout=600, env=clean)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"data": data, "run": run, "out": out, "python": python, "root": root, "env": clean}


def _predict(package: dict[str, Path], *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    sub, log = package["root"] / "submission.csv", package["root"] / "predict.json"
    done = subprocess.run([str(package["python"]), str(package["out"] / "predict.py"), "--audio",
                           str(package["data"] / "test_soundscapes"), "--out", str(sub), "--log", str(log),
                           "--sample", str(package["data"] / "sample_submission.csv"), *extra],
                          capture_output=True, text=True, timeout=300, env=package["env"], cwd=package["root"])
    assert done.returncode == 0, done.stderr[-3000:]
    return done, sub, log


def test_the_package_predicts_offline_what_rfcx_kit_predicts(package: dict[str, Path]) -> None:
    fresh = subprocess.run([str(package["python"]), "-c", "import rfcx_kit"], capture_output=True, text=True,
                           env=package["env"], cwd=package["root"])
    assert fresh.returncode != 0  # a fresh environment: only the package's three imports are there
    info = json.loads((package["out"] / "package.json").read_text())
    assert all(m["max_difference"] <= 1e-4 and m["seconds_per_audio_minute_here"] > 0 for m in info["models"])
    _, sub, log = _predict(package)
    said = _invoke(["validate", str(sub), "--data", str(package["data"])])
    assert said.startswith(f"OK: {sub}: 15 rows x 3 classes")
    ours = package["root"] / "ours.csv"
    _invoke(["predict", "--run", str(package["run"]), "--stage", "stage1", "--audio",
             str(package["data"] / "test_soundscapes"), "--out", str(ours), "--rows", "5", "--sample-submission",
             str(package["data"] / "sample_submission.csv"), "--device", "cpu", "--no-progress"])
    a, b = pd.read_csv(sub), pd.read_csv(ours)
    assert a["row_id"].equals(b["row_id"]) and list(a.columns) == list(b.columns)
    # chunks of 10 s see less context at their edges than the whole file does: close, not equal
    diff = np.abs(a.iloc[:, 1:].to_numpy() - b.iloc[:, 1:].to_numpy())
    assert np.median(diff) < 0.02, np.median(diff)
    report = json.loads(log.read_text())
    assert report["models"] == [m["file"] for m in info["models"]] and not report["dropped"]


def test_a_budget_it_cannot_meet_drops_models_instead_of_running_over(package: dict[str, Path]) -> None:
    done, sub, log = _predict(package, "--budget-minutes", "0.0001")
    report = json.loads(log.read_text())
    assert report["models"] == ["model_fold0.onnx"]  # the first model always runs: a submission is written
    assert [d["model"] for d in report["dropped"]] == ["model_fold2.onnx", "model_fold1.onnx"]
    assert "budget: dropping model_fold2.onnx after 1 file(s)" in done.stdout
    assert len(pd.read_csv(sub)) == 15


def test_the_package_is_refused_where_it_would_be_wrong(package: dict[str, Path], tmp_path: Path) -> None:
    bad = CliRunner().invoke(main, ["kaggle-package", "--run", str(package["run"]), "--out", str(package["out"])])
    assert bad.exit_code != 0 and "exists and is not empty" in bad.output
    bad = CliRunner().invoke(main, ["kaggle-package", "--run", str(package["run"]), "--out", str(tmp_path / "p"),
                                    "--chunk-seconds", "7"])
    assert bad.exit_code != 0 and "multiple of 5" in bad.output and not (tmp_path / "p").exists()
    empty = tmp_path / "wheels"
    empty.mkdir()
    bad = CliRunner().invoke(main, ["kaggle-package", "--run", str(package["run"]), "--out", str(tmp_path / "p"),
                                    "--wheels", str(empty)])
    assert bad.exit_code != 0 and "no wheel of onnxruntime, soundfile" in bad.output
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p.tmp-*"))  # nothing half-written
