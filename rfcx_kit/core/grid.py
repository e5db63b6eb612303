"""The feature grid, derived once from the config: frames of a recording, seconds per frame, Nyquist, windows.

Every other module asks this one: how many frames a recording of S seconds gives, where frame f lies in time,
which ``[start, end)`` frames the training and test windows take, and how many of a run's windows a shorter
recording needs. A recording is read at its own length (``features.seconds: null``, the default) or padded
or cut to one length (``features.seconds: 60`` gives the competition's 3751 frames at 32 kHz and hop 512).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from typing import TYPE_CHECKING

from rfcx_kit.core.errors import ConfigError

if TYPE_CHECKING:  # config.py takes its defaults from here: a runtime import would go round in a circle
    from rfcx_kit.core.config import Config

# THE GRID'S NUMBERS, each spelled here only (tests/test_architecture.py refuses them elsewhere): the method post's
# log-mel grid, and the competition's recordings it is computed from.
SAMPLE_RATE = 32000  # the features' rate: recordings are resampled to it
HOP_LENGTH = 512  # samples between frames (16 ms at 32 kHz)
WINDOW = 512  # frames per window
COVER = 49  # frames shared by neighbouring windows
SECONDS = 60.0  # the competition's recordings
RECORDING_RATE = 48000  # the competition's FLAC files
POOL = 32  # frames pooled into one segment of a framewise timeline (what reports and pseudo-boxes read)


def window_positions(
    frames: int, window: int = WINDOW, cover: int | None = COVER, n_windows: int | None = None
) -> list[list[int]]:
    """``[start, end)`` frame pairs of the windows that cover ``frames`` frames.

    With ``cover``: windows step by ``window - cover`` until one reaches the last frame (the post's rule).
    With ``n_windows`` (and no cover): the smallest stride for which ``n_windows`` windows reach the end.
    Both given: exactly ``n_windows`` windows at the given cover, as the post's ``N_SPLIT_IMG`` loop.
    """
    # ConfigError (a ValueError): these come straight from a user's windows settings or --cover/--n-windows.
    if frames <= 0 or window <= 0:
        raise ConfigError(f"frames ({frames}) and window ({window}) must be positive")
    if cover is None and n_windows is None:
        raise ConfigError("windows: give cover or n_windows")
    if n_windows is not None and n_windows < 1:
        raise ConfigError(f"n_windows must be at least 1, got {n_windows}")
    if cover is not None:
        if not 0 <= cover < window:
            raise ConfigError(f"cover must be in [0, window={window}), got {cover}")
        stride = window - cover
        need = 1 if frames <= window else 1 + math.ceil((frames - window) / stride)
        if n_windows is None:
            n_windows = need
        elif n_windows < need:  # windows that stop short of the end would leave its calls unseen
            raise ConfigError(f"{n_windows} window(s) of {window} frames with {cover} of cover reach frame "
                              f"{(n_windows - 1) * stride + window}, but the recordings have {frames} frames: give "
                              f"n_windows {need} or more, or leave cover unset (null) to spread {n_windows} over them")
    else:
        assert n_windows is not None
        if n_windows == 1:
            if frames > window:
                raise ConfigError(f"1 window of {window} frames cannot cover {frames} frames")
            stride = window
        else:
            stride = max(1, math.ceil(max(frames - window, 0) / (n_windows - 1)))
            if stride > window:
                raise ConfigError(
                    f"{n_windows} windows of {window} frames cannot cover {frames} frames without gaps"
                )
    return [[i * stride, i * stride + window] for i in range(n_windows)]


@dataclass(frozen=True)
class Grid:
    """A run's time-frequency grid.

    Attributes:
        sample_rate, hop_length, n_mels, fmin, fmax: the log-mel settings (``features.*``).
        frames: ``T``, frames of the run's longest recording: the width of its per-recording arrays.
        window, cover, n_windows, test_cover, test_n_windows: the window settings (``windows.*``).
    """

    sample_rate: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    frames: int
    window: int
    cover: int | None
    n_windows: int | None
    test_cover: int | None
    test_n_windows: int | None

    @classmethod
    def of(cls, cfg: Config, frames: int | None = None) -> Grid:
        """The grid of ``cfg``; ``frames``: the longest recording's (None: ``features.seconds``'s, which must be set)."""
        f, w = cfg.features, cfg.windows
        if frames is None:
            if f.seconds is None:
                raise ConfigError("features.seconds is null (each recording at its own length): the grid's frames "
                                  "come from the data")
            frames = frames_of(f.seconds, f.sample_rate, f.hop_length)
        return cls(f.sample_rate, f.hop_length, f.n_mels, f.fmin, f.fmax, int(frames), w.window, w.cover, w.n_windows,
                   w.test_cover, w.test_n_windows)

    @property
    def frame_seconds(self) -> float:
        """Seconds between frames (frame ``f`` is centred at ``f * frame_seconds``)."""
        return self.hop_length / self.sample_rate

    @property
    def nyquist(self) -> float:
        return self.sample_rate / 2

    @property
    def seconds(self) -> float:
        """The longest recording's length, from its frames (the last frame's centre)."""
        return (self.frames - 1) * self.frame_seconds

    def frames_of(self, seconds: float) -> int:
        return frames_of(seconds, self.sample_rate, self.hop_length)

    @property
    def positions(self) -> list[list[int]]:
        """The training windows of a ``frames``-frame recording."""
        return window_positions(self.frames, self.window, self.cover, self.n_windows)

    def test_positions(self, frames: int | None = None) -> list[list[int]]:
        """The windows a recording of ``frames`` frames is predicted with (None: the run's ``T``).

        At ``T``: ``windows.test_cover`` / ``test_n_windows`` when set, else the training layout. At another
        length the same step between windows, as many windows as reach the end: a prefix of the layout at ``T``
        for a shorter recording, so every recording's windows line up with the run's arrays.
        """
        own_test = self.test_cover is not None or self.test_n_windows is not None
        layout = window_positions(self.frames, self.window, self.test_cover if own_test else self.cover,
                                  self.test_n_windows if own_test else self.n_windows)
        if frames is None or frames == self.frames:
            return layout
        return window_positions(frames, self.window, self.window - step_of(layout, self.window))


def frames_of(seconds: float, sample_rate: int, hop_length: int) -> int:
    """Centred frames of ``seconds`` of audio: ``1 + samples // hop`` (3751 for 60 s at 32 kHz, hop 512)."""
    return 1 + int(round(seconds * sample_rate)) // hop_length


def step_of(positions: list[list[int]], window: int) -> int:
    """Frames between window starts (the window itself for a single window)."""
    return positions[1][0] - positions[0][0] if len(positions) > 1 else window


def window_counts(lengths: np.ndarray, positions: list[list[int]], frames: int | None = None) -> np.ndarray:
    """``(R,)`` frames -> ``(R,)`` how many of ``positions`` (a layout from frame 0) each recording needs.

    A recording of ``L`` frames needs the windows that :func:`window_positions` gives at ``L`` with the layout's
    step: one when ``L <= window``, else ``1 + ceil((L - window) / step)``, at most the layout's. A recording
    as long as the layout's own ``frames`` has all of them (``n_windows`` may place more than reaching needs).
    """
    width = positions[0][1] - positions[0][0]
    step = step_of(positions, width)
    lengths = np.asarray(lengths, dtype=np.int64)
    need = 1 + np.ceil(np.maximum(lengths - width, 0) / step).astype(np.int64)
    if frames is not None:
        need = np.where(lengths >= frames, len(positions), need)
    return np.minimum(need, len(positions))


def window_mask(lengths: np.ndarray, positions: list[list[int]], frames: int | None = None) -> np.ndarray:
    """``(R, N)`` bool: the windows each recording has (False: past its end, padding only)."""
    return np.arange(len(positions))[None, :] < window_counts(lengths, positions, frames)[:, None]


def rfcx_grid() -> Grid:
    """The method post's grid: 60 s at 32 kHz, hop 512 (128 x 3751, Theo Viel's arrays), 8 windows of 512 frames
    with 49 frames of cover: the grid of window predictions made elsewhere for the competition."""
    from rfcx_kit.core.config import Config, FeatureConfig

    return Grid.of(Config(features=FeatureConfig(seconds=SECONDS)))
