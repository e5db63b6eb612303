"""``rfcx-kit stage1``: folds -> training -> out-of-fold and test predictions -> LWLRAP CV report.

A stage's folds are trained through :func:`rfcx_kit.method.folds.run_folds` (in process, local processes, or a
Dask cluster); then :func:`collect_stage` gathers the folds' predictions into stage-level files and
metrics. Re-labeling cycles (``cycle.py``) reuse both.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rfcx_kit.core.config import Config, load_config, load_saved_config
from rfcx_kit.core.errors import ConfigError, RfcxError
from rfcx_kit.core.lock import folder_lock
from rfcx_kit.data.features import resolve_store
from rfcx_kit.method.folds import FoldResult, load_or_make_folds, run_folds
from rfcx_kit.model.inputs import recording_stats
from rfcx_kit.core.io import atomic_save_npy, atomic_write_csv, atomic_write_json, atomic_write_text
from rfcx_kit.core.metrics import lwlrap, per_species_ap, precision_recall
from rfcx_kit.core.metrics.registry import get_metric
from rfcx_kit.core.grid import POOL, Grid
from rfcx_kit.method.run import Run, check_inputs, data_fingerprint, write_provenance
from rfcx_kit.method.context import load_context
from rfcx_kit.method.events import framewise_rows, row_ids
from rfcx_kit.method.predictions import load_prediction
from rfcx_kit.method.train import train_fold
from rfcx_kit.method.preflight import check_store, preflight
from rfcx_kit.method.tracking import check_trackers, log_stage, open_stage

log = logging.getLogger(__name__)


def prepare_run(run_dir: Path, data: Path, cache: Path | None, cfg: Config, resume: bool,
                n_jobs: int | None = None, progress: bool = True, checked: bool = False) -> None:
    """Validate the data, build the feature cache if needed, write config, data, folds and statistics.

    Everything is checked before anything is written to the run: the config, the model settings, an existing
    run's config and data (on --resume), every label table and every feature array.
    """
    run = Run(run_dir)
    if not checked:  # run_stage1 checks before it takes the lock
        preflight(run_dir, data, cfg, resume, progress)
    comp, store, cache_dir = resolve_store(data, cache, cfg.features, build=True, options=cfg.data, n_jobs=n_jobs, progress=progress)
    if cache_dir is not None:  # the audio layout: its arrays exist only now (the cache records what it checked)
        check_store(comp, store, cfg, cache_dir, progress)
    grid = Grid.of(cfg, store.frames)  # the windows must cover the longest recording: refused before any write
    grid.positions, grid.test_positions()
    inputs = {"data": data_fingerprint(comp)}
    run_dir.mkdir(parents=True, exist_ok=True)
    if not run.config.exists():
        cfg.save(run.config)
    write_provenance(run, cfg)
    check_inputs(run.inputs(), inputs, f"{run_dir}", "use a new --run")
    atomic_write_text(run.data, yaml.safe_dump(
        {"data": str(Path(data).resolve()), "cache": str(Path(cache_dir).resolve()) if cache_dir else None,
         "layout": comp.layout, "train": len(comp.train_ids), "test": len(comp.test_ids), "frames": store.frames,
         "species": len(comp.species)}, sort_keys=False))
    atomic_write_csv(run.species, comp.species.frame())
    groups = None if comp.groups is None else comp.groups.reindex(comp.train_ids).tolist()
    load_or_make_folds(run.folds, comp.train_ids, comp.tp_presence(), comp.fp_presence(),
                       cfg.train.folds, cfg.train.seed, groups)
    for split in ("train", "test"):
        path = run.stats(split)
        if not path.exists():
            atomic_save_npy(path, recording_stats(store, split, comp.ids(split)))


def collect_stage(run_dir: Path, stage: str) -> dict[str, Any]:
    """Gather a stage's fold outputs: ``oof_windows.npy``, ``oof.csv``, ``test.csv`` (fold mean), metrics.

    Returns:
        metrics: cv_lwlrap / precision / recall on the original labels; and, when the data set has a
        ``truth/`` folder (synthetic), the same against the full truth (train OOF and test).
    """
    run = Run(run_dir)
    ctx = load_context(run.root)
    cfg = ctx.cfg
    stage_dir = run.stage(stage)
    n_train, k = len(ctx.train_ids), ctx.n_species
    columns = ctx.species.columns
    oof = np.full((n_train, len(ctx.positions), k), np.nan, dtype=np.float32)
    oof_clip = np.full((n_train, k), np.nan, dtype=np.float32)
    index = {rid: i for i, rid in enumerate(ctx.train_ids)}
    oof_frames = None  # (R, 24, S) float16 out-of-fold framewise timelines: what pseudo boxes come from
    tests = []
    folds_done = []
    for fold in range(cfg.train.folds):
        if not run.fold_done(stage, fold).exists():
            continue
        folds_done.append(fold)
        ids, pred = load_prediction(run.prediction(stage, fold, "val"))
        rows = np.asarray([index[i] for i in ids])
        oof[rows] = pred.windows
        if oof_frames is None:
            oof_frames = np.full((n_train,) + pred.framewise.shape[1:], np.nan, dtype=np.float16)
        oof_frames[rows] = pred.framewise
        oof_clip[rows] = pred.clip(cfg.predict.mode)
        if ctx.comp.test_ids:
            tests.append(pd.read_csv(run.fold_test_csv(stage, fold), dtype={"recording_id": str})[columns].to_numpy())
    if not folds_done:
        raise RfcxError(f"{stage_dir}: no finished fold to collect")
    atomic_write_text(run.ids(stage, "train"), "\n".join(ctx.train_ids) + "\n")
    atomic_write_text(run.ids(stage, "test"), "\n".join(ctx.comp.test_ids) + "\n")
    atomic_save_npy(run.oof_windows(stage), oof)
    atomic_save_npy(run.oof_framewise(stage), oof_frames)
    have = ~np.isnan(oof_clip).any(axis=1)
    frame = pd.DataFrame(oof_clip[have], columns=columns)
    frame.insert(0, "recording_id", [r for r, h in zip(ctx.train_ids, have) if h])
    atomic_write_csv(run.oof_csv(stage), frame)
    test_mean = np.mean(tests, axis=0) if ctx.comp.test_ids else np.zeros((0, k))
    frame = pd.DataFrame(test_mean, columns=columns)
    frame.insert(0, "recording_id", ctx.comp.test_ids)
    atomic_write_csv(run.test_csv(stage), frame)

    metrics = stage_metrics(ctx, oof_clip, have & ctx.scored, test_mean, tests)
    metrics.update(test_row_metrics(ctx, run, stage, folds_done))
    metrics["fold_cv_lwlrap"] = fold_cv(ctx, folds_done, oof_clip)
    metrics.update({"stage": stage, "folds": folds_done, "window": cfg.windows.window,
                    "model": cfg.model.backbone, "run": run_dir.name})
    history = [pd.read_csv(run.fold_history(stage, k)).assign(fold=k) for k in folds_done]
    atomic_write_csv(run.history(stage), pd.concat(history, ignore_index=True))
    seconds = [json.loads(run.fold_done(stage, k).read_text())["seconds"] for k in folds_done]
    metrics["train_seconds"] = float(np.sum(seconds))
    atomic_write_json(run.metrics(stage), metrics)
    log_stage(run.root, stage, cfg.train.log_to, metrics)
    return metrics


def fold_cv(ctx: Any, folds: list[int], oof_clip: np.ndarray) -> list[float]:
    """Each fold's own CV LWLRAP (its held-out recordings vs their TP labels), for error bars.

    Args:
        oof_clip: ``(R, K)`` out-of-fold clip scores (NaN rows: folds not done).
    """
    fold_of = ctx.folds["fold"].to_numpy()
    out = []
    for k in folds:
        rows = np.flatnonzero(fold_of == k)
        rows = rows[~np.isnan(oof_clip[rows]).any(axis=1) & ctx.scored[rows]]
        out.append(lwlrap(ctx.tp_truth[rows], oof_clip[rows]))
    return out


def test_row_metrics(ctx: Any, run: Run, stage: str, folds: list[int]) -> dict[str, Any]:
    """A BirdCLEF-shaped synthetic set's figure (``truth/test_rows.csv``): the test recordings' 5-s rows, each the
    max of the fold-mean framewise output inside it (what ``predict --rows 5`` submits), scored with
    ``train.metric`` and LWLRAP against the rows' truth. Empty without that file or without test recordings."""
    truth_dir = ctx.comp.truth_dir
    path = truth_dir / "test_rows.csv" if truth_dir is not None else None
    if path is None or not path.is_file() or not ctx.comp.test_ids or not folds:
        return {}
    framewise = np.mean([load_prediction(run.prediction(stage, k, "test"))[1].framewise.astype(np.float32)
                         for k in folds], axis=0)  # (R, K, S)
    seconds = ctx.seconds("test")
    ids, rows = [], []
    for r, rid in enumerate(ctx.comp.test_ids):
        scores = framewise_rows(framewise[r], POOL, ctx.grid.frame_seconds, int(ctx.test_frames[r]),
                                duration=float(seconds.iloc[r]))
        ids += row_ids(rid, len(scores))
        rows.append(scores)
    truth = pd.read_csv(path, dtype={"row_id": str}).set_index("row_id")
    missing = [i for i in ids if i not in truth.index]
    if missing:
        raise RfcxError(f"{path}: no truth for {len(missing)} predicted row(s), first {missing[0]}")
    y = truth.loc[ids, list(ctx.species.codes)].to_numpy(np.int8)
    scores = np.concatenate(rows)
    metric = get_metric(ctx.cfg.train.metric)
    out = {"truth_test_rows": len(ids), "truth_test_rows_lwlrap": lwlrap(y, scores)}
    out[f"truth_test_rows_{metric.name}"] = metric(y, scores)
    return out


def _read_presence(path: Path, ids: list[str], columns: list[str]) -> np.ndarray:
    frame = pd.read_csv(path, dtype={"recording_id": str}).set_index("recording_id")
    return frame.loc[ids, columns].to_numpy().astype(np.int8)


def stage_metrics(ctx: Any, oof_clip: np.ndarray, have: np.ndarray, test_pred: np.ndarray,
                  fold_tests: list[np.ndarray] = ()) -> dict[str, Any]:
    """CV metrics on the original labels, plus truth metrics where ``truth/`` exists.

    ``cv_lwlrap``: OOF clip predictions against TP-only clip labels (recordings with a TP), as the post.
    ``fold_tests``: each fold's own ``(T, K)`` test prediction: with truth, ``fold_truth_test_lwlrap`` (error bars).
    ``precision``/``recall`` at ``predict.threshold`` over the labelled cells only (TP = 1, FP = 0): with
    incomplete labels, unlabelled cells say nothing about a prediction.
    """
    thr = ctx.cfg.predict.threshold
    tp = ctx.tp_truth[have]
    scores = oof_clip[have]
    fp = ctx.comp.fp_presence().astype(ctx.tp_truth.dtype)[have] & (tp == 0)
    known = (tp == 1) | (fp == 1)
    predicted = scores > thr
    n_pred = (predicted & known).sum()
    out: dict[str, Any] = {
        "cv_lwlrap": lwlrap(tp, scores),
        "precision": float((predicted & (tp == 1)).sum() / n_pred) if n_pred else float("nan"),
        "recall": float((predicted & (tp == 1)).sum() / max(1, tp.sum())),
        "per_species_ap": per_species_ap(tp, scores).tolist(),
    }
    metric = get_metric(ctx.cfg.train.metric)  # the figure the kept stage is chosen by (beside LWLRAP)
    out.setdefault(f"cv_{metric.name}", metric(tp, scores))
    truth = ctx.comp.truth_dir
    if truth is not None and (truth / "train_presence.csv").exists():
        train_truth = _read_presence(truth / "train_presence.csv", [r for r, h in zip(ctx.train_ids, have) if h],
                                     ctx.species.columns)
        out["truth_oof_lwlrap"] = lwlrap(train_truth, scores)
        out["truth_oof_precision"], out["truth_oof_recall"] = precision_recall(train_truth, scores, thr)
        test_truth = _read_presence(truth / "test_presence.csv", ctx.comp.test_ids, ctx.species.columns)
        out["truth_test_lwlrap"] = lwlrap(test_truth, test_pred)
        out["truth_test_precision"], out["truth_test_recall"] = precision_recall(test_truth, test_pred, thr)
        out["truth_test_per_species_ap"] = per_species_ap(test_truth, test_pred).tolist()
        if len(fold_tests):  # each fold model's own test figure, for error bars
            out["fold_truth_test_lwlrap"] = [lwlrap(test_truth, t) for t in fold_tests]
    return out


def train_stage(run_dir: Path, stage: str, folds: list[int], backend: str, workers: int, scheduler: str | None,
                resume: bool, init_from: dict[int, str] | None = None, progress: bool = True,
                epochs: int | None = None) -> list[FoldResult]:
    """Train the given folds of a stage (in parallel where asked). Failures are reported per fold."""
    log_to = load_saved_config(Run(run_dir).config).train.log_to
    check_trackers(log_to)
    open_stage(Path(run_dir), stage, log_to)  # the folds' MLflow runs nest under the stage's
    common = dict(run_dir=str(Path(run_dir).resolve()), stage=stage, resume=resume, progress=progress, epochs=epochs)
    per_fold = {k: {"init_from": init_from.get(k)} for k in folds} if init_from else None
    return run_folds(train_fold, folds, common, backend, workers, scheduler, fold_kwargs=per_fold)


def parse_folds(text: str | None, n_folds: int) -> list[int]:
    if not text:
        return list(range(n_folds))
    try:
        folds = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise ConfigError(f"--folds {text!r}: expected comma-separated fold numbers, e.g. 0,1") from exc
    bad = [f for f in folds if not 0 <= f < n_folds]
    if bad:
        raise ConfigError(f"--folds {text!r}: folds must be in 0..{n_folds - 1}")
    return folds


def run_stage1(data: Path, run_dir: Path, pipeline: Path | None = None, overrides: tuple[str, ...] = (),
               folds: str | None = None, resume: bool = False, backend: str = "loky", workers: int = 1,
               scheduler: str | None = None, cache: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """The whole of ``rfcx-kit stage1``; returns the stage's metrics (paths may be str or Path)."""
    data, run_dir = Path(data), Path(run_dir)
    cache = Path(cache) if cache is not None else None
    cfg = load_config(pipeline, overrides)
    fold_list = parse_folds(folds, cfg.train.folds)
    started = time.time()
    # Before the lock (which creates the folder): a refused run leaves no folder behind.
    preflight(run_dir, data, cfg, resume, progress, backend, workers, scheduler)
    first_new = Path(run_dir)
    while not first_new.parent.exists():
        first_new = first_new.parent
    created = not first_new.exists()
    try:
        with folder_lock(run_dir, "stage1"):
            return _stage1_locked(data, run_dir, cfg, fold_list, resume, backend, workers, scheduler, cache,
                                  progress, started)
    except RfcxError:
        # refused before training began (a check of prepare_run, such as more folds than recordings): nothing of
        # this start stays, so a plain rerun with the cause fixed is not refused as a resume
        if created and first_new.is_dir() and not Run(run_dir).stage("stage1").exists():
            shutil.rmtree(first_new)
        raise


def _stage1_locked(data: Path, run_dir: Path, cfg: Config, fold_list: list[int], resume: bool, backend: str,
                   workers: int, scheduler: str | None, cache: Path | None, progress: bool,
                   started: float) -> dict[str, Any]:
    prepare_run(run_dir, data, cache, cfg, resume, progress=progress, checked=True)
    results = train_stage(run_dir, "stage1", fold_list, backend, workers, scheduler, resume, progress=progress)
    failed = [r for r in results if not r.ok]
    why = "; ".join(f"fold {r.fold} failed: {r.error.splitlines()[-1] if r.error else ''}" for r in failed)
    if failed and len(failed) == len(results):  # nothing to collect: say why each fold failed
        raise RfcxError(f"{why} (nothing was collected; fix the cause and rerun with --resume)")
    metrics = collect_stage(run_dir, "stage1")
    metrics["wall_seconds"] = round(time.time() - started, 1)
    if failed:
        raise RfcxError(f"{why} (the other folds' results are kept in {Run(run_dir).stage('stage1')}; rerun with --resume)")
    return metrics
