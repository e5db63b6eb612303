"""``rfcx-kit export --format onnx``: the graph onnxruntime runs on CPU gives torch's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.data.features import FeatureStore
from rfcx_kit.method.apply import load_models
from rfcx_kit.method.export import onnx_session
from rfcx_kit.method.checkpoint import input_stats
from rfcx_kit.method.context import predict_positions
from rfcx_kit.method.stage1 import run_stage1
from rfcx_kit.model.inputs import stats_of, window_inputs

from tiny import make_tiny, tiny_overrides

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'rfcx-kit[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'rfcx-kit[onnx]')")


def test_onnx_graphs_equal_torch_on_real_windows(tmp_path: Path) -> None:
    data = make_tiny(tmp_path / "data")
    run = tmp_path / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    out = tmp_path / "onnx"
    result = CliRunner().invoke(main, ["export", "--run", str(run), "--fold", "1", "--format", "onnx",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "model.json").read_text())
    assert [g["file"] for g in info["graphs"]] == ["fold1.onnx"] and not (out / "fold0.onnx").exists()
    assert info["input"]["shape"][1:] == [3, 128, 512]
    # checked on the run's own test windows, on probabilities, against the stated tolerance
    assert info["check"]["tolerance"] == 1e-4 and "test recording(s) of the run" in info["check"]["on"]
    assert max(info["graphs"][0]["max_abs_difference"].values()) <= 1e-4
    assert "max |probability difference|" in result.output

    # a graph whose probabilities differ by more than --tolerance is refused and not kept
    import rfcx_kit.method.export as export

    def off(*_: object) -> dict[str, float]:
        return {"clipwise": 3e-3, "framewise": 0.0}

    strict = tmp_path / "strict"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "max_difference", off)
        result = CliRunner().invoke(main, ["export", "--run", str(run), "--fold", "1", "--tolerance", "1e-3",
                                           "--out", str(strict)])
    assert result.exit_code != 0 and "by 3.00e-03 (> --tolerance 0.001) on the" in result.output, result.output
    assert not (strict / "fold1.onnx").exists()

    models = load_models(run, "latest")
    cfg, model = models.cfg, models.models[1]
    store = FeatureStore({"test": data / "test"}, cfg.features.frames)
    ids = sorted(p.stem for p in (data / "test").glob("*.npy"))
    raw = store.batch("test", ids)
    x = window_inputs(torch.from_numpy(raw), torch.from_numpy(stats_of(raw)), predict_positions(cfg),
                      cfg.model.normalize, cfg.model.in_channels, input_stats(cfg))
    assert x.shape[0] != 2  # another batch size than the export's probe: the axis is dynamic
    clipwise, framewise = onnx_session(out / "fold1.onnx", threads=2).run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = model(x)
    np.testing.assert_allclose(clipwise, want["clipwise"].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(framewise, want["framewise"].numpy(), atol=1e-4, rtol=1e-4)
    assert np.abs(clipwise).max() > 1e-3  # real outputs, not zeros on both sides


def test_export_refuses_a_fold_the_stage_lacks(tmp_path: Path) -> None:
    data = make_tiny(tmp_path / "data", n_train=9)
    run = tmp_path / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    result = CliRunner().invoke(main, ["export", "--run", str(run), "--fold", "7", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--fold 7" in result.output and "0..2" in result.output


def test_predict_runs_the_exported_graphs_as_torch_runs_the_checkpoints(tmp_path: Path) -> None:
    """`predict --onnx DIR` takes what `export` wrote, through the same front end, windows and fold mean: the clip
    table equals torch's on the same checkpoints within the export's tolerance, and Raven tables carry names."""
    import pandas as pd

    from rfcx_kit.method.run import Run

    data = make_tiny(tmp_path / "data")
    run = tmp_path / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    out = tmp_path / "onnx"
    assert CliRunner().invoke(main, ["export", "--run", str(run), "--out", str(out)]).exit_code == 0
    assert (out / "species.csv").is_file()
    by_onnx, by_torch = tmp_path / "onnx.csv", tmp_path / "torch.csv"
    result = CliRunner().invoke(main, ["predict", "--onnx", str(out), "--audio", str(data / "test"), "--out", str(by_onnx),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    folds = [str(Run(run).checkpoint("stage1", k)) for k in range(3)]
    result = CliRunner().invoke(main, ["predict", "--checkpoint", *folds, "--audio", str(data / "test"),
                                       "--out", str(by_torch), "--no-progress"])
    assert result.exit_code == 0, result.output
    a = pd.read_csv(by_onnx, dtype={"recording_id": str}).set_index("recording_id")
    b = pd.read_csv(by_torch, dtype={"recording_id": str}).set_index("recording_id")
    assert list(a.index) == list(b.index) and len(a) == 4
    assert float((a - b).abs().to_numpy().max()) <= 1e-4 and float(a.to_numpy().std()) > 0
    raven = tmp_path / "raven"
    result = CliRunner().invoke(main, ["predict", "--onnx", str(out), "--audio", str(data / "test"), "--format", "raven",
                                       "--min-conf", "0.0", "--out", str(raven), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(list(raven.glob("*.selections.txt"))) == 4
    refused = CliRunner().invoke(main, ["predict", "--onnx", str(out), "--run", str(run), "--audio", str(data / "test"),
                                        "--out", str(tmp_path / "x.csv")])
    assert refused.exit_code == 2 and "without --run and --checkpoint" in refused.output


    # one file with the front end inside: waves of the run's length in, the fold-mean clip probabilities out
    from rfcx_kit import api

    info = json.loads((out / "model.json").read_text())["ensemble"]
    assert info["file"] == "ensemble.onnx" and info["input"]["shape"] == ["recordings", 320000]
    rng = np.random.default_rng(5)
    waves = (0.1 * rng.standard_normal((3, 320000))).astype(np.float32)
    waves[1, 96000:128000] += np.sin(2 * np.pi * 3000 * np.arange(32000) / 32000).astype(np.float32)
    got = onnx_session(out / "ensemble.onnx").run(None, {"wave": waves})[0]
    want = api.load(run, stage="stage1", device="cpu").predict(list(waves), sample_rate=32000).iloc[:, 1:].to_numpy()
    assert got.shape == (3, 24) and float(np.abs(got - want).max()) <= 1e-4 and float(want.std()) > 0
