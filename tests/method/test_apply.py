"""``rfcx-kit predict``: new recordings through a trained stage, reproducing the run's own test predictions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.core.config import load_saved_config
from rfcx_kit.core.species import SPECIES_COLUMNS
from rfcx_kit.data.features import LogMel
from rfcx_kit.data.synth.scene import SynthConfig
from rfcx_kit.data.synth.writer import write_dataset
from rfcx_kit.method import apply
from rfcx_kit.method.run import Run
from rfcx_kit.method.context import predict_positions
from rfcx_kit.method.stage1 import run_stage1

from tiny import tiny_overrides

SECONDS = 10.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished stage 1 on a small FLAC set (the Kaggle audio layout, through the feature cache)."""
    root = tmp_path_factory.mktemp("apply")
    data = root / "data"
    write_dataset(SynthConfig(n_train=15, n_test=5, seconds=SECONDS, seed=3, tp_share=0.6), data, fmt="flac",
                  n_jobs=1, progress=False)
    run = root / "run"
    run_stage1(data, run, overrides=tiny_overrides(seconds=SECONDS, epochs=1), progress=False)
    return {"data": data, "run": run, "root": root}


def _cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"recording_id": str}).set_index("recording_id").sort_index()


def test_predict_reproduces_the_runs_test_predictions_from_the_test_audio(trained: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    code, output = _cli(["predict", "--run", str(trained["run"]), "--audio", str(trained["data"] / "test"),
                         "--out", str(out), "--windows", str(tmp_path / "w.csv")])
    assert code == 0, output
    mine, theirs = _table(out), _table(Run(trained["run"]).test_csv("stage1"))
    assert list(mine.index) == list(theirs.index)
    np.testing.assert_allclose(mine[SPECIES_COLUMNS].to_numpy(), theirs[SPECIES_COLUMNS].to_numpy(), atol=1e-5)
    assert not (tmp_path / "preds.csv.parts").exists()  # a finished prediction leaves no journal

    windows = pd.read_csv(tmp_path / "w.csv", dtype={"recording_id": str})
    assert list(windows.columns) == ["recording_id", "start_s", "end_s", "species_id", "score"]
    cfg = load_saved_config(Run(trained["run"]).config)
    n = len(predict_positions(cfg))
    assert len(windows) == len(mine) * n * 24
    assert windows["end_s"].max() <= SECONDS + 1e-6 and windows["start_s"].min() == 0
    # clip = fold mean of (max over windows), so it is at least the max over windows of the fold-mean windows
    peak = windows.groupby(["recording_id", "species_id"])["score"].max().unstack().sort_index()
    assert (mine[SPECIES_COLUMNS].to_numpy() >= peak.to_numpy() - 1e-6).all()


def test_best_pt_files_alone_give_the_same_predictions(trained: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    args = []
    for k in range(3):
        target = folder / f"fold{k}.pt"
        shutil.copy(Run(trained["run"]).checkpoint("stage1", k, "best"), target)
        args += ["--checkpoint", str(target)]
    code, output = _cli(["predict", *args, "--audio", str(trained["data"] / "test"), "--out", str(tmp_path / "p.csv")])
    assert code == 0, output
    np.testing.assert_allclose(_table(tmp_path / "p.csv").to_numpy(),
                               _table(Run(trained["run"]).test_csv("stage1")).to_numpy(), atol=1e-5)


def _tone(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.3 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0) + noise).astype(np.float32)


def test_a_30_s_recording_at_44_1_khz_is_predicted(trained: dict[str, Path], tmp_path: Path) -> None:
    audio = tmp_path / "field"
    audio.mkdir()
    wave32 = _tone(32000, 30.0)
    sf.write(audio / "site_a.wav", soxr.resample(wave32, 32000, 44100), 44100)
    code, output = _cli(["predict", "--run", str(trained["run"]), "--audio", str(audio / "site_a.wav"),
                         "--out", str(tmp_path / "p.csv"), "--windows", str(tmp_path / "w.csv")])
    assert code == 0, output
    clip = _table(tmp_path / "p.csv")
    assert list(clip.index) == ["site_a"] and np.isfinite(clip.to_numpy()).all()
    windows = pd.read_csv(tmp_path / "w.csv")
    cfg = load_saved_config(Run(trained["run"]).config)
    frames = 1 + 30 * 32000 // 512
    positions = predict_positions(cfg, frames)
    assert len(windows) == len(positions) * 24
    assert windows["end_s"].max() == pytest.approx(30.0, abs=1e-3)
    # resampled to the run's rate: the frames match those of the same sound recorded at 32 kHz
    logmel = LogMel(cfg.features)
    sf.write(tmp_path / "same_32k.wav", wave32, 32000)
    a = apply.read_frames(audio / "site_a.wav", cfg, logmel)
    b = apply.read_frames(tmp_path / "same_32k.wav", cfg, logmel)
    assert a.shape == b.shape == (128, frames)
    assert np.abs(a - b)[:, 2:-2].mean() < 0.5  # dB, interior frames


def test_a_corrupt_file_is_named_and_the_rest_are_predicted(trained: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "audio"
    shutil.copytree(trained["data"] / "test", folder)
    (folder / "broken.flac").write_bytes(b"fLaC but not really" * 10)
    np.save(folder / "short.npy", np.zeros((128, 100), dtype=np.float32))
    out = tmp_path / "p.csv"
    code, output = _cli(["predict", "--run", str(trained["run"]), "--audio", str(folder), "--out", str(out)])
    assert code == 2
    assert "broken.flac" in output and "1 of" in output and "short.npy" not in output
    done = _table(out)
    expected = _table(Run(trained["run"]).test_csv("stage1"))
    # a recording shorter than one window is padded and predicted, as training pads its windows
    assert sorted(done.index) == sorted([*expected.index, "short"]) and np.isfinite(done.loc["short"]).all()
    np.testing.assert_allclose(done.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-5)
    assert (tmp_path / "p.csv.parts").is_dir()  # kept: a rerun does only the failed files

    (folder / "broken.flac").unlink()
    (folder / "short.npy").unlink()
    calls = []
    original = apply.fold_mean
    try:
        apply.fold_mean = lambda *a, **k: calls.append(1) or original(*a, **k)
        code, output = _cli(["predict", "--run", str(trained["run"]), "--audio", str(folder), "--out", str(out)])
    finally:
        apply.fold_mean = original
    assert code == 0, output
    assert not calls  # every readable file was already done
    assert not (tmp_path / "p.csv.parts").exists()


def test_a_killed_prediction_resumes_where_it_stopped(trained: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["predict", "--run", str(trained["run"]), "--audio", str(trained["data"] / "test"), "--batch", "2"]
    code, _ = _cli([*args, "--out", str(tmp_path / "straight.csv")])
    assert code == 0
    original, calls = apply.fold_mean, []

    def dies_on_the_second_chunk(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(apply, "fold_mean", dies_on_the_second_chunk)
    code, output = _cli([*args, "--out", str(tmp_path / "p.csv")])
    assert code == 130 and not (tmp_path / "p.csv").exists()
    assert len(list((tmp_path / "p.csv.parts").glob("part-*.npz"))) == 1
    calls.clear()
    monkeypatch.setattr(apply, "fold_mean", lambda *a, **k: calls.append(1) or original(*a, **k))
    code, output = _cli([*args, "--out", str(tmp_path / "p.csv")])
    assert code == 0, output
    assert len(calls) == 2  # 5 recordings in chunks of 2: the first chunk was not redone
    pd.testing.assert_frame_equal(_table(tmp_path / "p.csv"), _table(tmp_path / "straight.csv"))

    # a journal made by other models is not continued
    parts = tmp_path / "other.csv.parts"
    parts.mkdir()
    (parts / "journal.json").write_text('{"models": "0", "mode": "framewise", "windows": "{}"}')
    code, output = _cli([*args, "--out", str(tmp_path / "other.csv")])
    assert code == 2 and "other models" in output and "delete" in output


def test_bad_requests_are_refused_with_the_reason(trained: dict[str, Path], tmp_path: Path) -> None:
    run, test = str(trained["run"]), str(trained["data"] / "test")
    code, output = _cli(["predict", "--audio", test, "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "--run" in output and "--checkpoint" in output
    code, output = _cli(["predict", "--run", run, "--stage", "cycle2", "--audio", test, "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "cycle2" in output and "stage1" in output
    code, output = _cli(["predict", "--run", run, "--audio", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "nowhere" in output
    dup = tmp_path / "dup"
    (dup / "a").mkdir(parents=True)
    (dup / "b").mkdir()
    for sub in ("a", "b"):
        shutil.copy(next((trained["data"] / "test").glob("*.flac")), dup / sub / "same.flac")
    # in one folder, ids are paths inside it (a/same, b/same: two sites may share names); two files given alone
    # are known by their names, and those clash
    code, output = _cli(["predict", "--run", run, "--audio", str(dup / "a" / "same.flac"), "--audio",
                         str(dup / "b" / "same.flac"), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "same" in output and "unique" in output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, output = _cli(["predict", "--checkpoint", str(junk), "--audio", test, "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "junk.pt" in output
    code, output = _cli(["predict", "--run", run, "--audio", test, "--out", str(tmp_path / "p.csv"),
                         "--threshold", "0.5"])
    assert code == 2 and "--windows" in output
    assert not (tmp_path / "p.csv").exists()
