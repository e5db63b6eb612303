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

from rfcx_kit.core.config import Config, explicit_keys, load_config, load_saved_config, validate_config
from rfcx_kit.core.errors import ConfigError, DataError, RfcxError, StateError
from rfcx_kit.core.lock import folder_lock
from rfcx_kit.data.check import CHECKED_NAME, check_arrays
from rfcx_kit.data.reader import Competition, check_band, check_box_band, check_box_limits, read_competition
from rfcx_kit.data.features import FeatureStore, resolve_store
from rfcx_kit.method.folds import FoldResult, check_backend, load_or_make_folds, run_folds
from rfcx_kit.model.inputs import recording_stats
from rfcx_kit.core.io import atomic_save_npy, atomic_write_csv, atomic_write_json, atomic_write_text
from rfcx_kit.core.metrics import lwlrap, per_species_ap, precision_recall
from rfcx_kit.core.metrics.registry import get_metric
from rfcx_kit.core.grid import Grid
from rfcx_kit.method.run import Run, check_inputs, data_fingerprint, write_provenance
from rfcx_kit.method.checkpoint import build_model
from rfcx_kit.method.context import load_context
from rfcx_kit.method.predictions import load_prediction
from rfcx_kit.method.train import train_fold
from rfcx_kit.method.tracking import check_trackers, log_stage, open_stage

log = logging.getLogger(__name__)


def check_model_settings(cfg: Config) -> None:
    """Before anything is written: the backbone is a timm model that gives a feature map, and its starting
    weights (a local file, or the hub's pretrained ones: downloaded now, or found in the cache offline) exist
    and fit it. Each failure is one ConfigError naming the key and the fix."""
    import timm
    import torch

    if cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {cfg.train.device} but no CUDA device is available here (use auto or cpu)")
    if cfg.model.weights is not None and not Path(cfg.model.weights).is_file():
        raise ConfigError(f"model.weights: {cfg.model.weights} is not a file")
    if not timm.is_model(cfg.model.backbone):
        close = timm.list_models(f"*{cfg.model.backbone.split('.')[0][:6]}*")[:5]
        raise ConfigError(f"model.backbone: {cfg.model.backbone!r} is not a timm model"
                          + (f" (close: {', '.join(close)})" if close else ""))
    if "." in cfg.model.backbone:
        from rfcx_kit.model.weights import pretrained_cfg

        pretrained_cfg(cfg.model.backbone)  # a tag-pinned name must name a tag timm has
    model = build_model(cfg).eval()  # resolves and loads the weights: a file that does not fit stops here
    try:
        with torch.no_grad():
            model(torch.zeros(1, cfg.model.in_channels, cfg.features.n_mels, cfg.windows.window))
    except Exception as exc:  # noqa: BLE001 - any failure of a probe window means this backbone cannot be used
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(f"model.backbone: {cfg.model.backbone!r} cannot take a ({cfg.model.in_channels}, "
                          f"{cfg.features.n_mels}, {cfg.windows.window}) window and give a feature map: {text}") from None


def check_run_start(run_dir: Path, cfg: Config, resume: bool) -> None:
    """What can refuse a stage-1 run before any data is read: an existing run without --resume, another config."""
    run = Run(run_dir)
    if run.config.exists() and not resume:
        raise StateError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run")
    if run.config.exists():
        saved = yaml.safe_load(run.config.read_text())
        if saved != cfg.to_dict():
            diff = _config_diff(saved, cfg.to_dict())
            raise StateError(f"{run.config}: --resume with another config than the run's ({diff}); drop the changes "
                             "or use a new --run")


def _config_diff(saved: dict[str, Any], new: dict[str, Any]) -> str:
    out = []
    for section in sorted(set(saved) | set(new)):
        a, b = saved.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{section}: {a!r} -> {b!r}")
    return "; ".join(out[:4]) + (f"; +{len(out) - 4} more" if len(out) > 4 else "")


def check_store(comp: Competition, store: FeatureStore, cfg: Config, cache_dir: Path | None,
                progress: bool = True) -> None:
    """Every feature array of the data: header, dtype, shape, size and finiteness (recorded once checked)."""
    paths = {f"{split}/{rid}": store.path(split, rid) for split in ("train", "test") for rid in comp.ids(split)}
    # The cache records what it verified; a precomputed data folder is never written to, so it is re-checked.
    record = (Path(cache_dir) / CHECKED_NAME) if cache_dir else None
    check_arrays(paths, cfg.features.n_mels, cfg.features.frames, record, progress=progress)
    check_box_frames(comp, store, cfg)


def check_box_frames(comp: Competition, store: FeatureStore, cfg: Config) -> None:
    """Every box ends inside its recording's frames (a box the recording does not reach would train on padding)."""
    grid = Grid.of(cfg, store.frames)
    lengths = pd.Series(store.lengths("train", comp.train_ids), index=comp.train_ids)
    for name, table in (("train_tp.csv", comp.tp), ("train_fp.csv", comp.fp)):
        if not len(table):
            continue
        seconds = (lengths.reindex(table["recording_id"]).to_numpy() - 1) * grid.frame_seconds
        beyond = np.flatnonzero(table["t_max"].to_numpy() > seconds + grid.frame_seconds + 1e-6)
        if len(beyond):
            i = int(beyond[0])
            why = " (features.seconds)" if cfg.features.seconds is not None else ""
            raise DataError(f"{comp.root / name}: row {i + 1} (line {i + 2}), field 't_max': {table['t_max'].iloc[i]:g} "
                            f"is beyond the {seconds[i]:g} s of {table['recording_id'].iloc[i]}'s frames{why}")


def resolve_species(cfg: Config, comp: Competition) -> None:
    """``model.n_species`` from the data's species table (a number given in the config must match it)."""
    k = len(comp.species)
    if cfg.model.n_species is None:
        cfg.model.n_species = k
    elif cfg.model.n_species != k:
        raise ConfigError(f"model.n_species: {cfg.model.n_species}, but {comp.root} has {k} species "
                          "(species.csv or its label tables); leave it unset to take the data's")
    top = max(cfg.relabel.species_thresholds, default=-1)
    if top >= k:
        raise ConfigError(f"relabel.species_thresholds: species {top} is not in 0..{k - 1}")


def resolve_features(cfg: Config, comp: Competition) -> None:
    """``features.sample_rate`` and ``features.fmax`` from one's own recordings (``recordings.csv``), where neither
    the recipe nor ``--set`` gives them: every recording is resampled to the highest rate among them, and the mel
    bands stop at the lowest Nyquist frequency (above it the low-rate recordings hold nothing: ``check_band``).
    Measured against resampling down to the lowest rate (method notes 16: 22,050 and 44,100 Hz recordings, two
    data seeds): test LWLRAP +0.028 and +0.047 for the highest, whose frames are twice as fine. The competition's
    layouts keep the method post's 32 kHz and 16 kHz. Validated again with the rate known."""
    explicit = explicit_keys(cfg)
    if comp.recordings is not None and len(comp.recordings):
        rates = comp.recordings["sample_rate"].to_numpy(np.float64)
        lowest = int(rates.min())
        if "features.sample_rate" not in explicit:
            cfg.features.sample_rate = int(rates.max())
        if "features.fmax" not in explicit:
            cfg.features.fmax = float(min(cfg.features.sample_rate, lowest) / 2)
        taken = [k for k in ("sample_rate", "fmax") if f"features.{k}" not in explicit]
        if taken:
            log.info("features: %s from the data (%d recordings at %g to %g Hz: the highest rate, the lowest "
                     "Nyquist, %s)", " and ".join(f"{k} {getattr(cfg.features, k):g}" for k in taken), len(rates),
                     rates.min(), rates.max(), comp.recordings.index[int(rates.argmin())])
        check_band(comp, cfg.features.fmax)  # an fmax set above a recording's Nyquist: named by recording
    validate_config(cfg)


def check_windows(cfg: Config, comp: Competition) -> None:
    """The training and test windows cover the longest recording, where its frames are known before any feature
    is computed (a fixed length, or ``recordings.csv``'s); else ``prepare_run`` checks once the cache is built."""
    if cfg.features.seconds is not None:
        frames = cfg.features.frames
    elif comp.recordings is not None and len(comp.recordings):
        frames = Grid.of(cfg, 1).frames_of(float(comp.recordings["seconds"].max()))
    else:
        return
    grid = Grid.of(cfg, frames)
    grid.positions, grid.test_positions()


def check_inputs_before_writing(run_dir: Path, data: Path, cfg: Config, resume: bool,
                                progress: bool = True) -> Competition:
    """Everything that can refuse a stage-1 run and needs no work first, in one pass: the label tables, the
    species, the run folder's state, the model settings and, for precomputed arrays, every array. Writes
    nothing; sets ``model.n_species`` from the data."""
    comp = read_competition(data, n_mels=cfg.features.n_mels)
    check_box_limits(comp)
    resolve_features(cfg, comp)
    check_band(comp, cfg.features.fmax)
    check_box_band(comp, cfg.features.fmin, cfg.features.fmax)
    resolve_species(cfg, comp)
    check_windows(cfg, comp)
    check_run_start(run_dir, cfg, resume)
    check_model_settings(cfg)
    check_trackers(cfg.train.log_to)
    if not len(comp.tp):
        raise DataError(f"{comp.root / 'train_tp.csv'}: no TP rows; stage 1 trains on the TP boxes")
    if comp.layout == "npy":
        check_store(comp, FeatureStore.open(comp, None, cfg.features), cfg, None, progress)
    run = Run(run_dir)
    if run.inputs().exists():
        check_inputs(run.inputs(), {"data": data_fingerprint(comp)}, f"{run_dir}",
                     f"use the data it was made from ({run.data}) or a new --run")
    return comp


def prepare_run(run_dir: Path, data: Path, cache: Path | None, cfg: Config, resume: bool,
                n_jobs: int | None = None, progress: bool = True, checked: bool = False) -> None:
    """Validate the data, build the feature cache if needed, write config, data, folds and statistics.

    Everything is checked before anything is written to the run: the config, the model settings, an existing
    run's config and data (on --resume), every label table and every feature array.
    """
    run = Run(run_dir)
    if not checked:  # run_stage1 checks before it takes the lock
        check_inputs_before_writing(run_dir, data, cfg, resume, progress)
    comp, store, cache_dir = resolve_store(data, cache, cfg.features, build=True, n_jobs=n_jobs, progress=progress)
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
    load_or_make_folds(run.folds, comp.train_ids, comp.tp_presence(), comp.fp_presence(),
                       cfg.train.folds, cfg.train.seed)
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

    metrics = stage_metrics(ctx, oof_clip, have, test_mean, tests)
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
        rows = rows[~np.isnan(oof_clip[rows]).any(axis=1)]
        out.append(lwlrap(ctx.tp_truth[rows], oof_clip[rows]))
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
    check_backend(backend, workers, scheduler)
    started = time.time()
    # Before the lock (which creates the folder): a refused run leaves no folder behind.
    check_inputs_before_writing(run_dir, data, cfg, resume, progress)
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
