"""Soft frame-wise prediction: every window of a batch of recordings in one batched forward.

For each recording: normalise (whole recording), cut into windows (one strided op), run all windows of
``batch_recordings`` recordings through the model in chunks of at most ``max_windows`` windows, then

* ``framewise`` (the post): sigmoid of the framewise output, max over time in each window, max over windows;
* ``clipwise``: sigmoid of the clipwise output, max over windows;
* ``stitched``: the windows' framewise sigmoid overlap-added (mean where windows overlap), max over time.

The window-level values ``(R, N, 24)`` and a stitched framewise timeline (max over windows, pooled to
``pool`` frames) are kept: re-labeling and the report need them.

Note on the post's own loop: ``model(X[..., h:t])`` gives the last window only the 510 frames that exist;
here it is zero-padded to the full window, as the post's training (``split_and_padding``) does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rfcx_kit.features import FeatureStore
from rfcx_kit.inputs import normalize
from rfcx_kit.window import merge_windows, split_windows, stitch_windows, stitched_max


@dataclass
class Prediction:
    """Outputs for R recordings with N windows.

    Attributes:
        windows: ``(R, N, 24)`` max over time of the framewise sigmoid in each window.
        clipwise: ``(R, N, 24)`` clipwise logits of each window.
        stitched: ``(R, 24)`` max over time of the overlap-added framewise sigmoid.
        framewise: ``(R, 24, ceil(T / pool))`` float16 max over windows of the framewise sigmoid, pooled.
    """

    windows: np.ndarray
    clipwise: np.ndarray
    stitched: np.ndarray
    framewise: np.ndarray

    def clip(self, mode: str = "framewise") -> np.ndarray:
        """``(R, 24)`` recording-level probabilities by the chosen rule."""
        if mode == "framewise":
            return self.windows.max(axis=1)
        if mode == "clipwise":
            return 1.0 / (1.0 + np.exp(-self.clipwise.max(axis=1)))
        if mode == "stitched":
            return self.stitched
        raise ValueError(f"unknown prediction mode {mode!r}")


@torch.no_grad()
def forward_windows(model: torch.nn.Module, x: torch.Tensor, max_windows: int) -> dict[str, torch.Tensor]:
    """Run ``(M, C, F, W)`` windows through the model in chunks of ``max_windows`` (the memory budget)."""
    outs = [model(x[i : i + max_windows]) for i in range(0, x.shape[0], max_windows)]
    return {key: torch.cat([o[key] for o in outs]).float() for key in ("framewise", "clipwise")}


@torch.no_grad()
def predict_recordings(model: torch.nn.Module, store: FeatureStore, split: str, recording_ids: list[str],
                       stats: np.ndarray, positions: list[list[int]], mode: str = "post", in_channels: int = 3,
                       batch_recordings: int = 8, max_windows: int = 128, pool: int = 32,
                       device: str | torch.device = "cpu", amp: bool = False, channels_last: bool = False,
                       progress: bool = False) -> Prediction:
    """Soft frame-wise prediction of ``recording_ids`` (stats: their ``(R, 4)`` statistics)."""
    from tqdm.auto import tqdm

    model.eval()
    device = torch.device(device)
    frames = store.frames
    n, r = len(positions), len(recording_ids)
    segments = -(-frames // pool)
    windows = np.zeros((r, n, 24), dtype=np.float32)
    clipwise = np.zeros((r, n, 24), dtype=np.float32)
    stitched = np.zeros((r, 24), dtype=np.float32)
    framewise = np.zeros((r, 24, segments), dtype=np.float16)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    bar = tqdm(total=r, unit="rec", desc=f"predict {split}", disable=not progress, leave=False)
    for lo in range(0, r, batch_recordings):
        ids = recording_ids[lo : lo + batch_recordings]
        b = len(ids)
        x = normalize(torch.from_numpy(store.batch(split, ids)), torch.from_numpy(stats[lo : lo + b]), mode, in_channels)
        x = split_windows(x, positions).to(device, non_blocking=True)  # (N*B, C, F, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            out = forward_windows(model, x, max_windows)
        prob = merge_windows(torch.sigmoid(out["framewise"]), n).cpu()  # (B, N, 24, W)
        windows[lo : lo + b] = prob.amax(dim=-1).numpy()
        clipwise[lo : lo + b] = merge_windows(out["clipwise"], n).cpu().numpy()
        stitched[lo : lo + b] = stitch_windows(prob, positions, frames).amax(dim=-1).numpy()
        timeline = stitched_max(prob, positions, frames)  # (B, 24, T)
        timeline = torch.nn.functional.pad(timeline, (0, segments * pool - frames), value=0.0)
        framewise[lo : lo + b] = timeline.reshape(b, 24, segments, pool).amax(-1).numpy().astype(np.float16)
        bar.update(b)
    bar.close()
    return Prediction(windows, clipwise, stitched, framewise)
