"""Model input from the feature store: per-recording statistics, normalisation, crops and windows.

The post normalises each whole recording before cutting it into windows. A training crop is only 512 of
3751 frames, so instead of reading the whole recording for every crop, the four numbers the normalisation
needs (mean, std, min, max of each recording) are computed once per run and crops read only their frames
from the memory-mapped store. :func:`normalize` with :func:`stats_of` equals ``model.prepare_input``.
"""

from __future__ import annotations

import numpy as np
import torch

from rfcx_kit.features import FeatureStore
from rfcx_kit.model import IMAGENET_MEAN, IMAGENET_STD


def stats_of(x: np.ndarray) -> np.ndarray:
    """``(B, F, T)`` -> ``(B, 4)`` float64: mean, std (population), min, max of each recording."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(x.shape[0], -1)
    return np.stack([flat.mean(1), flat.std(1), flat.min(1), flat.max(1)], axis=1)


def recording_stats(store: FeatureStore, split: str, recording_ids: list[str], chunk: int = 64) -> np.ndarray:
    """``(R, 4)`` statistics of every recording, read in chunks (memory stays flat)."""
    out = np.zeros((len(recording_ids), 4), dtype=np.float64)
    for i in range(0, len(recording_ids), chunk):
        out[i : i + chunk] = stats_of(store.batch(split, recording_ids[i : i + chunk]))
    return out


def normalize(x: torch.Tensor, stats: torch.Tensor, mode: str = "post", in_channels: int = 3) -> torch.Tensor:
    """Normalise frames of recordings with their whole-recording statistics.

    Args:
        x: ``(B, F, W)`` dB frames (a crop, a window or the whole recording).
        stats: ``(B, 4)`` from :func:`stats_of` of the whole recordings.
    Returns:
        ``(B, in_channels, F, W)`` float32, as ``model.prepare_input`` gives for the whole recording.
    """
    x = x.float()
    stats = stats.to(x.device, torch.float64)
    if mode == "post":
        low = stats[:, 2].view(-1, 1, 1)
        span = (stats[:, 3] - stats[:, 2]).view(-1, 1, 1)
        scaled = torch.where(span > 0, (x - low.float()) / span.clamp_min(1e-12).float(), torch.zeros_like(x))
        if in_channels == 3:
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        else:
            mean, std = torch.tensor(IMAGENET_MEAN).mean(0, True), torch.tensor(IMAGENET_STD).mean(0, True)
        mean, std = mean.to(x.device).view(1, -1, 1, 1), std.to(x.device).view(1, -1, 1, 1)
        return (scaled.unsqueeze(1).expand(-1, in_channels, -1, -1) - mean) / std
    mean = stats[:, 0].view(-1, 1, 1).float()
    std = stats[:, 1].view(-1, 1, 1).float()
    return ((x - mean) / (std + 1e-6)).unsqueeze(1).repeat(1, in_channels, 1, 1)


def read_crops(store: FeatureStore, split: str, recording_ids: list[str], rows: np.ndarray, starts: np.ndarray,
               width: int) -> np.ndarray:
    """``(M, F, width)`` float32 frames ``[start, start + width)`` of each item; past the end is zero.

    Only the crop's frames are read from the memory map (about 1/7 of a recording for 512 of 3751).
    """
    first = store.load(split, recording_ids[int(rows[0])])
    out = np.zeros((len(rows), first.shape[0], width), dtype=np.float32)
    for i, (row, start) in enumerate(zip(rows, starts)):
        array = store.load(split, recording_ids[int(row)])
        end = min(int(start) + width, array.shape[-1], store.frames)
        if end > start:
            out[i, :, : end - int(start)] = array[:, int(start) : end]
    return out


def crop_batch(store: FeatureStore, split: str, recording_ids: list[str], stats: np.ndarray, rows: np.ndarray,
               starts: np.ndarray, width: int, mode: str, in_channels: int) -> torch.Tensor:
    """Normalised model input ``(M, C, F, width)`` for training items; padding past the end stays zero."""
    frames = torch.from_numpy(read_crops(store, split, recording_ids, rows, starts, width))
    x = normalize(frames, torch.from_numpy(stats[rows]), mode, in_channels)
    valid = torch.from_numpy(np.minimum(store.frames - starts, width))  # frames that exist in each crop
    pad = torch.arange(width)[None, :] >= valid[:, None]
    if pad.any():  # the post pads windows with zeros after normalisation
        x = x.masked_fill(pad[:, None, None, :], 0.0)
    return x
