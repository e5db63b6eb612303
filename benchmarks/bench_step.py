"""The training step: windows per second on this machine's cores, native and portable, and the quality it buys.

Speed: each configuration trains ``--steps`` steps of fold 0 (after ``--warmup``) through the library's own pieces
in the order ``train_fold`` calls them (``sample_epoch`` -> ``crop_batch`` -> ``optimizer_step``), in a fresh
process per measurement, so that numerics, threads and the memory format are set as a real run sets them.
Configurations run in turn, round after round (A B C .. A B C ..), so a drift of the machine's speed hits them
alike; the table gives each one's median windows/s over the rounds and the median of its per-round ratio to
the first (``before``).

Quality: the 1-fold oracle (fold 0 of ``rfcx-kit oracle``: every planted call labelled) at the recipe's steps,
its test LWLRAP against the synthetic truth, per training seed (``--quality-seeds``), so a faster step is only
taken where it learns as well.

    python benchmarks/bench_step.py [--data DIR] [--rounds 5] [--steps 40] [--quality] [--quality-seeds 42 1]

Writes ``$RFCX_BENCH_DIR/bench_step.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RECIPE = "study"
# name -> (config overrides, extra environment, folds trained at once with one thread each)
BEFORE = ["model.backbone=mobilenetv3_small_050", "train.channels_last=false", "train.fused_optimizer=false"]
CONFIGS: dict[str, tuple[list[str], dict[str, str], int]] = {
    "before": (BEFORE, {}, 1),
    "+ channels_last": (["model.backbone=mobilenetv3_small_050", "train.channels_last=true",
                         "train.fused_optimizer=false"], {}, 1),
    "+ fused Adam": (["model.backbone=mobilenetv3_small_050", "train.channels_last=true",
                      "train.fused_optimizer=true"], {}, 1),
    "+ 1 input channel": (["model.backbone=mobilenetv3_small_050", "train.channels_last=true",
                           "train.fused_optimizer=true", "model.in_channels=1"], {}, 1),
    "test_byobnet (no depthwise)": (["model.backbone=test_byobnet", "train.channels_last=true",
                                     "train.fused_optimizer=true"], {}, 1),
    "test_byobnet, NCHW": (["model.backbone=test_byobnet", "train.channels_last=false",
                            "train.fused_optimizer=true"], {}, 1),
    "test_byobnet, 2 folds x 1 thread": (["model.backbone=test_byobnet", "train.channels_last=true",
                                          "train.fused_optimizer=true", "train.threads=1"], {}, 2),
    "test_byobnet, a third of the steps": (["model.backbone=test_byobnet", "train.channels_last=true",
                                           "train.fused_optimizer=true", "train.epochs=20"], {}, 1),
    "test_byobnet, batch 32": (["model.backbone=test_byobnet", "train.channels_last=true",
                                "train.fused_optimizer=true", "train.batch_size=32"], {}, 1),
}
PORTABLE = {"RFCX_KIT_NUMERICS": "portable"}


def worker(run_dir: Path, data: Path, overrides: list[str], steps: int, warmup: int) -> dict:
    """In a fresh process: ``warmup + steps`` training steps of fold 0; windows/s of the last ``steps``."""
    import rfcx_kit  # noqa: F401 - first, so portable numerics' pins act before torch and numpy load
    import numpy as np
    import torch

    from rfcx_kit.core.config import load_config
    from rfcx_kit.method.checkpoint import build_model, input_stats
    from rfcx_kit.method.context import load_context
    from rfcx_kit.method.stage1 import prepare_run
    from rfcx_kit.method.train import build_optimizer, learning_rate, optimizer_step, sample_epoch
    from rfcx_kit.model.inputs import crop_batch

    cfg = load_config(RECIPE, tuple(overrides))
    if not (run_dir / "config.yaml").exists():
        prepare_run(run_dir, data, None, cfg, resume=False, progress=False)
    ctx = load_context(run_dir)
    cfg = ctx.cfg
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, cfg.train.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    autocast = torch.autocast("cpu", dtype=torch.float16, enabled=False)
    rows = np.flatnonzero(ctx.folds["fold"].to_numpy() != 0)
    items = sample_epoch(ctx, "stage1", rows, np.random.default_rng(0), ctx.labels)
    bs, mean_std = cfg.train.batch_size, input_stats(cfg)
    masked = cfg.train.loss == "masked"
    model.train()
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        lo = (step * bs) % max(1, len(items) - bs)
        batch = items.take(np.arange(lo, lo + bs))
        x = crop_batch(ctx.store, "train", ctx.train_ids, ctx.train_stats, batch.rows, batch.starts,
                       cfg.windows.window, cfg.model.normalize, cfg.model.in_channels, mean_std, None, None,
                       ctx.train_frames)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = learning_rate(step, warmup + steps, cfg.train.lr, "cosine", 0)
        optimizer_step(model, optimizer, scaler, autocast, x, torch.from_numpy(batch.target),
                       torch.from_numpy(batch.weight), cfg, masked, lr)
    seconds = time.perf_counter() - started
    from rfcx_kit.core.numerics import describe

    numerics = describe()
    return {"windows_per_s": steps * bs / seconds, "ms_per_step": 1000 * seconds / steps, "batch": bs,
            "numerics": numerics["mode"], "kernels": numerics["torch_cpu_capability"],
            "threads": numerics["torch_threads"]}


def measure(name: str, numerics: str, data: Path, work: Path, steps: int, warmup: int) -> float:
    """Windows/s of one configuration in fresh process(es): with ``parallel`` > 1, that many at once (folds
    trained side by side), their windows/s summed."""
    overrides, env, parallel = CONFIGS[name]
    environ = dict(os.environ) | env | (PORTABLE if numerics == "portable" else {})
    environ.pop("RFCX_KIT_NUMERICS", None) if numerics == "native" else None
    slug = "".join(c if c.isalnum() else "_" for c in name)
    cmd = lambda i: [sys.executable, __file__, "--worker", json.dumps(  # noqa: E731
        {"run": str(work / f"{slug}_{numerics}_{i}"), "data": str(data), "overrides": overrides, "steps": steps,
         "warmup": warmup})]
    procs = [subprocess.Popen(cmd(i), env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(parallel)]
    total = 0.0
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{name} ({numerics}) failed:\n{err[-2000:]}")
        total += json.loads(out.strip().splitlines()[-1])["windows_per_s"]
    return total


def oracle_fold(name: str, data: Path, work: Path, seed: int) -> dict:
    """Fold 0 of the oracle under a configuration (native): test LWLRAP against truth, steps, time."""
    overrides, env, parallel = CONFIGS[name]
    slug = "".join(c if c.isalnum() else "_" for c in name)
    run = work / f"oracle_{slug}_t{seed}"
    code = (
        "import json, sys, time\n"
        "import rfcx_kit\n"
        "from pathlib import Path\n"
        "import pandas as pd\n"
        "from rfcx_kit.core.config import load_config\n"
        "from rfcx_kit.core.metrics import lwlrap\n"
        "from rfcx_kit.method.run import Run\nfrom rfcx_kit.method.context import load_context\n"
        "from rfcx_kit.method.stage1 import prepare_run\n"
        "from rfcx_kit.method.train import train_fold\n"
        "run, data, overrides = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])\n"
        "cfg = load_config(sys.argv[4], tuple(overrides))\n"
        "if not (run / 'config.yaml').exists(): prepare_run(run, data, None, cfg, resume=False, progress=False)\n"
        "t = time.time(); s = train_fold(0, run_dir=run, stage='oracle', progress=False, resume=True)\n"
        "ctx = load_context(run); r = Run(run)\n"
        "test = pd.read_csv(r.fold_test_csv('oracle', 0), dtype={'recording_id': str}).set_index('recording_id')\n"
        "truth = pd.read_csv(data / 'truth' / 'test_presence.csv', dtype={'recording_id': str}).set_index('recording_id')\n"
        "cols = ctx.species.columns\n"
        "print(json.dumps({'test_lwlrap': lwlrap(truth.loc[test.index, cols].to_numpy(), test[cols].to_numpy()),\n"
        "                  'steps': ctx.cfg.train.epochs * ctx.cfg.train.steps_per_epoch, 'batch': ctx.cfg.train.batch_size,\n"
        "                  'fold_seconds': s['seconds']}))\n")
    environ = {k: v for k, v in os.environ.items() if k != "RFCX_KIT_NUMERICS"} | env
    over = [*overrides, f"train.seed={seed}"]
    if "train.batch_size=32" in overrides:  # batch against steps: as many windows in half the steps
        from rfcx_kit.core.config import load_config

        base = load_config(RECIPE)
        over += [f"train.epochs={base.train.epochs // 2}", f"train.val_every={max(1, base.train.val_every // 2)}"]
    done = subprocess.run([sys.executable, "-c", code, str(run), str(data), json.dumps(over), RECIPE], env=environ,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"oracle {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help="demo-profile npy data [default: made here]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--portable", nargs="*", default=["before", "test_byobnet (no depthwise)", "test_byobnet, NCHW"],
                        help="configurations also timed under portable numerics")
    parser.add_argument("--quality", action="store_true", help="also the 1-fold oracle of each configuration")
    parser.add_argument("--quality-seeds", type=int, nargs="+", default=[42, 1])
    parser.add_argument("--quality-configs", nargs="*", default=["before", "+ channels_last", "+ fused Adam",
                                                                 "+ 1 input channel", "test_byobnet (no depthwise)",
                                                                 "test_byobnet, a third of the steps",
                                                                 "test_byobnet, batch 32"],
                        help="configurations whose 1-fold oracle is trained (the others are the same arithmetic)")
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(worker(Path(spec["run"]), Path(spec["data"]), spec["overrides"], spec["steps"], spec["warmup"])))
        return
    work = common.BENCH_DIR / "step"
    data = args.data or common.BENCH_DIR / "step_data"
    if args.data is None and not (data / "truth" / "params.json").is_file():
        subprocess.run([*common.rfcx_kit_cli(), "synth", "--out", str(data), "--profile", "demo", "--train", "600",
                        "--test", "100", "--format", "npy", "--seed", "7", "--no-progress"], check=True)
    common.warn_if_busy("bench_step")
    plan = [(c, "native") for c in args.configs] + [(c, "portable") for c in args.portable]
    speeds: dict[tuple[str, str], list[float]] = {p: [] for p in plan}
    for r in range(args.rounds):
        for name, numerics in plan:
            speeds[(name, numerics)].append(measure(name, numerics, data, work, args.steps, args.warmup))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {m} {v[-1]:.0f}" for (n, m), v in speeds.items()),
              flush=True)
    base = speeds[("before", "native")]
    rows = []
    for (name, numerics), values in speeds.items():
        ratio = [v / b for v, b in zip(values, base)]
        native = speeds.get((name, "native"))
        rows.append({"configuration": name, "numerics": numerics, "windows/s median": statistics.median(values),
                     "min": min(values), "max": max(values), "x before (median of pairs)": statistics.median(ratio),
                     "portable cost (x native)": (statistics.median([n / v for n, v in zip(native, values)])
                                                  if numerics == "portable" and native else None)})
    speed_table = common.table(rows, markdown=True)
    print(speed_table)
    result = {"speed": rows, "rounds": args.rounds, "steps": args.steps, "machine": common.machine_info(),
              "command": common.command_line()}
    machine = result["machine"]
    lines = ["# The training step: speed and quality", "",
             f"Generated by `{result['command']}` on {machine['when']}: {machine['cpu']}, {machine['usable_cores']} "
             f"cores, torch {machine['torch']}. Speed: windows per second of fold 0's training steps ({args.steps} "
             f"steps after {args.warmup}, batch of the recipe `{RECIPE}` unless named), each configuration in a fresh "
             f"process, {args.rounds} rounds in turn; `x before` is the median of each round's ratio to `before` "
             "(mobilenetv3_small_050, NCHW, foreach Adam: the demo's step before this change).", "", speed_table]
    if args.quality:
        quality = []
        for name in args.quality_configs:
            for seed in args.quality_seeds:
                q = oracle_fold(name, data, work, seed)
                quality.append({"configuration": name, "seed": seed, **q})
                print(f"oracle fold 0, {name}, seed {seed}: {q['test_lwlrap']:.3f} ({q['steps']} steps of "
                      f"{q['batch']}, {q['fold_seconds']:.0f} s)", flush=True)
        by = {}
        for q in quality:
            by.setdefault(q["configuration"], []).append(q["test_lwlrap"])
        before = statistics.mean(by["before"]) if "before" in by else None
        rows = [{"configuration": k, "1-fold oracle (mean over seeds)": statistics.mean(v), "seeds": len(v),
                 "minus before": statistics.mean(v) - before if before is not None else None} for k, v in by.items()]
        quality_table = common.table(rows, markdown=True)
        print(quality_table)
        result["quality"] = quality
        result["quality_table"] = rows
        lines += ["", f"Quality: fold 0 of the oracle at the recipe's steps ({', '.join(map(str, args.quality_seeds))} "
                  "as training seeds), test LWLRAP against the synthetic truth; `batch 32` trains half the steps "
                  "(the same windows).", "", quality_table,
                  "", common.table(quality, markdown=True)]
    common.write_result("bench_step", result)
    (common.BENCH_DIR / "bench_step.md").write_text("\n".join(lines) + "\n")
    print(f"written: {common.BENCH_DIR / 'bench_step.md'}")


if __name__ == "__main__":
    main()
