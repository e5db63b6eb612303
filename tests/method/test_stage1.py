"""Stage 1: batched soft frame-wise prediction, folds, training resume, the stage1 command's run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from rfcx_kit.core.config import ConfigError, load_config
from rfcx_kit.core.errors import DataError
from rfcx_kit.data.features import FeatureStore
from rfcx_kit.method.folds import make_folds, run_folds
from rfcx_kit.model.inputs import normalize, stats_of, window_inputs
from rfcx_kit.model.sed import SEDModel, prepare_input
from rfcx_kit.method.predict import auto_max_windows, peak_activation_bytes, predict_recordings
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.app.commands import stage1_cmd
from rfcx_kit.method.checkpoint import load_checkpoint
from rfcx_kit.method.stage1 import prepare_run, run_stage1
from rfcx_kit.method.train import train_fold
from rfcx_kit.core.grid import window_positions
from rfcx_kit.data.window import split_windows

from tiny import make_tiny, tiny_overrides


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def _store(root: Path, frames: int) -> tuple[FeatureStore, list[str], np.ndarray]:
    comp = read_competition(root)
    store = FeatureStore({"train": root / "train", "test": root / "test"}, frames)
    ids = comp.train_ids[:5]
    return store, ids, stats_of(store.batch("train", ids))


@pytest.mark.parametrize("window,cover", [(512, 49), (256, 23), (313, 0)])
def test_batched_prediction_equals_the_posts_per_window_loop(tiny: Path, window: int, cover: int) -> None:
    """All windows in one forward == the post's `for h, t in positions: model(X[..., h:t])`, then max."""
    torch.manual_seed(0)
    model = SEDModel("mobilenetv3_small_050").eval()
    store, ids, stats = _store(tiny, 626)
    positions = window_positions(626, window, cover)
    pred = predict_recordings(model, store, "train", ids, stats, positions, batch_recordings=3, max_windows=5)
    x = prepare_input(torch.from_numpy(store.batch("train", ids)))
    x = torch.nn.functional.pad(x, (0, positions[-1][1] - 626))  # the training pad, see predict.py's note
    with torch.no_grad():
        per_window = [model(x[..., h:t])["framewise"].sigmoid().amax(2) for h, t in positions]
    loop = torch.stack(per_window, dim=1).numpy()  # (B, N, 24)
    np.testing.assert_allclose(pred.windows, loop, atol=1e-5)
    np.testing.assert_allclose(pred.clip("framewise"), loop.max(axis=1), atol=1e-5)


def test_one_window_over_the_whole_clip_equals_no_windowing(tiny: Path) -> None:
    """A single window as wide as the recording gives the plain whole-clip prediction."""
    torch.manual_seed(1)
    model = SEDModel("mobilenetv3_small_050").eval()
    store, ids, stats = _store(tiny, 626)
    pred = predict_recordings(model, store, "train", ids, stats, window_positions(626, 626, n_windows=1))
    with torch.no_grad():
        whole = model(prepare_input(torch.from_numpy(store.batch("train", ids))))
    np.testing.assert_allclose(pred.windows[:, 0], whole["framewise"].sigmoid().amax(-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(pred.clipwise[:, 0], whole["clipwise"].numpy(), atol=1e-4)
    # the stitched timeline of one window is that window: its max equals the framewise max
    np.testing.assert_allclose(pred.stitched, pred.windows[:, 0], atol=1e-6)


def test_crop_normalisation_equals_whole_recording_normalisation(tiny: Path) -> None:
    """Normalising a crop with its recording's statistics equals cropping the normalised recording."""
    store, ids, stats = _store(tiny, 626)
    x = torch.from_numpy(store.batch("train", ids))
    for mode in ("post", "standardize"):
        whole = prepare_input(x, mode)
        crop = normalize(x[..., 100:300], torch.from_numpy(stats), mode)
        torch.testing.assert_close(crop, whole[..., 100:300], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,channels", [("post", 3), ("post", 1), ("standardize", 3), ("standardize", 1)])
@pytest.mark.parametrize("window,cover,frames", [(512, 49, 3751), (256, 23, 3751), (313, 0, 626), (200, 10, 626)])
def test_window_inputs_equal_normalising_then_splitting(mode: str, channels: int, window: int, cover: int,
                                                        frames: int) -> None:
    """The fused path (split the dB frames, normalise into the output) == prepare_input then split_windows,
    from float16 caches too, including the zero padding of windows past the end."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.normal(-60, 12, size=(3, 16, frames))).astype(np.float16))
    x[1] = -42.0  # a constant recording
    stats = torch.from_numpy(stats_of(x.numpy()))
    positions = window_positions(frames, window, cover)
    fused = window_inputs(x, stats, positions, mode, channels)
    reference = split_windows(prepare_input(x, mode, channels), positions)
    assert fused.shape == reference.shape and fused.dtype == torch.float32 and fused.is_contiguous()
    torch.testing.assert_close(fused, reference, atol=2e-5, rtol=1e-5)
    pad = positions[-1][1] - frames
    if pad:
        assert torch.all(fused[-3:, ..., window - pad :] == 0)  # last window of each of the 3 recordings


def test_windows_per_forward_follow_the_activation_size(monkeypatch) -> None:
    """CPU: as many windows as keep the largest activation within a quarter of the cache; CUDA: 128."""
    import rfcx_kit.method.predict as predict

    model = SEDModel("mobilenetv3_small_050").eval()
    shape = (3, 128, 512)
    peak = peak_activation_bytes(model, shape, torch.device("cpu"))
    assert peak == 16 * 64 * 256 * 4  # the stem's 16 x 64 x 256 float32 output is the largest
    monkeypatch.setattr(predict, "last_level_cache_bytes", lambda default=0: 32 * 2**20)
    assert auto_max_windows(model, shape, "cpu") == 8
    monkeypatch.setattr(predict, "last_level_cache_bytes", lambda default=0: 2**20)
    assert auto_max_windows(model, shape, "cpu") == 1  # never 0
    monkeypatch.setattr(predict, "last_level_cache_bytes", lambda default=0: 2**40)
    assert auto_max_windows(model, shape, "cpu") == 64  # capped
    assert auto_max_windows(model, shape, "cuda") == 128
    assert not any(m._forward_hooks for m in model.modules())  # the probe's hooks are removed


def test_prediction_does_not_depend_on_windows_per_forward_and_timelines_are_optional(tiny: Path) -> None:
    torch.manual_seed(2)
    model = SEDModel("mobilenetv3_small_050").eval()
    store, ids, stats = _store(tiny, 626)
    positions = window_positions(626, 256, 23)
    auto = predict_recordings(model, store, "train", ids, stats, positions, batch_recordings=2)
    one = predict_recordings(model, store, "train", ids, stats, positions, batch_recordings=2, max_windows=1)
    bare = predict_recordings(model, store, "train", ids, stats, positions, batch_recordings=2, timelines=False)
    np.testing.assert_allclose(auto.windows, one.windows, atol=1e-5)
    np.testing.assert_allclose(auto.framewise.astype(np.float32), one.framewise.astype(np.float32), atol=1e-3)
    np.testing.assert_array_equal(bare.windows, auto.windows)
    assert not bare.framewise.any() and not bare.stitched.any() and auto.framewise.any()


def test_folds_are_disjoint_cover_everything_and_are_stratified() -> None:
    """Every recording in exactly one fold; each species' positives spread evenly over folds."""
    rng = np.random.default_rng(0)
    n = 600  # RFCX-like: about one TP species and two FP species per recording, uneven species sizes
    tp = np.zeros((n, 24), dtype=int)
    tp[np.arange(n), rng.choice(24, size=n, p=np.linspace(1, 5, 24) / np.linspace(1, 5, 24).sum())] = 1
    tp[rng.random(n) < 0.7] = 0
    fp = (rng.random((n, 24)) < 2 / 24).astype(int)
    ids = [f"r{i}" for i in range(n)]
    folds = make_folds(ids, tp, fp, n_folds=5, seed=3)
    assert folds["recording_id"].tolist() == ids
    assert set(folds["fold"]) == {0, 1, 2, 3, 4}
    spread = [np.ptp(np.bincount(folds["fold"], weights=tp[:, s], minlength=5)) for s in range(24)]
    shuffled = rng.permutation(np.arange(n) % 5)
    random_spread = [np.ptp(np.bincount(shuffled, weights=tp[:, s], minlength=5)) for s in range(24)]
    assert max(spread) <= 2, spread
    assert np.mean(spread) < np.mean(random_spread) / 2, (spread, random_spread)
    again = make_folds(ids, tp, fp, n_folds=5, seed=3)
    assert again.equals(folds)  # same seed, same folds
    assert not make_folds(ids, tp, fp, n_folds=5, seed=4).equals(folds)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_killed_training_resumed_ends_with_the_same_weights(tiny: Path, tmp_path: Path) -> None:
    """A fold killed after epoch 1 and resumed with --resume equals an uninterrupted fold, weight for weight."""
    cfg = load_config(None, tiny_overrides(epochs=3))
    for name in ("straight", "killed"):
        prepare_run(tmp_path / name, tiny, None, cfg, resume=False, progress=False)
    train_fold(0, run_dir=tmp_path / "straight", progress=False)

    class Killed(BaseException):
        pass

    def kill_after_first(epoch: int) -> None:
        if epoch == 1:
            raise Killed()

    with pytest.raises(Killed):
        train_fold(0, run_dir=tmp_path / "killed", progress=False, on_epoch_end=kill_after_first)
    assert not (tmp_path / "killed/stage1/fold0/done.json").exists()
    with pytest.raises(Exception, match="--resume"):
        train_fold(0, run_dir=tmp_path / "killed", progress=False)
    train_fold(0, run_dir=tmp_path / "killed", resume=True, progress=False)
    for name in ("last.pt", "best.pt"):
        a, b = _weights(tmp_path / "straight/stage1/fold0" / name), _weights(tmp_path / "killed/stage1/fold0" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=f"{name}:{key}")
    h1 = pd.read_csv(tmp_path / "straight/stage1/fold0/history.csv").drop(columns="seconds")
    h2 = pd.read_csv(tmp_path / "killed/stage1/fold0/history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(h1, h2)


def test_prefetching_the_next_batch_changes_nothing(tiny: Path, tmp_path: Path) -> None:
    """train.prefetch (the next batch built in a thread, the default) trains the same weights as inline input."""
    for prefetch in (True, False):
        cfg = load_config(None, (*tiny_overrides(epochs=2), f"train.prefetch={str(prefetch).lower()}"))
        prepare_run(tmp_path / str(prefetch), tiny, None, cfg, resume=False, progress=False)
        train_fold(0, run_dir=tmp_path / str(prefetch), progress=False)
    a, b = _weights(tmp_path / "True/stage1/fold0/last.pt"), _weights(tmp_path / "False/stage1/fold0/last.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)


def test_prefetched_keeps_order_and_raises_the_workers_error() -> None:
    from rfcx_kit.model.inputs import prefetched

    assert list(prefetched(range(5), lambda b: b * b)) == [(i, i * i) for i in range(5)]
    assert list(prefetched([], lambda b: b)) == []

    def boom(b: int) -> int:
        if b == 2:
            raise ValueError("bad batch 2")
        return b

    with pytest.raises(ValueError, match="bad batch 2"):
        list(prefetched(range(4), boom))


def test_stage1_command_writes_the_run_directory(tiny: Path, tmp_path: Path) -> None:
    """`rfcx-kit stage1` writes config, folds, per-fold checkpoints/history/predictions, OOF, CV table."""
    run = tmp_path / "runs" / "r1"
    args = ["--data", str(tiny), "--run", str(run), "--no-progress"]
    for o in tiny_overrides():
        args += ["--set", o]
    result = CliRunner().invoke(stage1_cmd, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "cv_lwlrap=" in result.output
    folds = pd.read_csv(run / "folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    comp = read_competition(tiny)
    for k in range(3):
        d = run / "stage1" / f"fold{k}"
        for name in ("last.pt", "best.pt", "history.csv", "test.csv", "val_pred.npz", "test_pred.npz", "done.json"):
            assert (d / name).exists(), d / name
        assert len(pd.read_csv(d / "history.csv")) == 2
    oof = np.load(run / "stage1" / "oof_windows.npy")
    assert oof.shape == (len(comp.train_ids), 2, 24) and np.isfinite(oof).all()
    assert ((oof >= 0) & (oof <= 1)).all()
    cv = (run / "report" / "cv.md").read_text()
    assert "|WINDOW|model|lwlrap|precision|recall|LB|memo|" in cv.replace("|run|stage", "")
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert 0 < metrics["cv_lwlrap"] <= 1
    assert (tmp_path / "runs" / "cv_table.md").exists()
    saved = load_config(None)  # the resolved config holds the overrides
    assert (run / "config.yaml").read_text().count("mobilenetv3_small_050") == 1 and saved.model.backbone == "resnet18.tv_in1k"
    # a second stage1 into the same run refuses to overwrite it
    again = CliRunner().invoke(stage1_cmd, args)
    assert again.exit_code != 0 and "--resume" in again.output


def test_bad_recipe_or_bad_data_stops_before_training(tiny: Path, tmp_path: Path) -> None:
    """A typo in a key, or a data folder that fails validation, stops with a message and writes nothing."""
    with pytest.raises(ConfigError, match="train.epoch"):
        run_stage1(tiny, tmp_path / "a", overrides=("train.epoch=3",))
    assert not (tmp_path / "a").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train", "test"):
        (bad / name).symlink_to(tiny / name)
    (bad / "sample_submission.csv").write_text((tiny / "sample_submission.csv").read_text())
    (bad / "train_fp.csv").write_text((tiny / "train_fp.csv").read_text())
    tp = pd.read_csv(tiny / "train_tp.csv")
    tp.loc[2, "species_id"] = 31
    tp.to_csv(bad / "train_tp.csv", index=False)
    with pytest.raises(DataError, match=r"train_tp.csv: row 3 .*species_id"):
        run_stage1(bad, tmp_path / "b", overrides=tiny_overrides())
    assert not (tmp_path / "b").exists()


def _fail_on_fold_one(fold: int) -> int:
    if fold == 1:
        raise RuntimeError("out of memory on fold one")
    return fold * 10


def test_one_failing_fold_keeps_the_others() -> None:
    """run_folds reports a failure with its fold id and still returns the other folds' results."""
    results = run_folds(_fail_on_fold_one, [0, 1, 2], {})
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].value == 0 and results[2].value == 20
    assert "fold one" in results[1].error and results[1].fold == 1


def test_every_fold_failing_names_each_folds_cause(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """When no fold finishes, the error gives each fold's own cause (not a bare 'nothing to collect')."""
    import rfcx_kit.method.stage1 as stage1

    def broken(fold: int, **_kwargs) -> None:
        raise RuntimeError(f"disk full while training fold {fold}")

    monkeypatch.setattr(stage1, "train_fold", broken)
    with pytest.raises(Exception) as info:
        run_stage1(tiny, tmp_path / "r", overrides=tiny_overrides(), progress=False)
    message = str(info.value)
    for fold in range(3):
        assert f"fold {fold} failed: RuntimeError: disk full while training fold {fold}" in message, message
    assert "nothing was collected" in message
