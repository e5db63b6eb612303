"""``rfcx-kit relabel``: the method post's stage 2, cycle re-labeling.

Each cycle ``c`` reads the previous stage's framewise predictions of every TP∪FP train recording
(out-of-fold by default, or every fold model's vote), turns confident unknown stretches into
pseudo-positive *boxes* (never where a TP/FP box of the species is), retrains the folds exactly as stage 1
trains (crops around the positive boxes, clipwise BCE with implicit negatives) on TP + pseudo-positive boxes
(starting from the previous weights, stage 1's, or scratch), predicts as stage 1 did, and writes
``RUN/cycle{c}/`` beside ``RUN/stage1/``. A killed loop resumes at the cycle and fold it stopped in.

Why this form (docs/method-notes.md): the loop used to switch to fixed windows and the masked loss, whose
only negatives are the FP boxes, with one fixed threshold. Every score then inflated after one cycle and the
next threshold let in thousands of wrong pseudo-positives. Training every stage the same way keeps the
implicit negatives that anchor the scores; per-species thresholds taken from the model's own scores on the
verified calls follow its calibration; a cap per TP box bounds what one cycle can add.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import torch
import yaml

from rfcx_kit.core.config import Config, ConfigError, apply_overrides, load_saved_config, parse_override, validate_config
from rfcx_kit.core.lock import folder_lock
from rfcx_kit.core.errors import RfcxError, StateError
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.core.io import atomic_write_csv, atomic_write_json, atomic_write_text
from rfcx_kit.method.pseudo import box_peaks, framewise_thresholds, label_counts, pseudo_boxes, read_label_table, segment_mask
from rfcx_kit.method.run import (Run, RunContext, build_model, check_inputs, config_fingerprint, cycle_stage,
                                 file_fingerprint, load_checkpoint, load_context, load_prediction, predict_split,
                                 previous_stage, read_metrics, save_prediction)
from rfcx_kit.method.folds import check_backend
from rfcx_kit.method.stage1 import collect_stage, format_metrics, train_stage

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


def cycle_inputs(run: Run, cfg: Config, cycle: int) -> dict[str, Any]:
    """What a cycle is made from: the config (less the cycle count) and the previous stage's metrics file."""
    return {"config": config_fingerprint(cfg), "previous": file_fingerprint(run.metrics(previous_stage(cycle)))}


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


def truth_windows(ctx: RunContext) -> np.ndarray | None:
    """``(R, N, 24)`` bool: windows overlapping a planted call (synthetic ``truth/calls.csv``), else None."""
    calls = ctx.comp.planted_calls("train")
    if calls is None:
        return None
    cfg = ctx.cfg.features
    labels = FramewiseLabels(calls.assign(label=np.int8(1)), ctx.train_ids, cfg.frames, cfg.sample_rate, cfg.hop_length)
    return labels.windows(ctx.positions) == 1


def pseudo_quality(table: pd.DataFrame, ctx: RunContext, truth: np.ndarray | None) -> dict[str, float]:
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
    out: dict[str, float] = {"pseudo_positives": float(len(pseudo))}
    if truth is None:
        return out
    index = {rid: i for i, rid in enumerate(ctx.train_ids)}
    # int64 explicitly: an empty table (no score above the threshold) would give float indices
    rows = pseudo["recording_id"].map(index).to_numpy(dtype=np.int64)
    species = pseudo["species_id"].to_numpy(dtype=np.int64)
    hit = truth[rows, pseudo["window"].to_numpy(dtype=np.int64), species]
    unknown = ctx.window_labels == 0
    unknown_true = truth & unknown
    base_rate = unknown_true.sum(axis=(0, 1)) / np.maximum(1, unknown.sum(axis=(0, 1)))  # (24,)
    nan = float("nan")
    out["pseudo_precision"] = float(hit.mean()) if len(hit) else nan
    out["pseudo_recall"] = float(hit.sum() / unknown_true.sum()) if unknown_true.sum() else nan
    out["pseudo_chance_precision"] = float(base_rate[species].mean()) if len(hit) else nan
    chance = out["pseudo_chance_precision"]
    out["pseudo_lift"] = out["pseudo_precision"] / chance if len(hit) and chance > 0 else nan
    return out


SEGMENT_POOL = 32  # framewise timelines are pooled to 32 frames (predict_recordings' pool)


def segment_seconds(ctx: RunContext) -> float:
    f = ctx.cfg.features
    return SEGMENT_POOL * f.hop_length / f.sample_rate


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
    planted = segment_mask(calls, ctx.train_ids, -(-ctx.cfg.features.frames // SEGMENT_POOL), seg)
    hit = box_peaks(planted.astype(np.float32), boxes, ctx.train_ids, seg)  # 1 where a box touches a call
    out["pseudo_box_precision"] = float(np.mean(hit > 0))
    return out


def make_labels(ctx: RunContext, cycle: int) -> pd.DataFrame:
    """The cycle's pseudo-positive boxes (``pseudo_boxes.csv``) from the previous stage's framewise predictions.

    Out-of-fold timelines (``source=oof``) or every fold model's (``source=vote``: at least ``votes`` models
    above the threshold); thresholds per species (``threshold_rule``); segments inside a TP or FP box of
    the species are known and never pseudo-labelled; at most ``max_pseudo_per_tp`` boxes per TP box of a
    species. Also writes the window table those boxes imply (``labels.csv``, ``label_counts.csv``) for the
    reports. Reused as they are on resume.
    """
    run, stage = ctx.run, cycle_stage(cycle)
    path = run.pseudo_boxes(stage)
    if path.exists() and run.labels(stage).exists():
        return read_label_table(run.labels(stage))
    r, f = ctx.cfg.relabel, ctx.cfg.features
    prev = previous_stage(cycle)
    seg = segment_seconds(ctx)
    if r.source == "vote":
        frames = np.stack([p.framewise.astype(np.float32) for p in fold_predictions(ctx, previous_stage(cycle))])
        need = r.votes
    else:
        frames = np.load(run.oof_framewise(prev)).astype(np.float32)[None]
        need = 1
        missing = np.isnan(frames[0]).all(axis=(1, 2))
        if missing.any():
            raise RfcxError(f"{run.stage(prev)}: {int(missing.sum())} recordings have no out-of-fold prediction "
                            "(train every fold before re-labeling)")
    mean = frames.mean(axis=0)
    thresholds = framewise_thresholds(mean, ctx.comp.tp, ctx.train_ids, seg, r.threshold_rule, r.threshold,
                                      r.tp_quantile)
    for species, value in (r.species_thresholds or {}).items():
        thresholds[int(species)] = value
    known = segment_mask(ctx.comp.boxes(), ctx.train_ids, mean.shape[-1], seg)
    positive = ((frames > thresholds[None, None, :, None]).sum(axis=0) >= need) & ~known
    n_tp = np.bincount(ctx.comp.tp["species_id"].to_numpy(np.int64), minlength=24)
    boxes = pseudo_boxes(positive, mean, ctx.train_ids, seg, r.pseudo_weight, n_tp, r.max_pseudo_per_tp)
    # The window table the boxes imply (reports, pseudo-positive quality): TP/FP windows + pseudo windows.
    pseudo_windows = FramewiseLabels(boxes.assign(label=np.int8(1)), ctx.train_ids, f.frames, f.sample_rate,
                                     f.hop_length).windows(ctx.positions) == 1
    original = ctx.window_labels
    code = np.where(original == 1, 1, np.where(original == -1, 2, np.where(pseudo_windows, 3, 0)))
    rr, nn, ss = np.nonzero(code)
    c = code[rr, nn, ss]
    table = pd.DataFrame({"recording_id": np.asarray(ctx.train_ids, dtype=object)[rr].astype(str),
                          "window": nn.astype(np.int64), "species_id": ss.astype(np.int64),
                          "source": np.array(["", "tp", "fp", "pseudo_positive"], dtype=object)[c],
                          "weight": np.where(c == 3, r.pseudo_weight, 1.0)})
    counts = label_counts(table)
    counts["pseudo_boxes"] = np.bincount(boxes["species_id"].to_numpy(np.int64), minlength=24)
    counts["threshold"] = thresholds
    atomic_write_csv(run.label_counts(stage), counts, index=True)
    atomic_write_csv(run.labels(stage), table)
    atomic_write_csv(path, boxes)  # written last: its presence marks the labels complete
    log.info("cycle %d: %d pseudo-positive boxes (%d windows) from %s (%s)", cycle, len(boxes),
             int(counts["pseudo_positive"].sum()), previous_stage(cycle), r.source)
    return table


def _init_weights(run_dir: Path, cycle: int, init: str, folds: list[int]) -> dict[int, str] | None:
    if init == "scratch":
        return None
    stage = "stage1" if init == "stage1" else previous_stage(cycle)
    return {k: str(Run(run_dir).checkpoint(stage, k)) for k in folds}


def _improved(metric: str, history: list[dict[str, Any]]) -> bool:
    key = "truth_test_lwlrap" if metric == "truth" else "cv_lwlrap"
    values = [h.get(key) for h in history]
    if any(v is None for v in values):
        raise RfcxError(f"early stop on {metric!r} needs {key} in every stage's metrics (truth/ for 'truth')")
    return values[-1] > max(values[:-1])


def run_relabel(run_dir: Path, cycles: int | None = None, overrides: tuple[str, ...] = (), backend: str = "loky",
                workers: int = 1, scheduler: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the cycles; returns the metrics of stage 1 and every cycle run."""
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
    load_context(run_dir)  # the data and feature store still where stage 1 found them (else: the path, now)
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
                if run.inputs(stage).exists():
                    check_inputs(run.inputs(stage), cycle_inputs(run, cfg, cycle), f"{run.stage(stage)}",
                                 f"rerun with its settings, or delete {run.stage(stage)} to start it fresh")
                break
        if overrides:
            cfg.save(run.config)
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
            quality.update(box_quality(ctx, pd.read_csv(run.pseudo_boxes(stage), dtype={"recording_id": str})))
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
        if r.early_stop and not _improved(r.early_stop_metric, history):
            log.info("early stop after %s: %s did not improve", stage, r.early_stop_metric)
            break
    return history
