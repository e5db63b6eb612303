"""Predict a folder of soundscapes into a BirdCLEF submission.csv, offline, inside a time budget.

Written by ``rfcx-kit kaggle-package``; needs only numpy, soundfile and onnxruntime (the package's wheels/:
``pip install --no-index --find-links wheels onnxruntime soundfile``). In a Kaggle notebook:

    !pip install --no-index --find-links /kaggle/input/PACKAGE/wheels onnxruntime soundfile
    !python /kaggle/input/PACKAGE/predict.py --audio /kaggle/input/birdclef-2026/test_soundscapes \\
        --out submission.csv --budget-minutes 85

Each model (``package.json``) maps a chunk of ``chunk_seconds`` of 32 kHz mono audio to its framewise probability
timeline (the log-mel front end, windows and soft frame-wise prediction are inside the graph). The models' timelines
are averaged, and each 5-s row takes the maximum over the frames whose centres fall in it: ``row_id`` =
``<soundscape>_<end second>``, one column per class in the sample submission's order.

The clock: after the first file the script knows what each model costs here; it keeps the models, in the
package's order, whose projected total fits ``--budget-minutes`` with ``--margin`` to spare, and checks again after
every file, dropping the last kept model when the remaining files would not fit. It never times out silently: what
it ran and dropped is printed, and ``--log`` keeps it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
AUDIO = (".ogg", ".flac", ".wav", ".mp3")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_audio(path: Path, rate: int) -> np.ndarray:
    """Mono float32 at ``rate`` (another rate is linearly resampled: BirdCLEF's audio is 32 kHz already)."""
    import soundfile as sf

    wave, own = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if own != rate and len(wave):
        n = int(round(len(wave) * rate / own))
        wave = np.interp(np.arange(n) * (own / rate), np.arange(len(wave)), wave).astype(np.float32)
    return wave


def chunks(wave: np.ndarray, size: int) -> np.ndarray:
    """``(C, size)``: the wave cut into chunks of ``size`` samples, the last zero-padded."""
    count = max(1, -(-len(wave) // size))
    out = np.zeros((count, size), dtype=np.float32)
    out.reshape(-1)[: len(wave)] = wave
    return out


def row_maxima(timeline: np.ndarray, frame_seconds: float, seconds: float, row_seconds: float) -> np.ndarray:
    """``(K, T)`` -> ``(R, K)``: each row the max over the frames whose centres fall in it (``R = ceil(seconds /
    row_seconds)``; a row no frame centre falls in takes the nearest frame)."""
    k, frames = timeline.shape
    n_rows = max(1, int(np.ceil(round(seconds / row_seconds, 9))))
    row_of = np.minimum((np.arange(frames) * frame_seconds / row_seconds).astype(np.int64), n_rows - 1)
    out = np.full((n_rows, k), -np.inf, dtype=np.float64)
    np.maximum.at(out, row_of, timeline.T.astype(np.float64))
    empty = ~np.isfinite(out[:, 0])
    if empty.any():
        nearest = np.minimum(np.round((np.flatnonzero(empty) + 0.5) * row_seconds / frame_seconds).astype(np.int64),
                             frames - 1)
        out[empty] = timeline[:, nearest].T
    return out


def predict_file(path: Path, sessions: list, info: dict) -> tuple[list[str], np.ndarray, list[float]]:
    """Row ids, ``(R, K)`` row probabilities and the seconds each model took on one file."""
    rate, size = info["sample_rate"], int(round(info["chunk_seconds"] * info["sample_rate"]))
    wave = read_audio(path, rate)
    seconds = (len(wave) // info["hop_length"]) * info["frame_seconds"]  # the last frame's centre, as rfcx-kit predict
    pieces = chunks(wave, size)
    total, spent = None, []
    for session in sessions:
        start = time.perf_counter()
        frames = session.run(None, {"wave": pieces})[0]  # every chunk of the file in one call
        spent.append(time.perf_counter() - start)
        total = frames if total is None else total + frames
    mean = total / len(sessions)  # (C, K, T): the models' mean framewise timeline, chunk by chunk
    per_chunk = int(round(info["chunk_seconds"] / info["row_seconds"]))
    rows = []
    for c in range(len(pieces)):
        left = seconds - c * info["chunk_seconds"]
        rows.append(row_maxima(mean[c], info["frame_seconds"], min(left, info["chunk_seconds"]), info["row_seconds"])
                    [:per_chunk])
    scores = np.concatenate(rows)
    stem = path.stem
    ids = [f"{stem}_{(i + 1) * info['row_seconds']:g}" for i in range(len(scores))]
    return ids, scores, spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", required=True, type=Path, help="Folder of soundscapes (or one file).")
    parser.add_argument("--out", default=Path("submission.csv"), type=Path)
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="Wall-clock budget for the whole run (default: none, every model runs).")
    parser.add_argument("--margin", type=float, default=0.15, help="Share of the budget kept spare.")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime threads per model (default: the package's, measured best on 2 cores).")
    parser.add_argument("--models", type=int, default=None, help="Use at most the first N models.")
    parser.add_argument("--sample", type=Path, default=None,
                        help="sample_submission.csv: its class columns must be the package's.")
    parser.add_argument("--log", type=Path, default=None, help="Write what ran and what was dropped, as JSON.")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    info = json.loads((HERE / "package.json").read_text(encoding="utf-8"))
    classes = info["classes"]
    if args.sample is not None:
        header = args.sample.read_text(encoding="utf-8").splitlines()[0].split(",")
        if header[1:] != classes:
            print(f"error: {args.sample}: its classes are not the package's ({len(header) - 1} vs {len(classes)})",
                  file=sys.stderr)
            return 2
    files = sorted(p for p in (args.audio.iterdir() if args.audio.is_dir() else [args.audio])
                   if p.suffix.lower() in AUDIO and not p.name.startswith("."))
    models = info["models"][: args.models] if args.models else info["models"]
    threads = args.threads or info.get("threads", 1)
    sessions = [_session(HERE / m["file"], threads) for m in models]
    names = [m["file"] for m in models]
    budget = args.budget_minutes * 60 if args.budget_minutes else None
    ids: list[str] = []
    parts: list[np.ndarray] = []
    dropped: list[dict] = []
    cost = np.zeros(len(sessions))  # seconds per file of each model (running mean)
    base = 0.0  # seconds per file outside the models (decode, rows)
    for n, path in enumerate(files):
        t0 = time.perf_counter()
        row_ids, scores, spent = predict_file(path, sessions, info)
        ids += row_ids
        parts.append(scores)
        took = time.perf_counter() - t0
        cost[: len(spent)] = (cost[: len(spent)] * n + np.asarray(spent)) / (n + 1)
        base = (base * n + max(0.0, took - sum(spent))) / (n + 1)
        left = len(files) - n - 1
        if budget is not None and left:
            elapsed = time.perf_counter() - started
            while len(sessions) > 1 and elapsed + left * (base + cost[: len(sessions)].sum()) > budget * (1 - args.margin):
                dropped.append({"model": names[len(sessions) - 1], "after_files": n + 1,
                                "projected_seconds": elapsed + left * (base + cost[: len(sessions)].sum())})
                print(f"budget: dropping {names[len(sessions) - 1]} after {n + 1} file(s): projected "
                      f"{dropped[-1]['projected_seconds']:.0f} s > {budget * (1 - args.margin):.0f} s", flush=True)
                sessions.pop()
    table = np.concatenate(parts) if parts else np.zeros((0, len(classes)))
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(",".join(["row_id", *classes]) + "\n")
        for rid, values in zip(ids, table):
            handle.write(rid + "," + ",".join(f"{v:.6g}" for v in values) + "\n")
    os.replace(tmp, args.out)
    wall = time.perf_counter() - started
    report = {"files": len(files), "rows": len(ids), "seconds": round(wall, 2), "models": names[: len(sessions)],
              "dropped": dropped, "model_seconds_per_file": [round(c, 4) for c in cost.tolist()],
              "other_seconds_per_file": round(base, 4), "threads": threads}
    print(f"{args.out}: {len(ids)} rows from {len(files)} file(s) in {wall:.1f} s with {len(sessions)} of "
          f"{len(names)} model(s)", flush=True)
    if args.log is not None:
        args.log.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
