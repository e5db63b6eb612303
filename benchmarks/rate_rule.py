"""Which sample rate for recordings of mixed rates: the lowest (every file resampled down), or the highest (the
low-rate files resampled up), with the top band at the lowest Nyquist either way?

Data: `rfcx-kit synth --profile demo --format flac` (48 kHz, every planted call known), each recording then
resampled to 22,050 Hz (even rows) or 44,100 Hz (odd rows) and written as an own-data folder (recordings.csv,
species.csv, the TP/FP tables, truth/). Stage 1 with `pipelines/own-scratch.yaml` at `--epochs`:

* lowest: the default rule (features.sample_rate 22,050, fmax 11,025);
* highest: `--set features.sample_rate=44100 --set features.fmax=11025`.

Both use 512-frame windows with 49 of cover, so the highest rate's window spans half the seconds and each
recording twice the windows. Scored by the test LWLRAP against the synthetic truth (`truth_test_lwlrap`), with
each stage's wall time.

    python benchmarks/rate_rule.py --out /tmp/rate --seeds 3 4 --train 120 --test 60 --epochs 30

Writes OUT/rate_rule.csv and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

RATES = (22050, 44100)


def mixed_folder(synth: Path, out: Path) -> Path:
    """The synthetic FLAC set as an own-data folder whose recordings alternate between the two rates."""
    from rfcx_kit.core.species import Species

    if (out / "recordings.csv").exists():
        return out
    rows = []
    for split in ("train", "test"):
        for i, path in enumerate(sorted((synth / split).glob("*.flac"))):
            wave, rate = sf.read(str(path), dtype="float32")
            target = RATES[i % 2]
            audio = out / "audio" / split / f"{path.stem}.wav"
            audio.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(audio), soxr.resample(wave, rate, target), target)
            rows.append({"recording_id": path.stem, "split": split, "path": str(audio.resolve()),
                         "seconds": len(wave) / rate, "sample_rate": target})
    pd.DataFrame(rows).to_csv(out / "recordings.csv", index=False)
    Species.rfcx().frame().to_csv(out / "species.csv", index=False)
    top = min(RATES) / 2
    for name in ("train_tp.csv", "train_fp.csv"):  # boxes as a 22,050 Hz recorder can hold them: cut at its Nyquist
        boxes = pd.read_csv(synth / name, dtype={"recording_id": str})
        boxes = boxes[boxes["f_min"] < top - 25].assign(f_max=lambda b: b["f_max"].clip(upper=top))
        boxes.to_csv(out / name, index=False)
    shutil.copytree(synth / "truth", out / "truth")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    kit = [sys.executable, "-m", "rfcx_kit"]
    rows = []
    for seed in args.seeds:
        synth = args.out / f"synth{seed}"
        if not (synth / "truth").exists():
            subprocess.run([*kit, "synth", "--out", str(synth), "--profile", "demo", "--format", "flac", "--train",
                            str(args.train), "--test", str(args.test), "--seconds", str(args.seconds), "--seed",
                            str(seed)], check=True)
        data = mixed_folder(synth, args.out / f"mixed{seed}")
        for name, sets in (("lowest", []), ("highest", ["features.sample_rate=44100", "features.fmax=11025"])):
            run = args.out / "runs" / f"{name}-d{seed}"
            started = time.time()
            if not (run / "stage1" / "metrics.json").exists():
                subprocess.run([*kit, "stage1", "--data", str(data), "--run", str(run), "--pipeline", "own-scratch",
                                "--cache", str(args.out / f"cache-{name}-d{seed}"), "--no-progress", "--set", f"train.epochs={args.epochs}", "--set", "train.val_every=10",
                                *[a for s in sets for a in ("--set", s)]] + (["--resume"] if run.exists() else []),
                               check=True)
            metrics = json.loads((run / "stage1" / "metrics.json").read_text())
            rows.append({"rule": name, "data_seed": seed, "cv_lwlrap": metrics["cv_lwlrap"],
                         "truth_test_lwlrap": metrics.get("truth_test_lwlrap"),
                         "seconds": round(time.time() - started)})
            pd.DataFrame(rows).to_csv(args.out / "rate_rule.csv", index=False)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    wide = table.pivot(index="data_seed", columns="rule", values="truth_test_lwlrap")
    diff = wide["lowest"] - wide["highest"]
    print(f"lowest - highest (test LWLRAP vs truth): {diff.mean():+.3f} (per seed: "
          f"{', '.join(f'{d:+.3f}' for d in diff)})")


if __name__ == "__main__":
    main()
