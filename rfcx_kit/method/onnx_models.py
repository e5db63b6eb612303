"""Exported ONNX graphs as fold models: ``rfcx-kit predict --onnx DIR`` runs what ``export`` wrote, through the same
front end (log-mel, normalisation, windows), soft frame-wise prediction and fold mean as the torch models.

``DIR`` holds ``model.json`` (the features, windows, input scaling and outputs the graphs were exported with),
``species.csv`` and ``fold{k}.onnx``; onnxruntime runs each graph on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rfcx_kit.core.config import Config, FeatureConfig, WindowConfig
from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import SPECIES_FILE, Species
from rfcx_kit.method.apply import Models
from rfcx_kit.method.export import OUTPUTS, onnx_session

MODEL_FILE = "model.json"
MAX_WINDOWS = 64  # windows per onnxruntime call (the graphs take any number; this bounds the memory)


class OnnxFold(torch.nn.Module):
    """One exported graph behind the torch models' interface: ``(M, C, F, W)`` windows -> clipwise ``(M, K)`` and
    framewise ``(M, K, W)`` logits, computed by onnxruntime."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = onnx_session(self.path, threads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self.session.run(list(OUTPUTS), {"x": x.detach().cpu().numpy().astype(np.float32, copy=False)})
        return {name: torch.from_numpy(out) for name, out in zip(OUTPUTS, outs)}


def _mean_std(value: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    return None if value is None else (tuple(float(v) for v in value[0]), tuple(float(v) for v in value[1]))


def load_onnx(folder: Path, threads: int | None = None) -> Models:
    """The fold models of an export folder (``rfcx-kit export``): its graphs, the config they need, its species."""
    folder = Path(folder)
    path = folder / MODEL_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        graphs = [folder / g["file"] for g in info["graphs"]]
        shape, k = info["input"]["shape"], int(info["outputs"]["clipwise"][1])
    except FileNotFoundError:
        raise DataError(f"{path}: not found; --onnx takes the folder `rfcx-kit export` wrote") from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"{path}: not the model.json of an ONNX export ({type(exc).__name__}: {exc})") from None
    missing = [g for g in graphs if not g.is_file()]
    if not graphs or missing:
        raise DataError(f"{folder}: {'no graphs listed' if not graphs else f'{missing[0].name} is missing'} "
                        f"({MODEL_FILE} lists {', '.join(g.name for g in graphs) or 'none'})")
    cfg = Config()
    cfg.features = FeatureConfig(**info["features"])
    cfg.windows = WindowConfig(**info["windows"])
    cfg.model.n_species, cfg.model.in_channels = k, int(shape[1])
    cfg.model.normalize, cfg.model.pretrained = info["input"]["normalize"], False
    cfg.predict.mode, cfg.predict.max_windows = info.get("predict_mode", cfg.predict.mode), MAX_WINDOWS
    species = Species.read(folder / SPECIES_FILE) if (folder / SPECIES_FILE).is_file() else Species.numbered(k)
    if len(species) != k:
        raise DataError(f"{folder / SPECIES_FILE}: {len(species)} species, but the graphs give {k}")
    models = [OnnxFold(g, threads) for g in graphs]
    return Models(cfg, models, graphs, info.get("stage"), species,
                  input_mean_std=_mean_std(info["input"].get("mean_std")), onnx=True)
