"""Scaling: wall time and peak memory of stage-1 bookkeeping, prediction and a re-labeling label pass vs N.

N recordings of a synthetic ``--format npy`` data set (memory-mapped, never loaded whole), split like the
competition (4727 train : 1992 test); the full size is 4727 + 1992 = 6719. Each N runs in a fresh
subprocess, so its peak RSS is its own. Phases, with the library calls a run makes:

* ``bookkeeping``: ``read_competition``; ``FramewiseLabels`` + window labels ``(R, 8, 24)``; multilabel-
  stratified folds (``make_folds``); ``recording_stats`` of every train and test recording;
* ``prediction``: ``predict_recordings`` of every train and test recording (8 windows of 512 frames) with a
  tiny SED model (mobilenetv3_small_050, random init) on CPU;
* ``relabel labels``: ``build_label_table`` from the ``(R, 8, 24)`` train predictions (the out-of-fold
  layout) and ``label_counts`` (the cycle's label table and its counts).

Peak RSS per phase comes from a sampling thread (10 ms); ``ru_maxrss`` is the process's lifetime peak.
The peak at full size must stay under 3 GiB and grow sub-linearly (log-log slope < 1). A PNG of time and
memory vs N is written (``--png``, default ``benchmarks/scaling.png``).

    python benchmarks/bench_scaling.py [--data DIR] [--sizes 500,2000,6719] [--png benchmarks/scaling.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

FULL_TRAIN, FULL_TEST = 4727, 1992
FULL = FULL_TRAIN + FULL_TEST
LIMIT_GIB = 3.0
PHASES = ("bookkeeping", "prediction", "relabel labels")


def split_of(n: int) -> tuple[int, int]:
    """N recordings -> (train, test) in the competition's proportion."""
    if n >= FULL:
        return FULL_TRAIN, FULL_TEST
    n_train = round(n * FULL_TRAIN / FULL)
    return n_train, n - n_train


def child(data: Path, backbone: str, batch_recordings: int) -> dict:
    """One N, in this (fresh) process: the three phases with wall time and peak RSS."""
    gib = 2**30
    import_start = time.perf_counter()
    import numpy as np
    import torch

    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import FeatureStore
    from rfcx_kit.method.folds import make_folds
    from rfcx_kit.data.framewise import FramewiseLabels
    from rfcx_kit.model.inputs import recording_stats
    from rfcx_kit.model.sed import SEDModel
    from rfcx_kit.method.predict import predict_recordings
    from rfcx_kit.method.pseudo import build_label_table, label_counts
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.core.grid import window_positions

    out: dict = {"import_s": time.perf_counter() - import_start, "rss_after_imports_gib": common.rss_bytes() / gib}
    seconds: dict[str, float] = {}
    sub: dict[str, float] = {}  # the two parts of bookkeeping
    cfg = FeatureConfig()
    with common.RssSampler() as sampler:
        with sampler.phase("bookkeeping"), common.stopwatch() as t:
            t_start = time.perf_counter()
            comp = read_competition(data)
            store = FeatureStore.open(comp, None, cfg)
            positions = window_positions(cfg.frames, 512, 49)
            labels = FramewiseLabels(comp.boxes(), comp.train_ids, cfg.frames, cfg.sample_rate, cfg.hop_length)
            window_labels = labels.windows(positions)
            tp = comp.tp_presence()
            index = {rid: i for i, rid in enumerate(comp.train_ids)}
            fp = np.zeros_like(tp)
            fp[comp.fp["recording_id"].map(index).to_numpy(), comp.fp["species_id"].to_numpy()] = 1
            folds = make_folds(comp.train_ids, tp, fp, 5, 42)
            sub["tables, labels, folds"] = time.perf_counter() - t_start
            train_stats = recording_stats(store, "train", comp.train_ids)
            test_stats = recording_stats(store, "test", comp.test_ids)
        seconds["bookkeeping"] = t["s"]
        sub["recording statistics"] = t["s"] - sub["tables, labels, folds"]
        with sampler.phase("prediction"), common.stopwatch() as t:
            torch.manual_seed(0)
            model = SEDModel(backbone).eval()
            pred_train = predict_recordings(model, store, "train", comp.train_ids, train_stats, positions,
                                            batch_recordings=batch_recordings)
            pred_test = predict_recordings(model, store, "test", comp.test_ids, test_stats, positions,
                                           batch_recordings=batch_recordings)
        seconds["prediction"] = t["s"]
        with sampler.phase("relabel labels"), common.stopwatch() as t:
            # A random model's probabilities hover around 0.5: threshold at their median so the table holds
            # a realistic share of pseudo-positives instead of none or all.
            threshold = float(np.median(pred_train.windows))
            table = build_label_table(comp.train_ids, window_labels, pred_train.windows, threshold=threshold)
            label_counts_table = label_counts(table)
        seconds["relabel labels"] = t["s"]
    out.update({
        "train": len(comp.train_ids), "test": len(comp.test_ids), "n": len(comp.train_ids) + len(comp.test_ids),
        "folds": int(folds["fold"].nunique()), "windows_predicted": (len(comp.train_ids) + len(comp.test_ids)) * len(positions),
        "label_rows": len(table), "pseudo_positives": int(label_counts_table["pseudo_positive"].sum()),
        "seconds": seconds, "bookkeeping_seconds": sub, "peak_rss_gib": {k: v / gib for k, v in sampler.phases.items()},
        "ru_maxrss_gib": common.max_rss_bytes() / gib, "torch_threads": torch.get_num_threads(),
        "checks": {"test_pred_shape": list(pred_test.windows.shape), "weight_sum": float(table["weight"].sum())},
    })
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90)
    for phase, marker in zip(PHASES, "osd"):
        a.plot(ns, [r["seconds"][phase] for r in results], marker=marker, label=phase)
    a.plot(ns, [sum(r["seconds"].values()) for r in results], marker="x", color="k", label="total")
    a.set_xlabel("recordings N (train + test)")
    a.set_ylabel("wall seconds")
    a.set_title("time")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    for phase, marker in zip(PHASES, "osd"):
        b.plot(ns, [r["peak_rss_gib"][phase] for r in results], marker=marker, label=phase)
    b.plot(ns, [r["ru_maxrss_gib"] for r in results], marker="x", color="k", label="process peak")
    b.axhline(LIMIT_GIB, color="r", ls="--", lw=1, label=f"{LIMIT_GIB:g} GiB limit")
    b.set_ylim(0, LIMIT_GIB * 1.1)
    b.set_xlabel("recordings N (train + test)")
    b.set_ylabel("peak RSS (GiB)")
    b.set_title("memory")
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"npy synthetic set with >= {FULL_TRAIN} + {FULL_TEST} recordings "
                             "[default: /tmp/bench/synth_full, generated if absent]")
    parser.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=[500, 2000, FULL])
    parser.add_argument("--backbone", default="mobilenetv3_small_050")
    parser.add_argument("--batch-recordings", type=int, default=8, help="predict.batch_recordings (default 8).")
    parser.add_argument("--png", type=Path, default=common.REPO / "benchmarks" / "scaling.png")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.backbone, args.batch_recordings)))
        return

    if args.data is None:
        args.data = common.ensure_synth(common.BENCH_DIR / "synth_full", FULL_TRAIN, FULL_TEST, "npy")
    results = []
    load_before = common.warn_if_busy("bench_scaling")
    for n in args.sizes:
        n_train, n_test = split_of(n)
        sub = args.data if n >= FULL else common.subset_competition(args.data, n_train, n_test)
        # Files read once first, so every N measures the same thing (page cache warm), not the disk.
        common.warm_page_cache(sorted((Path(sub) / "train").iterdir()) + sorted((Path(sub) / "test").iterdir()))
        load = common.load_average()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(sub), "--backbone", args.backbone,
               "--batch-recordings", str(args.batch_recordings)]
        start = time.perf_counter()
        foreign = common.ForeignLoad().start()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode:
            sys.exit(f"N={n} failed:\n{proc.stderr[-4000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update({"subprocess_s": time.perf_counter() - start, "load_before": load, "foreign_cores": foreign.stop(),
                    "load_after": common.load_average()})
        results.append(res)
        print(f"N={res['n']} ({res['train']} + {res['test']}): " +
              ", ".join(f"{k} {v:.1f} s / {res['peak_rss_gib'][k]:.2f} GiB" for k, v in res["seconds"].items()) +
              f"; process peak {res['ru_maxrss_gib']:.2f} GiB (load {load}, other processes {res['foreign_cores']} cores)", flush=True)

    rows = []
    for r in results:
        rows.append({"N": r["n"], "train": r["train"], "test": r["test"],
                     **{f"{p} s": r["seconds"][p] for p in PHASES},
                     **{f"({k}) s": v for k, v in r.get("bookkeeping_seconds", {}).items()},
                     **{f"{p} peak GiB": r["peak_rss_gib"][p] for p in PHASES},
                     "process peak GiB": r["ru_maxrss_gib"], "after imports GiB": r["rss_after_imports_gib"],
                     "load": r["load_before"], "foreign cores": r["foreign_cores"]})
    first, last = results[0], results[-1]
    slope_rss = math.log(last["ru_maxrss_gib"] / first["ru_maxrss_gib"]) / math.log(last["n"] / first["n"])
    slope_time = {p: math.log(last["seconds"][p] / first["seconds"][p]) / math.log(last["n"] / first["n"])
                  for p in PHASES}
    extra = [(r["ru_maxrss_gib"] - r["rss_after_imports_gib"]) for r in results]
    full = next((r for r in results if r["n"] >= FULL), last)
    under = full["ru_maxrss_gib"] < LIMIT_GIB
    sublinear = slope_rss < 1.0
    print()
    print(common.table(rows))
    print(f"\npeak RSS at N={full['n']}: {full['ru_maxrss_gib']:.2f} GiB [< {LIMIT_GIB:g} GiB: {'met' if under else 'MISSED'}]")
    print(f"log-log slope of peak RSS vs N ({first['n']} -> {last['n']}): {slope_rss:.3f} "
          f"[sub-linear (< 1): {'met' if sublinear else 'MISSED'}]; above the imports: "
          + ", ".join(f"{e:.2f}" for e in extra) + " GiB")
    print("log-log slope of time vs N: " + ", ".join(f"{p} {s:.2f}" for p, s in slope_time.items()))
    plot(results, args.png)
    print(f"wrote {args.png} ({args.png.stat().st_size / 1024:.0f} KB)")
    common.write_result("scaling", {
        "data": str(args.data), "backbone": args.backbone, "batch_recordings": args.batch_recordings,
        "load_before": load_before, "load_during_max": max(r["load_before"] for r in results),
        "foreign_cores": max(r["foreign_cores"] for r in results),
        "results": results, "rows": rows, "rss_slope": slope_rss, "time_slope": slope_time,
        "rss_above_imports_gib": extra, "png": str(args.png),
        "target": {"what": f"peak RSS at full size < {LIMIT_GIB:g} GiB and sub-linear in N",
                   "value": full["ru_maxrss_gib"], "slope": slope_rss, "met": under and sublinear},
    })


if __name__ == "__main__":
    main()
