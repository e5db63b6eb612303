"""The demo over data seeds x training seeds: the spread behind every figure of the re-labeling loop.

    python benchmarks/relabel_study.py --out runs/relabel-study [--data-seeds 7 1 2] [--train-seeds 42 1 2]
        [--numerics native|portable] [--figure docs/img/lwlrap_by_stage.png] [-- DEMO OPTIONS...]

Runs ``rfcx-kit demo --seed D --set train.seed=T`` into OUT/dD_tT for every pair (a pair whose summary.json
exists is not rerun, so a killed study resumes), then writes OUT/study.csv (one row per run: prior, stage 1,
every cycle, the kept stage, control, oracle, gap closed, kept - control, pseudo-positive precision and lift per
cycle, seconds) and OUT/study.md (that table, then the mean and standard deviation of each column over the runs,
and the demo's acceptance points checked on them). ``--figure`` draws the mean LWLRAP by stage with the runs'
standard deviation as error bars and the prior, control and oracle as reference bands.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run_one(out: Path, data_seed: int, train_seed: int, numerics: str, extra: list[str]) -> dict:
    """One demo run (skipped when its summary.json exists); returns the summary."""
    summary = out / "summary.json"
    if not summary.is_file():
        cmd = [sys.executable, "-m", "rfcx_kit", "demo", "--out", str(out), "--seed", str(data_seed),
               "--set", f"train.seed={train_seed}", "--numerics", numerics, "--submit", "dry-run", "--no-progress",
               *extra]
        started = time.time()
        with open(out.with_suffix(".log"), "w") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {code}); see {out.with_suffix('.log')}")
        print(f"{out.name}: {time.time() - started:.0f} s", flush=True)
    return json.loads(summary.read_text())


def row_of(name: str, summary: dict) -> dict:
    """One run's figures (test LWLRAP against truth unless named otherwise)."""
    stages = {s["stage"]: s for s in summary["stages"]}
    kept = summary["kept"]["stage"]
    row = {"run": name, "data_seed": summary["seed"], "train_seed": summary.get("train_seed"),
           "prior": summary["prior"]["truth_test_lwlrap"]}
    for stage, s in stages.items():
        row[stage] = s["truth_test_lwlrap"]
    row.update({"kept": kept, "kept_lwlrap": stages[kept]["truth_test_lwlrap"],
                "control": summary["control"]["truth_test_lwlrap"], "oracle": summary["oracle"]["truth_test_lwlrap"]})
    row["gap_closed"] = summary.get("gap_closed")
    row["kept_minus_control"] = row["kept_lwlrap"] - row["control"]
    row["oracle_minus_prior"] = row["oracle"] - row["prior"]
    row["oracle_minus_stage1"] = row["oracle"] - row["stage1"]
    for stage, s in stages.items():
        if stage.startswith("cycle"):
            row[f"{stage}_precision"] = s.get("pseudo_precision")
            row[f"{stage}_lift"] = s.get("pseudo_lift")
            row[f"{stage}_pseudo"] = s.get("pseudo_positives")
    row["seconds"] = summary["seconds"]
    return row


def acceptance(frame: pd.DataFrame) -> list[tuple[str, bool, str]]:
    """The demo's acceptance points (issue 21), each with the figures it was judged on."""
    cycles = sorted({c.split("_")[0] for c in frame.columns if c.startswith("cycle") and c.endswith("_precision")})
    precision = frame[[f"{c}_precision" for c in cycles]].to_numpy(dtype=float)
    lift = frame[[f"{c}_lift" for c in cycles]].to_numpy(dtype=float)
    diff = frame["kept_minus_control"].to_numpy(dtype=float)
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else math.nan
    need = max(0.03, 2 * sd) if math.isfinite(sd) else 0.03
    return [
        ("prior <= 0.45", bool((frame["prior"] <= 0.45).all()), f"max {frame['prior'].max():.3f}"),
        ("oracle >= prior + 0.40", bool((frame["oracle_minus_prior"] >= 0.40).all()),
         f"min {frame['oracle_minus_prior'].min():+.3f}"),
        ("stage 1 <= oracle - 0.10", bool((frame["oracle_minus_stage1"] >= 0.10).all()),
         f"min gap {frame['oracle_minus_stage1'].min():.3f}"),
        ("pseudo-positive precision >= 0.80 in every cycle", bool(np.nanmin(precision) >= 0.80),
         f"min {np.nanmin(precision):.3f}"),
        ("pseudo-positive lift >= 3 in every cycle", bool(np.nanmin(lift) >= 3), f"min {np.nanmin(lift):.1f}"),
        ("kept stage closes >= 60 % of the gap", bool((frame["gap_closed"] >= 0.60).all()),
         f"min {frame['gap_closed'].min():.2f}, mean {frame['gap_closed'].mean():.2f}"),
        ("kept stage beats the control by >= max(0.03, 2 sd)", bool((diff >= need).all()),
         f"kept - control {diff.mean():+.3f} +- {sd:.3f} (min {diff.min():+.3f}; needed {need:.3f})"),
        ("demo <= 300 s", bool((frame["seconds"] <= 300).all()), f"max {frame['seconds'].max():.0f} s"),
    ]


def figure(frame: pd.DataFrame, path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from rfcx_kit.report.plots import lwlrap_by_stage

    stages = ["stage1"] + sorted(c for c in frame.columns if c.startswith("cycle") and c[5:].isdigit()) + [
        "control", "oracle"]
    table = pd.DataFrame({"stage": stages, "truth_test_lwlrap": [frame[s].mean() for s in stages]})
    spread = {"truth_test_lwlrap": {s: float(frame[s].std(ddof=1)) for s in stages + ["prior"]}}
    lwlrap_by_stage(table, path, prior=float(frame["prior"].mean()), spread=spread,
                    title=f"Test LWLRAP vs truth, mean +- sd over {len(frame)} demo runs "
                          f"({frame['data_seed'].nunique()} data x {frame['train_seed'].nunique()} training seeds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[7, 1, 2])
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--numerics", choices=["native", "portable"], default="native")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="further `rfcx-kit demo` options (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for d in args.data_seeds:
        for t in args.train_seeds:
            name = f"d{d}_t{t}"
            rows.append(row_of(name, run_one(args.out / name, d, t, args.numerics, args.extra)))
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "study.csv", index=False)
    numeric = frame.select_dtypes("number").drop(columns=["data_seed", "train_seed"], errors="ignore")
    stats = pd.DataFrame({"mean": numeric.mean(), "sd": numeric.std(ddof=1), "min": numeric.min(),
                          "max": numeric.max()})
    sys.path.insert(0, str(ROOT))
    from rfcx_kit.report.markdown import markdown_table

    lines = [f"# Re-labeling study: {len(frame)} demo runs ({args.numerics} numerics)\n",
             markdown_table(frame, digits=3), "\n## Mean and spread\n",
             markdown_table(stats.reset_index().rename(columns={"index": "figure"}), digits=3),
             "\n## Acceptance points\n", "| point | holds | figures |",
             "|---|---|---|"]
    lines += [f"| {p} | {'yes' if ok else '**no**'} | {why} |" for p, ok, why in acceptance(frame)]
    (args.out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.figure:
        figure(frame, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
