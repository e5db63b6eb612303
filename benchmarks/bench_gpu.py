"""GPU path: windows/s of resnet18 at 128 x 512 with mixed precision, channels-last, pinned memory and
(optionally) ``torch.compile``; optionally the wall time of the full method-post recipe.

Without CUDA the script records "not measured: no GPU in this session" and exits 0 (never needed by tests).

Training-step rows (batch ``--batch`` windows of 3 x 128 x 512, Adam, clipwise BCE, as ``train_fold``):
fp32; AMP fp16 (``torch.autocast`` + ``GradScaler``, the library's ``train.amp``); AMP + channels-last (the
library's default on CUDA); + ``torch.compile`` with ``--compile``. Inference rows: soft frame-wise
prediction forwards (bf16 autocast as ``predict_recordings(amp=True)``). Input transfer: a batch from
``crop_batch`` copied to the GPU from pageable vs pinned memory (``non_blocking=True``).

``--recipe DATA`` also times the full recipe on a data folder (``rfcx-kit stage1`` + ``rfcx-kit relabel``
with 3 cycles, 5 folds, the method post's settings): hours on one GPU at full synthetic size.

    python benchmarks/bench_gpu.py [--batch 64] [--steps 30] [--compile] [--recipe /tmp/bench/synth_full]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NOT_MEASURED = "not measured: no GPU in this session"


def train_rate(backbone: str, batch: int, steps: int, amp: bool, channels_last: bool, compile_: bool) -> float:
    from rfcx_kit.model.losses import clipwise_bce
    from rfcx_kit.model.sed import SEDModel

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = SEDModel(backbone).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if compile_:
        model = torch.compile(model)
    x = torch.randn(batch, 3, 128, 512, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 24, device=device) < 0.1).float()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = model(x)
        loss = clipwise_bce(out["clipwise"].float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(5 if not compile_ else 10):  # warm-up (cudnn autotune, compilation)
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


@torch.no_grad()
def infer_rate(backbone: str, batch: int, steps: int, amp: bool, channels_last: bool) -> float:
    from rfcx_kit.model.sed import SEDModel

    device = torch.device("cuda")
    model = SEDModel(backbone).to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 128, 512, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            model(x)["framewise"].sigmoid().amax(-1)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            model(x)["framewise"].sigmoid().amax(-1)
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def transfer_ms(batch: int, pinned: bool, repeat: int = 20) -> float:
    x = torch.randn(batch, 3, 128, 512)
    if pinned:
        x = x.pin_memory()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        x.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeat


def recipe_seconds(data: Path) -> dict:
    """The full method-post recipe: stage 1 (5 folds) + 3 re-labeling cycles, default settings."""
    from rfcx_kit.method.cycle import run_relabel
    from rfcx_kit.method.stage1 import run_stage1

    run = common.BENCH_DIR / "gpu_recipe_run"
    shutil.rmtree(run, ignore_errors=True)
    start = time.perf_counter()
    stage1 = run_stage1(data, run, progress=False)
    t_stage1 = time.perf_counter() - start
    history = run_relabel(run, cycles=3, progress=False)
    total = time.perf_counter() - start
    return {"stage1_s": t_stage1, "total_s": total, "stage1_cv_lwlrap": stage1.get("cv_lwlrap"),
            "final": {k: history[-1].get(k) for k in ("cv_lwlrap", "truth_test_lwlrap")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="Also time torch.compile (minutes of compilation).")
    parser.add_argument("--recipe", type=Path, default=None, help="Data folder: also time the full recipe on it.")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print(NOT_MEASURED)
        common.write_result("gpu", {"status": NOT_MEASURED, "rows": [], "recipe": NOT_MEASURED,
                                    "load_before": common.load_average()})
        return
    torch.backends.cudnn.benchmark = True
    rows = []
    cases = [("fp32", False, False, False), ("AMP fp16", True, False, False),
             ("AMP fp16 + channels-last (library default)", True, True, False)]
    if args.compile:
        cases.append(("AMP fp16 + channels-last + torch.compile", True, True, True))
    for name, amp, cl, comp in cases:
        rate = train_rate(args.backbone, args.batch, args.steps, amp, cl, comp)
        rows.append({"what": f"train step: {name}", "windows/s": rate})
        print(common.table(rows[-1:]), flush=True)
    for name, amp, cl in (("fp32", False, False), ("AMP bf16 + channels-last", True, True)):
        rows.append({"what": f"prediction forward: {name}", "windows/s": infer_rate(args.backbone, args.batch * 2,
                                                                                     args.steps, amp, cl)})
    for pinned in (False, True):
        rows.append({"what": f"host->GPU copy of a {args.batch}-window batch, {'pinned' if pinned else 'pageable'}",
                     "ms": transfer_ms(args.batch, pinned)})
    print(common.table(rows, ["what", "windows/s", "ms"]))
    recipe = recipe_seconds(args.recipe) if args.recipe else "not run (pass --recipe DATA)"
    if isinstance(recipe, dict):
        print(f"full recipe: stage 1 {recipe['stage1_s'] / 60:.1f} min, with 3 cycles {recipe['total_s'] / 60:.1f} min")
    common.write_result("gpu", {"status": "measured", "device": torch.cuda.get_device_name(0), "batch": args.batch,
                                "backbone": args.backbone, "rows": rows, "recipe": recipe,
                                "load_before": common.load_average()})


if __name__ == "__main__":
    main()
