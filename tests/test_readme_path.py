"""The README's real-competition path, command by command, on a synthetic set in the precomputed layout.

Each step is the README's command (run as a user would, through the installed CLI), with `--set` overrides
that make it tiny; `download` and the real `submit` are replaced by `synth` and `submit --dry-run`, and the
Hugging Face hub the recipe's pretrained weights come from by a stand-in on 127.0.0.1 (tests/hub_standin.py).
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


HUB_ENV: dict[str, str] = {}


def rfcx(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "rfcx_kit", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=400, env={**os.environ, "PYTHONUNBUFFERED": "1", **HUB_ENV})
    assert result.returncode == 0, f"rfcx-kit {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.timeout(600)
def test_readme_real_competition_path_on_precomputed_spectrograms(tmp_path: Path, monkeypatch) -> None:
    """synth (npy) -> stage1 (pretrained weights from the hub) -> relabel -> ensemble -> validate -> submit
    --dry-run -> report."""
    import safetensors.torch
    import timm
    from timm.models import get_pretrained_cfg

    from hub_standin import HubStandIn

    hub_id = get_pretrained_cfg("mobilenetv3_small_050").hf_hub_id
    weights = safetensors.torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict())
    hub = HubStandIn({(hub_id, "model.safetensors"): weights}).start()
    monkeypatch.setattr(sys.modules[__name__], "HUB_ENV", {
        "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"})
    try:
        _readme_path(tmp_path)
    finally:
        hub.stop()
    assert ("GET", f"/{hub_id}/resolve/main/model.safetensors") in hub.requests  # downloaded once, then cached
    assert hub.requests.count(("GET", f"/{hub_id}/resolve/main/model.safetensors")) == 1
    provenance = json.loads((tmp_path / "runs" / "resnet18-npy" / "provenance.json").read_text())
    assert provenance["weights"]["hub_id"] == hub_id and provenance["weights"]["origin"] == "hub"


def _readme_path(tmp_path: Path) -> None:
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


def _load_check():  # noqa: ANN202 - the .ci script as a module
    import importlib.util

    path = Path(__file__).parents[1] / ".ci" / "check_readme.py"
    spec = importlib.util.spec_from_file_location("check_readme", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_check_compares_every_figure_within_its_tolerance() -> None:
    """The README check parses the printed demo table and fails on any figure off by more than the tolerance."""
    check = _load_check()
    text = """x
<!-- demo-table -->
```
labels: 10 of 100 planted train calls have a TP row (10.0%, 1 in 10.0)
  stage  cv_lwlrap  truth_test_lwlrap  gap_closed  pseudo_positives  pseudo_precision
  prior          -              0.300           -                 -                 -
 stage1      0.500              0.600       0.000                 -               -
 cycle1      0.510              0.700       0.500                12           0.417
control      0.505              0.610       0.050                 -               -
 oracle      0.700              0.800           -                 -               -
kept: cycle1 (best CV LWLRAP on the original labels: stage1 0.500, cycle1 0.510)
```
<!-- /demo-table -->
"""
    summary = {"prior": {"stage": "prior", "truth_test_lwlrap": 0.3}, "kept": {"stage": "cycle1"},
               "stages": [{"stage": "stage1", "cv_lwlrap": 0.5001, "truth_test_lwlrap": 0.6, "gap_closed": 0.0,
                           "pseudo_positives": 0, "pseudo_precision": None},
                          {"stage": "cycle1", "cv_lwlrap": 0.51, "truth_test_lwlrap": 0.7, "gap_closed": 0.5,
                           "pseudo_positives": 12, "pseudo_precision": 5 / 12}],
               "control": {"cv_lwlrap": 0.505, "truth_test_lwlrap": 0.61, "gap_closed": 0.05, "pseudo_positives": 0,
                           "pseudo_precision": None},
               "oracle": {"cv_lwlrap": 0.7, "truth_test_lwlrap": 0.8, "gap_closed": None, "pseudo_positives": 0,
                          "pseudo_precision": None}}
    rows = check.readme_table(text)
    assert [r["stage"] for r in rows] == ["prior", "stage1", "cycle1", "control", "oracle"]
    assert check.compare(rows, check.summary_rows(summary), 0.005) == []
    block = text.split(check.START, 1)[1]
    assert check.kept_problems(block, summary) == []
    assert "README cycle1, run stage1" in check.kept_problems(block, {"kept": {"stage": "stage1"}})[0]
    summary["stages"][1]["truth_test_lwlrap"] = 0.71
    summary["control"]["pseudo_positives"] = 3
    problems = check.compare(rows, check.summary_rows(summary), 0.005)
    assert len(problems) == 2 and "cycle1.truth_test_lwlrap" in problems[0] and "control.pseudo_positives" in problems[1]


def test_readme_check_refuses_a_run_of_other_numerics() -> None:
    """Figures made with portable numerics are only compared with a portable run: a native run is named."""
    check = _load_check()
    block = "numerics: portable (DEFAULT, 2 threads)\nlabels: 10 of 100 planted train calls have a TP row\n"
    assert check.numerics_problems(block, {"numerics": {"mode": "portable"}}) == []
    problems = check.numerics_problems(block, {"numerics": {"mode": "native"}})
    assert len(problems) == 1 and "run native" in problems[0] and "--numerics portable" in problems[0]
    assert "no 'numerics:' line" in check.numerics_problems("labels: 1 of 2", {"numerics": {"mode": "native"}})[0]


def test_readme_check_reads_the_birdclef_table_from_its_own_markers(tmp_path: Path) -> None:
    """`--block birdclef-demo-table`: the BirdCLEF demo's rows (the prior a number on the test rows) are compared
    the same way, and the RFCX table beside it is left alone."""
    import json
    import subprocess
    import sys

    readme = tmp_path / "README.md"
    readme.write_text("""<!-- demo-table -->
```
stage cv_lwlrap
stage1 0.999
```
<!-- /demo-table -->
<!-- birdclef-demo-table -->
```
numerics: portable (AVX2, 2 threads)
  stage  test_rows_roc_auc  cv_roc_auc  gap_closed pseudo_positives
  prior              0.500           -           -                -
 stage1              0.658       0.800       0.000                -
 cycle1              0.663       0.817       0.050               18
control              0.699       0.818       0.399                -
 oracle              0.759       0.807       1.000                -
kept: cycle1; kept - control on the test rows: -0.036
```
<!-- /birdclef-demo-table -->
""")
    stages = [{"stage": "stage1", "test_rows_roc_auc": 0.6584, "cv_roc_auc": 0.7995, "gap_closed": 0.0,
               "pseudo_positives": None},
              {"stage": "cycle1", "test_rows_roc_auc": 0.6635, "cv_roc_auc": 0.8166, "gap_closed": 0.05,
               "pseudo_positives": 18},
              {"stage": "control", "test_rows_roc_auc": 0.6986, "cv_roc_auc": 0.8175, "gap_closed": 0.399,
               "pseudo_positives": None},
              {"stage": "oracle", "test_rows_roc_auc": 0.7592, "cv_roc_auc": 0.8073, "gap_closed": 1.0,
               "pseudo_positives": None}]
    summary = {"profile": "birdclef", "metric": "roc_auc", "prior": 0.5, "stages": stages,
               "kept": {"stage": "cycle1"}, "numerics": {"mode": "portable", "torch_cpu_capability": "AVX2"}}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    script = str(Path(__file__).parents[1] / ".ci" / "check_readme.py")
    ok = subprocess.run([sys.executable, script, str(path), str(readme), "--block", "birdclef-demo-table"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stages[1]["test_rows_roc_auc"] = 0.70
    path.write_text(json.dumps(summary))
    bad = subprocess.run([sys.executable, script, str(path), str(readme), "--block", "birdclef-demo-table"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "cycle1.test_rows_roc_auc: README 0.663, run 0.7000" in bad.stdout
