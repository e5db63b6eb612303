"""Call-level detections: events from the SED head's framewise output.

The framewise sigmoid of every window, stitched by max over the windows that cover a frame and averaged over the
folds, is a ``(K, T)`` timeline per recording. An event is a run of frames at or above ``min_conf`` for one
species; runs closer than ``gap`` frames merge (a call's dip between syllables), and runs shorter than
``min_frames`` are dropped. Its confidence is the timeline's peak inside it. Frame ``i`` is centred at
``i * hop_s``, so an event of frames ``[a, b)`` spans ``(a - 0.5) * hop_s`` to ``(b - 0.5) * hop_s``, clipped to
the recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Events:
    """``M`` events: ``species (M,)``, frames ``[first, stop)`` and ``confidence (M,)`` (the peak inside)."""

    species: np.ndarray
    first: np.ndarray
    stop: np.ndarray
    confidence: np.ndarray

    def seconds(self, hop_s: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """``(begin, end)`` in seconds, each ``(M,)``, inside ``[0, duration]``."""
        begin = np.clip((self.first - 0.5) * hop_s, 0.0, duration)
        end = np.clip((self.stop - 0.5) * hop_s, 0.0, duration)
        return begin, end


def detect_events(timeline: np.ndarray, min_conf: float, gap: int = 0, min_frames: int = 1) -> Events:
    """Events of one recording's ``(K, T)`` timeline (probabilities), in species then time order.

    Args:
        min_conf: a frame belongs to an event when its probability is at least this.
        gap: runs of one species separated by at most this many frames below ``min_conf`` merge into one event.
        min_frames: events shorter than this (after merging) are dropped.
    """
    k, t = timeline.shape
    above = np.nan_to_num(timeline, nan=-1.0) >= min_conf
    # runs of True along each row: +1 where one starts, -1 one frame past where it ends (a False column on both
    # sides keeps runs of different species apart in the flattened array)
    padded = np.zeros((k, t + 2), dtype=np.int8)
    padded[:, 1:-1] = above
    edges = np.diff(padded, axis=1)  # (K, T + 1)
    s_row, first = np.nonzero(edges == 1)
    e_row, stop = np.nonzero(edges == -1)  # same order as the starts: row-major, runs alternate
    if gap > 0 and len(first) > 1:
        # merge a run into the one before it when they are of one species and at most `gap` frames apart
        joins = (s_row[1:] == s_row[:-1]) & (first[1:] - stop[:-1] <= gap)
        keep_start = np.concatenate([[True], ~joins])
        keep_stop = np.concatenate([~joins, [True]])
        s_row, first, stop = s_row[keep_start], first[keep_start], stop[keep_stop]
    long_enough = stop - first >= max(int(min_frames), 1)
    s_row, first, stop = s_row[long_enough], first[long_enough], stop[long_enough]
    if not len(first):
        return Events(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    flat = np.nan_to_num(timeline, nan=-1.0).astype(np.float64).reshape(-1)
    bounds = np.stack([s_row * t + first, s_row * t + stop], axis=1).reshape(-1)
    peak = np.maximum.reduceat(np.append(flat, -1.0), bounds)[::2]  # the max of each [first, stop)
    return Events(s_row.astype(np.int64), first.astype(np.int64), stop.astype(np.int64), peak)


@dataclass(frozen=True)
class EventRule:
    """How a framewise timeline becomes events (``method/events.py``): the level, the merge gap and the shortest
    event, in seconds."""

    min_conf: float
    gap_s: float
    min_length_s: float

    def frames(self, hop_s: float) -> tuple[int, int]:
        """``(gap, min_frames)`` on a grid of ``hop_s`` seconds per frame."""
        return int(round(self.gap_s / hop_s)), max(1, int(round(self.min_length_s / hop_s)))


def row_scores(timeline: np.ndarray, hop_s: float, duration: float, row_seconds: float = 5.0) -> np.ndarray:
    """Fixed-length rows of one recording (BirdCLEF's 5-second rows): ``(R, K)``, each row the max of the ``(K, T)``
    framewise timeline over the frames whose centres fall in it, soft frame-wise prediction within the row.

    Row ``i`` covers ``[i * row_seconds, (i + 1) * row_seconds)``; there are ``ceil(duration / row_seconds)`` rows (a
    last, shorter one included). Frame ``t`` is centred at ``t * hop_s``. A row no frame centre falls in (rows
    shorter than a hop) takes the nearest frame's values.
    """
    k, frames = timeline.shape
    n_rows = max(1, int(np.ceil(round(duration / row_seconds, 9))))
    row_of_frame = np.minimum((np.arange(frames) * hop_s / row_seconds).astype(np.int64), n_rows - 1)
    out = np.full((n_rows, k), -np.inf, dtype=np.float64)
    np.maximum.at(out, row_of_frame, timeline.T.astype(np.float64))  # one vectorised max per (row, species)
    empty = ~np.isfinite(out[:, 0])
    if empty.any():
        nearest = np.minimum(np.round((np.flatnonzero(empty) + 0.5) * row_seconds / hop_s).astype(np.int64), frames - 1)
        out[empty] = timeline[:, nearest].T
    return out


def row_ids(recording_id: str, n_rows: int, row_seconds: float = 5.0) -> list[str]:
    """BirdCLEF's row ids of a recording's rows: ``<recording>_<end second>`` (``soundscape_1234_5``, ``..._10``)."""
    return [f"{recording_id}_{(i + 1) * row_seconds:g}" for i in range(n_rows)]


def framewise_rows(framewise: np.ndarray, pool: int, frame_seconds: float, frames: int, row_seconds: float = 5.0,
                   duration: float | None = None) -> np.ndarray:
    """Rows of one recording from its pooled framewise timeline (a stage's saved ``(K, S)``, ``pool`` frames per
    segment): each frame takes its segment's value, then :func:`row_scores` over the recording's ``frames``.
    ``duration``: the recording's seconds (None: its last frame's centre). Returns ``(R, K)``."""
    timeline = np.repeat(np.asarray(framewise, dtype=np.float32), pool, axis=1)[:, :frames]
    seconds = duration if duration is not None else (frames - 1) * frame_seconds
    return row_scores(timeline, frame_seconds, seconds, row_seconds)
