"""``rfcx-kit relabel``: the method post's stage 2, cycle re-labeling, at the level of windows.

Each cycle ``c``:

1. **votes** (:func:`window_scores`): every fold model of the previous stage scores every window of every train
   recording (``source: vote``; ``oof``: only the recording's out-of-fold model); a window's score is its
   clip-wise output (``window_score: clipwise``, the post's re-labeling notebook) or the max of its frame-wise
   output (``framewise``);
2. **pseudo-positive windows** (:func:`make_labels`): an unknown (recording, window, species) cell (no TP or FP
   box of the species in the window) where at least ``votes`` models score above the species' threshold
   (``tp_quantile``: as sure as half its verified TP windows), at most ``max_pseudo_per_tp`` per TP box of the
   species: ``labels.csv``;
3. **boxes** (:func:`rfcx_kit.method.pseudo.peak_boxes`): each pseudo-positive window becomes a box at its peak
   segment of the fold-mean frame-wise timeline, inside the window and the recording: ``pseudo_boxes.csv``;
4. **retraining** exactly as stage 1 trains (a jittered crop around every positive box, TP and pseudo alike, plus
   FP crops; clip-wise BCE with implicit negatives), from stage 1's weights (``init``), then prediction as stage 1.

After the last cycle the loop keeps one stage, chosen on CV LWLRAP against the original labels (never the truth):
``RUN/kept.json``, which ensemble, predict and export use by default. A killed loop resumes at the cycle and
fold it stopped in.

Why this form (docs/method-notes.md, section 9): fold votes over windows give pseudo-positives far more precise
than out-of-fold frame-wise segments (0.90 against 0.38 at similar counts); trained as crops around a box they
carry more than fixed windows do (perfect labels: 0.68 against 0.65 test LWLRAP); and drawn like TP boxes, with
a cap per TP box, they cannot take over the species mix or run away.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rfcx_kit.core.config import Config, ConfigError, apply_overrides, load_saved_config, parse_override, validate_config
from rfcx_kit.core.lock import folder_lock
from rfcx_kit.core.grid import POOL
from rfcx_kit.core.metrics.registry import get_metric
from rfcx_kit.core.errors import RfcxError, StateError
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.data.reader import check_pseudo_boxes, read_pseudo_boxes
from rfcx_kit.core.io import atomic_open, atomic_save_npy, atomic_write_csv, atomic_write_json, atomic_write_text
from rfcx_kit.method.pseudo import (box_peaks, build_label_table, label_counts, peak_boxes, read_label_table,
                                   segment_mask, window_thresholds)
from rfcx_kit.method.run import (Run, check_inputs, config_fingerprint, cycle_stage, file_fingerprint,
                                 format_metrics, previous_stage, read_metrics)
from rfcx_kit.method.checkpoint import build_model, load_checkpoint
from rfcx_kit.method.context import RunContext, check_same_data, load_context
from rfcx_kit.method.predictions import load_prediction, predict_split, save_prediction
from rfcx_kit.method.folds import check_backend
from rfcx_kit.method.stage1 import collect_stage, train_stage

log = logging.getLogger(__name__)

# Changing these after stage 1 would make the cycles incomparable with it (or unreadable).
_FROZEN = ("features.", "windows.", "model.", "train.folds", "train.seed")


def relabel_config(run_dir: Path, overrides: tuple[str, ...]) -> Config:
    """The run's saved config with ``--set`` overrides applied and validated; nothing is saved here (a bad
    value or a refused resume must never reach the run's config.yaml)."""
    for text in overrides:
        if text.split("=", 1)[0].strip().startswith(_FROZEN):
            raise ConfigError(f"{text.split('=', 1)[0]} is fixed by stage 1 and cannot change in re-labeling")
    cfg = load_saved_config(Run(run_dir).config)
    for text in overrides:
        apply_overrides(cfg, parse_override(text))
    validate_config(cfg)
    return cfg


def cycle_inputs(run: Run, cfg: Config, cycle: int, given: Path | None = None) -> dict[str, Any]:
    """What a cycle is made from: the config (less the cycle count), the previous stage's metrics file and, for
    cycle 1 given its pseudo-positive boxes (``given``, else the copy in the run), that file's bytes."""
    inputs = {"config": config_fingerprint(cfg), "previous": file_fingerprint(run.metrics(previous_stage(cycle)))}
    given = given if given is not None else run.given_pseudo_boxes(cycle_stage(cycle))
    if cycle == 1 and given.exists():
        inputs["given_pseudo_boxes"] = file_fingerprint(given)
    return inputs


def given_labels(ctx: RunContext, boxes: pd.DataFrame) -> pd.DataFrame:
    """The label table of boxes given from elsewhere: the TP/FP windows, and a pseudo-positive for every unknown
    window/species a given box overlaps (weight ``relabel.pseudo_weight``; the boxes keep their own for training)."""
    g = ctx.grid
    overlap = FramewiseLabels(boxes.assign(label=np.int8(1)), ctx.train_ids, g.frames, g.sample_rate, g.hop_length,
                              ctx.n_species, ctx.train_frames).windows(ctx.positions)
    return build_label_table(ctx.train_ids, ctx.window_labels, (overlap > 0).astype(np.float64), threshold=0.5,
                             pseudo_weight=ctx.cfg.relabel.pseudo_weight)


def fold_predictions(ctx: RunContext, stage: str) -> list:  # list[Prediction]
    """Every fold model of ``stage`` on all train recordings (``relabel.source=vote``).

    Folds trained without all-train predictions (stage 1 run with ``relabel.source=oof``) are predicted
    now from their best checkpoint and saved, so a later vote needs no recomputation.
    """
    out = []
    for fold in range(ctx.cfg.train.folds):
        path = ctx.run.prediction(stage, fold, "train")
        if not path.exists():
            model = build_model(ctx.cfg, with_weights=False)
            model.load_state_dict(load_checkpoint(ctx.run.checkpoint(stage, fold))["model"])
            device = torch.device("cpu")
            pred = predict_split(model, ctx, "train", np.arange(len(ctx.train_ids)), ctx.positions, device)
            save_prediction(path, pred, ctx.train_ids)
        ids, pred = load_prediction(path)
        if ids != ctx.train_ids:
            raise RfcxError(f"{path}: predictions of other recordings than the run's")
        out.append(pred)
    return out


def truth_windows(ctx: RunContext, split: str = "train") -> np.ndarray | None:
    """``(R, N, K)`` bool: the ``split``'s windows overlapping a planted call (synthetic ``truth/calls.csv``), else
    None."""
    calls = ctx.comp.planted_calls(split)
    if calls is None:
        return None
    g = ctx.grid
    ids, frames = (ctx.train_ids, ctx.train_frames) if split == "train" else (ctx.comp.test_ids, ctx.test_frames)
    labels = FramewiseLabels(calls.assign(label=np.int8(1)), ids, g.frames, g.sample_rate, g.hop_length,
                             ctx.n_species, frames)
    return labels.windows(ctx.positions if split == "train" else ctx.test_positions) == 1


def pseudo_quality(table: pd.DataFrame, ctx: RunContext, truth: np.ndarray | None,
                   split: str = "train") -> dict[str, float]:
    """Precision and recall of the pseudo-positive windows against the planted calls, and the precision chance
    would give.

    precision: share of pseudo-positive (window, species) cells that overlap a planted call;
    recall: share of planted-call cells left unknown by the original labels that became pseudo-positives;
    chance_precision: the precision of as many unknown windows drawn at random per species (the share of a
    species' unknown windows that hold one of its calls, averaged over the pseudo-positives' species);
    lift: precision / chance_precision. A lift near 1 says the pseudo-positives follow the species' base rates,
    not the calls: the model does not yet find calls, whatever the precision.
    """
    pseudo = table[table["source"] == "pseudo_positive"]
    key = "pseudo" if split == "train" else "test_pseudo"  # the test recordings' figures (relabel.test_pseudo)
    out: dict[str, float] = {f"{key}_positives": float(len(pseudo))}
    if truth is None:
        return out
    if split == "train":
        ids, labels, valid = ctx.train_ids, ctx.window_labels, ctx.window_valid
    else:  # nothing in a test recording is labelled
        ids, valid = ctx.comp.test_ids, ctx.test_window_valid
        labels = np.zeros(valid.shape + (ctx.n_species,), dtype=np.int8)
    index = {rid: i for i, rid in enumerate(ids)}
    # int64 explicitly: an empty table (no score above the threshold) would give float indices
    rows = pseudo["recording_id"].map(index).to_numpy(dtype=np.int64)
    species = pseudo["species_id"].to_numpy(dtype=np.int64)
    hit = truth[rows, pseudo["window"].to_numpy(dtype=np.int64), species]
    unknown = (labels == 0) & valid[:, :, None]  # windows past an end are not unknown sound
    unknown_true = truth & unknown
    base_rate = unknown_true.sum(axis=(0, 1)) / np.maximum(1, unknown.sum(axis=(0, 1)))  # (K,)
    nan = float("nan")
    out[f"{key}_precision"] = float(hit.mean()) if len(hit) else nan
    out[f"{key}_recall"] = float(hit.sum() / unknown_true.sum()) if unknown_true.sum() else nan
    out[f"{key}_chance_precision"] = float(base_rate[species].mean()) if len(hit) else nan
    chance = out[f"{key}_chance_precision"]
    out[f"{key}_lift"] = out[f"{key}_precision"] / chance if len(hit) and chance > 0 else nan
    return out


CALIBRATION_BINS = 10  # equal-width bins of the soft label for its reliability table


def soft_quality(soft: np.ndarray, ctx: RunContext, truth: np.ndarray | None,
                 threshold: float = 0.5) -> tuple[dict[str, float], pd.DataFrame | None]:
    """How good a cycle's soft pseudo-labels are, against the planted calls: over the cells a window can be drawn
    with (a finite soft target on an unknown cell of the original labels).

    ``soft_precision``/``soft_recall`` at ``threshold`` (``predict.threshold``); ``soft_auc``: how well the soft
    label ranks true cells over false ones; ``soft_ece``: the expected calibration error, the mean over cells of
    |soft label - the share of true cells among those with a soft label in its bin|; ``soft_true_mean`` and
    ``soft_false_mean``. Returns them and the reliability table (bin, cells, mean soft label, share true), or
    ``({}, None)`` without truth or soft targets.
    """
    if truth is None:
        return {}, None
    from sklearn.metrics import roc_auc_score

    cells = np.isfinite(soft) & (ctx.window_labels == 0)
    value, true = soft[cells].astype(np.float64), truth[cells]
    nan = float("nan")
    if not len(value):
        return {"soft_cells": 0.0}, None
    chosen = value >= threshold
    out = {"soft_cells": float(len(value)), "soft_true_cells": float(true.sum()),
           "soft_precision": float(true[chosen].mean()) if chosen.any() else nan,
           "soft_recall": float(chosen[true].mean()) if true.any() else nan,
           "soft_auc": float(roc_auc_score(true, value)) if 0 < true.sum() < len(true) else nan,
           "soft_true_mean": float(value[true].mean()) if true.any() else nan,
           "soft_false_mean": float(value[~true].mean()) if (~true).any() else nan}
    bins = np.minimum((value * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    count = np.bincount(bins, minlength=CALIBRATION_BINS)
    mean = np.bincount(bins, weights=value, minlength=CALIBRATION_BINS) / np.maximum(count, 1)
    share = np.bincount(bins, weights=true.astype(np.float64), minlength=CALIBRATION_BINS) / np.maximum(count, 1)
    out["soft_ece"] = float(np.sum(count * np.abs(mean - share)) / count.sum())
    table = pd.DataFrame({"bin_low": np.arange(CALIBRATION_BINS) / CALIBRATION_BINS,
                          "bin_high": (np.arange(CALIBRATION_BINS) + 1) / CALIBRATION_BINS, "cells": count,
                          "mean_soft_label": np.where(count > 0, mean, np.nan),
                          "share_true": np.where(count > 0, share, np.nan)})
    return out, table


SEGMENT_POOL = POOL  # framewise timelines are pooled (predict_recordings' pool: core/grid.POOL)


def segment_seconds(ctx: RunContext) -> float:
    return SEGMENT_POOL * ctx.grid.frame_seconds


def box_quality(ctx: RunContext, boxes: pd.DataFrame) -> dict[str, float | None]:
    """``pseudo_boxes`` and, with ``truth/``, ``pseudo_box_precision``: the share of pseudo-positive boxes that
    overlap a planted call of their species."""
    out: dict[str, float | None] = {"pseudo_boxes": float(len(boxes))}
    calls = ctx.comp.planted_calls("train")
    if calls is None:
        return out
    if len(boxes) == 0:
        out["pseudo_box_precision"] = None
        return out
    seg = segment_seconds(ctx)
    planted = segment_mask(calls, ctx.train_ids, -(-ctx.grid.frames // SEGMENT_POOL), seg, ctx.n_species)
    hit = box_peaks(planted.astype(np.float32), boxes, ctx.train_ids, seg)  # 1 where a box touches a call
    out["pseudo_box_precision"] = float(np.mean(hit > 0))
    return out


def window_scores(ctx: RunContext, stage: str, source: str | None = None) -> np.ndarray:
    """``(F, R, N, K)`` window probabilities of ``stage`` that the next cycle's votes count.

    ``relabel.source``: ``vote``: every fold model on every train recording (F = folds); ``oof``: each
    recording's out-of-fold model only (F = 1). ``relabel.window_score``: ``framewise`` (the post's soft
    frame-wise rule inside the window: max over its frames of the framewise sigmoid) or ``clipwise`` (the sigmoid
    of the window's attention-pooled output, what the post's re-labeling notebook used).
    """
    r, run = ctx.cfg.relabel, ctx.run
    source = source or r.source

    def pick(pred) -> np.ndarray:  # noqa: ANN001 - a Prediction
        if r.window_score == "framewise":
            return pred.windows.astype(np.float32)
        return (1.0 / (1.0 + np.exp(-pred.clipwise.astype(np.float64)))).astype(np.float32)

    if source == "vote":
        return np.stack([pick(p) for p in fold_predictions(ctx, stage)])
    out = np.full((len(ctx.train_ids), len(ctx.positions), ctx.n_species), np.nan, dtype=np.float32)
    index = {rid: i for i, rid in enumerate(ctx.train_ids)}
    for fold in range(ctx.cfg.train.folds):
        ids, pred = load_prediction(run.prediction(stage, fold, "val"))
        out[[index[i] for i in ids]] = pick(pred)
    missing = np.isnan(out).all(axis=(1, 2))
    if missing.any():
        raise RfcxError(f"{run.stage(stage)}: {int(missing.sum())} recordings have no out-of-fold prediction "
                        "(train every fold before re-labeling)")
    return out[None]


def test_window_scores(ctx: RunContext, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """Every fold model of ``stage`` on the test recordings: ``(F, T, N, K)`` window probabilities (as
    :func:`window_scores` picks them) and the ``(T, K, S)`` fold-mean framewise timeline the boxes go on."""
    r = ctx.cfg.relabel
    scores, timelines = [], []
    for fold in range(ctx.cfg.train.folds):
        path = ctx.run.prediction(stage, fold, "test")
        ids, pred = load_prediction(path)
        if ids != ctx.comp.test_ids:
            raise RfcxError(f"{path}: predictions of other recordings than the run's test set")
        scores.append(pred.windows.astype(np.float32) if r.window_score == "framewise"
                      else (1.0 / (1.0 + np.exp(-pred.clipwise.astype(np.float64)))).astype(np.float32))
        timelines.append(pred.framewise.astype(np.float32))
    return np.stack(scores), np.mean(timelines, axis=0)


def make_test_labels(ctx: RunContext, cycle: int, thresholds: np.ndarray, cap: np.ndarray | None) -> pd.DataFrame:
    """``relabel.test_pseudo``: the test recordings' pseudo-positive windows (``test_labels.csv``) and their peak
    boxes (``test_pseudo_boxes.csv``), by the train windows' rule: the same thresholds and votes, the cap scaled by
    test / train recordings (``cap``: the train one)."""
    run, stage, r, g = ctx.run, cycle_stage(cycle), ctx.cfg.relabel, ctx.grid
    scores, timeline = test_window_scores(ctx, previous_stage(cycle))
    test_ids = ctx.comp.test_ids
    if cap is not None:
        cap = np.ceil(cap * len(test_ids) / max(1, len(ctx.train_ids))).astype(np.int64)
    unknown = np.zeros(scores.shape[1:], dtype=np.int8)  # nothing in a test recording is labelled
    table = build_label_table(test_ids, unknown, scores, threshold=thresholds, votes=r.votes,
                              pseudo_weight=r.pseudo_weight, max_per_species=cap)
    seconds = ctx.seconds("test")
    boxes = peak_boxes(table, timeline, test_ids, ctx.test_positions, SEGMENT_POOL, g.frame_seconds,
                       seconds.reindex(table["recording_id"].astype(str)).to_numpy())
    atomic_write_csv(run.test_pseudo_boxes(stage), check_pseudo_boxes(boxes, run.test_pseudo_boxes(stage), seconds,
                                                                       ctx.n_species))
    atomic_write_csv(run.test_labels(stage), table)
    log.info("cycle %d: %d pseudo-positive test windows", cycle, len(table))
    return table


def window_timeline(ctx: RunContext, stage: str) -> np.ndarray:
    """``(R, K, S)`` framewise timelines the pseudo boxes are placed on: the fold models' mean (``source: vote``)
    or the out-of-fold ones."""
    if ctx.cfg.relabel.source == "vote":
        return np.mean([p.framewise.astype(np.float32) for p in fold_predictions(ctx, stage)], axis=0)
    return np.load(ctx.run.oof_framewise(stage)).astype(np.float32)


def teacher_targets(ctx: RunContext, stage: str, scores: np.ndarray) -> np.ndarray:
    """``(R, N, K)`` float32 soft targets of the cycle's pseudo-labelled windows (``relabel.soft_share``): the
    teacher's window probabilities (``soft_teacher``: ``oof``, each recording's out-of-fold model; ``mean``, the
    mean of every fold model, ``scores`` ``(F, R, N, K)``) through :func:`sampling.soft_targets`."""
    from rfcx_kit.method.sampling import soft_targets

    r = ctx.cfg.relabel
    teacher = window_scores(ctx, stage, "oof")[0] if r.soft_teacher == "oof" else scores.mean(axis=0)
    drawn = ctx.window_valid[:, :, None]  # past an end: not sound, never drawn
    if r.soft_from == "unlabelled":  # only the recordings without labels (BirdCLEF's soundscapes)
        drawn = drawn & ~ctx.scored[:, None, None]
    teacher = np.where(drawn, teacher, np.nan)
    if not np.isfinite(teacher).any():
        raise RfcxError(f"relabel.soft_from: {r.soft_from}: no train recording has a window to pseudo-label"
                        + (" (every one has labels, as in BirdCLEF 2023, which ships no soundscapes: --set "
                           "relabel.soft_from=all pseudo-labels the focal clips' windows)"
                           if r.soft_from == "unlabelled" else ""))
    return soft_targets(teacher, ctx.window_labels, r.soft_power, r.soft_floor)


def make_labels(ctx: RunContext, cycle: int) -> pd.DataFrame:
    """The cycle's label table (``labels.csv``): the TP/FP windows and the pseudo-positive windows.

    A pseudo-positive is an unknown (recording, window, species) cell (no TP or FP box of the species in the
    window) where at least ``relabel.votes`` of the fold models (1 with ``source: oof``) score above the
    species' threshold; at most ``max_pseudo_per_tp`` cells per TP box of a species are kept, the highest mean
    scores first. Also writes ``label_counts.csv``. Reused as it is on resume.
    """
    run, stage = ctx.run, cycle_stage(cycle)
    r = ctx.cfg.relabel
    soft = r.soft_share > 0
    ready = [run.labels(stage), run.pseudo_boxes(stage)] + [run.soft_targets(stage)] * soft + \
        [run.test_labels(stage), run.test_pseudo_boxes(stage)] * r.test_pseudo
    if all(p.exists() for p in ready):
        return read_label_table(run.labels(stage))
    if cycle == 1 and run.given_pseudo_boxes(stage).exists():  # relabel --pseudo-boxes: made elsewhere
        boxes = read_pseudo_boxes(run.given_pseudo_boxes(stage), ctx.seconds("train"), ctx.n_species)
        table = given_labels(ctx, boxes)
        counts = label_counts(table, ctx.n_species)
        counts["pseudo_boxes"] = np.bincount(boxes["species_id"].to_numpy(np.int64), minlength=ctx.n_species)
        counts["threshold"] = np.nan  # decided where the boxes were made
        atomic_write_csv(run.label_counts(stage), counts, index=True)
        atomic_write_csv(run.pseudo_boxes(stage), boxes)
        atomic_write_csv(run.labels(stage), table)  # written last: its presence marks the labels complete
        log.info("cycle 1: %d given pseudo-positive boxes (%s) over %d windows", len(boxes),
                 run.given_pseudo_boxes(stage), int(counts["pseudo_positive"].sum()))
        return table
    scores = window_scores(ctx, previous_stage(cycle))
    thresholds = window_thresholds(scores.mean(axis=0), ctx.window_labels, r.threshold_rule, r.threshold,
                                   r.tp_quantile)
    for species, value in (r.species_thresholds or {}).items():
        thresholds[int(species)] = value
    votes = r.votes if r.source == "vote" else 1
    cap = None
    if r.max_pseudo_per_tp is not None:
        n_tp = np.bincount(ctx.comp.tp["species_id"].to_numpy(np.int64), minlength=ctx.n_species)
        cap = np.ceil(r.max_pseudo_per_tp * n_tp).astype(np.int64)
    table = build_label_table(ctx.train_ids, ctx.window_labels, scores, threshold=thresholds, votes=votes,
                              pseudo_weight=r.pseudo_weight, max_per_species=cap)
    pseudo = table[table["source"] == "pseudo_positive"]
    timeline = window_timeline(ctx, previous_stage(cycle))
    g = ctx.grid
    seconds = ctx.seconds("train")  # each recording's own
    boxes = peak_boxes(pseudo, timeline, ctx.train_ids, ctx.positions, SEGMENT_POOL, g.frame_seconds,
                       seconds.reindex(pseudo["recording_id"].astype(str)).to_numpy())
    counts = label_counts(table, ctx.n_species)
    counts["pseudo_boxes"] = np.bincount(boxes["species_id"].to_numpy(np.int64), minlength=ctx.n_species)
    counts["threshold"] = thresholds
    atomic_write_csv(run.label_counts(stage), counts, index=True)
    atomic_write_csv(run.pseudo_boxes(stage), check_pseudo_boxes(boxes, run.pseudo_boxes(stage), seconds, ctx.n_species))
    if soft:
        atomic_save_npy(run.soft_targets(stage), teacher_targets(ctx, previous_stage(cycle), scores))
    if r.test_pseudo:
        make_test_labels(ctx, cycle, thresholds, cap)
    atomic_write_csv(run.labels(stage), table)  # written last: its presence marks the labels complete
    log.info("cycle %d: %d pseudo-positive windows from %s (%s, %s scores, %d of %d votes)", cycle,
             int(counts["pseudo_positive"].sum()), previous_stage(cycle), r.source, r.window_score, votes,
             scores.shape[0])
    return table


def _init_weights(run_dir: Path, cycle: int, init: str, folds: list[int]) -> dict[int, str] | None:
    if init == "scratch":
        return None
    stage = "stage1" if init == "stage1" else previous_stage(cycle)
    return {k: str(Run(run_dir).checkpoint(stage, k)) for k in folds}


def _improved(metric: str, history: list[dict[str, Any]], name: str = "lwlrap") -> bool:
    """The last stage beats every earlier one on its CV figure (``train.metric`` on the original labels: never the
    truth)."""
    if metric != "cv":
        raise RfcxError(f"early stop on {metric!r}: the loop decides on the CV figure ('cv') only, never on the truth")
    values = [h.get(f"cv_{name}") for h in history]
    if any(v is None for v in values):
        raise RfcxError(f"early stop needs cv_{name} in every stage's metrics")
    chosen = get_metric(name)
    return all(chosen.better(values[-1], v) for v in values[:-1])


def choose_kept(history: list[dict[str, Any]], rule: str = "cv", name: str = "lwlrap") -> dict[str, Any]:
    """The stage the loop keeps, from stage 1 and the cycles run (``history``: their metrics, in order).

    ``cv``: the best CV figure (``train.metric``, ``name``: LWLRAP by default) on the original labels
    (out-of-fold against the TP rows: a held-out figure the
    pseudo-labels never touch); a tie keeps the earlier stage, and a stage without the figure is skipped.
    ``last``: the last stage run. The truth is never used.

    With one species LWLRAP is 1.0 whatever the scores (a recording's one label always ranks first): the figure is
    then the species' CV average precision (its ranking across recordings), and ``note`` says so.

    Returns ``{"stage", "rule", "metric", "candidates": {stage: figure}}`` (+ ``note``).
    """
    one = bool(history) and all(len(h.get("per_species_ap") or ()) == 1 for h in history) and name == "lwlrap"
    metric = "cv_ap" if one else f"cv_{name}"
    candidates = {h["stage"]: (h["per_species_ap"][0] if one else h.get(f"cv_{name}")) for h in history}
    sign = 1.0 if one or get_metric(name).higher_is_better else -1.0
    if rule == "last":
        stage = history[-1]["stage"]
    elif rule == "cv":
        finite = [(sign * v, -i, stage_name) for i, (stage_name, v) in enumerate(candidates.items())
                  if isinstance(v, (int, float)) and math.isfinite(v)]
        if not finite:
            raise RfcxError(f"no stage has a {metric} to choose by (are there TP rows in the folds?)")
        stage = max(finite)[2]
    else:
        raise ValueError(f"unknown selection rule {rule!r}: use 'cv' or 'last'")
    kept = {"stage": stage, "rule": rule, "metric": metric, "candidates": candidates}
    if one:
        kept["note"] = ("one species: LWLRAP is 1.0 whatever the scores, so the stages are compared by the species' "
                        "CV average precision")
        log.warning("%s", kept["note"])
    return kept


def check_given_boxes(run: Run, cfg: Config, path: Path, ctx: RunContext) -> None:
    """``relabel --pseudo-boxes``, before anything is written: cycle 1 still to run, no setting that needs cycle 1's
    own fold votes, and every box a pseudo-positive of one of the run's train recordings (the box rule)."""
    if run.cycle_done("cycle1").exists():
        raise StateError(f"--pseudo-boxes {path}: cycle 1 of {run.root} has finished, so given boxes would change "
                         f"nothing; delete {run.stage('cycle1')} to run it from them")
    given = run.given_pseudo_boxes("cycle1")
    if given.exists() and file_fingerprint(given) != file_fingerprint(path):
        raise StateError(f"--pseudo-boxes {path}: cycle 1 started from other given boxes ({given}); rerun with those, "
                         f"or delete {run.stage('cycle1')} to start it fresh")
    if cfg.relabel.test_pseudo or cfg.relabel.soft_share > 0:
        raise ConfigError("--pseudo-boxes: relabel.test_pseudo and relabel.soft_share come from cycle 1's own fold "
                          "votes; turn them off (--set relabel.test_pseudo=false --set relabel.soft_share=0)")
    read_pseudo_boxes(path, ctx.seconds("train"), ctx.n_species)


def run_relabel(run_dir: Path, cycles: int | None = None, overrides: tuple[str, ...] = (), backend: str = "loky",
                workers: int = 1, scheduler: str | None = None, progress: bool = True,
                pseudo_boxes: Path | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the cycles; returns the metrics of stage 1 and every cycle run.

    ``pseudo_boxes``: cycle 1's pseudo-positive boxes, made elsewhere (``labels from-oof --boxes``: another team's
    out-of-fold windows), instead of its own fold votes; the later cycles vote as usual.
    """
    run_dir, run = Path(run_dir), Run(run_dir)
    check_backend(backend, workers, scheduler)
    if not run.config.exists():
        raise StateError(f"{run_dir}: not a run directory (no config.yaml); run `rfcx-kit stage1 --run {run_dir}` first")
    load_saved_config(run.config)  # a run whose config.yaml is not readable is named as such, not as unfinished
    if not run.finished("stage1"):
        raise StateError(f"{run_dir}: stage 1 has not finished every fold (rerun `rfcx-kit stage1 --resume` first)")
    cfg = relabel_config(run_dir, overrides)
    if cycles is not None and cycles < 0:
        raise ConfigError(f"--cycles must be >= 0, got {cycles}")
    # the data and feature store still where stage 1 found them (else: the path, now), with stage 1's labels
    ctx = load_context(run_dir)
    check_same_data(ctx, f"relabel {run_dir}")
    if pseudo_boxes is not None:
        check_given_boxes(run, cfg, Path(pseudo_boxes), ctx)
    first = next((c for c in range(1, (cycles if cycles is not None else cfg.relabel.cycles) + 1)
                  if not run.cycle_done(cycle_stage(c)).exists()), None)
    if first is not None:  # what its labels come from must exist before anything is written
        prev = previous_stage(first)
        if cfg.relabel.source == "oof" and not run.oof_framewise(prev).is_file():
            raise StateError(f"{run.oof_framewise(prev)}: missing; it is written when {prev} is collected (rerun "
                             f"{'`rfcx-kit stage1 --resume`' if prev == 'stage1' else 'the cycle'}, or delete {run.stage(prev)})")
    with folder_lock(run_dir, "relabel"):
        # A cycle that started and did not finish resumes only with what it started from; refused before the
        # new settings are saved, so the run's config.yaml keeps describing what was run.
        for cycle in range(1, (cycles if cycles is not None else cfg.relabel.cycles) + 1):
            stage = cycle_stage(cycle)
            if not run.cycle_done(stage).exists():
                given = Path(pseudo_boxes) if pseudo_boxes is not None and cycle == 1 else None
                if run.inputs(stage).exists():
                    check_inputs(run.inputs(stage), cycle_inputs(run, cfg, cycle, given), f"{run.stage(stage)}",
                                 f"rerun with its settings, or delete {run.stage(stage)} to start it fresh")
                break
        if overrides:
            cfg.save(run.config)
        if pseudo_boxes is not None and not run.given_pseudo_boxes("cycle1").exists():
            run.stage("cycle1").mkdir(parents=True, exist_ok=True)
            with atomic_open(run.given_pseudo_boxes("cycle1"), "wb") as handle:
                handle.write(Path(pseudo_boxes).read_bytes())
        return _relabel_locked(run, cycles, backend, workers, scheduler, progress)


def _relabel_locked(run: Run, cycles: int | None, backend: str, workers: int, scheduler: str | None,
                    progress: bool) -> list[dict[str, Any]]:
    run_dir = run.root
    ctx = load_context(run_dir)
    r = ctx.cfg.relabel
    cycles = cycles if cycles is not None else r.cycles
    folds = list(range(ctx.cfg.train.folds))
    truth = truth_windows(ctx)
    history = [read_metrics(run.metrics("stage1"))]
    for cycle in range(1, cycles + 1):
        stage = cycle_stage(cycle)
        metrics_path = run.metrics(stage)
        if metrics_path.exists() and run.cycle_done(stage).exists():
            history.append(read_metrics(metrics_path))
            log.info("%s already done: %s", stage, format_metrics(history[-1]))
        else:
            check_inputs(run.inputs(stage), cycle_inputs(run, ctx.cfg, cycle), f"{run.stage(stage)}",
                         f"delete {run.stage(stage)} to start it fresh")
            table = make_labels(ctx, cycle)
            quality = pseudo_quality(table, ctx, truth)
            if r.test_pseudo:
                test_table = pd.read_csv(run.test_labels(stage), dtype={"recording_id": str})
                quality.update(pseudo_quality(test_table, ctx, truth_windows(ctx, "test"), "test"))
            quality.update(box_quality(ctx, read_pseudo_boxes(run.pseudo_boxes(stage), ctx.seconds(), ctx.n_species)))
            if r.soft_share > 0:  # the soft labels' precision, recall and calibration against the planted calls
                soft_figures, reliability = soft_quality(np.load(run.soft_targets(stage)), ctx, truth,
                                                         ctx.cfg.predict.threshold)
                quality.update(soft_figures)
                if reliability is not None:
                    atomic_write_csv(run.soft_calibration(stage), reliability)
            results = train_stage(run_dir, stage, folds, backend, workers, scheduler, resume=True,
                                  init_from=_init_weights(run_dir, cycle, r.init, folds), progress=progress)
            failed = [res for res in results if not res.ok]
            if failed:
                raise RfcxError("; ".join(f"{stage} fold {res.fold} failed: {(res.error or '').splitlines()[-1]}"
                                          for res in failed) + " (finished folds are kept; rerun to resume)")
            metrics = collect_stage(run_dir, stage)
            metrics.update(quality)
            metrics["source"], metrics["threshold"] = r.source, r.threshold
            counts = pd.read_csv(run.label_counts(stage), index_col=0)
            metrics["pseudo_per_species"] = counts["pseudo_positive"].astype(int).tolist()
            atomic_write_json(metrics_path, metrics)
            atomic_write_text(run.cycle_done(stage), "")
            history.append(metrics)
            log.info("%s: %s", stage, format_metrics(metrics))
        if r.early_stop and not _improved(r.early_stop_metric, history, ctx.cfg.train.metric):
            log.info("early stop after %s: %s did not improve", stage, r.early_stop_metric)
            break
    kept = choose_kept(history, r.select, ctx.cfg.train.metric)
    atomic_write_json(run.kept, kept)
    log.info("kept %s (%s: %s)", kept["stage"], kept["rule"],
             ", ".join(f"{k} {v:.4f}" for k, v in kept["candidates"].items()))
    return history
