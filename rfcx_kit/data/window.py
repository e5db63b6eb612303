"""Sliding windows over the frame axis: positions, and splitting tensors into windows in one operation.

The method post cuts a 128 x 3751 spectrogram into 8 windows of 512 frames, each starting ``cover`` frames
before the previous one ended: ``[[0, 512], [463, 975], ..., [3241, 3753]]``. The last window runs past
the end and is zero-padded. Every window starts ``stride = window - cover`` frames after the previous one,
so splitting is a strided view (``Tensor.unfold``) of the zero-padded input, not a Python loop.

Order: like the post's ``split_and_padding`` (``torch.cat`` of per-window slices along dim 0), the split
is *window-major*: row ``n * B + b`` is window ``n`` of recording ``b``.
"""

from __future__ import annotations



import torch
import torch.nn.functional as F



def window_stride(positions: list[list[int]]) -> int:
    """The common step between window starts (the window length for a single window)."""
    if len(positions) == 1:
        return positions[0][1] - positions[0][0]
    steps = {b[0] - a[0] for a, b in zip(positions, positions[1:])}
    if len(steps) != 1:
        raise ValueError(f"windows are not evenly spaced: {positions}")
    return steps.pop()


def window_view(x: torch.Tensor, positions: list[list[int]]) -> torch.Tensor:
    """``(B, ..., T)`` -> ``(N, B, ..., W)``: the windows as a strided view (no copy unless ``x`` needs padding).

    Zero-pads the last axis when the last window reaches past ``T``; ``positions`` are evenly spaced and
    start at frame 0 (:func:`window_positions`).
    """
    n = len(positions)
    width = positions[0][1] - positions[0][0]
    stride = window_stride(positions)
    if positions[0][0] != 0:
        raise ValueError("windows must start at frame 0")
    needed = positions[-1][1]
    t = x.shape[-1]
    if needed > t:
        x = F.pad(x, (0, needed - t))
    return x[..., :needed].unfold(-1, width, stride)[..., :n, :].movedim(-2, 0)


def split_windows(x: torch.Tensor, positions: list[list[int]]) -> torch.Tensor:
    """Split the last axis of ``x`` into windows, zero-padding past the end.

    Args:
        x: ``(B, ..., T)``, e.g. features ``(B, C, F, T)`` or framewise labels ``(B, K, T)``.
        positions: from :func:`window_positions` (evenly spaced, starting at 0).
    Returns:
        ``(N * B, ..., W)`` in window-major order, equal to the post's ``split_and_padding``.
    """
    view = window_view(x, positions)  # (N, B, ..., W); the reshape below is the only copy
    return view.reshape((view.shape[0] * view.shape[1],) + tuple(view.shape[2:]))


def merge_windows(y: torch.Tensor, n_windows: int) -> torch.Tensor:
    """Inverse of the batch flattening: ``(N * B, ...)`` window-major -> ``(B, N, ...)``."""
    return y.reshape((n_windows, y.shape[0] // n_windows) + tuple(y.shape[1:])).transpose(0, 1)


def stitch_windows(y: torch.Tensor, positions: list[list[int]], frames: int) -> torch.Tensor:
    """Overlap-add framewise window outputs back onto the recording's timeline (mean where they overlap).

    Args:
        y: ``(B, N, K, W)`` framewise values per window.
        positions: the windows' ``[start, end)`` frames.
        frames: length ``T`` of the recording.
    Returns:
        ``(B, K, T)``: the mean of all windows covering each frame (padding beyond ``T`` dropped).
    """
    b, n, k, w = y.shape
    stride = window_stride(positions)
    total = positions[-1][1]
    # fold() sums overlapping columns: treat (B*K) as batch, windows as columns of width W.
    cols = y.permute(0, 2, 3, 1).reshape(b * k, w, n)
    summed = F.fold(cols, output_size=(1, total), kernel_size=(1, w), stride=(1, stride))
    ones = torch.ones(1, w, n, dtype=y.dtype, device=y.device)
    count = F.fold(ones, output_size=(1, total), kernel_size=(1, w), stride=(1, stride))
    out = (summed / count).reshape(b, k, total)
    return out[..., :frames]


def stitched_max(y: torch.Tensor, positions: list[list[int]], frames: int) -> torch.Tensor:
    """Max over every window that covers a frame: ``(B, N, K, W)`` -> ``(B, K, T)``.

    Max over windows of max over time equals the max over this stitched timeline (a tested identity).
    """
    b, n, k, w = y.shape
    total = positions[-1][1]
    starts = torch.tensor([p[0] for p in positions], device=y.device)
    index = (starts[:, None] + torch.arange(w, device=y.device)).reshape(-1)  # (N*W,) frame of each value
    values = y.permute(0, 2, 1, 3).reshape(b, k, n * w)
    out = torch.full((b, k, total), float("-inf"), dtype=y.dtype, device=y.device)
    out.scatter_reduce_(-1, index.expand(b, k, -1), values, reduce="amax")
    return out[..., :frames]
