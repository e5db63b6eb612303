"""Feature cache build vs the usual notebook path, on the same FLAC files, side by side in one run.

* ``notebook``: one process, per file ``librosa.load(sr=32000)`` + ``librosa.feature.melspectrogram`` +
  ``librosa.power_to_db`` (the post's parameters), saved as float16 ``.npy`` like the cache;
* ``rfcx-kit``: ``rfcx_kit.data.features.build_cache`` with ``n_jobs`` worker processes (default: all cores);
* ``rfcx-kit 1 proc``: the same in one process (how much of the gain is per-core speed, how much is cores);
* ``floor``: bare decode + resample (``soundfile.read`` + ``soxr.resample`` HQ), no features, with the same
  worker processes and chunking as the cache build, and in one process.

Throughput ratio = notebook seconds / rfcx-kit seconds (target >= 1.8 at 2 cores); floor ratio =
rfcx-kit seconds / floor seconds (1.0 would mean the features cost nothing beyond decoding). The files are
read once before timing (page cache warm) and every path is warmed up on one file (imports, numba, loky
workers started), so the figures are steady-state throughput. Methods run interleaved, ``--repeat`` times;
the median is reported. The cache's output is checked against librosa's (max |dB difference|).

    python benchmarks/bench_features.py [--data DIR] [--files 48] [--repeat 3] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TARGET = 1.8


def notebook_path(paths: list[Path], out_dir: Path) -> None:
    """The usual notebook loop (librosa defaults: soxr_hq resampling, mono)."""
    import librosa

    for path in paths:
        y, _ = librosa.load(path, sr=32000)
        mel = librosa.feature.melspectrogram(y=y, sr=32000, n_fft=2048, hop_length=512, n_mels=128, fmin=20,
                                             fmax=16000, power=2.0)
        db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80)
        np.save(out_dir / f"{path.stem}.npy", db.astype(np.float16))


def _decode_chunk(paths: list[str]) -> int:
    import soundfile as sf
    import soxr

    n = 0
    for path in paths:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
        n += len(soxr.resample(wave, rate, 32000, quality="HQ"))
    return n


def _warm_worker(seconds: float) -> int:
    """Import what a cache-build worker imports, then hold the worker so every worker gets one task."""
    import rfcx_kit.data.features  # noqa: F401  (torch, soundfile, soxr)

    time.sleep(seconds)
    return os.getpid()


def warm_workers(n_jobs: int) -> int:
    """Start the loky workers (the same reusable executor build_cache uses) with torch imported in each."""
    from joblib import Parallel, delayed

    if n_jobs == 1:
        return 1
    return len(set(Parallel(n_jobs=n_jobs)(delayed(_warm_worker)(0.5) for _ in range(2 * n_jobs))))


def floor_path(paths: list[Path], n_jobs: int, chunk: int) -> None:
    """Bare decode + resample, with the cache build's parallelism (joblib loky, chunks of ``chunk``)."""
    items = [str(p) for p in paths]
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    if n_jobs == 1:
        for c in chunks:
            _decode_chunk(c)
        return
    from joblib import Parallel, delayed

    list(Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(_decode_chunk)(c) for c in chunks))


def kit_path(comp, cache: Path, n_jobs: int, batch_size: int | None = None) -> None:  # noqa: ANN001
    """``build_cache`` as ``rfcx-kit features --n-jobs N [--batch-size B]`` runs it."""
    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import build_cache

    cfg = FeatureConfig()
    if batch_size:
        cfg.batch_size = batch_size
    build_cache(comp, cache, cfg, n_jobs=n_jobs, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="FLAC competition folder [default: generate one under /tmp/bench with rfcx-kit synth]")
    parser.add_argument("--files", type=int, default=48, help="Recordings to process (train then test).")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count())
    parser.add_argument("--batch-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[8],
                        help="Also time the cache build with these --batch-size values (the default is always timed; "
                             "8 was the previous default).")
    args = parser.parse_args()

    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.layouts import read_competition

    if args.data is None:
        n_test = max(1, args.files // 4)
        args.data = common.ensure_synth(common.BENCH_DIR / f"synth_flac_{args.files}", args.files - n_test, n_test,
                                        "flac")
    full = read_competition(args.data)
    ids = [("train", r) for r in full.train_ids] + [("test", r) for r in full.test_ids]
    ids = ids[: args.files]
    comp = dataclasses.replace(full, train_ids=[r for s, r in ids if s == "train"],
                               test_ids=[r for s, r in ids if s == "test"])
    paths = [comp.path(s, r) for s, r in ids]
    n = len(paths)
    cfg = FeatureConfig()
    common.warm_page_cache(paths)
    load_before = common.warn_if_busy("bench_features")
    foreign = common.ForeignLoad().start()
    work = Path(tempfile.mkdtemp(prefix="features_", dir=common.BENCH_DIR))

    # Warm-up: imports, librosa's first-call costs, loky workers with torch imported.
    warm_comp = dataclasses.replace(comp, train_ids=comp.train_ids[:2], test_ids=[])
    (work / "nb_warm").mkdir()
    notebook_path(paths[:1], work / "nb_warm")
    warmed = warm_workers(args.n_jobs)
    kit_path(warm_comp, work / "kit_warm", args.n_jobs)
    kit_path(warm_comp, work / "kit_warm1", 1)
    floor_path(paths[:2], args.n_jobs, cfg.batch_size)

    default_bs = cfg.batch_size
    batch_sizes = [default_bs] + [b for b in args.batch_sizes if b != default_bs]
    methods = {"notebook (librosa, 1 proc)": lambda i: notebook_path(paths, _fresh(work / f"nb{i}"))}
    for procs in (args.n_jobs, 1):
        for bs in batch_sizes:
            tag = "default " if bs == default_bs else ""
            methods[f"rfcx-kit build_cache ({procs} procs, {tag}batch_size={bs})"] = (
                lambda i, procs=procs, bs=bs: kit_path(comp, work / f"kit{procs}_{bs}_{i}", procs, bs))
    methods[f"floor: decode+resample ({args.n_jobs} procs)"] = lambda i: floor_path(paths, args.n_jobs, default_bs)
    methods["floor: decode+resample (1 proc)"] = lambda i: floor_path(paths, 1, default_bs)
    times: dict[str, list[float]] = {k: [] for k in methods}
    loads: list[float] = []
    for i in range(args.repeat):
        for name, fn in methods.items():
            loads.append(common.load_average())
            start = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - start)

    logmel_rows = logmel_only(paths, batch_sizes, max(3, args.repeat))
    foreign_cores = foreign.stop()

    # Agreement with librosa on the files both wrote.
    diffs = []
    for s, r in ids:
        a = np.load(work / f"kit{args.n_jobs}_{default_bs}_0" / s / f"{r}.npy").astype(np.float32)
        b = np.load(work / "nb0" / f"{r}.npy").astype(np.float32)
        diffs.append(float(np.abs(a - b).max()) if a.shape == b.shape else float("inf"))

    med = {k: float(np.median(v)) for k, v in times.items()}
    rows = [{"path": k, "median s": med[k], "rec/s": n / med[k], "runs s": " ".join(f"{t:.2f}" for t in times[k])}
            for k in methods]
    nb = med["notebook (librosa, 1 proc)"]
    fl = med[f"floor: decode+resample ({args.n_jobs} procs)"]
    fl1 = med["floor: decode+resample (1 proc)"]

    def kit(procs: int, bs: int) -> float:
        tag = "default " if bs == default_bs else ""
        return med[f"rfcx-kit build_cache ({procs} procs, {tag}batch_size={bs})"]

    ratios = []
    for bs in batch_sizes:
        ratios.append({"batch_size": bs, "default": bs == default_bs,
                       f"throughput ratio ({args.n_jobs} procs)": nb / kit(args.n_jobs, bs),
                       "per-core ratio (1 proc)": nb / kit(1, bs),
                       f"rfcx-kit / floor ({args.n_jobs} procs)": kit(args.n_jobs, bs) / fl,
                       "rfcx-kit / floor (1 proc)": kit(1, bs) / fl1})
    ratio = nb / kit(args.n_jobs, default_bs)
    best_bs = min(batch_sizes, key=lambda bs: kit(args.n_jobs, bs))
    result = {
        "files": n, "workers_warmed": warmed, "repeat": args.repeat, "n_jobs": args.n_jobs, "data": str(args.data),
        "audio": "48 kHz mono 16-bit FLAC, 60 s (rfcx-kit synth)", "default_batch_size": default_bs,
        "load_before": load_before, "load_during_max": max(loads), "loads": loads, "foreign_cores": foreign_cores,
        "seconds": times, "median_seconds": med, "ratios": ratios,
        "throughput_ratio": ratio, "floor_ratio": kit(args.n_jobs, default_bs) / fl,
        "best_batch_size": best_bs, "throughput_ratio_best": nb / kit(args.n_jobs, best_bs),
        "floor_ratio_best": kit(args.n_jobs, best_bs) / fl,
        "max_abs_db_vs_librosa": max(diffs), "logmel_only": logmel_rows,
        "target": {"what": f"throughput ratio >= {TARGET} at {args.n_jobs} cores (default config)", "value": ratio,
                   "met": ratio >= TARGET},
        "rows": rows,
    }
    print(common.table(rows))
    print()
    print(common.table(ratios))
    print()
    print(common.table(logmel_rows))
    print(f"\nthroughput ratio (notebook / rfcx-kit default, {args.n_jobs} procs): {ratio:.2f}x  "
          f"[target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'}]; with --batch-size {best_bs}: "
          f"{nb / kit(args.n_jobs, best_bs):.2f}x")
    print(f"max |dB| difference vs librosa (float16 files on both sides): {max(diffs):.4f}")
    print(f"load average before {load_before}; other processes used {foreign_cores} cores on average during the run")
    common.write_result("features", result)
    shutil.rmtree(work, ignore_errors=True)


def logmel_only(paths: list[Path], batch_sizes: list[int], repeat: int) -> list[dict]:
    """Seconds per recording of the log-mel alone (decoded waves in memory), one thread everywhere:
    rfcx-kit's ``LogMel`` on stacks of ``batch_size`` recordings (as ``_compute_chunk`` calls it) vs
    librosa's ``melspectrogram`` + ``power_to_db``. Shows where the cache build's per-core time goes."""
    import librosa
    import threadpoolctl
    import torch

    from rfcx_kit.data.audio import load_audio
    from rfcx_kit.data.features import LogMel

    count = max(batch_sizes)
    waves = np.stack([load_audio(p)[0] for p in (paths * count)[:count]])
    logmel = LogMel()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with threadpoolctl.threadpool_limits(1):
            for bs in batch_sizes:
                batch = torch.from_numpy(waves[:bs])
                logmel(batch)
                best = min(common.time_call(lambda: logmel(batch), repeat=repeat))
                rows.append({"log-mel only, 1 thread": f"rfcx-kit LogMel, {bs} recordings per call",
                             "ms/recording": 1000 * best / bs})

            def lib() -> None:
                mel = librosa.feature.melspectrogram(y=waves[0], sr=32000, n_fft=2048, hop_length=512, n_mels=128,
                                                     fmin=20, fmax=16000, power=2.0)
                librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80)

            lib()
            rows.append({"log-mel only, 1 thread": "librosa melspectrogram + power_to_db",
                         "ms/recording": 1000 * min(common.time_call(lib, repeat=repeat))})
    finally:
        torch.set_num_threads(threads)
    return rows


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


if __name__ == "__main__":
    main()
