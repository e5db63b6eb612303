"""Soft frame-wise prediction: rfcx-kit's batched windows vs the method post's per-window loop.

Same model (random init, eval mode), same recordings, same normalisation, side by side in one run:

* ``batched``: ``rfcx_kit.method.predict.predict_recordings`` with ``batch_recordings=B``: all windows of B
  recordings cut from the dB frames as a strided view and normalised into the model input in one pass, run
  in forwards of at most ``max_windows`` windows (the library's default: chosen from the device and the
  model's largest activation, ``predict.auto_max_windows``), plus everything it keeps (per-window max,
  clipwise, stitched and pooled framewise timelines);
* ``post loop``: the post's prediction loop over a loader batch of B recordings::

      for h, t in positions:
          preds.append(model(X[:, :, :, h:t])["framewise"].sigmoid().max(2))   # B windows per forward
      pred = torch.stack(preds).max(0)

  (X zero-padded to the last window's end, as the post's training and the library do; the outputs are
  checked equal).

Ratio = post-loop seconds / batched seconds at batch sizes 1, 8 and 32 (target >= 1.0 at every size).
Where the time goes: both paths are re-run step by step with timers (read, normalise, split, forward,
post-processing) using the same library functions.

    python benchmarks/bench_predict.py [--recordings 32] [--batch-sizes 1,8,32] [--repeat 2]
        [--backbones resnet18,mobilenetv3_small_050] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from rfcx_kit.data.features import FeatureStore  # noqa: E402
from rfcx_kit.model.inputs import normalize, recording_stats, window_inputs  # noqa: E402
from rfcx_kit.model.sed import SEDModel  # noqa: E402
from rfcx_kit.method.predict import auto_max_windows, forward_windows, predict_recordings  # noqa: E402
from rfcx_kit.data.layouts import read_competition  # noqa: E402
from rfcx_kit.core.grid import window_positions  # noqa: E402
from rfcx_kit.data.window import merge_windows, stitch_windows, stitched_max  # noqa: E402

TARGET = 1.0


@torch.no_grad()
def post_loop(model, store, split, ids, stats, positions, batch, splits=None):  # noqa: ANN001, ANN201
    """The post's loop (see the module docstring); returns (R, N, 24) per-window maxima."""
    splits = splits or common.Splits()
    out = []
    pad = positions[-1][1] - store.frames
    for lo in range(0, len(ids), batch):
        with splits("read"):
            raw = torch.from_numpy(store.batch(split, ids[lo : lo + batch]))
        with splits("normalize"):
            x = normalize(raw, torch.from_numpy(stats[lo : lo + batch]))
            x = torch.nn.functional.pad(x, (0, pad))
        preds = []
        for h, t in positions:
            with splits("forward"):
                y = model(x[:, :, :, h:t])
            with splits("sigmoid+max"):
                preds.append(y["framewise"].sigmoid().max(2)[0])
        with splits("sigmoid+max"):
            stacked = torch.stack(preds, dim=1)  # (B, N, 24); the post then takes .max(0) over windows
            stacked.max(1)
        out.append(stacked.numpy())
    return np.concatenate(out)


@torch.no_grad()
def batched_steps(model, store, split, ids, stats, positions, batch, max_windows, splits):  # noqa: ANN001, ANN201
    """``predict_recordings``' steps with timers (same library calls, same order)."""
    n, frames, pool = len(positions), store.frames, 32
    segments = -(-frames // pool)
    out = []
    for lo in range(0, len(ids), batch):
        b = len(ids[lo : lo + batch])
        with splits("read"):
            raw = torch.from_numpy(store.batch(split, ids[lo : lo + batch]))
        with splits("normalize+split"):
            x = window_inputs(raw, torch.from_numpy(stats[lo : lo + b]), positions)
        with splits("forward"):
            res = forward_windows(model, x, max_windows)
        with splits("sigmoid+max"):
            prob = merge_windows(torch.sigmoid(res["framewise"]), n)
            windows = prob.amax(dim=-1).numpy()
            merge_windows(res["clipwise"], n).numpy()
        with splits("stitch+timeline"):
            stitch_windows(prob, positions, frames).amax(dim=-1).numpy()
            timeline = stitched_max(prob, positions, frames)
            timeline = torch.nn.functional.pad(timeline, (0, segments * pool - frames), value=0.0)
            timeline.reshape(b, 24, segments, pool).amax(-1).numpy().astype(np.float16)
        out.append(windows)
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="npy competition folder [default: synthetic]")
    parser.add_argument("--recordings", type=int, default=32, help="Test recordings predicted per measurement.")
    parser.add_argument("--batch-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[1, 8, 32])
    parser.add_argument("--backbones", type=lambda t: t.split(","), default=["resnet18", "mobilenetv3_small_050"])
    parser.add_argument("--max-windows", type=int, default=None,
                        help="predict.max_windows [default: the library's automatic choice].")
    parser.add_argument("--alt-max-windows", type=lambda t: [int(v) for v in t.split(",") if int(v)], default=[1, 8, 32],
                        help="Also time the batched path with these predict.max_windows values (0: none).")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's, = cores].")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.data is None:
        args.data = common.ensure_synth(common.BENCH_DIR / "synth_npy_small", 64, 32, "npy")
    comp = read_competition(args.data)
    store = FeatureStore.open(comp)
    ids = comp.test_ids[: args.recordings]
    if len(ids) < max(args.batch_sizes):
        raise SystemExit(f"{args.data}: {len(ids)} test recordings, fewer than the largest batch size")
    stats = recording_stats(store, "test", ids)
    store_shape = store.load("test", ids[0]).shape  # (F, T)
    positions = window_positions(store.frames, 512, 49)
    common.warm_page_cache([store.path("test", r) for r in ids])
    load_before = common.warn_if_busy("bench_predict")
    foreign = common.ForeignLoad().start()
    loads = []

    rows, breakdown, checks = [], [], []
    for backbone in args.backbones:
        torch.manual_seed(0)
        model = SEDModel(backbone).eval()
        chunk = args.max_windows or auto_max_windows(model, (3, store_shape[0], 512), "cpu")
        # Warm-up: first-call costs (oneDNN primitives, allocator) of the input shapes both paths use.
        for b in args.batch_sizes:
            w = min(b, 8)
            for mw in {chunk, *args.alt_max_windows}:
                predict_recordings(model, store, "test", ids[:w], stats[:w], positions, batch_recordings=w,
                                   max_windows=mw)
            post_loop(model, store, "test", ids[:w], stats[:w], positions, w)
        for b in args.batch_sizes:
            t_batched, t_loop = [], []
            t_alt: dict[int, list[float]] = {mw: [] for mw in args.alt_max_windows}
            for _ in range(args.repeat):
                loads.append(common.load_average())
                start = time.perf_counter()
                pred = predict_recordings(model, store, "test", ids, stats, positions, batch_recordings=b,
                                          max_windows=args.max_windows)  # None: the library's own choice
                t_batched.append(time.perf_counter() - start)
                start = time.perf_counter()
                loop = post_loop(model, store, "test", ids, stats, positions, b)
                t_loop.append(time.perf_counter() - start)
                for mw in args.alt_max_windows:
                    start = time.perf_counter()
                    predict_recordings(model, store, "test", ids, stats, positions, batch_recordings=b,
                                       max_windows=mw)
                    t_alt[mw].append(time.perf_counter() - start)
            diff = float(np.abs(pred.windows - loop).max())
            checks.append({"backbone": backbone, "batch": b, "max_abs_diff": diff})
            tb, tl = float(np.median(t_batched)), float(np.median(t_loop))
            windows = len(ids) * len(positions)
            rows.append({"backbone": backbone, "batch": b, "batched s": tb, "post loop s": tl, "ratio": tl / tb,
                         "batched win/s": windows / tb, "loop win/s": windows / tl,
                         "forwards batched": len(range(0, len(ids), b)) * -(-b * len(positions) // chunk),
                         "max_windows": chunk,
                         "forwards loop": len(range(0, len(ids), b)) * len(positions),
                         "runs batched": t_batched, "runs loop": t_loop, "max abs diff": diff})
            for mw, runs in t_alt.items():
                ta = float(np.median(runs))
                rows[-1].update({f"batched s (max_windows={mw})": ta, f"ratio (max_windows={mw})": tl / ta,
                                 f"runs max_windows={mw}": runs})
            # Where the time goes (one more pass of each, step by step).
            for path, fn in (("batched", batched_steps), ("post loop", post_loop)):
                splits = common.Splits()
                if path == "batched":
                    fn(model, store, "test", ids, stats, positions, b, chunk, splits)
                else:
                    fn(model, store, "test", ids, stats, positions, b, splits)
                share = splits.share()
                breakdown.append({"backbone": backbone, "batch": b, "path": path, "total s": splits.total,
                                  **{f"{k} %": 100 * v for k, v in share.items()}})

    foreign_cores = foreign.stop()
    ratios = [r["ratio"] for r in rows]
    met = all(r >= TARGET for r in ratios)
    show = ["backbone", "batch", "max_windows", "batched s", "post loop s", "ratio", "batched win/s", "loop win/s",
            "forwards batched", "forwards loop", "max abs diff"]
    show[6:6] = [f"ratio (max_windows={mw})" for mw in args.alt_max_windows]
    print(common.table(rows, show))
    print()
    cols = ["backbone", "batch", "path", "total s"] + sorted({k for r in breakdown for k in r if k.endswith("%")},
                                                          key=["read %", "normalize %", "normalize+split %",
                                                               "forward %", "sigmoid+max %",
                                                               "stitch+timeline %"].index)
    print(common.table(breakdown, cols))
    print(f"\nbatched / post-loop ratio >= {TARGET} at every batch size: {'met' if met else 'MISSED'} "
          f"(min {min(ratios):.2f})")
    result = {
        "alt_max_windows": args.alt_max_windows, "recordings": len(ids), "windows_per_recording": len(positions), "max_windows": args.max_windows,
        "torch_threads": torch.get_num_threads(), "repeat": args.repeat, "data": str(args.data),
        "load_before": load_before, "load_during_max": max(loads), "foreign_cores": foreign_cores, "rows": rows, "breakdown": breakdown,
        "checks": checks,
        "target": {"what": f"post-loop / batched time >= {TARGET} at batch sizes {args.batch_sizes}",
                   "value": min(ratios), "met": met},
    }
    common.write_result("predict", result)


if __name__ == "__main__":
    main()
