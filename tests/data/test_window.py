"""Sliding windows: the post's positions, one-op splitting equal to the post's loop, merging and stitching."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rfcx_kit.app.data import windows_cmd
from rfcx_kit.core.grid import window_positions
from rfcx_kit.data.window import merge_windows, split_windows, stitch_windows, stitched_max

POST_LIST = [[0, 512], [463, 975], [926, 1438], [1389, 1901], [1852, 2364], [2315, 2827], [2778, 3290], [3241, 3753]]


def post_positions(n_split_img: int, window: int, cover: int) -> list[list[int]]:
    """The post's position loop, verbatim but for its three constants."""
    N_SPLIT_IMG, WINDOW, COVER = n_split_img, window, cover
    slide_img_pos = [[0, WINDOW]]
    for idx in range(1, N_SPLIT_IMG):
        h, t = slide_img_pos[idx - 1][0], slide_img_pos[idx - 1][1]
        h = t - COVER
        t = h + WINDOW
        slide_img_pos.append([h, t])
    return slide_img_pos


def make_post_split_and_padding(slide_img_pos: list[list[int]], WINDOW: int):
    """The post's ``split_and_padding``, verbatim, closed over its globals ``slide_img_pos`` and ``WINDOW``."""

    def split_and_padding(X, y):
        x_lst = []
        y_lst = []
        for h, t in slide_img_pos:
            _X = X[:, :, :, h:t]
            _y = y[:, :, h:t]
            if _X.shape[3] != WINDOW:
                x_pad = torch.zeros(list(_X.shape[:-1]) + [WINDOW - _X.shape[3]])
                _X = torch.cat([_X, x_pad], axis=3)
                y_pad = torch.zeros(list(_y.shape[:-1]) + [WINDOW - _y.shape[2]])
                _y = torch.cat([_y, y_pad], axis=2)
            x_lst.append(_X)
            y_lst.append(_y)

        X = torch.cat(x_lst, axis=0)
        y = torch.cat(y_lst, axis=0)
        return X, y

    return split_and_padding


def test_post_window_list_is_exact():
    """3751 frames, window 512, cover 49 gives exactly the list the post prints (8 windows, last to 3753)."""
    assert window_positions(3751, 512, 49) == POST_LIST
    assert post_positions(8, 512, 49) == POST_LIST  # the copied loop really is the post's


def test_test_time_cover_256_gives_14_windows():
    """The post's test-time layout (cover 256) gives 14 windows stepping by 256, the last reaching the end."""
    pos = window_positions(3751, 512, 256)
    assert len(pos) == 14
    assert pos == post_positions(14, 512, 256)
    assert pos[-1][1] >= 3751 > pos[-2][1]


def test_n_windows_8_is_the_same_layout_as_cover_49():
    """Asking for 8 windows (no cover) finds the smallest stride that reaches the end: the post's list."""
    assert window_positions(3751, 512, cover=None, n_windows=8) == POST_LIST


@pytest.mark.parametrize("frames, window, cover", [(3751, 512, 49), (3751, 512, 256), (3751, 256, 23),
                                                    (975, 512, 49), (300, 512, 49), (1000, 128, 0)])
def test_cover_rule_is_the_smallest_count_reaching_the_end(frames, window, cover):
    """With a cover, windows follow the post's loop and their number is the smallest that reaches the
    last frame: the last window ends at or after ``frames``, the one before ends before it."""
    pos = window_positions(frames, window, cover)
    assert pos == post_positions(len(pos), window, cover)
    assert pos[-1][1] >= frames
    if len(pos) > 1:
        assert pos[-2][1] < frames


@pytest.mark.parametrize("kwargs", [dict(cover=512), dict(cover=-1), dict(cover=None, n_windows=None),
                                    dict(cover=None, n_windows=3), dict(cover=None, n_windows=0)])
def test_impossible_layouts_are_refused(kwargs):
    """Cover outside [0, window), no cover and no count, or too few windows to cover 3751 frames without
    gaps (3 x 512 < 3751) raise ValueError instead of producing a layout with holes."""
    with pytest.raises(ValueError):
        window_positions(3751, 512, **kwargs)


def test_last_window_is_zero_padded():
    """The last post window [3241, 3753) holds frames 3241..3750 and then 2 zero frames; nothing else."""
    x = torch.rand(2, 3, 4, 3751) + 1.0  # strictly positive, so a zero can only be padding
    out = split_windows(x, POST_LIST)
    assert out.shape == (16, 3, 4, 512)
    last = out[7 * 2 : 8 * 2]  # window-major: window 7 of both recordings
    assert torch.equal(last[..., :510], x[..., 3241:3751])
    assert torch.count_nonzero(last[..., 510:]) == 0
    assert bool((out[: 7 * 2] > 0).all())  # earlier windows hold no padding


# (window, cover, frames): the post's layouts, a last window that needs no padding (975, 3751 @ 256/23,
# 370 @ 100/10), a single padded window (frames < window), and cover 0.
SETTINGS = [(512, 49, 3751), (512, 256, 3751), (256, 23, 3751), (512, 49, 975), (100, 10, 370),
            (512, 49, 300), (128, 0, 1000), (64, 63, 200)]


@pytest.mark.parametrize("window, cover, frames", SETTINGS)
def test_split_windows_equals_the_post_split_and_padding(window, cover, frames):
    """On random (B, C, F, T) features and (B, K, T) labels, split_windows gives exactly the tensors of the
    post's loop version (same order, same padding), for layouts with and without a padded last window."""
    torch.manual_seed(window + cover + frames)
    pos = window_positions(frames, window, cover)
    post = make_post_split_and_padding(post_positions(len(pos), window, cover), window)
    X = torch.randn(2, 3, 16, frames)
    y = torch.randint(-1, 2, (2, 24, frames)).float()
    X_post, y_post = post(X, y)
    X_ours, y_ours = split_windows(X, pos), split_windows(y, pos)
    assert X_ours.shape == X_post.shape == (2 * len(pos), 3, 16, window)
    assert y_ours.shape == y_post.shape == (2 * len(pos), 24, window)
    assert torch.equal(X_ours, X_post)
    assert torch.equal(y_ours, y_post)


def test_no_padding_settings_really_need_none():
    """Guard for the parametrisation above: some settings end exactly on the last frame, some pad."""
    ends = {(w, c, f): window_positions(f, w, c)[-1][1] - f for w, c, f in SETTINGS}
    assert ends[(256, 23, 3751)] == 0 and ends[(512, 49, 975)] == 0 and ends[(100, 10, 370)] == 0
    assert ends[(512, 49, 3751)] == 2 and ends[(512, 256, 3751)] == 89


@pytest.mark.parametrize("window, cover, frames", [(512, 49, 3751), (100, 10, 370)])
def test_merge_windows_inverts_the_batch_flattening(window, cover, frames):
    """merge_windows(split_windows(x)) is (B, N, ..., W) with [b, n] equal to window n of recording b."""
    pos = window_positions(frames, window, cover)
    x = torch.randn(3, 5, frames)
    merged = merge_windows(split_windows(x, pos), len(pos))
    assert merged.shape == (3, len(pos), 5, window)
    for b in range(3):
        for n, (h, t) in enumerate(pos):
            part = x[b, :, h:t]
            assert torch.equal(merged[b, n, :, : part.shape[-1]], part)
            assert torch.count_nonzero(merged[b, n, :, part.shape[-1]:]) == 0


@pytest.mark.parametrize("window, cover, frames", [(512, 49, 3751), (512, 256, 3751), (10, 3, 45), (10, 0, 40)])
def test_stitched_max_is_max_over_windows_of_max_over_time(window, cover, frames):
    """Per frame, stitched_max is the max over the windows covering it; hence its max over time equals the
    post's prediction (max over windows of each window's max over its in-recording frames)."""
    torch.manual_seed(frames)
    pos = window_positions(frames, window, cover)
    y = torch.rand(2, len(pos), 3, window)
    out = stitched_max(y, pos, frames)
    assert out.shape == (2, 3, frames)
    per_window = torch.stack([y[:, n, :, : min(t, frames) - h].amax(-1) for n, (h, t) in enumerate(pos)])
    assert torch.equal(out.amax(-1), per_window.amax(0))
    if frames <= 45:  # brute force per frame on the small layouts
        for f in range(frames):
            covering = [y[:, n, :, f - h] for n, (h, t) in enumerate(pos) if h <= f < t]
            assert torch.equal(out[..., f], torch.stack(covering).amax(0))
    full = stitched_max(y, pos, pos[-1][1])  # keeping the padded frames: plain max over windows and time
    assert torch.equal(full.amax(-1), y.amax(dim=(1, 3)))


@pytest.mark.parametrize("window, cover, frames", [(512, 49, 3751), (10, 3, 45), (10, 0, 40)])
def test_stitch_windows_is_the_mean_of_covering_windows(window, cover, frames):
    """Constant input stitches to the same constant; random input stitches to the per-frame mean of the
    windows that cover each frame (brute force on a small layout)."""
    pos = window_positions(frames, window, cover)
    const = torch.full((2, len(pos), 3, window), 0.37)
    out = stitch_windows(const, pos, frames)
    assert out.shape == (2, 3, frames)
    assert torch.allclose(out, torch.full_like(out, 0.37))
    if frames <= 45:
        y = torch.rand(2, len(pos), 3, window, dtype=torch.float64)
        out = stitch_windows(y, pos, frames)
        for f in range(frames):
            covering = [y[:, n, :, f - h] for n, (h, t) in enumerate(pos) if h <= f < t]
            assert torch.allclose(out[..., f], torch.stack(covering).mean(0))


def _rfcx_kit() -> list[str]:
    script = Path(sys.executable).parent / "rfcx-kit"
    return [str(script)] if script.exists() else [shutil.which("rfcx-kit") or "rfcx-kit"]


def test_windows_command_prints_the_post_list():
    """`rfcx-kit windows` (the installed console script) prints the post's list as JSON, and the printed
    text is exactly how Python prints that list in the post."""
    result = subprocess.run([*_rfcx_kit(), "windows"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == POST_LIST
    assert result.stdout.strip() == str(POST_LIST)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--cover", "256"], window_positions(3751, 512, 256)),
        (["--n-windows", "8"], POST_LIST),
        (["--frames", "370", "--window", "100", "--cover", "10"], [[0, 100], [90, 190], [180, 280], [270, 370]]),
    ],
)
def test_windows_command_options(args, expected):
    """--cover, --n-windows, --frames and --window reach the layout (cover 256 prints the 14 test windows)."""
    result = CliRunner().invoke(windows_cmd, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


def test_windows_command_refuses_a_bad_cover():
    """An impossible setting is a usage error (exit 2) with the reason, not a traceback."""
    result = CliRunner().invoke(windows_cmd, ["--cover", "600"])
    assert result.exit_code == 2
    assert "cover must be in" in result.output
