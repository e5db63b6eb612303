"""Call-level events from a framewise timeline: runs above the level, merged across short gaps, short ones dropped,
each with its peak; seconds from frame centres (hand-computed cases)."""

from __future__ import annotations

import numpy as np
import pytest

from rfcx_kit.method.events import detect_events


def timeline() -> np.ndarray:
    t = np.zeros((3, 20))
    t[0, 2:5] = 0.8
    t[0, 6:9] = 0.9  # one frame after the first run: merges with gap >= 1
    t[0, 15] = 0.6  # a one-frame run
    t[1, 0:3] = 0.7  # touches the start
    t[1, 18:20] = 0.95  # touches the end
    t[2, 4] = np.nan  # a NaN is never above the level
    return t


def test_runs_above_the_level_with_their_peaks() -> None:
    ev = detect_events(timeline(), 0.5)
    assert ev.species.tolist() == [0, 0, 0, 1, 1]
    assert ev.first.tolist() == [2, 6, 15, 0, 18] and ev.stop.tolist() == [5, 9, 16, 3, 20]
    assert ev.confidence.tolist() == pytest.approx([0.8, 0.9, 0.6, 0.7, 0.95])


def test_a_gap_merges_and_a_minimum_length_drops() -> None:
    ev = detect_events(timeline(), 0.5, gap=1, min_frames=2)
    assert ev.species.tolist() == [0, 1, 1]
    assert ev.first.tolist() == [2, 0, 18] and ev.stop.tolist() == [9, 3, 20]
    assert ev.confidence.tolist() == pytest.approx([0.9, 0.7, 0.95])
    # runs of different species never merge, however small the gap between them in the flattened array
    t = np.zeros((2, 4))
    t[0, 3] = t[1, 0] = 1.0
    assert detect_events(t, 0.5, gap=10).species.tolist() == [0, 1]


def test_the_level_is_inclusive_and_nothing_above_it_is_no_event() -> None:
    assert len(detect_events(timeline(), 0.95).first) == 1
    assert len(detect_events(np.zeros((2, 5)), 0.5).first) == 0


def test_seconds_are_frame_centres_clipped_to_the_recording() -> None:
    ev = detect_events(timeline(), 0.5)
    begin, end = ev.seconds(hop_s=0.1, duration=1.9)
    assert begin.tolist() == pytest.approx([0.15, 0.55, 1.45, 0.0, 1.75])
    assert end.tolist() == pytest.approx([0.45, 0.85, 1.55, 0.25, 1.9])


def test_rows_take_the_max_of_the_frames_centred_in_them() -> None:
    from rfcx_kit.method.events import row_scores

    hop = 0.5  # frame t centred at t / 2 s
    timeline = np.zeros((2, 23))  # 11 s of frames: 0, 0.5, ..., 11.0
    timeline[0, 3] = 0.9    # 1.5 s: row 0
    timeline[0, 10] = 0.4   # 5.0 s: row 1 (a row is [5, 10))
    timeline[1, 21] = 0.7   # 10.5 s: row 2, the last and shorter one
    rows = row_scores(timeline, hop, duration=11.0, row_seconds=5.0)
    assert rows.shape == (3, 2)
    np.testing.assert_allclose(rows[:, 0], [0.9, 0.4, 0.0])
    np.testing.assert_allclose(rows[:, 1], [0.0, 0.0, 0.7])
    # a row no frame centre falls in takes its nearest frame
    np.testing.assert_allclose(row_scores(np.array([[0.1, 0.8]]), hop_s=2.0, duration=4.0, row_seconds=1.0)[:, 0],
                               [0.1, 0.8, 0.8, 0.8])
