"""`rfcx-kit study`: runs over data x training seeds, resumed, refused with another design, and its paired
difference equal to the one computed by hand from its own study.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.core.stats import paired_difference

FAST = ["--set", "model.backbone=mobilenetv3_small_050", "--set", "train.epochs=1", "--set", "relabel.epochs=1",
        "--set", "train.threads=1", "--set", "relabel.windows_per_epoch=32", "--set", "train.steps_per_epoch=4"]


def study(out: Path, *extra: str) -> object:
    args = ["study", "--out", str(out), "--train", "24", "--test", "8", "--seconds", "10", "--data-seeds", "3",
            "--train-seeds", "42,1", "--cycles", "1", "--oracle", "first", "--no-progress", *FAST, *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.timeout(600)
def test_study_synthetic_resume_and_refusal(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = study(out)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "study.csv")
    assert list(frame["run"]) == ["d3-t42", "d3-t1"]
    assert list(frame["train_seed"]) == [42, 1]
    for column in ("prior", "stage1", "cycle1", "control", "oracle", "kept", "kept_truth", "kept_minus_control",
                   "cycle1_precision", "cycle1_lift", "stage1_cv", "control_cv"):
        assert column in frame, column
    # the two runs differ only by training seed: same data, same prior, other models
    assert frame["prior"].nunique() == 1
    assert frame["stage1"].iloc[0] != frame["stage1"].iloc[1] or frame["stage1_cv"].iloc[0] != frame["stage1_cv"].iloc[1]
    # --oracle first: trained in the first training seed's run only, shown in both rows
    assert (out / "runs" / "d3-t42" / "oracle" / "metrics.json").is_file()
    assert not (out / "runs" / "d3-t1" / "oracle").exists()
    assert frame["oracle"].iloc[0] == frame["oracle"].iloc[1]
    # kept - control on truth, paired per run, is what study.md and result.json report
    diff = paired_difference(frame["kept_truth"], frame["control"])
    np.testing.assert_allclose(frame["kept_minus_control"], frame["kept_truth"] - frame["control"])
    result_json = json.loads((out / "result.json").read_text())
    assert result_json["main"]["mean"] == pytest.approx(diff.mean)
    assert result_json["main"]["low"] == pytest.approx(diff.low)
    text = (out / "study.md").read_text()
    assert f"{diff.mean:+.3f}" in text and f"{diff.low:+.3f}" in text
    assert "rfcx-kit study --out" in text  # the command that reproduces it
    assert (out / "study.png").stat().st_size > 10_000
    timing = pd.read_csv(out / "timing.csv")
    assert set(timing["step"]) == {"data", "stage1", "relabel", "control", "oracle"}
    # a rerun resumes: nothing is trained again, the table is the same
    again = study(out)
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(out / "timing.csv")) == len(timing)
    pd.testing.assert_frame_equal(pd.read_csv(out / "study.csv").drop(columns="seconds"), frame.drop(columns="seconds"))
    # another design in the same folder is refused before anything is written, naming what differs
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    other = study(out, "--set", "relabel.max_pseudo_per_tp=2")
    assert other.exit_code == 2
    assert "another design" in other.output and "overrides" in other.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.timeout(600)
def test_study_on_own_data_reports_cv(tmp_path: Path) -> None:
    from tiny import make_tiny

    data = make_tiny(tmp_path / "mine", n_train=18, n_test=4)
    out = tmp_path / "study"
    args = ["study", "--out", str(out), "--data", str(data), "--train-seeds", "5,6", "--cycles", "1", "--no-progress",
            "--set", "features.seconds=10", "--set", "features.n_mels=128", "--set", "features.hop_length=512",
            "--set", "windows.window=512", "--set", "windows.cover=49", *FAST]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "study.csv")
    assert list(frame["run"]) == ["mine-t5", "mine-t6"]
    assert not (out / "runs" / "mine-t5" / "oracle").exists()  # no truth: no oracle
    assert frame["stage1"].isna().all()  # no test truth
    diff = paired_difference(frame["kept_cv"], frame["control_cv"])
    text = (out / "study.md").read_text()
    assert "Without a truth" in text and f"{diff.mean:+.3f}" in text
    assert json.loads((out / "result.json").read_text())["main"]["mean"] == pytest.approx(diff.mean)


def test_study_refuses_bad_designs(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, message in ((["--train-seeds", "1,1"], "given twice"), (["--train-seeds", "x"], "comma-separated"),
                          (["--set", "train.seed=3"], "--train-seeds"), (["--set", "train.bogus=1"], "unknown config key"),
                          (["--data", str(tmp_path / "nowhere")], "not a folder")):
        result = runner.invoke(main, ["study", "--out", str(tmp_path / "s"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "s").exists()


@pytest.mark.timeout(600)
def test_a_birdclef_study_is_judged_on_its_test_rows(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["study", "--out", str(out), "--profile", "birdclef", "--pipeline", "birdclef-study", "--train", "3",
            "--test", "2", "--seconds", "10", "--data-seeds", "5", "--train-seeds", "42,1", "--cycles", "1",
            "--oracle", "first", "--no-progress", "--set", "train.epochs=2", "--set", "train.steps_per_epoch=4",
            "--set", "train.val_every=2", "--set", "relabel.epochs=1"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "study.csv")
    assert list(frame["run"]) == ["d5-t42", "d5-t1"]
    assert frame["prior"].tolist() == [0.5, 0.5]  # one constant score per class: macro ROC-AUC 0.5
    # the truth columns are the runs' test rows by ROC-AUC, the CV columns their CV ROC-AUC
    for name in frame["run"]:
        run = out / "runs" / name
        metrics = json.loads((run / "cycle1" / "metrics.json").read_text())
        row = frame.set_index("run").loc[name]
        assert row["cycle1"] == pytest.approx(metrics["truth_test_rows_roc_auc"])
        assert row["cycle1_cv"] == pytest.approx(metrics["cv_roc_auc"])
        assert row["cycle1_soft_auc"] == pytest.approx(metrics["soft_auc"]) and 0 <= row["cycle1_soft_ece"] <= 1
        assert (run / "cycle1" / "soft_calibration.csv").is_file()
    text = (out / "study.md").read_text()
    assert "kept - control, test rows roc_auc vs truth" in text and "--profile birdclef" in text
