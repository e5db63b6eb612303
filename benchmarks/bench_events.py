"""Call-level events against the synthetic truth: onset and offset error, and how many calls they find.

A trained run's stage predicts its data's test recordings (``predict --format raven`` does the same: the fold
mean of the framewise output, stitched over windows); its events (``method/events.py``) are matched to the test
split's planted calls (``truth/calls.csv``). A call and an event of the same recording and species match when
they overlap; each call is paired with the event it overlaps most (its intersection over union), and each event is
paired with at most one call (the call it overlaps most).

    python benchmarks/bench_events.py --run runs/study/d7-t42 [--stage kept] [--min-conf 0.3 0.5 0.7]
        [--merge-gap 0.5] [--min-length 0.2] [--limit 300] [--out benchmarks/EVENTS.md]

For each level it reports: events, their precision (share overlapping a call of their species), the calls' recall
(share overlapped by an event of their species), and over the matched pairs the onset error (event begin - call
begin) and offset error (event end - call end): median of the absolute error, median signed error (bias) and the
90th percentile of the absolute error, in seconds. The window mode's selections (each a whole window) are scored
alike at the same level, as the before.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rfcx_kit.data.features import LogMel
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.method.events import EventRule
from rfcx_kit.method.apply import chunk_events, fold_mean, load_models, read_frames
from rfcx_kit.method.run import Run
from rfcx_kit.method.context import predict_positions
from rfcx_kit.report.markdown import markdown_table


def match(events: pd.DataFrame, calls: pd.DataFrame) -> dict[str, float]:
    """Precision, recall and onset/offset errors of ``events`` (recording_id, species_id, begin, end) against
    ``calls`` (recording_id, species_id, t_min, t_max)."""
    e = events.reset_index(drop=True).rename_axis("e").reset_index()
    c = calls.reset_index(drop=True).rename_axis("c").reset_index()
    pairs = e.merge(c, on=["recording_id", "species_id"])
    inter = np.minimum(pairs["end"], pairs["t_max"]) - np.maximum(pairs["begin"], pairs["t_min"])
    pairs = pairs[inter > 0].assign(inter=inter[inter > 0])
    pairs["iou"] = pairs["inter"] / (np.maximum(pairs["end"], pairs["t_max"]) - np.minimum(pairs["begin"], pairs["t_min"]))
    out = {"events": len(e), "calls": len(c),
           "precision": pairs["e"].nunique() / len(e) if len(e) else float("nan"),
           "recall": pairs["c"].nunique() / len(c) if len(c) else float("nan")}
    # one-to-one: each call's best event, then each event's best call among those
    best = pairs.sort_values("iou", ascending=False).drop_duplicates("c").drop_duplicates("e")
    onset, offset = best["begin"] - best["t_min"], best["end"] - best["t_max"]
    for name, err in (("onset", onset), ("offset", offset)):
        out[f"{name}_abs_median"] = float(np.median(np.abs(err))) if len(err) else float("nan")
        out[f"{name}_bias"] = float(np.median(err)) if len(err) else float("nan")
        out[f"{name}_abs_p90"] = float(np.quantile(np.abs(err), 0.9)) if len(err) else float("nan")
    out["iou_median"] = float(best["iou"].median()) if len(best) else float("nan")
    out["matched"] = len(best)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--stage", default="kept")
    ap.add_argument("--min-conf", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--merge-gap", type=float, default=0.5)
    ap.add_argument("--min-length", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N test recordings")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = ap.parse_args()

    torch.manual_seed(0)
    models = load_models(args.run, args.stage)
    cfg = models.cfg
    data = Path(yaml_data(args.run))
    comp = read_competition(data)
    calls = comp.planted_calls("test")
    if calls is None:
        raise SystemExit(f"{data}: no truth/calls.csv: events can only be scored on synthetic data")
    ids = comp.test_ids[: args.limit]
    calls = calls[calls["recording_id"].isin(ids)]
    hop_s = cfg.features.hop_length / cfg.features.sample_rate
    logmel = LogMel(cfg.features)
    started = time.perf_counter()
    timelines, windows, durations = [], [], []
    for lo in range(0, len(ids), 16):
        frames = [read_frames(comp.path("test", rid), cfg, logmel) for rid in ids[lo : lo + 16]]
        _, per_window, lines = fold_mean(models, frames, torch.device("cpu"), timelines=True)
        timelines += lines
        windows += [(w, predict_positions(cfg, a.shape[1])) for w, a in zip(per_window, frames)]
        durations += [(a.shape[1] - 1) * hop_s for a in frames]
    seconds = time.perf_counter() - started
    rows = []
    for level in args.min_conf:
        rule = EventRule(level, args.merge_gap, args.min_length)
        ev = chunk_events(ids, timelines, rule, hop_s, durations)
        events = pd.DataFrame({"recording_id": np.asarray(ids, dtype=object)[ev["row"].astype(int)],
                               "species_id": ev["species"].astype(int), "begin": ev["begin"], "end": ev["end"]})
        rows.append({"mode": "events", "min_conf": level, **match(events, calls)})
        win = []
        for rid, (scores, pos) in zip(ids, windows):
            w, k = np.nonzero(np.nan_to_num(scores, nan=-1.0) >= level)
            starts = np.array([p[0] for p in pos]) * hop_s
            ends = np.array([p[1] - 1 for p in pos]) * hop_s
            win.append(pd.DataFrame({"recording_id": rid, "species_id": k, "begin": starts[w], "end": ends[w]}))
        rows.append({"mode": "windows", "min_conf": level, **match(pd.concat(win), calls)})
    table = pd.DataFrame(rows)
    head = (f"run {args.run}, stage {models.stage}, {len(ids)} test recordings, {len(calls)} planted calls; "
            f"merge gap {args.merge_gap:g} s, min length {args.min_length:g} s; frame {hop_s * 1000:.1f} ms; "
            f"prediction {seconds:.0f} s on {torch.get_num_threads()} threads")
    cols = ["mode", "min_conf", "events", "precision", "recall", "matched", "onset_abs_median", "onset_bias",
            "onset_abs_p90", "offset_abs_median", "offset_bias", "offset_abs_p90", "iou_median"]
    text = head + "\n\n" + markdown_table(table[cols]) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


def yaml_data(run: Path) -> str:
    import yaml

    return yaml.safe_load(Run(run).data.read_text())["data"]


if __name__ == "__main__":
    main()
