"""Each augmentation (and EMA) against none, on the demo's synthetic set and recipe, over training seeds.

    python benchmarks/augment_study.py --out runs/augment-study [--seeds 42 1] [--variants none masks ...]

Writes the demo's data set once (data seed 7, 100 train / 40 test, 8 % of calls labelled, FLAC) under OUT/data,
then runs stage 1 of ``pipelines/demo.yaml`` for every variant and training seed (OUT/runs/VARIANT-sSEED; a run
that finished is not redone, so a killed study resumes) and writes OUT/augment.csv and OUT/augment.md: test
LWLRAP against the hidden truth, out-of-fold LWLRAP against the truth, CV on TP-only labels, per variant and seed,
and each variant's mean change against ``none`` on the same seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, tuple[str, ...]] = {
    "none": (),
    "masks": ("augment.time_masks=2", "augment.time_mask_frames=40", "augment.freq_masks=2",
              "augment.freq_mask_bins=16"),
    "gain_noise": ("augment.gain_db=6", "augment.noise=0.5", "augment.noise_db=-30"),
    "mixup_input": ("augment.mixup=0.5", "augment.mixup_at=input"),
    "mixup_features": ("augment.mixup=0.5", "augment.mixup_at=features"),
    "ema": ("train.ema_decay=0.95",),
}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from rfcx_kit.core.io import atomic_write_csv, atomic_write_text
    from rfcx_kit.data.synth.scene import SynthConfig
    from rfcx_kit.data.synth.writer import write_dataset
    from rfcx_kit.method.run import Run, stage_metrics
    from rfcx_kit.method.stage1 import run_stage1

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "augment-study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS) + ["combined"])
    parser.add_argument("--combined", nargs="*", default=[], help="variants whose settings the 'combined' one joins")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="overrides for every run")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    variants["combined"] = tuple(s for name in args.combined for s in VARIANTS[name])

    data = args.out / "data"
    if not (data / "train_tp.csv").exists():
        write_dataset(SynthConfig(n_train=100, n_test=40, seconds=60.0, seed=7, tp_share=0.08), data, fmt="flac",
                      n_jobs=-1, progress=True)
    # rows of earlier invocations (other variants) are kept: the table grows as variants are added
    old = args.out / "augment.csv"
    rows = [r for r in (pd.read_csv(old).to_dict("records") if old.exists() else [])
            if r["variant"] not in args.variants]
    for name in args.variants:
        for seed in args.seeds:
            run = args.out / "runs" / f"{name}-s{seed}"
            started = time.time()
            if not Run(run).finished("stage1"):
                run_stage1(data, run, ROOT / "pipelines" / "demo.yaml",
                           (*variants[name], f"train.seed={seed}", *args.extra), resume=run.exists(), progress=False)
            m = stage_metrics(run, "stage1")
            rows.append(dict(variant=name, seed=seed, truth_test_lwlrap=m["truth_test_lwlrap"],
                             truth_oof_lwlrap=m["truth_oof_lwlrap"], cv_lwlrap=m["cv_lwlrap"],
                             seconds=round(time.time() - started, 1)))
            print(rows[-1], flush=True)
            table = pd.DataFrame(rows)
            atomic_write_csv(args.out / "augment.csv", table)
    table = pd.DataFrame(rows)
    base = table[table.variant == "none"].set_index("seed")
    lines = ["| variant | settings | " + " | ".join(f"test vs truth, seed {s}" for s in args.seeds)
             + " | mean | mean − none | OOF vs truth (mean) | CV TP-only (mean) |", "|---" * (len(args.seeds) + 6) + "|"]
    for name, group in table.groupby("variant", sort=False):
        g = group.set_index("seed")
        delta = (g.truth_test_lwlrap - base.truth_test_lwlrap).dropna().mean() if len(base) else float("nan")
        lines.append(f"| {name} | {' '.join(variants[name]) or '–'} | "
                     + " | ".join(f"{g.truth_test_lwlrap.get(s, float('nan')):.3f}" for s in args.seeds)
                     + f" | {g.truth_test_lwlrap.mean():.3f} | {delta:+.3f} | {g.truth_oof_lwlrap.mean():.3f} | "
                     f"{g.cv_lwlrap.mean():.3f} |")
    atomic_write_text(args.out / "augment.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
