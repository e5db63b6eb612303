"""Model input from the feature store: per-recording statistics, normalisation, crops and windows.

The post normalises each whole recording before cutting it into windows. A training crop is only 512 of
3751 frames, so instead of reading the whole recording for every crop, the four numbers the normalisation
needs (mean, std, min, max of each recording) are computed once per run and crops read only their frames
from the memory-mapped store. :func:`normalize` with :func:`stats_of` equals ``model.prepare_input``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from rfcx_kit.core.config import AugmentConfig
from rfcx_kit.data.features import FeatureStore
from rfcx_kit.model.augment import gain_noise, spec_masks
from rfcx_kit.model.sed import IMAGENET_MEAN, IMAGENET_STD
from rfcx_kit.data.window import window_view

T = TypeVar("T")
R = TypeVar("R")
_END = object()


def stats_of(x: np.ndarray) -> np.ndarray:
    """``(B, F, T)`` -> ``(B, 4)`` float64: mean, std (population), min, max of each recording."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(x.shape[0], -1)
    return np.stack([flat.mean(1), flat.std(1), flat.min(1), flat.max(1)], axis=1)


def recording_stats(store: FeatureStore, split: str, recording_ids: list[str], chunk: int = 64) -> np.ndarray:
    """``(R, 4)`` statistics of every recording over its own frames, read in chunks (memory stays flat)."""
    out = np.zeros((len(recording_ids), 4), dtype=np.float64)
    lengths = store.lengths(split, recording_ids)
    for i in range(0, len(recording_ids), chunk):
        x = store.batch(split, recording_ids[i : i + chunk])
        own = lengths[i : i + chunk]
        if (own == x.shape[-1]).all():
            out[i : i + chunk] = stats_of(x)
        else:  # shorter recordings: their padding is not sound and stays out of their statistics
            out[i : i + chunk] = np.concatenate([stats_of(x[j : j + 1, :, : own[j]]) for j in range(len(own))])
    return out


MeanStd = tuple[tuple[float, ...], tuple[float, ...]]


def channel_mean_std(in_channels: int, mean_std: MeanStd | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel mean and std of the ``post`` recipe: the pretrained weights' (``mean_std``, from timm's
    ``pretrained_cfg``) or the post's ImageNet constants; for 1 channel, the means of the three."""
    mean, std = mean_std if mean_std is not None else (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    if in_channels == mean.numel():
        return mean, std
    if in_channels == 1:
        return mean.mean(0, True), std.mean(0, True)
    raise ValueError(f"mode 'post' uses {mean.numel()}-channel statistics: in_channels must be 1 or {mean.numel()} "
                     f"({in_channels})")


def affine_coefficients(stats: torch.Tensor, mode: str = "post", in_channels: int = 3,
                        mean_std: MeanStd | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per recording and channel, the ``a, b`` with ``input = a * dB + b`` (the whole normalisation is affine).

    ``post``: min-max to [0, 1] then ImageNet mean/std, so ``a = 1 / (span * std_c)`` and
    ``b = -(low / span + mean_c) / std_c`` (a constant recording: ``a = 0``, ``b = -mean_c / std_c``).
    ``standardize``: ``a = 1 / (std + 1e-6)``, ``b = -mean * a`` on every channel.

    Args:
        stats: ``(B, 4)`` from :func:`stats_of` (float64).
    Returns:
        ``a, b``: ``(B, C)`` float32, computed in float64.
    """
    stats = stats.to(torch.float64)
    if mode == "post":
        mean, std = channel_mean_std(in_channels, mean_std)
        low, span = stats[:, 2:3], stats[:, 3:4] - stats[:, 2:3]
        flat = span <= 0  # a constant recording scales to 0 (model.prepare_input)
        inv = torch.where(flat, torch.zeros_like(span), 1.0 / span.clamp_min(1e-300))
        a = inv / std[None, :]
        b = -(low * inv + mean[None, :]) / std[None, :]
    elif mode == "standardize":
        a = (1.0 / (stats[:, 1:2] + 1e-6)).expand(-1, in_channels)
        b = -stats[:, 0:1] * a
    else:
        raise ValueError(f"unknown input mode {mode!r}: use 'post' or 'standardize'")
    return a.float().contiguous(), b.float().contiguous()


def normalize(x: torch.Tensor, stats: torch.Tensor, mode: str = "post", in_channels: int = 3,
              mean_std: MeanStd | None = None) -> torch.Tensor:
    """Normalise frames of recordings with their whole-recording statistics.

    One fused multiply-add per output value (``torch.addcmul`` with :func:`affine_coefficients`), reading the
    dB frames in whatever dtype they are stored (float16 caches are promoted on the fly).

    Args:
        x: ``(B, F, W)`` dB frames (a crop, a window or the whole recording).
        stats: ``(B, 4)`` from :func:`stats_of` of the whole recordings.
    Returns:
        ``(B, in_channels, F, W)`` float32, as ``model.prepare_input`` gives for the whole recording.
    """
    a, b = affine_coefficients(stats, mode, in_channels, mean_std)
    out = torch.empty((x.shape[0], in_channels, *x.shape[1:]), dtype=torch.float32, device=x.device)
    _affine_into(out, x, a.to(x.device), b.to(x.device), channel_dim=1)
    return out


def _affine_into(out: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, channel_dim: int) -> None:
    """``out.select(channel_dim, c) = a[:, c] * x + b[:, c]`` for each channel, the batch axis being ``channel_dim - 1``.

    One ``addcmul`` per channel straight into the output slice: about 3x faster on CPU than a single
    addcmul broadcasting over channels (which iterates the 5-D broadcast poorly), and no temporaries.
    """
    shape = [1] * x.dim()
    shape[channel_dim - 1] = x.shape[channel_dim - 1]
    for c in range(out.shape[channel_dim]):
        torch.addcmul(b[:, c].view(shape), x, a[:, c].view(shape), out=out.select(channel_dim, c))


def window_inputs(x: torch.Tensor, stats: torch.Tensor, positions: list[list[int]], mode: str = "post",
                  in_channels: int = 3, mean_std: MeanStd | None = None) -> torch.Tensor:
    """Normalised model input of every window of whole recordings, built in one pass.

    Equals ``split_windows(normalize(x, stats), positions)``, but the windows are cut from the 1-channel
    dB frames as a strided view and normalised straight into the output: one write of the result instead
    of normalising 3 channels of the whole recording and then copying them into windows.

    Args:
        x: ``(B, F, T)`` dB frames of whole recordings (any float dtype).
        stats: ``(B, 4)`` their statistics.
        positions: evenly spaced windows from ``window.window_positions``.
    Returns:
        ``(N * B, C, F, W)`` float32 in window-major order (as ``split_windows``); frames past ``T`` are 0.
    """
    n, width, frames = len(positions), positions[0][1] - positions[0][0], x.shape[-1]
    view = window_view(x, positions)  # (N, B, F, W) strided view of the dB frames
    a, b = affine_coefficients(stats, mode, in_channels, mean_std)
    out = torch.empty((n, x.shape[0], in_channels, *view.shape[2:]), dtype=torch.float32, device=x.device)
    _affine_into(out, view, a.to(x.device), b.to(x.device), channel_dim=2)  # (N, B, C, F, W)
    for k, (start, _) in enumerate(positions):  # at most a few windows reach past the end: pad with 0 as the post
        if start + width > frames:
            out[k, ..., max(0, frames - start) :] = 0.0
    return out.reshape((n * x.shape[0],) + tuple(out.shape[2:]))


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
               starts: np.ndarray, width: int, mode: str, in_channels: int,
               mean_std: MeanStd | None = None, augment: AugmentConfig | None = None,
               gen: torch.Generator | None = None, lengths: np.ndarray | None = None) -> torch.Tensor:
    """Normalised model input ``(M, C, F, width)`` for training items; padding past the end stays zero.

    ``lengths``: ``(R,)`` each recording's own frames, indexed like ``recording_ids`` (None: ``store.frames``).

    ``augment`` (with its batch's ``gen``): gain and noise on the dB crops, then time and frequency masks on
    the input (``model.augment``); mixup is the training step's.
    """
    frames = torch.from_numpy(read_crops(store, split, recording_ids, rows, starts, width))
    if augment is not None:
        frames = gain_noise(frames, torch.from_numpy(stats[rows, 3]), augment, gen)
    x = normalize(frames, torch.from_numpy(stats[rows]), mode, in_channels, mean_std)
    ends = store.frames if lengths is None else np.asarray(lengths, dtype=np.int64)[rows]
    valid = torch.from_numpy(np.minimum(ends - starts, width))  # frames that exist in each crop
    pad = torch.arange(width)[None, :] >= valid[:, None]
    if pad.any():  # the post pads windows with zeros after normalisation
        x = x.masked_fill(pad[:, None, None, :], 0.0)
    if augment is not None:
        x = spec_masks(x, augment, gen)
    return x


def prefetched(batches: Iterable[T], make: Callable[[T], R], enabled: bool = True) -> Iterator[tuple[T, R]]:
    """Yield ``(batch, make(batch))`` while ``make`` of the NEXT batch already runs in a background thread.

    Reading crops from the memory map and normalising them releases the GIL, so the next batch is ready
    when the step ends: the data wait of a CPU step fell from ~6% to under 1% (benchmarks/RESULTS.md), but on
    2 cores the thread slows the step itself more than that, which is why ``train.prefetch`` is on only with
    CUDA. ``make`` must not draw random numbers: the order of results is the order of ``batches``, so
    training stays deterministic. ``enabled=False`` runs everything inline.
    """
    if not enabled:
        for batch in batches:
            yield batch, make(batch)
        return
    from concurrent.futures import ThreadPoolExecutor

    iterator = iter(batches)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfcx-prefetch") as pool:
        current = next(iterator, _END)
        pending = pool.submit(make, current) if current is not _END else None
        while current is not _END:
            following = next(iterator, _END)
            upcoming = pool.submit(make, following) if following is not _END else None
            yield current, pending.result()
            current, pending = following, upcoming
