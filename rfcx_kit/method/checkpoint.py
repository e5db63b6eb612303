"""Model building and checkpoints: a run's SED model from its config, its input scaling, and ``.pt`` files written
atomically and read with ``weights_only``. torch is imported inside each function: importing this is cheap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfcx_kit.core.config import Config
from rfcx_kit.core.io import atomic_path

if TYPE_CHECKING:
    from rfcx_kit.model.sed import SEDModel


def build_model(cfg: Config, with_weights: bool = True) -> SEDModel:
    """The run's SED model; ``with_weights=False`` skips the pretrained weights (a checkpoint replaces them)."""
    from rfcx_kit.model.sed import SEDModel

    m = cfg.model
    if m.n_species is None:  # stage 1 sets it from the data's species table before the config is saved
        raise ValueError("model.n_species is not set: build the model from a run's saved config")
    if not with_weights:
        return SEDModel(m.backbone, m.n_species, m.in_channels, False, None, m.dropout)
    return SEDModel(m.backbone, m.n_species, m.in_channels, m.pretrained, m.weights, m.dropout)


def input_stats(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The mean and std the model input is scaled to: the pretrained weights' (timm's pretrained_cfg), else the
    post's ImageNet constants (None)."""
    from rfcx_kit.model.weights import input_mean_std

    return input_mean_std(cfg.model.backbone, cfg.model.pretrained, cfg.model.weights)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file: a killed save never leaves a truncated checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain containers only, never arbitrary objects."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
