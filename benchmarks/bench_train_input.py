"""Training input pipeline: the share of a training step spent waiting for data, and windows/s.

The fold loop of ``rfcx_kit.method.train.train_fold`` is replayed step by step on CPU with the same library calls in
the same order: an epoch's items from ``sample_epoch`` (TP crops + FP windows, the post's stage 1), then per
step ``items.take`` + ``crop_batch`` (read 512-frame crops from the memory-mapped store, normalise) through
``inputs.prefetched``: inline (the library's default on CPU) or with the next batch built in a background
thread (``train.prefetch=true``, the default on CUDA). *Data* = time the step waits for its batch plus the
epoch's sampling (``sample_epoch``: crops and their labels) spread over the epoch's steps; *compute* =
learning-rate update + forward + loss + ``zero_grad`` + backward + optimizer step.
Data share = data / (data + compute), summed over the measured steps (target < 10% with a tiny model).

Rows: each backbone with the page cache warm (``prepare_run``'s statistics pass has just read every file,
as in a real run), the tiny model also with the prefetch thread and with the page cache dropped before the
steps (a first epoch on a machine whose RAM cannot hold the data set).

    python benchmarks/bench_train_input.py [--data DIR] [--train 400] [--steps 30]
        [--backbones mobilenetv3_small_050,resnet18]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from rfcx_kit.core.config import load_config  # noqa: E402
from rfcx_kit.model.inputs import crop_batch, prefetched  # noqa: E402
from rfcx_kit.method.stage1 import prepare_run  # noqa: E402
from rfcx_kit.method.train import (  # noqa: E402
    build_optimizer, learning_rate, optimizer_step, sample_epoch)
from rfcx_kit.method.checkpoint import build_model
from rfcx_kit.method.context import load_context  # noqa: E402

TARGET = 0.10
TINY = "mobilenetv3_small_050"


def run_steps(ctx, backbone: str, steps: int, warmup: int, prefetch: bool = False,  # noqa: ANN001
              before: callable = None) -> dict:
    """Replay ``warmup + steps`` training steps of fold 0; time data and compute of the last ``steps``."""
    cfg = ctx.cfg
    cfg.model.backbone = backbone
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg, cfg.train.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # as train_fold on CPU
    autocast = torch.autocast("cpu", dtype=torch.float16, enabled=False)
    fold_of = ctx.folds["fold"].to_numpy()
    rows = np.flatnonzero(fold_of != 0)
    sample_start = time.perf_counter()
    items = sample_epoch(ctx, "stage1", rows, np.random.default_rng([cfg.train.seed, 0, 0, 0]), ctx.labels)
    sample_s = time.perf_counter() - sample_start  # once per epoch in train_fold
    bs = cfg.train.batch_size
    epoch_steps = max(1, -(-len(items) // bs))
    total_steps = warmup + steps
    order = np.resize(np.arange(len(items)), total_steps * bs)
    items = items.take(order)

    def make_input(batch):  # noqa: ANN001, ANN202 - as train_fold's
        return crop_batch(ctx.store, "train", ctx.train_ids, ctx.train_stats, batch.rows, batch.starts,
                          cfg.windows.window, cfg.model.normalize, cfg.model.in_channels)

    model.train()
    data_s = compute_s = 0.0
    if before is not None:
        before()
    batches = (items.take(np.arange(step * bs, (step + 1) * bs)) for step in range(total_steps))
    stream = prefetched(batches, make_input, enabled=prefetch)
    start_all = time.perf_counter()
    for step in range(total_steps):
        if step == warmup:
            data_s = compute_s = 0.0
            start_all = time.perf_counter()
        t0 = time.perf_counter()
        batch, x = next(stream)
        target, weight = torch.from_numpy(batch.target), torch.from_numpy(batch.weight)
        t1 = time.perf_counter()
        lr = learning_rate(step, total_steps, cfg.train.lr, cfg.train.scheduler, 0)
        float(optimizer_step(model, optimizer, scaler, autocast, x, target, weight, cfg, False, lr))
        t2 = time.perf_counter()
        data_s += t1 - t0
        compute_s += t2 - t1
    wall = time.perf_counter() - start_all
    stream.close()
    sampling_s = sample_s * steps / epoch_steps  # the epoch's sampling, pro rata for the measured steps
    data_s += sampling_s
    wall += sampling_s
    return {"steps": steps, "batch": bs, "data s": data_s, "compute s": compute_s, "wall s": wall,
            "sampling ms/epoch": 1000 * sample_s, "steps/epoch": epoch_steps,
            "data share %": 100 * data_s / (data_s + compute_s), "data ms/step": 1000 * data_s / steps,
            "compute ms/step": 1000 * compute_s / steps, "windows/s": steps * bs / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="npy competition folder [default: a subset of /tmp/bench/synth_full, or a small synthetic set]")
    parser.add_argument("--train", type=int, default=400, help="Train recordings of the subset (with --data unset).")
    parser.add_argument("--steps", type=int, default=30, help="Measured steps for the tiny model (resnet18: a third).")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backbones", type=lambda t: t.split(","), default=[TINY, "resnet18"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's, = cores].")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.data is None:
        full = common.BENCH_DIR / "synth_full"
        if (full / "sample_submission.csv").exists():
            args.data = common.subset_competition(full, args.train, 40)
        else:
            args.data = common.ensure_synth(common.BENCH_DIR / "synth_npy_small", 64, 32, "npy")
    run_dir = common.BENCH_DIR / "train_input_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = load_config(None, ("train.device=cpu", "train.folds=5"))
    prepare_run(run_dir, args.data, None, cfg, resume=False, progress=False)  # stats pass: page cache warm
    ctx = load_context(run_dir)
    files = [ctx.store.path("train", r) for r in ctx.train_ids]
    load_before = common.warn_if_busy("bench_train_input")
    foreign = common.ForeignLoad().start()
    loads = []

    rows = []
    cases = [(b, "warm", False) for b in args.backbones]
    if TINY in args.backbones:  # inline and prefetch alternate twice, so the order of runs shows up in the rows
        cases += [(TINY, "warm", True), (TINY, "warm", False), (TINY, "warm", True), (TINY, "cold", False)]
    for backbone, cache, prefetch in cases:
        steps = args.steps if backbone == TINY else max(5, args.steps // 3)
        before = (lambda: common.drop_page_cache(files)) if cache == "cold" else None
        loads.append(common.load_average())
        res = run_steps(ctx, backbone, steps, args.warmup, prefetch=prefetch, before=before)
        rows.append({"backbone": backbone, "page cache": cache, "loader": "prefetch thread (prefetch=true)" if prefetch else "inline (CPU default)",
                     **res})
        print(common.table(rows[-1:]), flush=True)

    foreign_cores = foreign.stop()
    main_row = next(r for r in rows if r["backbone"] == TINY and r["page cache"] == "warm" and r["loader"].startswith("inline")) \
        if TINY in args.backbones else rows[0]
    share = main_row["data share %"] / 100
    print()
    print(common.table(rows, ["backbone", "page cache", "loader", "steps", "batch", "sampling ms/epoch", "steps/epoch",
                              "data ms/step", "compute ms/step", "data share %", "windows/s"]))
    print(f"\ndata share, {main_row['backbone']} (library default on CPU: inline, warm cache): {100 * share:.1f}% "
          f"[target < {100 * TARGET:.0f}%: {'met' if share < TARGET else 'MISSED'}]")
    result = {
        "data": str(args.data), "train_recordings": len(ctx.train_ids), "torch_threads": torch.get_num_threads(),
        "batch_size": cfg.train.batch_size, "sampling": cfg.train.sampling,
        "load_before": load_before, "load_during_max": max(loads), "foreign_cores": foreign_cores, "rows": rows,
        "target": {"what": f"data share of a step < {100 * TARGET:.0f}% ({main_row['backbone']}, CPU)", "value": share,
                   "met": share < TARGET},
    }
    common.write_result("train_input", result)
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
