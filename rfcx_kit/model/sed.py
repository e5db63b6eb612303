"""The SED model of the method post: a timm CNN backbone with attention and frame heads over time.

    x (B, C, F, W) --backbone--> (B, D, F', T') --mean over F'--> (B, D, T') --dropout-->
        cla = Conv1d(D, K, 1)  -> frame logits        (B, K, T')   = segmentwise
        att = Conv1d(D, K, 1)  -> softmax over time   (B, K, T')
        clipwise  = sum_t att * cla                    (B, K)
        framewise = cla repeated back to W frames      (B, K, W)

All three outputs are logits. Training uses ``clipwise``; soft frame-wise prediction takes
``sigmoid(framewise)``, max over time in each window, then max over windows.

:func:`prepare_input` turns a recording's dB mel spectrogram into the backbone's input, once per
recording before it is cut into windows, so every window of a recording shares one normalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.species import Species

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SEDModel(nn.Module):
    """Sound event detection over a window of frames: clip-, segment- and frame-level species logits.

    Args:
        backbone: timm model name; any CNN whose ``forward_features`` gives a feature map
            (``resnet18``, ``efficientnet_b0``, ``test_efficientnet``, ...). NHWC backbones are permuted.
        n_species: number of output classes K (None: the competition's 24).
        in_channels: input channels C (3 for the post's image recipe, 1 for a plain spectrogram).
        pretrained: start from timm's pretrained weights of ``backbone`` (a tag-pinned name such as
            ``resnet18.tv_in1k`` picks the tag), through the Hugging Face hub cache
            (:mod:`rfcx_kit.model.weights`; ``HF_HUB_OFFLINE=1``: the cache only).
        weights: a local weights file (safetensors or a torch state dict, optionally under ``state_dict`` or
            ``model``) to start from instead. Both are loaded by timm's own loader, which adapts the first
            convolution to ``in_channels`` and drops the classifier; a file that does not fit is a ConfigError.
        dropout: dropout probability on the time sequence before the heads.

    Attributes:
        reduction: input frames per output segment (``W / T'``), e.g. 32 for resnet18.
        uniform_attention: when True, attention is ``1 / T'`` everywhere (clipwise = mean over time of the
            frame logits); for tests and ablations.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        n_species: int | None = None,
        in_channels: int = 3,
        pretrained: bool = False,
        weights: str | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        from rfcx_kit.model.weights import resolve_weights

        self.weights_source = resolve_weights(backbone, pretrained, weights)
        options = dict(num_classes=0, global_pool="", in_chans=in_channels)
        if self.weights_source is None:
            self.backbone = timm.create_model(backbone, pretrained=False, **options)
        else:
            source = self.weights_source.file
            try:
                self.backbone = timm.create_model(backbone, pretrained=True,
                                                  pretrained_cfg_overlay=dict(file=source), **options)
            except Exception as exc:  # noqa: BLE001 - whatever the file is, it is not weights for this backbone
                first = " ".join(str(exc).strip().splitlines()[:2]) if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"model.weights: {source} does not fit {backbone!r} ({first[:300]})") from None
            # timm only warns about keys it could not place: a file for another network would leave the
            # backbone random without a word. Every backbone tensor must come from the file.
            try:
                in_file = timm.models.load_state_dict(source)
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"model.weights: {source} is not a weights file ({type(exc).__name__})") from None
            missing = [k for k in self.backbone.state_dict() if k not in in_file]
            if missing:
                raise ConfigError(f"model.weights: {source} does not fit {backbone!r}: {len(missing)} of its "
                                  f"tensors are not in the file (e.g. {', '.join(missing[:3])})")
        self.backbone_name = backbone
        self.in_channels = in_channels
        n_species = len(Species.rfcx()) if n_species is None else n_species  # None: the competition's
        self.n_species = n_species
        self.channels_last_features = getattr(self.backbone, "output_fmt", "NCHW") == "NHWC"
        self.reduction = self._time_reduction()
        self.uniform_attention = False

        n_features = self.backbone.num_features
        self.dropout = nn.Dropout(dropout)
        self.cla = nn.Conv1d(n_features, n_species, kernel_size=1)
        self.att = nn.Conv1d(n_features, n_species, kernel_size=1)

    def _time_reduction(self) -> int:
        """Input frames per feature column, from timm's feature_info, else measured on a probe input."""
        info = getattr(self.backbone, "feature_info", None)
        if info:
            return int(info[-1]["reduction"])
        probe_width = 256
        was_training = self.backbone.training
        self.backbone.eval()  # no batch-norm statistics update from the probe
        with torch.no_grad():
            columns = self._features(torch.zeros(1, self.in_channels, 64, probe_width)).shape[-1]
        self.backbone.train(was_training)
        return max(1, round(probe_width / columns))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map ``(B, D, F', T')`` (before any pooling)."""
        features = self.backbone.forward_features(x)
        if features.ndim != 4:
            raise ValueError(
                f"backbone {self.backbone_name!r} gives {features.ndim}-D features {tuple(features.shape)}, "
                "not a (B, D, F', T') map: use a CNN backbone"
            )
        if self.channels_last_features:
            features = features.permute(0, 3, 1, 2)
        return features

    def forward(self, x: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
        """Species logits of a batch of windows.

        Args:
            x: ``(B, C, F, W)``, e.g. ``(B, 3, 128, 512)`` from :func:`prepare_input` and windowing.
            mix: applied to the pooled sequence ``(B, D, T')`` before the heads (training only: the post's
                last-layer mixup, ``model.augment.mix``).
        Returns:
            ``{"clipwise": (B, K), "framewise": (B, K, W), "segmentwise": (B, K, T')}``, all logits,
            ``T'`` the backbone's output width (``W / reduction``, rounded up for most CNNs).
        """
        width = x.shape[-1]
        sequence = self._features(x).mean(dim=2)  # (B, D, T')
        if mix is not None:
            sequence = mix(sequence)
        sequence = self.dropout(sequence)
        segmentwise = self.cla(sequence)  # (B, K, T')
        if self.uniform_attention:
            attention = torch.full_like(segmentwise, 1.0 / segmentwise.shape[-1])
        else:
            attention = torch.softmax(self.att(sequence), dim=-1)
        clipwise = (attention * segmentwise).sum(dim=-1)
        return {
            "clipwise": clipwise,
            "framewise": upsample_frames(segmentwise, width),
            "segmentwise": segmentwise,
        }


def upsample_frames(segmentwise: torch.Tensor, width: int) -> torch.Tensor:
    """Bring ``(B, K, T')`` segment values back to ``(B, K, width)`` frames, as the post (PANNs) does.

    Each segment is repeated ``width // T'`` times (nearest-neighbour upsampling by that integer factor: x32
    for resnet18 on 512 frames); the frames left over at the end (when ``width`` is not a multiple of
    ``T'``) repeat the last segment, and any excess is cropped, so the result always has exactly ``width``
    frames whatever the backbone's reduction.
    """
    segments = segmentwise.shape[-1]
    factor = max(1, width // segments)
    frames = torch.repeat_interleave(segmentwise, factor, dim=-1)
    if frames.shape[-1] < width:
        frames = F.pad(frames, (0, width - frames.shape[-1]), mode="replicate")
    return frames[..., :width]


def prepare_input(x: torch.Tensor, mode: str = "post", in_channels: int = 3) -> torch.Tensor:
    """Normalise whole recordings' dB mel spectrograms into model input (before windowing).

    Args:
        x: ``(B, F, T)`` log-mel spectrograms in dB, one per recording.
        mode: ``"post"``: the post's image recipe: min-max each recording to [0, 1] (the post standardises
            first, but min-max after an affine map is the same, so that step is implied; its uint8 rounding
            is left out), repeat to ``in_channels``, then subtract the ImageNet mean and divide by the
            ImageNet std of each channel (for 1 channel, the means of the three). A constant recording
            becomes 0 before the ImageNet step.
            ``"standardize"``: subtract each recording's mean and divide by its std, repeated to channels.
        in_channels: output channels C (1 or 3 for ``"post"``; any for ``"standardize"``).
    Returns:
        ``(B, in_channels, F, T)`` float32.
    """
    if x.ndim != 3:
        raise ValueError(f"expected (B, F, T) spectrograms, got {tuple(x.shape)}")
    x = x.float()
    if mode == "post":
        if in_channels == 3:
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        elif in_channels == 1:
            mean, std = torch.tensor(IMAGENET_MEAN).mean(0, True), torch.tensor(IMAGENET_STD).mean(0, True)
        else:
            raise ValueError(f"mode 'post' uses ImageNet statistics: in_channels must be 1 or 3 ({in_channels})")
        low = x.amin(dim=(1, 2), keepdim=True)
        span = x.amax(dim=(1, 2), keepdim=True) - low
        scaled = torch.where(span > 0, (x - low) / span.clamp_min(1e-12), torch.zeros_like(x))
        image = scaled.unsqueeze(1).expand(-1, in_channels, -1, -1)
        mean, std = mean.to(x.device).view(1, -1, 1, 1), std.to(x.device).view(1, -1, 1, 1)
        return (image - mean) / std
    if mode == "standardize":
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = x.std(dim=(1, 2), keepdim=True, unbiased=False)
        standard = (x - mean) / (std + 1e-6)
        return standard.unsqueeze(1).repeat(1, in_channels, 1, 1)
    raise ValueError(f"unknown input mode {mode!r}: use 'post' or 'standardize'")
