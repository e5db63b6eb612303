"""SED model: shapes over backbones, equivalences of the heads, input normalisation, local weights, no network."""

from __future__ import annotations

import argparse
import hashlib
import math
import socket
from pathlib import Path

import pytest
import timm
import torch

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.model.sed import IMAGENET_MEAN, IMAGENET_STD, SEDModel, prepare_input, upsample_frames

torch.set_num_threads(2)


def _model(backbone: str, in_channels: int = 3, n_species: int = 24) -> SEDModel:
    torch.manual_seed(0)
    return SEDModel(backbone, n_species=n_species, in_channels=in_channels).eval()


# backbone, channels, (F, W): resnet18 only at a small input; test_mambaout has NHWC features.
SHAPE_CASES = [
    ("resnet18", 3, (64, 256)),
    ("resnet18", 1, (64, 320)),
    ("test_efficientnet", 3, (128, 512)),
    ("test_efficientnet", 1, (128, 300)),
    ("mobilenetv3_small_050", 1, (128, 512)),
    ("mobilenetv3_small_050", 3, (64, 333)),
    ("test_convnext", 3, (64, 256)),
    ("test_mambaout", 1, (64, 256)),
]


@pytest.mark.parametrize(("backbone", "channels", "size"), SHAPE_CASES)
def test_output_shapes(backbone: str, channels: int, size: tuple[int, int]) -> None:
    model = _model(backbone, channels, n_species=24)
    n_freq, width = size
    with torch.no_grad():
        out = model(torch.randn(2, channels, n_freq, width))
    segments = out["segmentwise"].shape[-1]
    assert model.reduction == 32
    assert segments == math.ceil(width / model.reduction)
    assert out["clipwise"].shape == (2, 24)
    assert out["segmentwise"].shape == (2, 24, segments)
    assert out["framewise"].shape == (2, 24, width)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_n_species_and_heads() -> None:
    model = _model("test_efficientnet", 3, n_species=5)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 128))
    assert out["clipwise"].shape == (1, 5) and out["framewise"].shape == (1, 5, 128)
    assert model.cla.in_channels == model.backbone.num_features == 256


def test_uniform_attention_gives_mean_over_time() -> None:
    model = _model("test_efficientnet", 3)
    x = torch.randn(3, 3, 64, 512)
    model.uniform_attention = True
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out["clipwise"], out["segmentwise"].mean(dim=-1))


def test_attention_clipwise_is_a_convex_combination_over_time() -> None:
    model = _model("mobilenetv3_small_050", 1)
    with torch.no_grad():
        out = model(torch.randn(4, 1, 64, 512))
    seg = out["segmentwise"]
    assert torch.all(out["clipwise"] <= seg.amax(-1) + 1e-6)
    assert torch.all(out["clipwise"] >= seg.amin(-1) - 1e-6)
    # Learned attention is not uniform: clipwise differs from the plain mean somewhere.
    assert not torch.allclose(out["clipwise"], seg.mean(-1), atol=1e-6)


@pytest.mark.parametrize("width", [512, 320, 333])
def test_framewise_repeats_segments(width: int) -> None:
    model = _model("test_efficientnet", 1)
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, width))
    seg, frames = out["segmentwise"], out["framewise"]
    assert frames.shape[-1] == width
    factor = width // seg.shape[-1]
    if width == 512:
        assert factor == 32  # the post's x32 upsampling
    index = torch.clamp(torch.arange(width) // factor, max=seg.shape[-1] - 1)
    torch.testing.assert_close(frames, seg[..., index], rtol=0, atol=0)


def test_upsample_frames_crops_when_there_are_more_segments_than_frames() -> None:
    seg = torch.arange(10.0).view(1, 1, 10)
    assert upsample_frames(seg, 7).tolist() == [[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]]
    assert upsample_frames(seg, 25).tolist()[0][0] == [v for v in range(10) for _ in range(2)] + [9.0] * 5


def test_dropout_is_active_only_in_training() -> None:
    model = _model("test_efficientnet", 3)
    model.dropout.p = 0.5
    x = torch.randn(2, 3, 64, 256)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["clipwise"], model(x)["clipwise"])
        model.train()
        model.backbone.eval()  # keep batch norm out of the comparison
        assert not torch.allclose(model(x)["clipwise"], model(x)["clipwise"])


def test_gradient_reaches_backbone_and_both_heads() -> None:
    model = _model("test_efficientnet", 3).train()
    out = model(torch.randn(2, 3, 64, 256))
    out["clipwise"].sum().backward()
    assert model.cla.weight.grad.abs().sum() > 0
    assert model.att.weight.grad.abs().sum() > 0
    assert model.backbone.conv_stem.weight.grad.abs().sum() > 0


def test_reduction_falls_back_to_a_probe() -> None:
    model = _model("test_resnet", 1)
    model.backbone.feature_info = None
    assert model._time_reduction() == 32


def test_token_backbone_is_refused_clearly() -> None:
    model = _model("test_vit", 3)
    with pytest.raises(ValueError, match="CNN backbone"):
        model(torch.randn(1, 3, 160, 160))


# --------------------------------------------------------------------------------------- prepare_input


def _recordings(b: int = 3, n_freq: int = 16, t: int = 50) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    # Different level and spread per recording, like dB spectrograms of loud and quiet sites.
    scale = torch.tensor([5.0, 20.0, 1.0])[:b].view(b, 1, 1)
    offset = torch.tensor([-80.0, -20.0, 3.0])[:b].view(b, 1, 1)
    return torch.randn(b, n_freq, t, generator=generator) * scale + offset


def test_prepare_input_post_three_channels() -> None:
    x = _recordings()
    out = prepare_input(x, "post", 3)
    assert out.shape == (3, 3, 16, 50) and out.dtype == torch.float32
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    image = out * std + mean  # undo the ImageNet step: the min-max image, the same in every channel
    flat = image.flatten(2)
    torch.testing.assert_close(flat.amin(-1), torch.zeros(3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.amax(-1), torch.ones(3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(image[:, 0], image[:, 2], atol=1e-6, rtol=0)
    # Min-max of the standardised recording (the post's order) gives the same image.
    z = (x - x.mean((1, 2), keepdim=True)) / x.std((1, 2), keepdim=True)
    lo, hi = z.amin((1, 2), keepdim=True), z.amax((1, 2), keepdim=True)
    torch.testing.assert_close(image[:, 1], (z - lo) / (hi - lo), atol=1e-6, rtol=1e-5)


def test_prepare_input_post_one_channel_uses_mean_imagenet_statistics() -> None:
    x = _recordings()
    out = prepare_input(x, "post", 1)
    assert out.shape == (3, 1, 16, 50)
    image = out * (sum(IMAGENET_STD) / 3) + sum(IMAGENET_MEAN) / 3
    flat = image.flatten(1)
    torch.testing.assert_close(flat.amin(-1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.amax(-1), torch.ones(3), atol=1e-6, rtol=0)


def test_prepare_input_standardize() -> None:
    x = _recordings()
    out = prepare_input(x, "standardize", 2)
    assert out.shape == (3, 2, 16, 50)
    flat = out.flatten(2)
    torch.testing.assert_close(flat.mean(-1), torch.zeros(3, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(-1, unbiased=False), torch.ones(3, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 0], out[:, 1], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["post", "standardize"])
def test_prepare_input_is_per_recording(mode: str) -> None:
    x = _recordings()
    batch = prepare_input(x, mode)
    for b in range(3):  # each recording alone gives the same as inside the batch
        torch.testing.assert_close(batch[b : b + 1], prepare_input(x[b : b + 1], mode))


def test_prepare_input_constant_recording_and_bad_arguments() -> None:
    out = prepare_input(torch.full((1, 4, 5), -30.0), "post", 3)
    expected = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1).expand(1, 3, 4, 5)
    torch.testing.assert_close(out, expected)
    assert torch.isfinite(prepare_input(torch.full((1, 4, 5), -30.0), "standardize")).all()
    with pytest.raises(ValueError, match="1 or 3"):
        prepare_input(_recordings(), "post", 2)
    with pytest.raises(ValueError, match="unknown input mode"):
        prepare_input(_recordings(), "pcen")
    with pytest.raises(ValueError, match="B, F, T"):
        prepare_input(torch.zeros(2, 3, 4, 5))


# ---------------------------------------------------------------------------------- weights and network


def _save_timm_checkpoint(path: Path, in_chans: int = 3, wrap: str | None = None, prefix: str = "") -> dict:
    torch.manual_seed(123)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=in_chans)
    state = {prefix + k: v for k, v in source.state_dict().items()}
    torch.save({wrap: state} if wrap else state, path)
    return source.state_dict()


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_local_weights_are_loaded_by_timm(tmp_path: Path, wrap: str | None) -> None:
    """A torch state dict (bare or under the keys timm's loader knows) gives bit-identical backbone weights."""
    saved = _save_timm_checkpoint(tmp_path / "w.pt", wrap=wrap)
    model = SEDModel("test_resnet", in_channels=3, weights=str(tmp_path / "w.pt"))
    own = model.backbone.state_dict()
    for name, tensor in own.items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert model.weights_source.origin == "file" and model.weights_source.hub_id is None


def test_a_local_safetensors_file_gives_bit_identical_weights(tmp_path: Path) -> None:
    import safetensors.torch

    torch.manual_seed(7)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    safetensors.torch.save_file(source.state_dict(), tmp_path / "w.safetensors")
    model = SEDModel("test_resnet", weights=str(tmp_path / "w.safetensors"))
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name
    assert model.weights_source.sha256 == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path: Path) -> None:
    """Another network's file, or keys under a prefix timm does not strip: refused, never silently random."""
    _save_timm_checkpoint(tmp_path / "prefixed.pt", wrap="model", prefix="backbone.")
    with pytest.raises(ConfigError, match="does not fit 'test_resnet'.*not in the file"):
        SEDModel("test_resnet", weights=str(tmp_path / "prefixed.pt"))
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet18.pt")
    with pytest.raises(ConfigError, match="does not fit 'test_resnet'"):
        SEDModel("test_resnet", weights=str(tmp_path / "resnet18.pt"))


def test_local_weights_adapt_the_first_convolution(tmp_path: Path) -> None:
    saved = _save_timm_checkpoint(tmp_path / "w.pt", in_chans=3)
    conv = next(k for k, v in saved.items() if v.ndim == 4)
    one = SEDModel("test_resnet", in_channels=1, weights=str(tmp_path / "w.pt"))
    torch.testing.assert_close(one.backbone.state_dict()[conv], saved[conv].sum(1, keepdim=True))
    six = SEDModel("test_resnet", in_channels=6, weights=str(tmp_path / "w.pt"))
    torch.testing.assert_close(six.backbone.state_dict()[conv], saved[conv].repeat(1, 2, 1, 1) / 2)


def test_weights_are_loaded_without_unpickling_objects(tmp_path: Path) -> None:
    torch.save({"model": {}, "args": argparse.Namespace(lr=1)}, tmp_path / "obj.pt")
    with pytest.raises(ConfigError, match="obj.pt does not fit"):  # weights_only: the object is never built
        SEDModel("test_resnet", weights=str(tmp_path / "obj.pt"))
    with pytest.raises(ConfigError, match="absent.pt is not a file"):
        SEDModel("test_resnet", weights=str(tmp_path / "absent.pt"))


def test_random_and_local_weights_never_touch_the_network(monkeypatch, tmp_path: Path) -> None:
    """Only model.pretrained=true reaches for the hub (and says what to do when it cannot)."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    model = SEDModel("resnet18", in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 64))["clipwise"].shape == (1, 24)
    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(socket, "create_connection", unreachable)  # the hub is tried (refused here): one clear line
    with pytest.raises(ConfigError, match="cannot be reached.*rfcx-kit weights fetch.*--pipeline own-scratch"):
        SEDModel("resnet18", pretrained=True)
    monkeypatch.setattr(socket, "create_connection", refuse)
    saved = _save_timm_checkpoint(tmp_path / "w.pt")  # pretrained=True with a local file is fine
    model = SEDModel("test_resnet", pretrained=True, weights=str(tmp_path / "w.pt"))
    torch.testing.assert_close(model.backbone.state_dict()["conv1.0.weight"], saved["conv1.0.weight"])
