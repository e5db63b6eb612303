"""Whole-command prediction time: `rfcx-kit predict --checkpoint` (torch) against `predict --onnx` (onnxruntime).

What a Kaggle notebook runs on the test set: decode 60 s FLAC recordings at 48 kHz, log-mel, 8 windows of 512
frames, 5 fold models of the recipe's backbone, fold mean, the clip table. The models are the recipe's, randomly
initialised (speed does not depend on the weights); the graphs are what `rfcx-kit export` writes from their best.pt
files. Each command runs as its own process, torch and ONNX in turn (A B A B ...), with ``--threads`` CPU threads;
the figures are the medians over ``--pairs`` pairs and the median of the pairwise ratios. The projection multiplies
the median seconds per recording by RFCX's 1,992 test recordings.

    python benchmarks/bench_onnx_predict.py [--recordings 12] [--pairs 3] [--threads 2] [--pipeline method-post-resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

RFCX_TEST = 1992


def prepare(work: Path, recordings: int, pipeline: str, folds: int) -> tuple[list[str], Path, Path]:
    from rfcx_kit.core.config import load_config
    from rfcx_kit.core.grid import RECORDING_RATE, SECONDS
    from rfcx_kit.method.checkpoint import build_model, save_checkpoint
    from rfcx_kit.method.export import export_stage

    audio = work / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(recordings):
        sf.write(audio / f"rec{i:03d}.flac", (0.05 * rng.standard_normal(int(SECONDS * RECORDING_RATE))).astype(np.float32),
                 RECORDING_RATE)
    cfg = load_config(pipeline, ("model.pretrained=false", "model.n_species=24"))
    paths = []
    for k in range(folds):
        torch.manual_seed(k)
        path = work / "best" / f"fold{k}" / "best.pt"
        path.parent.mkdir(parents=True)
        save_checkpoint(path, {"model": build_model(cfg).state_dict(), "epoch": 0, "score": 0.0, "config": cfg.to_dict()})
        paths.append(str(path))
    export_stage(None, "kept", tuple(Path(p) for p in paths), work / "onnx")
    return paths, audio, work / "onnx"


def timed(command: list[str], out: Path, env: dict[str, str]) -> float:
    if out.exists():
        out.unlink()  # predict resumes from its own journal: a second run would do nothing
    for leftover in out.parent.glob(f".{out.name}*"):
        subprocess.run(["rm", "-rf", str(leftover)], check=False)
    start = time.perf_counter()
    done = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--pipeline", default="method-post-resnet18")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoints, audio, onnx = prepare(work, args.recordings, args.pipeline, args.folds)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
        cli = [sys.executable, "-m", "rfcx_kit", "predict", "--audio", str(audio), "--no-progress",
               "--threads", str(args.threads)]
        torch_cmd = cli + ["--checkpoint", *checkpoints, "--device", "cpu"]
        onnx_cmd = cli + ["--onnx", str(onnx)]
        timed(torch_cmd, work / "warm.csv", env)  # warm-up: files in the page cache, imports compiled
        pairs = [(timed(torch_cmd, work / "torch.csv", env), timed(onnx_cmd, work / "onnx.csv", env))
                 for _ in range(args.pairs)]
        import pandas as pd

        a = pd.read_csv(work / "torch.csv").set_index("recording_id")
        b = pd.read_csv(work / "onnx.csv").set_index("recording_id")
        difference = float((a - b).abs().to_numpy().max())
    rows = {}
    for name, values in (("torch", [p[0] for p in pairs]), ("onnxruntime", [p[1] for p in pairs])):
        median = statistics.median(values)
        rows[name] = {"seconds": [round(v, 2) for v in values], "median_s": round(median, 2),
                      "recordings_per_s": round(args.recordings / median, 3),
                      "rfcx_test_minutes": round(median / args.recordings * RFCX_TEST / 60, 1)}
    ratio = statistics.median(p[0] / p[1] for p in pairs)
    result = {"pipeline": args.pipeline, "folds": args.folds, "recordings": args.recordings, "threads": args.threads,
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows,
              "torch_over_onnx": round(ratio, 2), "max_clip_difference": difference}
    print(f"{args.recordings} recordings of 60 s, {args.folds} folds of {args.pipeline}, {args.threads} threads; "
          f"medians over {args.pairs} pairs (whole processes, start-up included)")
    print("| runtime | median s | recordings/s | RFCX test set (1,992), minutes |\n|--|--|--|--|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_s']} | {row['recordings_per_s']} | {row['rfcx_test_minutes']} |")
    print(f"torch / onnxruntime, median of pairs: {ratio:.2f}x; clip tables differ by at most {difference:.1e}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
