"""A stage's prediction files: each fold's out-of-fold, test and all-train predictions (``fold{k}/*_pred.npz``,
``fold{k}/test.csv``), written and read back. Soft frame-wise prediction itself is ``method/predict.py``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rfcx_kit.core.io import atomic_path
from rfcx_kit.data.submission import write_submission
from rfcx_kit.method.checkpoint import input_stats
from rfcx_kit.method.context import RunContext

if TYPE_CHECKING:
    import torch

    from rfcx_kit.method.predict import Prediction


def predict_split(model: torch.nn.Module, ctx: RunContext, split: str, rows: np.ndarray,
                  positions: list[list[int]], device: torch.device, progress: bool = False) -> Prediction:
    """Soft frame-wise prediction of recordings ``rows`` of ``split`` (train | test) with the run's settings."""
    from rfcx_kit.method.predict import predict_recordings

    cfg = ctx.cfg
    ids = ctx.comp.ids(split)
    stats = ctx.train_stats if split == "train" else ctx.test_stats
    return predict_recordings(model, ctx.store, split, [ids[i] for i in rows], stats[rows], positions,
                              cfg.model.normalize, cfg.model.in_channels, cfg.predict.batch_recordings,
                              cfg.predict.max_windows, device=device, amp=cfg.train.amp,
                              channels_last=cfg.train.channels_last, progress=progress,
                              mean_std=input_stats(cfg),
                              lengths=(ctx.train_frames if split == "train" else ctx.test_frames)[rows])


def save_prediction(path: Path, pred: Prediction, ids: list[str]) -> None:
    """All outputs of a prediction in one ``.npz`` (written atomically)."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, ids=np.asarray(ids), windows=pred.windows, clipwise=pred.clipwise,
                     stitched=pred.stitched, framewise=pred.framewise)


def load_prediction(path: Path) -> tuple[list[str], Prediction]:
    from rfcx_kit.method.predict import Prediction

    with np.load(path, allow_pickle=False) as data:
        return [str(i) for i in data["ids"]], Prediction(data["windows"], data["clipwise"], data["stitched"],
                                                          data["framewise"])


def write_predictions(model: torch.nn.Module, ctx: RunContext, stage: str, fold: int, val_rows: np.ndarray,
                      device: torch.device, all_train: bool = False) -> None:
    """A fold's out-of-fold (train windows), test (test windows) and, for fold votes, all-train predictions."""
    run = ctx.run
    if all_train:  # the held-out recordings are among them: predicted once
        every = predict_split(model, ctx, "train", np.arange(len(ctx.train_ids)), ctx.positions, device)
        save_prediction(run.prediction(stage, fold, "train"), every, ctx.train_ids)
        val = every.take(np.asarray(val_rows))
    else:
        val = predict_split(model, ctx, "train", val_rows, ctx.positions, device)
    save_prediction(run.prediction(stage, fold, "val"), val, [ctx.train_ids[i] for i in val_rows])
    if not ctx.comp.test_ids:  # a data set without test recordings: nothing to predict there
        return
    test_rows = np.arange(len(ctx.comp.test_ids))
    test = predict_split(model, ctx, "test", test_rows, ctx.test_positions, device)
    save_prediction(run.prediction(stage, fold, "test"), test, ctx.comp.test_ids)
    frame = pd.DataFrame(test.clip(ctx.cfg.predict.mode), columns=ctx.species.columns)
    frame.insert(0, "recording_id", ctx.comp.test_ids)
    write_submission(frame, run.fold_test_csv(stage, fold), ctx.comp.test_ids, len(ctx.species))
