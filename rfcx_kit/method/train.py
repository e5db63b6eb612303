"""The fold training loop: plain code, one function, resumable to the exact weights.

``train_fold(fold, run_dir=..., stage=...)`` reads everything it needs from the run directory (so joblib or
Dask can run it in another process or machine), trains with the configured sampling and loss, validates
every epoch with soft frame-wise prediction on the held-out fold (best epoch by validation LWLRAP), writes
``last.pt``/``best.pt``/``history.csv`` every epoch, and finally predicts the held-out recordings (out-of-fold)
and the test set with the best weights.

Exact resume: the epoch's samples come from a generator seeded by (seed, fold, stage, epoch), the torch
RNG state and optimizer state are in the checkpoint, and the learning rate is a function of the step.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rfcx_kit.core.config import Config
from rfcx_kit.core.errors import DataError, RfcxError
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.data.reader import read_pseudo_boxes
from rfcx_kit.model.augment import batch_generator, mix, mix_targets, mixup_plan
from rfcx_kit.model.inputs import crop_batch, prefetched
from rfcx_kit.core.io import atomic_write_csv, atomic_write_json
from rfcx_kit.model.losses import clipwise_bce, masked_bce
from rfcx_kit.core.metrics import lwlrap
from rfcx_kit.core.metrics.registry import get_metric
from rfcx_kit.method.run import Run
from rfcx_kit.method.checkpoint import build_model, input_stats, load_checkpoint, save_checkpoint
from rfcx_kit.method.context import RunContext, load_context
from rfcx_kit.method.predictions import predict_split, write_predictions
from rfcx_kit.method.sampling import (Items, all_windows, concat_items, injection_plan, labels_to_loss_arrays,
                                      soft_windows, tp_crop_count, tp_crops)

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RfcxError(f"train.device={name} but no CUDA device is available")
    return device


# Kept over timm's CosineLRScheduler (step_update, lr_min=0) for a weak reason: without warm-up (every pipeline)
# it gives the same LRs to 2.7e-16 relative and bit-identical weights over 480 Adam steps, so ours only spares a
# scheduler bound to an optimizer; with warm-up timm cannot match ours (its ramp starts at warmup_lr_init: up to
# 5 % off). Measured in benchmarks/handwritten.py.
def learning_rate(step: int, total_steps: int, base: float, scheduler: str, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to 0 over the remaining steps (or constant)."""
    if warmup_steps and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if scheduler == "constant":
        return base
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: torch.nn.Module, cfg: Config, lr: float) -> torch.optim.Optimizer:
    """The configured optimizer, with its fused step when ``train.fused_optimizer`` (one kernel over every
    parameter instead of foreach's many small ones) and always under portable numerics (its scalar sqrt gives the
    same floats on every CPU)."""
    from rfcx_kit.core import numerics

    params, t, extra = model.parameters(), cfg.train, numerics.optimizer_kwargs()
    if cfg.train.fused_optimizer:
        extra = {"fused": True}
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=t.weight_decay, **extra)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=t.weight_decay, **extra)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True, **extra)


def retrains(stage: str) -> bool:
    """Stages that continue from earlier weights with re-labeling's length and rate: the cycles, the control."""
    return stage.startswith("cycle") or stage == "control"


def stage_boxes(ctx: RunContext, stage: str) -> FramewiseLabels:
    """The boxes a stage trains on.

    stage 1 and the control: the TP/FP boxes. A cycle: those + its pseudo-positive boxes
    (``STAGE/pseudo_boxes.csv``, weight = the pseudo weight). The oracle: every planted call of a synthetic
    set's ``truth/calls.csv`` as a TP box, + the FP boxes (the labels complete, all else the same).
    """
    g = ctx.grid
    if stage.startswith("cycle"):
        pseudo = read_pseudo_boxes(ctx.run.pseudo_boxes(stage), ctx.seconds("train"), ctx.n_species)
        given = ctx.comp.boxes()  # their own weights where they have them (a masked BirdCLEF secondary: 0), else 1
        given["weight"] = given["weight"].fillna(1.0) if "weight" in given.columns else 1.0
        boxes = pd.concat([given, pseudo.assign(label=np.int8(1))], ignore_index=True)
    elif stage == "oracle":
        boxes = pd.concat([planted_calls(ctx).assign(label=np.int8(1)), ctx.comp.fp.assign(label=np.int8(-1))],
                          ignore_index=True)
    else:
        return ctx.labels
    return FramewiseLabels(boxes, ctx.train_ids, g.frames, g.sample_rate, g.hop_length, ctx.n_species, ctx.train_frames)


def planted_calls(ctx: RunContext) -> pd.DataFrame:
    """Every planted call of the train recordings (``truth/calls.csv``, kind ``call``): the complete labels."""
    calls = ctx.comp.planted_calls("train")
    if calls is None:
        raise DataError(f"{ctx.comp.root}: no truth/calls.csv: the oracle needs a synthetic data set's hidden truth")
    if not len(calls):
        raise DataError(f"{ctx.comp.truth_dir / 'calls.csv'}: no planted train calls: the oracle has nothing to train on")
    return calls


def stage_window_labels(ctx: RunContext, labels: FramewiseLabels) -> np.ndarray:
    """``(R, N, 24)`` int8 window labels of a stage's boxes (stage 1's are cached in the context)."""
    return ctx.window_labels if labels is ctx.labels else labels.windows(ctx.positions)


def stage_test_boxes(ctx: RunContext, stage: str) -> FramewiseLabels | None:
    """A cycle's pseudo-positive boxes on the test recordings (``relabel.test_pseudo``), else None."""
    if not stage.startswith("cycle") or not ctx.cfg.relabel.test_pseudo:
        return None
    g = ctx.grid
    boxes = read_pseudo_boxes(ctx.run.test_pseudo_boxes(stage), ctx.seconds("test"), ctx.n_species).assign(label=np.int8(1))
    return FramewiseLabels(boxes, ctx.comp.test_ids, g.frames, g.sample_rate, g.hop_length, ctx.n_species,
                           ctx.test_frames)


def stage_soft_targets(ctx: RunContext, stage: str) -> np.ndarray | None:
    """A cycle's ``(R, N, K)`` soft targets of pseudo-labelled windows (``relabel.soft_share``), else None."""
    if not stage.startswith("cycle") or not ctx.cfg.relabel.soft_share:
        return None
    return np.load(ctx.run.soft_targets(stage)).astype(np.float32)


def sample_epoch(ctx: RunContext, stage: str, rows: np.ndarray, rng: np.random.Generator,
                  labels: FramewiseLabels, soft: np.ndarray | None = None,
                  test_labels: FramewiseLabels | None = None) -> Items:
    """One epoch's items: every stage samples the same way (the cycles only add pseudo-positive boxes); with
    ``soft`` (a cycle's :func:`stage_soft_targets`), ``relabel.soft_share`` of them are pseudo-labelled windows;
    with ``test_labels`` (:func:`stage_test_boxes`), a crop around every pseudo-positive box of the test
    recordings joins the train crops (every fold trains on them: no test recording is held out)."""
    t, cfg = ctx.cfg.train, ctx.cfg
    if t.sampling == "tp_crops" and labels is not ctx.labels and stage.startswith("cycle") \
            and not cfg.relabel.pseudo_crops:
        # same crops, new labels: the control's crops (the original boxes), each crop's targets from the cycle's
        items = tp_crops(ctx.labels, rows, cfg.windows.window, t.fp_per_tp, t.crop_jitter, t.loss, rng,
                         t.unlabeled_weight)
        target, weight = labels.crop_targets(items.rows, items.starts, cfg.windows.window,
                                             0.0 if t.loss == "masked" else t.unlabeled_weight)
        items = Items(items.rows, items.starts, target, weight)
    elif t.sampling == "tp_crops":
        items = tp_crops(labels, rows, cfg.windows.window, t.fp_per_tp, t.crop_jitter, t.loss, rng,
                         t.unlabeled_weight)
        if test_labels is not None and len(test_labels.row):
            on_test = tp_crops(test_labels, np.arange(len(test_labels.recording_ids)), cfg.windows.window, 0.0,
                               t.crop_jitter, t.loss, rng, t.unlabeled_weight)
            items = concat_items(items, on_test.on_test())
    else:
        items = all_windows(stage_window_labels(ctx, labels), rows, ctx.positions, t.loss, t.unlabeled_weight,
                            ctx.window_valid)
    if not len(items):
        raise DataError(f"{stage}: the training recordings of this fold hold no TP box to crop around (too few TP "
                        f"rows for {cfg.train.folds} folds: {int((ctx.labels.label > 0).sum())} in all); label "
                        "more calls or use fewer folds")
    order = rng.permutation(len(items))
    if retrains(stage) and cfg.relabel.windows_per_epoch:
        size = cfg.relabel.windows_per_epoch
    elif t.steps_per_epoch:
        size = t.steps_per_epoch * t.batch_size
    elif stage != "stage1" and t.sampling == "tp_crops":
        # Pseudo-positive boxes (a cycle) or every planted call (the oracle) would lengthen the epoch: keep
        # stage 1's epoch size, so every stage and the control train for the same number of steps.
        size = tp_crop_count(ctx.labels, rows, t.fp_per_tp)
    else:
        size = None
    if soft is None:
        return items.take(np.resize(order, size) if size else order)
    # Pseudo-labelled windows take their share of the epoch (its size unchanged, so every stage and the control
    # still train the same steps); the two draws are shuffled together so every batch holds both.
    size = size or len(order)
    n_soft = int(round(cfg.relabel.soft_share * size))
    both = concat_items(items.take(np.resize(order, size - n_soft)),
                        soft_windows(soft, rows, ctx.positions, n_soft, rng))
    return both.take(rng.permutation(len(both)))


def batch_input(ctx: RunContext, batch: Items, mean_std, augment, gen: torch.Generator | None) -> torch.Tensor:  # noqa: ANN001
    """The model input ``(M, C, F, W)`` of a batch's crops, read from the train recordings and, for crops of
    pseudo-labelled test recordings (``batch.test``), from the test ones, in the batch's order."""
    cfg = ctx.cfg

    def read(split: str, part: Items) -> torch.Tensor:
        ids, stats, frames = ((ctx.train_ids, ctx.train_stats, ctx.train_frames) if split == "train"
                              else (ctx.comp.test_ids, ctx.test_stats, ctx.test_frames))
        return crop_batch(ctx.store, split, ids, stats, part.rows, part.starts, cfg.windows.window,
                          cfg.model.normalize, cfg.model.in_channels, mean_std, augment, gen, frames)

    if batch.test is None or not batch.test.any():
        return read("train", batch)
    if batch.test.all():
        return read("test", batch)
    on_test = np.flatnonzero(batch.test)
    on_train = np.flatnonzero(~batch.test)
    x = read("train", batch.take(on_train))
    out = torch.empty((len(batch),) + tuple(x.shape[1:]), dtype=x.dtype)
    out[torch.from_numpy(on_train)] = x
    out[torch.from_numpy(on_test)] = read("test", batch.take(on_test))
    return out


def _loss(out: dict[str, torch.Tensor], target: torch.Tensor, weight: torch.Tensor, cfg: Config, masked: bool) -> torch.Tensor:
    if masked:
        return masked_bce(out["clipwise"], target, weight, pos_weight=cfg.train.pos_weight)
    return clipwise_bce(out["clipwise"], target, weight)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   autocast: torch.autocast, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                   cfg: Config, masked: bool, lr: float,
                   plan: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """One training step on a batch ``x`` ``(M, C, F, W)`` with ``(M, 24)`` targets and loss weights.

    Sets the learning rate, mixes crops by ``plan`` (:func:`model.augment.mixup_plan`: the input or the pooled
    sequence, as ``augment.mixup_at`` says, with union targets), forwards under ``autocast``, backpropagates
    through ``scaler`` and steps; returns the detached loss.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    mix_sequence = None
    if plan is not None:
        target, weight = mix_targets(target, weight, plan)
        if cfg.augment.mixup_at == "input":
            x = mix(x, plan)
        else:
            def mix_sequence(sequence: torch.Tensor) -> torch.Tensor:
                return mix(sequence, plan)
    with autocast:
        out = model(x, mix=mix_sequence) if mix_sequence is not None else model(x)
    loss = _loss({k: v.float() for k, v in out.items()}, target, weight, cfg, masked)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _stage_seed(stage: str) -> int:
    """A number per stage for the seeds: 0 stage 1, c cycle c, 100 the oracle, 200 the control."""
    fixed = {"stage1": 0, "oracle": 100, "control": 200}
    return fixed[stage] if stage in fixed else int(stage.removeprefix("cycle"))


@dataclass
class FoldRun:
    """Everything one fold's loop carries: its data, model, optimizer and where it stands.

    Built by :func:`_setup`, brought to a killed run's state by :func:`_restore`, then advanced an epoch at a time
    by :func:`_train_epoch`, :func:`_validate` and :func:`_save_last`.
    """

    run: Run
    ctx: RunContext
    stage: str
    fold: int
    device: torch.device
    train_rows: np.ndarray
    val_rows: np.ndarray
    labels: FramewiseLabels
    soft: np.ndarray | None
    test_labels: FramewiseLabels | None
    epochs: int
    base_lr: float
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    mean_std: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    ema: Any = None
    saved: dict[str, Any] | None = None  # last.pt of a killed run, once restored

    @property
    def cfg(self) -> Config:
        return self.ctx.cfg

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated and kept: the weights' moving average with train.ema_decay, else the model."""
        model = self.ema.module if self.ema is not None else self.model
        return getattr(model, "_orig_mod", model)  # torch.compile's wrapper: validate the module itself

    @property
    def seeds(self) -> tuple[int, int, int]:
        return self.cfg.train.seed, self.fold, _stage_seed(self.stage)


def _setup(run: Run, stage: str, fold: int, init_from: str | None, epochs: int | None) -> FoldRun:
    """The fold's rows, labels and length; its model (seeded, from ``init_from`` or the backbone's weights) and
    optimizer."""
    ctx = load_context(run.root)
    cfg = ctx.cfg
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    fold_of = ctx.folds["fold"].to_numpy()
    is_cycle = retrains(stage)
    labels = stage_boxes(ctx, stage)
    soft, test_labels = stage_soft_targets(ctx, stage), stage_test_boxes(ctx, stage)
    if epochs is None:
        epochs = cfg.relabel.epochs if is_cycle and cfg.relabel.epochs is not None else cfg.train.epochs
    base_lr = cfg.relabel.lr if is_cycle and cfg.relabel.lr is not None else cfg.train.lr
    torch.manual_seed(cfg.train.seed + 1000 * fold + _stage_seed(stage))
    # Starting weights: a previous stage's checkpoint (cycles, control), else the backbone's pretrained ones.
    model = build_model(cfg, with_weights=not init_from)
    mean_std = input_stats(cfg)
    if init_from:
        model.load_state_dict(load_checkpoint(Path(init_from))["model"])
    model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return FoldRun(run, ctx, stage, fold, device, np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold),
                   labels, soft, test_labels, epochs, base_lr, model, build_optimizer(model, cfg, base_lr), mean_std)


def _restore(f: FoldRun, resume: bool) -> None:
    """A killed fold (``last.pt``): model, optimizer, RNG, counters and history as they were; then the EMA (which
    starts from the weights training starts from, or takes its saved average)."""
    last_path = f.run.checkpoint(f.stage, f.fold, "last")
    if last_path.exists():
        if not resume:
            raise RfcxError(f"{f.run.fold(f.stage, f.fold)} holds a checkpoint of an earlier run: pass --resume to "
                            "continue it, or use a new run directory")
        f.saved = state = load_checkpoint(last_path)
        f.model.load_state_dict(state["model"])
        f.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        f.start_epoch, f.step = state["epoch"] + 1, state["step"]
        f.best_score, f.best_epoch = state["best_score"], state["best_epoch"]
        f.history = pd.read_csv(f.run.fold_history(f.stage, f.fold)).to_dict("records")[: f.start_epoch]
        log.info("fold %d: resuming %s at epoch %d", f.fold, f.stage, f.start_epoch + 1)
    if f.cfg.train.ema_decay is not None:
        from timm.utils import ModelEmaV3

        f.ema = ModelEmaV3(f.model, decay=f.cfg.train.ema_decay)
        if f.saved is not None:
            f.ema.module.load_state_dict(f.saved["ema"])


@dataclass
class Schedule:
    """The fold's fixed step plan: the first epoch's sample (it sizes the schedule), steps, warm-up, AMP."""

    probe: Items
    total_steps: int
    warmup: int
    scaler: Any
    autocast: Any


def _schedule(f: FoldRun) -> Schedule:
    cfg, cuda = f.cfg, f.device.type == "cuda"
    # One epoch's size is fixed by the sampler; compute it once for the schedule.
    probe = sample_epoch(f.ctx, f.stage, f.train_rows, np.random.default_rng([*f.seeds, 0]), f.labels, f.soft,
                         f.test_labels)
    steps_per_epoch = max(1, -(-len(probe) // cfg.train.batch_size))
    return Schedule(probe, steps_per_epoch * f.epochs, cfg.train.warmup_epochs * steps_per_epoch,
                    torch.amp.GradScaler("cuda", enabled=cuda and cfg.train.amp),
                    torch.autocast(f.device.type, dtype=torch.float16, enabled=cuda and cfg.train.amp))


def _train_epoch(f: FoldRun, plan: Schedule, epoch: int, progress: bool) -> list[float]:
    """One epoch of steps over its sampled crops (the next batch's input built ahead in a thread); the losses."""
    from rfcx_kit.core.progress import progress_bar

    cfg, cuda = f.cfg, f.device.type == "cuda"
    augment = cfg.augment if cfg.augment.active else None
    masked = cfg.train.loss == "masked"
    rng = np.random.default_rng([*f.seeds, epoch])
    items = (plan.probe if epoch == 0 and f.start_epoch == 0
             else sample_epoch(f.ctx, f.stage, f.train_rows, rng, f.labels, f.soft, f.test_labels))
    f.model.train()
    losses: list[float] = []
    bar = progress_bar(total=len(items), unit="win", desc=f"{f.stage} fold {f.fold} epoch {epoch + 1}/{f.epochs}",
               enabled=progress, leave=False)
    batches = ((i, items.take(np.arange(lo, min(lo + cfg.train.batch_size, len(items)))))
               for i, lo in enumerate(range(0, len(items), cfg.train.batch_size)))
    batch_seed = (*f.seeds, epoch)

    def make_input(numbered: tuple[int, Items]) -> torch.Tensor:
        # Augmentation draws only from this batch's own generator: safe to run ahead in a thread.
        i, batch = numbered
        gen = batch_generator(*batch_seed, i, 0) if augment is not None else None
        x = batch_input(f.ctx, batch, f.mean_std, augment, gen)
        return x.pin_memory() if cuda else x

    prefetch = cuda if cfg.train.prefetch is None else cfg.train.prefetch
    for (i, batch), x in prefetched(batches, make_input, enabled=prefetch):
        mixing = mixup_plan(len(batch), cfg.augment, batch_generator(*batch_seed, i, 1)) if augment else None
        if cfg.relabel.soft_inject == "mixup" and batch.soft is not None and f.soft is not None:
            # every labelled crop mixed with one of the batch's pseudo-labelled windows (instead of augment's mixup)
            injected = injection_plan(batch.soft, np.random.default_rng([*batch_seed, i, 2]))
            if injected is not None:
                mixing = (torch.from_numpy(injected[0]), torch.from_numpy(injected[1]))
        x = x.to(f.device, non_blocking=True)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = torch.from_numpy(batch.target).to(f.device)
        weight = torch.from_numpy(batch.weight).to(f.device)
        lr = learning_rate(f.step, plan.total_steps, f.base_lr, cfg.train.scheduler, plan.warmup)
        loss = optimizer_step(f.model, f.optimizer, plan.scaler, plan.autocast, x, target, weight, cfg, masked, lr,
                              mixing)
        f.step += 1
        if f.ema is not None:
            f.ema.update(f.model, step=f.step)
        losses.append(float(loss))
        bar.update(len(batch))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    bar.close()
    return losses


def _validate(f: FoldRun, row: dict[str, Any], epoch: int, val_target: np.ndarray, val_weight: np.ndarray) -> None:
    """The held-out fold: its loss, LWLRAP and ``train.metric`` into ``row``; ``best.pt`` when the epoch is the one
    to keep (train.select)."""
    cfg, k = f.cfg, f.ctx.n_species
    pred = predict_split(f.eval_model, f.ctx, "train", f.val_rows, f.ctx.positions, f.device)
    clipwise, weight = pred.clipwise, val_weight
    if np.isnan(clipwise).any():  # windows past a recording's end: out of the loss
        weight = np.where(np.isnan(clipwise), np.float32(0), weight)
        clipwise = np.nan_to_num(clipwise)
    with torch.no_grad():
        row["val_loss"] = float(_loss({"clipwise": torch.from_numpy(clipwise.reshape(-1, k))},
                                      torch.from_numpy(val_target.reshape(-1, k)),
                                      torch.from_numpy(weight.reshape(-1, k)), cfg, cfg.train.loss == "masked"))
    scored = f.ctx.scored[f.val_rows]  # recordings without labels (unlabelled soundscapes) are not scored
    clip, truth = pred.clip(cfg.predict.mode)[scored], f.ctx.tp_truth[f.val_rows][scored]
    row["val_lwlrap"] = lwlrap(truth, clip)  # the competition's, always reported
    metric = get_metric(cfg.train.metric)  # the one that chooses the epoch (core/metrics/registry.py)
    value = row.setdefault(f"val_{metric.name}", metric(truth, clip))
    # one direction for the comparison below: higher is better; no figure (no positive): the loss
    score = (value if metric.higher_is_better else -value) if np.isfinite(value) else -row["val_loss"]
    # train.select: best keeps the epoch the held-out fold scores best (an optimistic CV); last keeps the final
    # epoch, chosen without looking at the held-out fold.
    if score > f.best_score if cfg.train.select == "best" else epoch + 1 == f.epochs:
        f.best_score, f.best_epoch = score, epoch + 1
        # the config rides along: a best.pt alone is enough to rebuild the model and predict
        save_checkpoint(f.run.checkpoint(f.stage, f.fold, "best"),
                        {"model": _state(f.eval_model), "epoch": epoch, "score": score, "config": cfg.to_dict()})


def _save_last(f: FoldRun, epoch: int) -> None:
    """``last.pt`` (all a resume needs) and ``history.csv``, after every epoch."""
    last = {"model": _state(f.model), "optimizer": f.optimizer.state_dict(), "epoch": epoch, "step": f.step,
            "torch_rng": torch.get_rng_state(), "best_score": f.best_score, "best_epoch": f.best_epoch,
            "config": f.cfg.to_dict()}
    if f.ema is not None:
        last["ema"] = _state(f.ema.module)
    save_checkpoint(f.run.checkpoint(f.stage, f.fold, "last"), last)
    atomic_write_csv(f.run.fold_history(f.stage, f.fold), pd.DataFrame(f.history))


def train_fold(fold: int, *, run_dir: str | Path, stage: str = "stage1", resume: bool = False,
               init_from: str | None = None, progress: bool = True, epochs: int | None = None,
               on_epoch_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train one fold of a stage and write its checkpoints, history and predictions.

    Args:
        fold: the held-out fold.
        run_dir: the run directory (config.yaml, data.yaml, folds.csv, stats_*.npy).
        stage: ``stage1`` or ``cycleN``; a cycle reads its label table from ``STAGE/labels.csv``.
        resume: continue from ``last.pt`` if present (a finished fold is always skipped).
        init_from: a checkpoint whose model weights start this training (re-labeling).
        epochs: training length (None: ``relabel.epochs`` for cycles and the control, else ``train.epochs``).
        on_epoch_end: called with the finished epoch (tests use it to simulate a kill).
    Returns:
        a summary: fold, best_epoch, best_score (the epoch's train.metric, negated where lower is better),
        metric, epochs, seconds.
    """
    run = Run(run_dir)
    done_path = run.fold_done(stage, fold)
    if done_path.exists():
        return json.loads(done_path.read_text())
    f = _setup(run, stage, fold, init_from, epochs)
    _restore(f, resume)
    cfg = f.cfg
    run.fold(stage, fold).mkdir(parents=True, exist_ok=True)
    plan = _schedule(f)
    if f.device.type == "cuda" and cfg.train.compile:
        f.model = torch.compile(f.model)  # type: ignore[assignment]
    val_target, val_weight = labels_to_loss_arrays(f.ctx.window_labels[f.val_rows],
                                                   "masked" if cfg.train.loss == "masked" else cfg.train.loss)
    started = time.time()
    tracker = None
    if cfg.train.log_to:
        from rfcx_kit.method.tracking import FoldTracker

        tracker = FoldTracker(run.root, stage, fold, cfg.train.log_to, cfg.to_dict())
    ok = False
    try:
        for epoch in range(f.start_epoch, f.epochs):
            epoch_start = time.time()
            losses = _train_epoch(f, plan, epoch, progress)
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                                   "lr": f.optimizer.param_groups[0]["lr"]}
            if (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == f.epochs:
                _validate(f, row, epoch, val_target, val_weight)
            row["seconds"] = round(time.time() - epoch_start, 2)
            f.history.append(row)
            _save_last(f, epoch)
            if tracker is not None:  # after the file: a tracker holds what history.csv holds
                tracker.epoch(row)
            log.info("%s fold %d epoch %d/%d: %s", stage, fold, epoch + 1, f.epochs,
                     ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
        ok = True
    finally:
        if tracker is not None:
            tracker.close(ok)

    model = f.model
    model.load_state_dict(load_checkpoint(run.checkpoint(stage, fold, "best"))["model"])
    # every train recording only where a next cycle's votes read it (never the control's or the oracle's)
    votes = cfg.relabel.source == "vote" and (stage == "stage1" or stage.startswith("cycle"))
    write_predictions(model, f.ctx, stage, fold, f.val_rows, f.device, all_train=votes)
    summary = {"fold": fold, "stage": stage, "best_epoch": f.best_epoch, "best_score": f.best_score,
               "metric": cfg.train.metric, "epochs": f.epochs, "seconds": round(time.time() - started, 1),
               "device": str(f.device)}
    atomic_write_json(done_path, summary)
    return summary


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    inner = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    return {k: v.detach().cpu() for k, v in inner.state_dict().items()}
