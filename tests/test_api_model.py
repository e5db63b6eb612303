"""`api.load`: a stage's fold models loaded once, predicting files, folders or waveforms as the CLI does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner

from rfcx_kit import api
from rfcx_kit.app.cli import main

from tiny import make_tiny, tiny_overrides


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("model")
    data = make_tiny(root / "data", n_train=9, n_test=4)
    api.stage1(data, root / "run", overrides=tiny_overrides(epochs=1), progress=False)
    return {"root": root, "data": data, "run": root / "run"}


def test_predict_gives_the_cli_s_table_with_species_names(tiny_run: dict[str, Path]) -> None:
    model = api.load(tiny_run["run"], stage="stage1", device="cpu")
    assert "stage1" in repr(model) and len(model.species) == 24
    table = model.predict(tiny_run["data"] / "test")
    assert list(table.columns) == ["recording_id", *model.species.names] and len(table) == 4
    out = tiny_run["root"] / "cli.csv"
    result = CliRunner().invoke(main, ["predict", "--run", str(tiny_run["run"]), "--stage", "stage1", "--device", "cpu",
                                       "--audio", str(tiny_run["data"] / "test"), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    cli = pd.read_csv(out, dtype={"recording_id": str}).set_index("recording_id")
    mine = table.set_index("recording_id").loc[cli.index]
    np.testing.assert_allclose(mine.to_numpy(), cli.to_numpy(), atol=1e-6)


def test_a_waveform_predicts_as_its_file_does_and_events_carry_names(tiny_run: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    model = api.load(tiny_run["run"], stage="stage1", device="cpu")
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(48000 * 10)).astype(np.float32)
    wave[48000 * 3 : 48000 * 4] += 0.5 * np.sin(2 * np.pi * 2500 * np.arange(48000) / 48000).astype(np.float32)
    sf.write(tmp_path / "clip.wav", wave, 48000, subtype="FLOAT")
    by_file = model.predict(tmp_path / "clip.wav")
    by_array = model.predict(wave, sample_rate=48000)
    stereo = model.predict([np.stack([wave, wave])], sample_rate=48000)
    np.testing.assert_allclose(by_array.iloc[:, 1:].to_numpy(), by_file.iloc[:, 1:].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(stereo.iloc[:, 1:].to_numpy(), by_array.iloc[:, 1:].to_numpy(), atol=1e-6)
    with pytest.raises(Exception, match="sample_rate"):
        model.predict(wave)
    events = model.events(wave, sample_rate=48000, min_conf=0.0)
    assert list(events.columns) == ["recording_id", "species", "begin_s", "end_s", "confidence"]
    assert len(events) > 0 and set(events["species"]) <= set(model.species.names)
    assert (events["end_s"] > events["begin_s"]).all() and events["end_s"].max() <= 10.0 + 1e-6
    rows = model.rows(wave, sample_rate=48000, seconds=5.0)  # BirdCLEF's 5-second rows
    assert rows["row_id"].tolist() == ["wave0_5", "wave0_10"] and list(rows.columns[1:]) == list(model.species.codes)
    from rfcx_kit.method.apply import fold_mean

    _, _, lines = fold_mean(model.folds, model._frames(wave, 48000)[1], model.device, timelines=True)
    np.testing.assert_allclose(rows.iloc[:, 1:].to_numpy().max(axis=0), lines[0].max(axis=1), atol=1e-6)
    raven = model.raven(tiny_run["data"] / "test", tmp_path / "raven", min_conf=0.0)
    assert len(list(raven.glob("*.selections.txt"))) == 4


def test_an_onnx_export_loads_as_a_model(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    out = tmp_path / "onnx"
    result = CliRunner().invoke(main, ["export", "--run", str(tiny_run["run"]), "--stage", "stage1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    by_onnx = api.load(onnx=out).predict(tiny_run["data"] / "test")
    by_torch = api.load(tiny_run["run"], stage="stage1", device="cpu").predict(tiny_run["data"] / "test")
    np.testing.assert_allclose(by_onnx.iloc[:, 1:].to_numpy(), by_torch.iloc[:, 1:].to_numpy(), atol=1e-4)


def test_predict_rows_writes_the_api_s_rows(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """`predict --rows 5`: BirdCLEF's row table, the same as Model.rows, in recording then time order."""
    model = api.load(tiny_run["run"], stage="stage1", device="cpu")
    out = tmp_path / "rows.csv"
    args = ["predict", "--run", str(tiny_run["run"]), "--stage", "stage1", "--device", "cpu", "--audio",
            str(tiny_run["data"] / "test"), "--rows", "5", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "8 rows of 5 s" in result.output, result.output
    table = pd.read_csv(out)
    want = model.rows(tiny_run["data"] / "test", seconds=5.0)
    assert table["row_id"].tolist() == want["row_id"].tolist()
    assert table["row_id"].tolist()[:2] == ["te00000_5", "te00000_10"]
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), want.iloc[:, 1:].to_numpy(), atol=1e-6)
    bad = CliRunner().invoke(main, args[:-3] + ["--format", "raven", "--out", str(tmp_path / "r"), "--no-progress"])
    assert bad.exit_code == 2 and "--rows writes the row table in --format csv" in bad.output


def test_a_failed_rows_run_resumes_from_its_journal(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """A file that cannot be read stops the table after the others are predicted and journalled; fixed, a rerun
    finishes, and its rows equal a clean run's."""
    import shutil

    from rfcx_kit.core.errors import DataError
    from rfcx_kit.method.apply import load_models, parts_dir, predict_files

    audio = tmp_path / "audio"
    shutil.copytree(tiny_run["data"] / "test", audio)
    (audio / "zz_broken.npy").write_bytes(b"not an array")
    models = load_models(tiny_run["run"], "stage1")
    out = tmp_path / "rows.csv"
    with pytest.raises(DataError, match="zz_broken"):
        predict_files(models, (audio,), out, progress=False, rows=5.0)
    assert any(parts_dir(out).glob("part-*.npz"))  # the four good recordings are journalled
    np.save(audio / "zz_broken.npy", np.load(audio / "te00000.npy"))
    summary = predict_files(models, (audio,), out, progress=False, rows=5.0)
    assert summary["predicted"] == 5 and summary["rows"] == 10
    clean = tmp_path / "clean.csv"
    predict_files(models, (audio,), clean, progress=False, rows=5.0)
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(clean))


def test_rows_take_a_sample_submission_s_layout(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """`--sample-submission`: its class columns in its order, its rows in its order; other classes, or a row not
    predicted, refused before anything is written."""
    model = api.load(tiny_run["run"], stage="stage1", device="cpu")
    rows = model.rows(tiny_run["data"] / "test", seconds=5.0)
    classes = list(rows.columns[1:])[::-1]
    sample = rows[["row_id", *classes]].iloc[[5, 0, 3]].assign(**{c: 0.0 for c in classes})
    sample.to_csv(tmp_path / "sample.csv", index=False)
    out = tmp_path / "submission.csv"
    base = ["predict", "--run", str(tiny_run["run"]), "--stage", "stage1", "--device", "cpu", "--audio",
            str(tiny_run["data"] / "test"), "--rows", "5", "--no-progress"]
    result = CliRunner().invoke(main, base + ["--sample-submission", str(tmp_path / "sample.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out)
    assert list(got.columns) == ["row_id", *classes] and got["row_id"].tolist() == sample["row_id"].tolist()
    want = rows.set_index("row_id").loc[sample["row_id"], classes].to_numpy()
    np.testing.assert_allclose(got.iloc[:, 1:].to_numpy(), want, atol=1e-6)
    sample.rename(columns={classes[0]: "nosuchbird"}).to_csv(tmp_path / "other.csv", index=False)
    bad = tmp_path / "bad.csv"
    refused = CliRunner().invoke(main, base + ["--sample-submission", str(tmp_path / "other.csv"), "--out", str(bad)])
    assert refused.exit_code == 2 and "1 the model lacks (nosuchbird)" in refused.output and not bad.exists()
    sample.assign(row_id=["te00000_5", "elsewhere_5", "te00001_5"]).to_csv(tmp_path / "rows.csv", index=False)
    refused = CliRunner().invoke(main, base + ["--sample-submission", str(tmp_path / "rows.csv"), "--out", str(bad)])
    assert refused.exit_code == 2 and "1 of its 3 rows were not predicted (first: elsewhere_5)" in refused.output
