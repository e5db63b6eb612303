"""Framewise labels: TP/FP boxes on the feature frames, and the window-level labels derived from them.

Frame ``f`` is centred at ``f * hop / sr`` seconds (centred STFT). A box covers the frames whose centre
lies in ``[t_min, t_max]``: ``first = ceil(t_min * sr / hop)``, ``last = floor(t_max * sr / hop)``; a box
too short to hold a frame centre gets the frame nearest its middle. In the grid, +1 marks TP, -1 FP and
0 unknown; TP wins where a TP and an FP box of the same species overlap.

A window is positive for a species if any of its frames is TP, negative if any is FP (and none TP),
unknown otherwise (the method post's masked loss).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rfcx_kit.core.grid import rfcx_grid
from rfcx_kit.core.species import infer_species
from rfcx_kit.data.window import split_windows


# Box edges in train_tp/train_fp often sit exactly on a frame centre (2446 of 8997 real t_min values are
# multiples of 16 ms). t * sr / hop then lands a rounding error above or below the integer, and a bare
# ceil/floor would move the edge by a whole frame; snapping within 1e-6 frames keeps [t_min, t_max] exact.
_FRAME_EPS = 1e-6
_RFCX = rfcx_grid()  # the defaults: the method post's grid (60 s at 32 kHz, hop 512: 3751 frames)


def box_frames(t_min: np.ndarray, t_max: np.ndarray, sample_rate: int = _RFCX.sample_rate,
               hop_length: int = _RFCX.hop_length, frames: int | np.ndarray = _RFCX.frames) -> tuple[np.ndarray, np.ndarray]:
    """``[first, stop)`` frame ranges of boxes given in seconds: two ``(M,)`` int64 arrays.

    ``first = ceil(t_min * sr / hop)``, ``stop = floor(t_max * sr / hop) + 1``; a box too short to hold a
    frame centre covers the frame nearest its middle (rounding half up). Clipped to the recording (``frames``:
    one length, or each box's recording's ``(M,)``); a box wholly past the end covers nothing (``stop <= first``).
    """
    scale = sample_rate / hop_length
    lo = np.asarray(t_min, dtype=np.float64) * scale
    hi = np.asarray(t_max, dtype=np.float64) * scale
    first = np.ceil(lo - _FRAME_EPS).astype(np.int64)
    last = np.floor(hi + _FRAME_EPS).astype(np.int64)
    nearest = np.floor((lo + hi) / 2 + 0.5).astype(np.int64)
    short = last < first
    first = np.where(short, nearest, first)
    last = np.where(short, nearest, last)
    return np.maximum(first, 0), np.minimum(last, frames - 1) + 1


class FramewiseLabels:
    """TP/FP boxes of a set of recordings, indexed for fast grids and window labels.

    Args:
        boxes: columns ``recording_id, species_id, t_min, t_max, label`` (+1 TP / -1 FP); ``f_min`` and
            ``f_max`` are kept when present (the box's band, for band-aware uses).
        recording_ids: row order of every output.
        frames, sample_rate, hop_length: the grid (``core/grid.Grid``): ``frames`` is the width ``T`` of the grids.
        n_species: ``K``, the species axis of every output (None: inferred from the ids as a data folder's: the
            competition's 24 when they fit).
        lengths: ``(R,)`` each recording's own frames (None: all ``frames``): boxes and crops stay inside them.
    """

    def __init__(self, boxes: pd.DataFrame, recording_ids: list[str], frames: int = _RFCX.frames,
                 sample_rate: int = _RFCX.sample_rate, hop_length: int = _RFCX.hop_length, n_species: int | None = None,
                 lengths: np.ndarray | None = None):
        self.recording_ids = list(recording_ids)
        self.frames = frames
        self.lengths = (np.full(len(self.recording_ids), frames, dtype=np.int64) if lengths is None
                        else np.minimum(np.asarray(lengths, dtype=np.int64), frames))
        self.n_species = int(n_species if n_species is not None
                             else len(infer_species(int(boxes["species_id"].max()) if len(boxes) else 0)))
        index = {rid: i for i, rid in enumerate(self.recording_ids)}
        if "label" in boxes.columns and (boxes["label"] == 0).any():
            # calls of no named species (label 0): they name no species, so they only lift implicit negatives
            unknown = boxes[(boxes["label"] == 0).to_numpy()]
            boxes = boxes[(boxes["label"] != 0).to_numpy()]
            u_rows = unknown["recording_id"].map(index)
            keep = u_rows.notna().to_numpy()
            u_rows = u_rows[keep].astype(np.int64).to_numpy()
            first, stop = box_frames(unknown["t_min"].to_numpy()[keep], unknown["t_max"].to_numpy()[keep],
                                     sample_rate, hop_length, self.lengths[u_rows])
            self.unknown = (u_rows, first, stop)
        else:
            self.unknown = (np.zeros(0, np.int64),) * 3
        rows = boxes["recording_id"].map(index)
        boxes = boxes[rows.notna().to_numpy()]
        rows = rows.dropna().astype(np.int64).to_numpy()
        order = np.argsort(rows, kind="stable")
        self.row = rows[order]
        self.species = boxes["species_id"].to_numpy(np.int64)[order]
        self.label = boxes["label"].to_numpy(np.int8)[order]
        self.first, self.stop = box_frames(boxes["t_min"].to_numpy()[order], boxes["t_max"].to_numpy()[order],
                                           sample_rate, hop_length, self.lengths[self.row])
        self.bands = boxes[["f_min", "f_max"]].to_numpy()[order] if {"f_min", "f_max"} <= set(boxes.columns) else None
        # Loss weight of each box: 1 for verified TP/FP boxes, the pseudo weight for a pseudo-positive box, 0 for a
        # masked one (a BirdCLEF secondary label under data.secondary_target: null). Target of a positive box: 1,
        # or a soft value (a BirdCLEF secondary at data.secondary_target). Missing (NaN, a table without them): 1.
        self.weight = (boxes["weight"].fillna(1.0).to_numpy(np.float32)[order] if "weight" in boxes.columns
                       else np.ones(len(order), dtype=np.float32))
        self.value = (boxes["target"].fillna(1.0).to_numpy(np.float32)[order] if "target" in boxes.columns
                      else np.ones(len(order), dtype=np.float32))
        covers = self.stop > self.first  # a box wholly past its recording's last frame covers nothing
        if not covers.all():
            self.row, self.species, self.label = self.row[covers], self.species[covers], self.label[covers]
            self.first, self.stop, self.weight = self.first[covers], self.stop[covers], self.weight[covers]
            self.value = self.value[covers]
            self.bands = None if self.bands is None else self.bands[covers]
        # The positive boxes a training crop is drawn around: sure ones (target 1, in the loss). A soft or masked
        # clip label (a secondary species) rides on the crops of its recording's primary instead.
        self.anchor = (self.label > 0) & (self.value >= 1) & (self.weight > 0)
        # CSR offsets: boxes of row r are [offsets[r], offsets[r + 1]).
        self.offsets = np.searchsorted(self.row, np.arange(len(self.recording_ids) + 1))

    def grid(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """``(B, K, T)`` int8 framewise labels of the recordings at ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        counts = ends - starts
        box = np.repeat(starts, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        batch = np.repeat(np.arange(len(rows)), counts)
        # Difference arrays: +1 at a box's first frame, -1 after its last; a cumsum marks covered frames.
        cover = np.zeros((2, len(rows), self.n_species, self.frames + 1), dtype=np.int32)
        kind = (self.label[box] < 0).astype(np.int64)  # 0: TP, 1: FP
        np.add.at(cover, (kind, batch, self.species[box], self.first[box]), 1)
        np.add.at(cover, (kind, batch, self.species[box], self.stop[box]), -1)
        covered = np.cumsum(cover, axis=-1)[..., : self.frames] > 0
        return np.where(covered[0], 1, np.where(covered[1], -1, 0)).astype(np.int8)

    def windows(self, positions: list[list[int]], rows: np.ndarray | None = None) -> np.ndarray:
        """``(R, N, K)`` int8 window labels (+1 / -1 / 0) for fixed windows, without a dense grid.

        Boxes x windows overlap by broadcasting: memory is O(boxes x windows), not O(R x K x T).
        """
        rows = np.arange(len(self.recording_ids)) if rows is None else np.asarray(rows, dtype=np.int64)
        where = np.full(len(self.recording_ids), -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        pos = np.asarray(positions, dtype=np.int64)
        keep = where[self.row] >= 0
        first, stop = self.first[keep][:, None], self.stop[keep][:, None]
        overlap = (first < pos[None, :, 1]) & (stop > pos[None, :, 0])  # (M, N)
        out = np.zeros((len(rows), len(pos), self.n_species), dtype=np.int8)
        box_i, win_i = np.nonzero(overlap)
        r, s, lab = where[self.row[keep]][box_i], self.species[keep][box_i], self.label[keep][box_i]
        fp = lab < 0
        out[r[fp], win_i[fp], s[fp]] = -1
        out[r[~fp], win_i[~fp], s[~fp]] = 1  # written last: TP wins
        return out

    def _overlaps(self, rows: np.ndarray, starts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(crop, box)`` index pairs of every box that overlaps crop ``[start, start + width)`` of its row.

        Each crop is tested against its own recording's boxes only (the CSR offsets): O(crops x boxes per
        recording), never a dense grid.
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        lo, counts = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        crop = np.repeat(np.arange(len(rows)), counts)
        box = np.repeat(lo, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        start = starts[crop]
        hit = (self.first[box] < start + width) & (self.stop[box] > start)
        return crop[hit], box[hit]

    def crops(self, rows: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
        """``(B, K)`` int8 labels of arbitrary crops ``[start, start + width)`` of the recordings at ``rows``.

        Each crop is tested against its own recording's boxes only (the CSR offsets): memory and time are
        O(crops x boxes per recording), not a dense ``(B, K, T)`` grid per epoch. Equals reducing the crop's
        frames of :meth:`grid` (tested).
        """
        crop, box = self._overlaps(rows, starts, width)
        out = np.zeros((len(rows), self.n_species), dtype=np.int8)
        fp = self.label[box] < 0
        out[crop[fp], self.species[box[fp]]] = -1
        out[crop[~fp], self.species[box[~fp]]] = 1  # written last: TP wins
        return out


    def crop_targets(self, rows: np.ndarray, starts: np.ndarray, width: int,
                     unlabeled_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Loss targets and weights ``(B, K)`` float32 of crops ``[start, start + width)``.

        A species is a positive where a positive box overlaps the crop: target the largest of those boxes' targets
        (1, or a soft clip label's value), weight the largest of their weights (1 for a TP box, the pseudo weight for a
        pseudo-positive box, 0 for a masked one: out of the loss); else a negative of weight 1
        where an FP box overlaps; else an *implicit* negative (target 0) of weight ``unlabeled_weight``: nobody
        looked there, so a 0 is a guess (1.0 is the post's clipwise BCE, where every unlabelled species is 0); and
        weight 0 where a box of no named species (label 0, ``train_unknown.csv``) overlaps the crop: something
        called there, and it may be any species.
        """
        crop, box = self._overlaps(rows, starts, width)
        positive = np.zeros((len(rows), self.n_species), dtype=np.float32)  # largest positive-box weight
        value = np.zeros((len(rows), self.n_species), dtype=np.float32)  # largest positive-box target
        has = np.zeros((len(rows), self.n_species), dtype=bool)
        negative = np.zeros((len(rows), self.n_species), dtype=bool)
        pos = self.label[box] > 0
        cells = (crop[pos], self.species[box[pos]])
        np.maximum.at(positive, cells, self.weight[box[pos]])
        np.maximum.at(value, cells, self.value[box[pos]])
        has[cells] = True
        negative[crop[~pos], self.species[box[~pos]]] = True
        target = np.where(has, value, np.float32(0.0)).astype(np.float32)
        implicit = np.full((len(rows), 1), np.float32(unlabeled_weight))
        if len(self.unknown[0]):  # a crop over a call of no named species: no species is an implicit negative there
            u_row, u_first, u_stop = self.unknown
            rows, starts = np.asarray(rows, dtype=np.int64), np.asarray(starts, dtype=np.int64)
            hit = ((u_row[None, :] == rows[:, None]) & (u_first[None, :] < starts[:, None] + width)
                   & (u_stop[None, :] > starts[:, None])).any(axis=1)
            implicit = np.where(hit[:, None], np.float32(0.0), implicit)
        weight = np.where(has, positive, np.where(negative, np.float32(1.0), implicit))
        return target, weight.astype(np.float32)


def reduce_window_labels(window: np.ndarray) -> np.ndarray:
    """``(..., K, W)`` framewise labels -> ``(..., K)``: +1 if any TP frame, else -1 if any FP frame."""
    positive = (window == 1).any(axis=-1)
    negative = (window == -1).any(axis=-1)
    return np.where(positive, 1, np.where(negative, -1, 0)).astype(np.int8)


def window_labels_from_grid(grid: np.ndarray, positions: list[list[int]]) -> np.ndarray:
    """``(R, K, T)`` grid -> ``(R, N, K)`` window labels through :func:`split_windows` (reference path)."""
    split = split_windows(torch.from_numpy(grid), positions).numpy()  # (N*R, K, W), window-major
    labels = reduce_window_labels(split).reshape(len(positions), grid.shape[0], grid.shape[1])
    return labels.transpose(1, 0, 2)
