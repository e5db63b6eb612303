"""Augmentation: shapes, what each transform does to the numbers, and the same seed giving the same batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rfcx_kit.core.config import AugmentConfig, ConfigError, load_config
from rfcx_kit.method.checkpoint import load_checkpoint
from rfcx_kit.method.stage1 import prepare_run
from rfcx_kit.method.train import train_fold
from rfcx_kit.model.augment import (band_masks, batch_generator, gain_noise, mix, mix_targets, mixup_plan,
                                    spec_masks)
from rfcx_kit.model.sed import SEDModel

from tiny import make_tiny, tiny_overrides

ALL = AugmentConfig(time_masks=2, time_mask_frames=40, freq_masks=2, freq_mask_bins=16, gain_db=6.0, noise=0.5,
                    noise_db=-30.0, mixup=0.5, mixup_alpha=0.4)


def _crops(m: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(-60, 5, (m, 128, 512)).astype(np.float32))


def test_gain_moves_each_crop_by_one_constant_within_the_range() -> None:
    x = _crops()
    out = gain_noise(x, x.amax(dim=(1, 2)), AugmentConfig(gain_db=6.0), batch_generator(1, 2))
    assert out.shape == x.shape and out.dtype == torch.float32
    shift = out - x
    per_crop = shift[:, 0, 0]
    torch.testing.assert_close(shift, per_crop.view(-1, 1, 1).expand_as(shift))
    assert per_crop.abs().max() <= 6.0 and per_crop.std() > 1.0  # spread over the range, not one value


def test_noise_fills_quiet_bins_and_leaves_loud_calls_standing() -> None:
    x = torch.full((64, 128, 64), -100.0)
    x[:, 10:20, :] = 0.0  # a loud call at the recording's peak
    peak = torch.zeros(64)
    out = gain_noise(x, peak, AugmentConfig(noise=0.5, noise_db=-30.0), batch_generator(3))
    changed = (out != x).flatten(1).any(1)
    assert 20 <= int(changed.sum()) <= 44  # about half of the crops, drawn
    assert (out >= x - 1e-4).all()  # adding power never lowers a bin
    noisy = out[changed]
    assert (noisy[:, 10:20] - 0.0).abs().max() < 0.05  # 30 dB above the noise: almost untouched
    quiet = noisy[:, 30:]
    assert abs(float(quiet.mean()) - (-30.0 - 2.5)) < 1.0  # E[10 log10 Exp(1)] = -2.51 dB around the level
    torch.testing.assert_close(out[~changed], x[~changed])


def test_masks_cover_whole_columns_and_rows_of_bounded_width() -> None:
    gen = batch_generator(5)
    masks = band_masks(200, 512, 2, 40, gen)
    assert masks.shape == (200, 512)
    assert masks.sum(1).max() <= 80 and masks.sum(1).float().mean() > 10
    x = torch.ones(16, 3, 128, 512)
    out = spec_masks(x, AugmentConfig(time_masks=1, time_mask_frames=40, freq_masks=1, freq_mask_bins=16),
                     batch_generator(6))
    assert out.shape == x.shape
    zero = out == 0
    cols = zero.all(dim=2).all(dim=1)  # (M, W) columns zeroed over every bin and channel
    rows = zero.all(dim=3).all(dim=1)  # (M, F)
    assert (cols.sum(1) <= 40).all() and (rows.sum(1) <= 16).all()
    # every zero cell is in a masked column or a masked row: nothing else is touched
    assert torch.equal(zero[:, 0], cols[:, None, :] | rows[:, :, None])


def test_the_same_seed_gives_the_same_batch_and_another_seed_another() -> None:
    x = _crops(16)

    def batch(*seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = batch_generator(*seed)
        out = spec_masks(gain_noise(x, x.amax(dim=(1, 2)), ALL, gen)[:, None], ALL, gen)
        partner, lam = mixup_plan(16, ALL, batch_generator(*seed, 1))
        return out, partner, lam

    a, b, c = batch(42, 0, 0, 3, 7), batch(42, 0, 0, 3, 7), batch(42, 0, 0, 3, 8)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[2], c[2])


def test_mixup_plan_keeps_each_crop_the_larger_part() -> None:
    partner, lam = mixup_plan(1000, AugmentConfig(mixup=0.5, mixup_alpha=0.4), batch_generator(9))
    assert sorted(partner.tolist()) == list(range(1000))
    assert ((lam >= 0.5) & (lam <= 1.0)).all()
    mixed = lam < 1.0
    assert 400 <= int(mixed.sum()) <= 600
    assert mixup_plan(1, ALL, batch_generator(1)) is None
    assert mixup_plan(8, AugmentConfig(), batch_generator(1)) is None
    x = torch.randn(1000, 3)
    torch.testing.assert_close(mix(x, (partner, lam)), lam[:, None] * x + (1 - lam[:, None]) * x[partner])


def test_mixed_targets_are_the_union_of_both_crops_calls() -> None:
    # species:       0 pos/neg  1 neg/neg  2 unk/neg  3 pos/unk  4 unk/unk  5 pos(0.5)/pos(1)
    target = torch.tensor([[1.0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 1]])
    weight = torch.tensor([[1.0, 1, 0, 1, 0, 0.5], [1, 1, 1, 0, 0, 1]])
    plan = (torch.tensor([1, 0]), torch.tensor([0.7, 1.0]))  # crop 0 mixed with crop 1; crop 1 unmixed
    t, w = mix_targets(target, weight, plan)
    assert t[0].tolist() == [1, 0, 0, 1, 0, 1]
    assert w[0].tolist() == [1, 1, 0, 1, 0, 1]
    assert torch.equal(t[1], target[1]) and torch.equal(w[1], weight[1])


def test_last_layer_mixup_mixes_the_pooled_sequence() -> None:
    torch.manual_seed(0)
    model = SEDModel("mobilenetv3_small_050", dropout=0.0).eval()
    x = torch.randn(4, 3, 128, 256)
    plan = (torch.tensor([1, 0, 3, 2]), torch.tensor([0.6, 1.0, 0.8, 0.5]))
    with torch.no_grad():
        plain = model(x)
        same = model(x, mix=lambda s: s)
        mixed = model(x, mix=lambda s: mix(s, plan))
        sequence = model._features(x).mean(dim=2)
        manual = model.cla(mix(sequence, plan))
    torch.testing.assert_close(plain["clipwise"], same["clipwise"])
    torch.testing.assert_close(mixed["segmentwise"], manual)
    torch.testing.assert_close(mixed["clipwise"][1], plain["clipwise"][1])  # lam 1: untouched
    assert not torch.allclose(mixed["clipwise"][0], plain["clipwise"][0])


def test_bad_augment_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="augment.noise"):
        load_config(None, ("augment.noise=1.5",))
    with pytest.raises(ConfigError, match="augment.mixup_at"):
        load_config(None, ("augment.mixup_at=middle",))
    with pytest.raises(ConfigError, match="augment.time_mask_frames"):
        load_config(None, ("augment.time_masks=1", "augment.time_mask_frames=600"))
    with pytest.raises(ConfigError, match="train.ema_decay"):
        load_config(None, ("train.ema_decay=1.0",))


# -- in training -----------------------------------------------------------------------------------------

AUG = ("augment.time_masks=2", "augment.freq_masks=2", "augment.gain_db=6", "augment.noise=0.5",
       "augment.mixup=0.5", "train.ema_decay=0.9")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny-aug"))


def _weights(path: Path, key: str = "model") -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def _train(tiny: Path, run: Path, extra: tuple[str, ...], **kwargs) -> None:
    cfg = load_config(None, (*tiny_overrides(epochs=2), *extra))
    prepare_run(run, tiny, None, cfg, resume=False, progress=False)
    train_fold(0, run_dir=run, progress=False, **kwargs)


@pytest.mark.parametrize("at", ["input", "features"])
def test_augmented_training_is_deterministic_resumable_and_not_a_no_op(tiny: Path, tmp_path: Path, at: str) -> None:
    """Every augmentation and EMA on: two runs, one killed after epoch 1 and resumed, give the same weights
    (prefetch on in one, off in the other); and they differ from training without augmentation."""
    extra = (*AUG, f"augment.mixup_at={at}")

    class Killed(BaseException):
        pass

    def kill(epoch: int) -> None:
        if epoch == 1:
            raise Killed()

    _train(tiny, tmp_path / "a", (*extra, "train.prefetch=true"))
    with pytest.raises(Killed):
        _train(tiny, tmp_path / "b", (*extra, "train.prefetch=false"), on_epoch_end=kill)
    train_fold(0, run_dir=tmp_path / "b", resume=True, progress=False)
    _train(tiny, tmp_path / "plain", ())
    for key in ("model", "ema"):
        a, b = _weights(tmp_path / "a/stage1/fold0/last.pt", key), _weights(tmp_path / "b/stage1/fold0/last.pt", key)
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=f"{key}:{name}")
    plain = _weights(tmp_path / "plain/stage1/fold0/last.pt")
    a = _weights(tmp_path / "a/stage1/fold0/last.pt")
    assert any(not torch.equal(a[k], plain[k]) for k in a if a[k].is_floating_point())


def test_ema_weights_are_validated_and_kept_as_best(tiny: Path, tmp_path: Path) -> None:
    _train(tiny, tmp_path / "ema", ("train.ema_decay=0.9", "train.val_every=2"))  # validated at the last epoch only
    last = load_checkpoint(tmp_path / "ema/stage1/fold0/last.pt")
    best = _weights(tmp_path / "ema/stage1/fold0/best.pt")
    floats = [k for k in best if best[k].is_floating_point()]
    assert all(torch.equal(best[k], last["ema"][k]) for k in floats)
    assert any(not torch.equal(last["ema"][k], last["model"][k]) for k in floats)
