"""Soft frame-wise prediction: every window of a batch of recordings in one batched forward.

For a batch of recordings: cut the dB frames into windows (a strided view) and normalise them with each
recording's whole-recording statistics straight into the model input (one fused multiply-add), run all
windows of ``batch_recordings`` recordings through the model in chunks of at most ``max_windows`` windows
(chosen from the device and the model's activation size when not given), then

* ``framewise`` (the post): sigmoid of the framewise output, max over time in each window, max over windows;
* ``clipwise``: sigmoid of the clipwise output, max over windows;
* ``stitched``: the windows' framewise sigmoid overlap-added (mean where windows overlap), max over time.

The window-level values ``(R, N, K)`` and a stitched framewise timeline (max over windows, pooled to
``pool`` frames) are kept: re-labeling and the report need them.

Recordings of different lengths: each is predicted at its own length with the first ``N_r`` of the layout's
windows (``core/grid.window_counts``); a batch holds only recordings of one length, and the windows a shorter
recording does not have are NaN in ``windows`` and ``clipwise`` (every max over windows skips them).

Note on the post's own loop: ``model(X[..., h:t])`` gives the last window only the 510 frames that exist;
here it is zero-padded to the full window, as the post's training (``split_and_padding``) does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rfcx_kit.core.grid import POOL

from rfcx_kit.data.features import FeatureStore
from rfcx_kit.model.inputs import window_inputs
from rfcx_kit.data.window import merge_windows, stitch_windows, stitched_max

# Windows per forward on CPU are chosen so the largest activation of one forward stays within this share of
# the last-level cache: on a 2-core EPYC (32 MiB L3) resnet18 ran at 26.2 windows/s one window per forward
# and 21.1 at 32, mobilenetv3_small_050 at 273 windows/s with 8, 231 with 32 and 123 with 1 (the post's loop
# columns in benchmarks/RESULTS.md).
CPU_CACHE_SHARE = 4
CUDA_MAX_WINDOWS = 128


@dataclass
class Prediction:
    """Outputs for R recordings with N windows.

    Attributes:
        windows: ``(R, N, K)`` max over time of the framewise sigmoid in each window (NaN: a window past the
            recording's end).
        clipwise: ``(R, N, K)`` clipwise logits of each window (NaN as ``windows``).
        stitched: ``(R, K)`` max over time of the overlap-added framewise sigmoid.
        framewise: ``(R, K, ceil(T / pool))`` float16 max over windows of the framewise sigmoid, pooled (0 past
            the recording's end).
    """

    windows: np.ndarray
    clipwise: np.ndarray
    stitched: np.ndarray
    framewise: np.ndarray

    def take(self, rows: np.ndarray) -> Prediction:
        """The predictions of recordings ``rows`` (an index into R)."""
        return Prediction(self.windows[rows], self.clipwise[rows], self.stitched[rows], self.framewise[rows])

    def clip(self, mode: str = "framewise") -> np.ndarray:
        """``(R, K)`` recording-level probabilities by the chosen rule (windows past a recording's end skipped)."""
        if mode == "framewise":
            return np.fmax.reduce(self.windows, axis=1)
        if mode == "clipwise":
            return 1.0 / (1.0 + np.exp(-np.fmax.reduce(self.clipwise, axis=1)))
        if mode == "stitched":
            return self.stitched
        raise ValueError(f"unknown prediction mode {mode!r}")


def last_level_cache_bytes(default: int = 32 * 2**20) -> int:
    """Size of the CPU's largest cache (Linux sysfs), or ``default`` where it cannot be read."""
    from pathlib import Path

    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = entry.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else default


@torch.no_grad()
def peak_activation_bytes(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    """Bytes of the largest output of any leaf module for ONE window of ``shape`` ``(C, F, W)`` (a probe forward)."""
    peak = 0

    def hook(_module, _inputs, output) -> None:  # noqa: ANN001
        nonlocal peak
        if isinstance(output, torch.Tensor):
            peak = max(peak, output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if next(m.children(), None) is None]
    try:
        model(torch.zeros((1, *shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return peak


def auto_max_windows(model: torch.nn.Module, shape: tuple[int, ...], device: str | torch.device) -> int:
    """Windows per forward when ``predict.max_windows`` is not set.

    CUDA: 128 (batching is what fills the device). CPU: as many windows as keep the largest activation
    within a quarter of the last-level cache (1..64): resnet18 at 128 x 512 -> 2, mobilenetv3_small_050 -> 8
    with a 32 MiB L3. Bigger forwards fall out of cache and run slower per window on CPU.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return CUDA_MAX_WINDOWS
    budget = last_level_cache_bytes() // CPU_CACHE_SHARE
    return int(min(64, max(1, budget // max(1, peak_activation_bytes(model, shape, device)))))


@torch.no_grad()
def forward_windows(model: torch.nn.Module, x: torch.Tensor, max_windows: int) -> dict[str, torch.Tensor]:
    """Run ``(M, C, F, W)`` windows through the model in chunks of ``max_windows`` (the memory budget)."""
    outs = [model(x[i : i + max_windows]) for i in range(0, x.shape[0], max_windows)]
    return {key: torch.cat([o[key] for o in outs]).float() for key in ("framewise", "clipwise")}


@torch.no_grad()
def predict_batch(model: torch.nn.Module, raw: torch.Tensor, stats: torch.Tensor, positions: list[list[int]],
                  mode: str = "post", in_channels: int = 3, max_windows: int | None = None, pool: int = POOL,
                  amp: bool = False, channels_last: bool = False, timelines: bool = True,
                  mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Prediction:
    """Soft frame-wise prediction of one batch of equally long recordings, every window in batched forwards.

    Args:
        raw: ``(B, F, T)`` dB frames on the model's device.
        stats: ``(B, 4)`` their whole-recording statistics (``model.inputs.stats_of``).
        positions: the windows of a ``T``-frame recording.
    Returns:
        a :class:`Prediction` of the B recordings (``timelines=False``: stitched and framewise left 0).
    """
    model.eval()
    device = raw.device
    b, frames, n = raw.shape[0], raw.shape[-1], len(positions)
    x = window_inputs(raw, stats, positions, mode, in_channels, mean_std)  # (N*B, C, F, W)
    if max_windows is None:
        max_windows = auto_max_windows(model, tuple(x.shape[1:]), device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    with autocast:
        out = forward_windows(model, x, max_windows)
    prob = merge_windows(torch.sigmoid(out["framewise"]), n).cpu()  # (B, N, K, W)
    k = prob.shape[2]
    segments = -(-frames // pool)
    stitched = np.zeros((b, k), dtype=np.float32)
    framewise = np.zeros((b, k, segments), dtype=np.float16)
    if timelines:
        stitched = stitch_windows(prob, positions, frames).amax(dim=-1).numpy()
        timeline = stitched_max(prob, positions, frames)  # (B, K, T)
        timeline = torch.nn.functional.pad(timeline, (0, segments * pool - frames), value=0.0)
        framewise = timeline.reshape(b, k, segments, pool).amax(-1).numpy().astype(np.float16)
    return Prediction(prob.amax(dim=-1).numpy(), merge_windows(out["clipwise"], n).cpu().numpy(), stitched,
                      framewise)


def equal_length_batches(lengths: np.ndarray, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` row ranges of at most ``size`` consecutive recordings of one length (order kept)."""
    out, lo = [], 0
    lengths = np.asarray(lengths)
    while lo < len(lengths):
        hi = lo + 1
        while hi < len(lengths) and hi - lo < size and lengths[hi] == lengths[lo]:
            hi += 1
        out.append((lo, hi))
        lo = hi
    return out


@torch.no_grad()
def predict_recordings(model: torch.nn.Module, store: FeatureStore, split: str, recording_ids: list[str],
                       stats: np.ndarray, positions: list[list[int]], mode: str = "post", in_channels: int = 3,
                       batch_recordings: int = 8, max_windows: int | None = None, pool: int = POOL,
                       device: str | torch.device = "cpu", amp: bool = False, channels_last: bool = False,
                       progress: bool = False, timelines: bool = True,
                       mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                       lengths: np.ndarray | None = None) -> Prediction:
    """Soft frame-wise prediction of ``recording_ids`` (stats: their ``(R, 4)`` statistics).

    ``mean_std``: the input statistics of pretrained weights (None: the post's ImageNet constants).
    ``lengths``: ``(R,)`` each recording's frames (None: all ``store.frames``); ``positions`` is the layout at
    ``store.frames`` and a shorter recording takes the first of its windows that reach its end.

    ``max_windows``: windows per forward (None: :func:`auto_max_windows`). ``timelines=False`` skips the
    stitched mode and the pooled framewise timeline (left as zeros) for callers that only need the windows.
    """
    from rfcx_kit.core.progress import progress_bar

    from rfcx_kit.core.grid import window_counts

    model.eval()
    device = torch.device(device)
    n, r = len(positions), len(recording_ids)
    k = model.n_species if hasattr(model, "n_species") else None
    segments = -(-store.frames // pool)
    lengths = np.full(r, store.frames, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    counts = window_counts(lengths, positions, store.frames)
    windows = clipwise = stitched = framewise = None
    bar = progress_bar(total=r, unit="rec", desc=f"predict {split}", enabled=progress, leave=False)
    for lo, hi in equal_length_batches(lengths, batch_recordings):
        ids, length, n_b = recording_ids[lo:hi], int(lengths[lo]), int(counts[lo])
        raw = torch.from_numpy(store.batch(split, ids, length)).to(device, non_blocking=True)  # (B, F, T_b) dB
        if max_windows is None:
            max_windows = auto_max_windows(model, (in_channels, raw.shape[1], positions[0][1] - positions[0][0]),
                                           device)
        part = predict_batch(model, raw, torch.from_numpy(stats[lo:hi]), positions[:n_b], mode, in_channels,
                             max_windows, pool, amp, channels_last, timelines, mean_std)
        if windows is None:
            k = part.windows.shape[-1]
            windows = np.full((r, n, k), np.nan, dtype=np.float32)
            clipwise = np.full((r, n, k), np.nan, dtype=np.float32)
            stitched = np.zeros((r, k), dtype=np.float32)
            framewise = np.zeros((r, k, segments), dtype=np.float16)
        windows[lo:hi, :n_b], clipwise[lo:hi, :n_b] = part.windows, part.clipwise
        stitched[lo:hi], framewise[lo:hi, :, : part.framewise.shape[-1]] = part.stitched, part.framewise
        bar.update(hi - lo)
    bar.close()
    if windows is None:  # no recordings
        k = k or 1
        windows, clipwise = np.zeros((0, n, k), np.float32), np.zeros((0, n, k), np.float32)
        stitched, framewise = np.zeros((0, k), np.float32), np.zeros((0, k, segments), np.float16)
    return Prediction(windows, clipwise, stitched, framewise)
