"""Pseudo-labels: the loop's one design, window scores -> the labels and boxes a re-labeling cycle trains on.

A cycle (``method/cycle.py``) scores every window of every train recording with the previous stage's fold models
and calls a window/species a *pseudo-positive* where nobody labelled it (no TP or FP box of the species in it)
and at least ``relabel.votes`` models (one, the out-of-fold model, with ``source: oof``) score above the species'
threshold (:func:`window_thresholds`: fixed, or the ``tp_quantile`` of its own TP windows). At most
``max_pseudo_per_tp`` per TP box of a species are kept, the highest first (:func:`cap_per_species`), and each
becomes a box at its peak segment of the framewise timeline (:func:`peak_boxes`). Original TP/FP labels are never
overwritten. Pseudo-negatives (every score below a low threshold) exist for ``labels from-oof`` and are off in
the loop: they hurt in the competition.

The label table (``STAGE/labels.csv``) has one row per known (recording, window, species)::

    recording_id,window,species_id,source,weight

``source`` is ``tp``, ``fp``, ``pseudo_positive`` or ``pseudo_negative``; ``weight`` the loss weight (1.0 for
originals, ``relabel.pseudo_weight`` for pseudo-labels). A cell without a row is unknown.

Shapes: ``R`` recordings, ``N`` windows per recording, ``K`` species, ``F`` fold models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.scale import detect_scale, to_prob
from rfcx_kit.core.species import Species, infer_species
from rfcx_kit.data.reader import PSEUDO_BOX_COLUMNS

TABLE_COLUMNS = ["recording_id", "window", "species_id", "source", "weight"]
# Index = code used in the (R, N, K) source array of build_label_table; 0 means unknown (no row).
SOURCES = ("tp", "fp", "pseudo_positive", "pseudo_negative")
_SOURCE_CODE = {name: code for code, name in enumerate(SOURCES, start=1)}


def _n_species(n_species: int | None, *species_ids: np.ndarray) -> int:
    """``K``: as given, else inferred from the largest id as a data folder's (the competition's 24 when they fit)."""
    if n_species is not None:
        return int(n_species)
    top = max((int(np.max(s)) for s in species_ids if len(s)), default=0)
    return len(infer_species(top))


# --------------------------------------------------------------------------------------------------
# Predictions -> pseudo-labels
# --------------------------------------------------------------------------------------------------
def species_threshold_array(
    threshold: float | np.ndarray = 0.5, species_thresholds: dict[int, float] | None = None,
    n_species: int | None = None,
) -> np.ndarray:
    """``(K,)`` float64 thresholds: ``threshold`` (scalar or ``(K,)``) with ``species_thresholds`` overrides.

    ``K``: ``n_species``, else the length of an array ``threshold``, else the competition's."""
    given = np.asarray(threshold, dtype=np.float64)
    k = n_species if n_species is not None else (given.shape[-1] if given.ndim else len(Species.rfcx()))
    out = np.broadcast_to(given, (k,)).copy()
    for species, value in (species_thresholds or {}).items():
        if not 0 <= int(species) < k or int(species) != species:
            raise ValueError(f"species_thresholds: species {species!r} is not in 0..{k - 1}")
        out[int(species)] = value
    if not np.all((out >= 0) & (out <= 1)):
        raise ValueError(f"thresholds are probabilities and must lie in [0, 1]: {out.tolist()}")
    return out


def _fold_axis(preds: np.ndarray) -> np.ndarray:
    """``(R, N, K)`` -> ``(1, R, N, K)``; ``(F, R, N, K)`` unchanged; anything else is an error."""
    p = np.asarray(preds)
    if p.ndim not in (3, 4):
        raise ValueError(f"preds must be (R, N, K) or (F, R, N, K), got {p.shape}")
    return p[None] if p.ndim == 3 else p


def _resolve_votes(n_models: int, votes: int | None) -> int:
    """Votes needed out of ``n_models``: default one for a single (OOF) prediction, else a majority."""
    if votes is None:
        return n_models // 2 + 1  # 1 of 1; 3 of 5 as the post's team did
    if not 1 <= votes <= n_models:
        raise ValueError(f"votes must be in 1..{n_models} (the number of fold models), got {votes}")
    return int(votes)


def pseudo_positive_mask(
    preds: np.ndarray, threshold: float | np.ndarray = 0.5, votes: int | None = None
) -> np.ndarray:
    """Where the predictions call a pseudo-positive.

    Args:
        preds: probabilities, ``(R, N, K)`` out-of-fold (one vote per window) or ``(F, R, N, K)`` from
            ``F`` fold models.
        threshold: scalar or ``(K,)`` per species; a vote is ``p > threshold`` (strictly above).
        votes: how many of the ``F`` models must vote; default a majority (``F // 2 + 1``: 3 of 5,
            1 of 1 for out-of-fold predictions).
    Returns:
        ``(R, N, K)`` bool. NaN never votes. Original labels are not considered here (see
        :func:`build_label_table`).
    """
    p = _fold_axis(preds)
    need = _resolve_votes(p.shape[0], votes)
    thr = species_threshold_array(threshold, None, p.shape[-1])
    return (p > thr).sum(axis=0) >= need


def pseudo_negative_mask(preds: np.ndarray, negative_threshold: float | np.ndarray) -> np.ndarray:
    """``(R, N, K)`` bool: every prediction (all ``F`` models, or the single OOF one) below the threshold."""
    p = _fold_axis(preds)
    thr = species_threshold_array(negative_threshold, None, p.shape[-1])
    return (p < thr).all(axis=0)


def build_label_table(
    recording_ids: Sequence[str],
    original: np.ndarray,
    preds: np.ndarray,
    threshold: float | np.ndarray = 0.5,
    votes: int | None = None,
    species_thresholds: dict[int, float] | None = None,
    pseudo_weight: float = 1.0,
    negative_threshold: float | None = None,
    scale: str = "prob",
    max_per_species: np.ndarray | None = None,
) -> pd.DataFrame:
    """The label table of one cycle: originals plus pseudo-labels.

    Args:
        recording_ids: the ``R`` recordings, in the row order of ``original`` and ``preds``.
        original: ``(R, N, K)`` int8 from :func:`original_window_labels` (+1 TP, -1 FP, 0 unknown).
        preds: ``(R, N, K)`` out-of-fold or ``(F, R, N, K)`` fold-model predictions, on ``scale``
            (``"prob"``, ``"logit"`` or ``"auto"``); thresholds apply to probabilities.
        threshold, votes: see :func:`pseudo_positive_mask`; ``species_thresholds`` ({species: threshold})
            overrides ``threshold`` per species.
        pseudo_weight: loss weight of pseudo-labels (e.g. 0.5 for soft positives); originals weigh 1.
        negative_threshold: if given, an unknown window/species whose predictions are all below it (and
            that is not a pseudo-positive) becomes a pseudo-negative. Off by default (hurt in the post).
        max_per_species: ``(K,)`` at most this many pseudo-positive cells per species, those with the highest
            mean probability over the models (ties: the first in table order). None: no cap.
    Returns:
        DataFrame ``recording_id, window, species_id, source, weight`` (one row per known entry), sorted by
        the given recording order, then window, then species. Pseudo-labels only fill unknown entries.
    """
    ids = np.asarray(recording_ids, dtype=object)
    original = np.asarray(original)
    k = np.shape(preds)[-1]
    if original.ndim != 3 or original.shape != (len(ids), original.shape[1], k):
        raise ValueError(f"original must be (R={len(ids)}, N, K={k}) as the predictions, got {original.shape}")
    if not np.isin(original, (-1, 0, 1)).all():
        raise ValueError("original labels must be +1 (TP), -1 (FP) or 0 (unknown)")
    if len(pd.unique(ids)) != len(ids):
        raise ValueError("recording_ids must be unique")
    if scale == "prob" and detect_scale(preds) == "logit":
        # Thresholding logits as if they were probabilities would make nearly every entry positive.
        raise ValueError("scale='prob' but some predictions lie outside [0, 1]: pass scale='logit' or 'auto'")
    probs = _fold_axis(to_prob(preds, scale))
    if probs.shape[1:] != original.shape:
        raise ValueError(f"preds {np.shape(preds)} do not match original {original.shape}")
    if np.isinf(probs).any():  # NaN is a window past its recording's end (predict.py): it never votes
        raise DataError("predictions hold infinite values")
    if not (math.isfinite(pseudo_weight) and pseudo_weight > 0):
        raise ValueError(f"pseudo_weight must be a positive number (0 would mean unknown), got {pseudo_weight}")

    unknown = original == 0
    positive = pseudo_positive_mask(probs, species_threshold_array(threshold, species_thresholds, k), votes)
    positive &= unknown  # never overwrite an original TP/FP
    if max_per_species is not None:
        positive = cap_per_species(positive, probs.mean(axis=0), max_per_species)
    code = np.zeros(original.shape, dtype=np.int8)
    code[original == 1] = _SOURCE_CODE["tp"]
    code[original == -1] = _SOURCE_CODE["fp"]
    code[positive] = _SOURCE_CODE["pseudo_positive"]
    if negative_threshold is not None:
        negative = pseudo_negative_mask(probs, negative_threshold) & unknown & ~positive
        code[negative] = _SOURCE_CODE["pseudo_negative"]

    # np.nonzero walks C order: recording, then window, then species -- the table's sort order.
    r, n, s = np.nonzero(code)
    c = code[r, n, s]
    source = np.array(("",) + SOURCES, dtype=object)
    weight = np.array([0.0, 1.0, 1.0, pseudo_weight, pseudo_weight])
    return pd.DataFrame({
        "recording_id": ids[r].astype(str),
        "window": n.astype(np.int64),
        "species_id": s.astype(np.int64),
        "source": source[c],
        "weight": weight[c],
    })


def cap_per_species(mask: np.ndarray, scores: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Keep at most ``cap[s]`` cells of each species ``s`` of ``mask``, the highest ``scores`` first.

    Args:
        mask: ``(R, N, K)`` bool; scores: ``(R, N, K)``; cap: ``(K,)`` integers >= 0.
    Returns:
        ``(R, N, K)`` bool, a subset of ``mask``. Ties keep the first cells in (recording, window) order.
    """
    cap = np.asarray(cap, dtype=np.int64)
    r, n, s = np.nonzero(mask)
    if not len(r):
        return mask
    # one stable sort by (species, -score): each cell's rank within its species, no loop over cells
    order = np.lexsort((-scores[r, n, s], s))
    first_of_species = np.searchsorted(s[order], s[order], side="left")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first_of_species
    keep = rank < cap[s]
    out = np.zeros_like(mask)
    out[r[keep], n[keep], s[keep]] = True
    return out


def peak_boxes(table: pd.DataFrame, timeline: np.ndarray, recording_ids: Sequence[str],
               positions: Sequence[Sequence[int]], pool: int, frame_seconds: float, seconds: float) -> pd.DataFrame:
    """One box per pseudo-positive window: the window's segment where the species' framewise score peaks.

    A window says *that* a species calls somewhere in its 8 s; the peak segment says *where*, so the cycle can
    train on crops around it as stage 1 trains on crops around TP boxes.

    Args:
        table: label rows (``recording_id, window, species_id, weight``) of the pseudo-positives.
        timeline: ``(R, K, S)`` framewise scores pooled to ``pool`` frames (max over the fold models' mean).
        positions: the ``N`` windows as ``[start, end)`` frames.
        frame_seconds: seconds per frame (hop / rate); seconds: the recording's length (boxes end inside it).
    Returns:
        ``recording_id, species_id, t_min, t_max, weight, score`` (score: the peak), in the table's order.
    """
    columns = PSEUDO_BOX_COLUMNS
    if not len(table):
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(columns, (str, np.int64, float, float, float, float))})
    index = pd.Index(np.asarray(recording_ids, dtype=object))
    r = index.get_indexer(table["recording_id"].astype(str))
    n = table["window"].to_numpy(np.int64)
    s = table["species_id"].to_numpy(np.int64)
    pos = np.asarray(positions, dtype=np.int64)
    n_seg = timeline.shape[-1]
    first = pos[n, 0] // pool
    last = np.minimum(-(-pos[n, 1] // pool), n_seg)  # exclusive
    seg = np.arange(n_seg)
    inside = (seg[None, :] >= first[:, None]) & (seg[None, :] < last[:, None])  # (M, S)
    values = np.where(inside, timeline[r, s].astype(np.float64), -np.inf)
    peak = values.argmax(axis=1)
    # the segment, cut to its window (segments and windows need not align) and to the recording (the last
    # segment overhangs the end: 59 segments of 32 frames hold 1,888 of 1,876 frames)
    t_min = np.maximum(peak * pool, pos[n, 0]) * frame_seconds
    t_max = np.minimum(np.minimum((peak + 1) * pool, pos[n, 1]) * frame_seconds, seconds)
    return pd.DataFrame({"recording_id": table["recording_id"].astype(str).to_numpy(), "species_id": s,
                         "t_min": np.round(t_min, 4), "t_max": np.round(t_max, 4),
                         "weight": table["weight"].to_numpy(np.float64), "score": values.max(axis=1)})


def segment_mask(boxes: pd.DataFrame, recording_ids: Sequence[str], segments: int, segment_seconds: float,
                 n_species: int | None = None) -> np.ndarray:
    """``(R, K, S)`` bool: segments (of ``segment_seconds``) that a box of ``boxes`` touches."""
    index = {rid: i for i, rid in enumerate(recording_ids)}
    k = _n_species(n_species, boxes["species_id"].to_numpy())
    out = np.zeros((len(index), k, segments), dtype=bool)
    rows = boxes["recording_id"].map(index)
    keep = rows.notna().to_numpy()
    if not keep.any():
        return out
    r = rows[keep].astype(np.int64).to_numpy()
    s = boxes["species_id"].to_numpy(np.int64)[keep]
    lo = np.clip(np.floor(boxes["t_min"].to_numpy(np.float64)[keep] / segment_seconds).astype(np.int64), 0, segments)
    hi = np.clip(np.floor(boxes["t_max"].to_numpy(np.float64)[keep] / segment_seconds).astype(np.int64) + 1, 0, segments)
    diff = np.zeros((len(index), k, segments + 1), dtype=np.int32)
    np.add.at(diff, (r, s, lo), 1)
    np.add.at(diff, (r, s, hi), -1)
    return np.cumsum(diff, axis=-1)[..., :segments] > 0


def box_peaks(frames: np.ndarray, boxes: pd.DataFrame, recording_ids: Sequence[str],
              segment_seconds: float) -> np.ndarray:
    """Largest framewise score inside each box: ``(M,)`` float64 (NaN for a box of another recording).

    Args:
        frames: ``(R, 24, S)`` framewise scores (segments of ``segment_seconds``).
        boxes: ``recording_id, species_id, t_min, t_max``.
    """
    index = pd.Index(np.asarray(recording_ids, dtype=object))
    rows = index.get_indexer(boxes["recording_id"].astype(str))
    s_total = frames.shape[-1]
    lo = np.clip(np.floor(boxes["t_min"].to_numpy(np.float64) / segment_seconds).astype(np.int64), 0, s_total - 1)
    hi = np.clip(np.floor(boxes["t_max"].to_numpy(np.float64) / segment_seconds).astype(np.int64) + 1, lo + 1, s_total)
    # max over [lo, hi) per box without a Python loop over segments: mask the box's segments, then max.
    seg = np.arange(s_total)
    inside = (seg[None, :] >= lo[:, None]) & (seg[None, :] < hi[:, None])
    safe = np.where(rows >= 0, rows, 0)
    values = frames[safe, boxes["species_id"].to_numpy(np.int64)]  # (M, S)
    out = np.where(inside, values, -np.inf).max(axis=1).astype(np.float64)
    out[rows < 0] = np.nan
    return out


def fixed_thresholds(scores: np.ndarray, original: np.ndarray, threshold: float, quantile: float) -> np.ndarray:
    """``fixed``: ``threshold`` for every species (the post: 0.5)."""
    return np.full(scores.shape[-1], float(threshold))


def tp_quantile_thresholds(scores: np.ndarray, original: np.ndarray, threshold: float, quantile: float) -> np.ndarray:
    """``tp_quantile``: per species, the ``quantile`` of the scores of its own TP windows, never below ``threshold``:
    a pseudo-positive must look at least as sure as that share of the verified calls, and the bar follows the
    model's calibration from cycle to cycle. A species without a TP window gets 1.0 (no pseudo-positive)."""
    k = scores.shape[-1]
    out = np.ones(k)
    tp = original == 1
    for s in range(k):  # a loop over the species, not over windows
        v = scores[..., s][tp[..., s]]
        if len(v):
            out[s] = max(float(threshold), float(np.quantile(v, quantile)))
    return out


# THE PSEUDO-LABEL RULES (relabel.threshold_rule): name -> (scores (R, N, K), original (R, N, K), threshold,
# quantile) -> (K,) thresholds. A new rule is a function here, its entry, its name in core/config.py's CHOICES
# (tests/method/test_pseudo.py keeps the two lists equal) and its test.
THRESHOLD_RULES: dict[str, Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]] = {
    "fixed": fixed_thresholds,
    "tp_quantile": tp_quantile_thresholds,
}


def window_thresholds(scores: np.ndarray, original: np.ndarray, rule: str = "fixed", threshold: float = 0.5,
                      quantile: float = 0.5) -> np.ndarray:
    """``(K,)`` thresholds of the window votes by the rule named ``rule`` (:data:`THRESHOLD_RULES`).

    Args:
        scores: ``(R, N, K)`` window probabilities (the mean over the fold models).
        original: ``(R, N, K)`` int8 original window labels (+1 TP).
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}: use one of {', '.join(THRESHOLD_RULES)}")
    return THRESHOLD_RULES[rule](scores, original, threshold, quantile)


def label_counts(table: pd.DataFrame, n_species: int | None = None) -> pd.DataFrame:
    """Rows per species and source: ``K`` rows indexed ``species_id`` = ``s0..s{K-1}``, columns
    ``tp, fp, pseudo_positive, pseudo_negative`` (int64, zeros included)."""
    k = _n_species(n_species, table["species_id"].to_numpy())
    species = pd.Categorical(table["species_id"].astype(np.int64), categories=range(k))
    source = pd.Categorical(table["source"], categories=SOURCES)
    counts = pd.crosstab(species, source, dropna=False).reindex(index=range(k), columns=SOURCES)
    counts = counts.fillna(0).astype(np.int64)
    counts.index = pd.Index(Species.numbered(k).columns, name="species_id")
    counts.columns = pd.Index(list(SOURCES))
    return counts


def read_label_table(path: str | Path) -> pd.DataFrame:
    """Read a label table CSV, keeping recording ids as text (all-digit ids keep their leading zeros)."""
    try:
        table = pd.read_csv(path, dtype={"recording_id": str, "source": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from exc
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; have {list(table.columns)}")
    return table[TABLE_COLUMNS]


