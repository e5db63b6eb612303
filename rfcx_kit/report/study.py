"""The study's tables and figure: stage 1, the cycles, the control and the oracle over data seeds x training seeds.

One row per run (``study.csv``), then ``study.md``: the runs, each stage's mean and sd, and the **paired difference**
kept - control (:mod:`rfcx_kit.core.stats`) with its interval, on the test truth where the data has one and on CV
of the original labels always. ``study.png``: every run's line by stage, the mean with +-1 sd, and the paired
differences with their interval.

Why both figures: the truth judges the method; CV of TP-only labels is what a user has. The kept stage is chosen
as the best CV among stage 1 and the cycles, so its CV is the maximum of several figures and kept - control on
CV is optimistic; the last cycle - control on CV is not chosen by CV, and is given beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfcx_kit.core.io import atomic_write_csv, atomic_write_text
from rfcx_kit.core.stats import PairedDifference, paired_difference
from rfcx_kit.method.references import gap_closed
from rfcx_kit.method.run import Run, read_metrics

TRUTH, CV = "truth_test_lwlrap", "cv_lwlrap"


def _cycles(run: Run) -> list[str]:
    return [s for s in run.finished_stages() if s.startswith("cycle")]


def run_row(run_dir: Path, name: str, data: str, data_seed: int | None, train_seed: int,
            prior: float | None = None, seconds: float | None = None, truth_key: str = TRUTH,
            cv_key: str = CV) -> dict[str, Any]:
    """One finished run's figures: each stage's test figure against truth (``STAGE``, where known: ``truth_key``
    of its metrics, test LWLRAP; a BirdCLEF-shaped set's ``truth_test_rows_<metric>``) and CV (``STAGE_cv``:
    ``cv_key``), the kept stage, kept - control on both, and every cycle's pseudo-positives with their precision,
    recall and lift against truth (and, with soft pseudo-labels, their ranking AUC and calibration error)."""
    run = Run(run_dir)
    stages = run.finished_stages()
    metrics = {s: read_metrics(run.metrics(s)) for s in stages}
    nan = float("nan")
    row: dict[str, Any] = {"run": name, "data": data, "data_seed": data_seed, "train_seed": train_seed,
                           "prior": nan if prior is None else prior}
    for stage in stages:
        m = metrics[stage]
        row[stage] = m.get(truth_key, nan)
        row[f"{stage}_cv"] = m.get(cv_key, nan)
    kept = read_json(run.kept)["stage"] if run.kept.is_file() else "stage1"
    row["kept"] = kept
    row["kept_truth"] = row.get(kept, nan)
    row["kept_cv"] = row.get(f"{kept}_cv", nan)
    cycles = _cycles(run)
    last = cycles[-1] if cycles else "stage1"
    row["kept_minus_control"] = row["kept_truth"] - row.get("control", nan)
    row["kept_minus_control_cv"] = row["kept_cv"] - row.get("control_cv", nan)
    row["last_minus_control_cv"] = row.get(f"{last}_cv", nan) - row.get("control_cv", nan)
    closed = gap_closed(_finite(row["kept_truth"]), _finite(row.get("stage1")), _finite(row.get("oracle")))
    row["gap_closed"] = nan if closed is None else closed
    for stage in cycles:
        m = metrics[stage]
        row[f"{stage}_pseudo"] = m.get("pseudo_positives", nan)
        for key in ("precision", "recall", "lift"):
            row[f"{stage}_{key}"] = m.get(f"pseudo_{key}", nan)
        for key in ("auc", "ece"):  # soft pseudo-labels against the truth (relabel.soft_share)
            if f"soft_{key}" in m:
                row[f"{stage}_soft_{key}"] = m[f"soft_{key}"]
    row["seconds"] = nan if seconds is None else round(seconds, 1)
    return row


def read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(Path(path).read_text())


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def stage_columns(frame: pd.DataFrame) -> list[str]:
    """The stages the runs have, in method order: stage1, cycle1.., control, oracle."""
    cycles = sorted((c for c in frame.columns if c.startswith("cycle") and c[5:].isdigit()), key=lambda c: int(c[5:]))
    return [s for s in ["stage1", *cycles, "control", "oracle"] if s in frame]


def has_truth(frame: pd.DataFrame) -> bool:
    return "stage1" in frame and bool(np.isfinite(pd.to_numeric(frame["stage1"], errors="coerce")).any())


def differences(frame: pd.DataFrame, confidence: float = 0.95) -> dict[str, PairedDifference]:
    """The paired differences a study reports: kept - control and kept - stage 1 on truth (when known), kept -
    control and the last cycle - control on CV."""
    out: dict[str, PairedDifference] = {}
    col = lambda c: pd.to_numeric(frame[c], errors="coerce").to_numpy(float) if c in frame else np.full(len(frame), np.nan)  # noqa: E731
    if has_truth(frame):
        out["kept - control (truth)"] = paired_difference(col("kept_truth"), col("control"), confidence)
        out["kept - stage 1 (truth)"] = paired_difference(col("kept_truth"), col("stage1"), confidence)
    out["kept - control (CV)"] = paired_difference(col("kept_cv"), col("control_cv"), confidence)
    cycles = [c for c in stage_columns(frame) if c.startswith("cycle")]
    if cycles:
        out[f"{cycles[-1]} - control (CV)"] = paired_difference(col(f"{cycles[-1]}_cv"), col("control_cv"), confidence)
    return out


def verdict(diff: PairedDifference, what: str) -> str:
    """One line a reader can act on."""
    if diff.n < 2 or not math.isfinite(diff.sd):
        return f"{what}: {diff.text()}; one run cannot show a gain: run more seeds"
    if diff.low > 0:
        return f"{what}: {diff.text()}: the interval lies above 0, re-labeling beats the same training without it"
    if diff.high < 0:
        return f"{what}: {diff.text()}: the interval lies below 0, re-labeling loses to the same training without it"
    return f"{what}: {diff.text()}: the interval holds 0, these runs cannot tell re-labeling from more training"


def stage_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd, min and max over the runs of each stage's figures (truth and CV)."""
    rows = []
    for stage in stage_columns(frame):
        for key, label in ((stage, "test vs truth"), (f"{stage}_cv", "CV (original labels)")):
            if key not in frame:
                continue
            v = pd.to_numeric(frame[key], errors="coerce").dropna()
            if not len(v):
                continue
            rows.append({"stage": stage, "figure": label, "mean": v.mean(), "sd": v.std(ddof=1) if len(v) > 1 else np.nan,
                         "min": v.min(), "max": v.max(), "runs": len(v)})
    return pd.DataFrame(rows)


def cycle_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cycle over the runs: pseudo-positives, precision, recall and lift (mean, and the minimum precision)."""
    rows = []
    for stage in (c for c in stage_columns(frame) if c.startswith("cycle")):
        row: dict[str, Any] = {"cycle": stage}
        for key in ("pseudo", "precision", "recall", "lift", "soft_auc", "soft_ece"):
            col = f"{stage}_{key}"
            if col in frame:
                v = pd.to_numeric(frame[col], errors="coerce")
                row[f"{key} mean"] = v.mean()
                if key == "precision":
                    row["precision min"] = v.min()
        row["kept in"] = int((frame["kept"] == stage).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def write_study(out: Path, frame: pd.DataFrame, title: str, command: str, notes: list[str] | None = None,
                confidence: float = 0.95, figure: str = "test LWLRAP", cv_figure: str = "CV LWLRAP") -> dict[str, Any]:
    """``study.csv``, ``study.md`` and ``study.png`` in ``out``; returns the summary (also in ``study.json``'s
    ``result``). ``figure``, ``cv_figure``: what the truth and CV columns are, in words."""
    from rfcx_kit.report.markdown import markdown_table

    out = Path(out)
    atomic_write_csv(out / "study.csv", frame)
    frame = frame.copy()
    for column in [c for c in frame.columns if c.endswith("_pseudo") or c == "seconds"]:  # counts read as counts
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    diffs = differences(frame, confidence)
    truth = has_truth(frame)
    main = diffs["kept - control (truth)"] if truth else diffs["kept - control (CV)"]
    lines = [f"# {title}\n", f"Reproduce: `{command}`\n"]
    lines.append("**" + verdict(main, "kept - control, " + (f"{figure} vs truth" if truth else cv_figure)) + ".**\n")
    if not truth:
        lines.append(f"Without a truth, the figures are {cv_figure} of the original labels: the kept stage is the best "
                     "CV of several stages (optimistic), the last cycle is not chosen by CV. CV of TP-only labels "
                     "scores what was labelled, not what was missed: a synthetic study (`rfcx-kit study` without "
                     "--data) judges the method against the truth.\n")
    lines.append("## Paired differences\n")
    table = pd.DataFrame([{"difference": k, "runs": d.n, "mean": d.mean, "sd": d.sd,
                           f"{confidence:.0%} CI low".replace("%", " %"): d.low,
                           f"{confidence:.0%} CI high".replace("%", " %"): d.high, "above 0": d.low > 0}
                          for k, d in diffs.items()])
    lines.append(markdown_table(table))
    lines.append("## Runs\n")
    shown = [c for c in ["run", "data_seed", "train_seed", "prior", *stage_columns(frame), "kept", "kept_truth",
                         "kept_minus_control", "gap_closed"] if c in frame and (truth or not c.startswith(("prior", "kept_truth", "kept_minus_control", "gap")))]
    if not truth:
        shown = [c for c in ["run", "data", "train_seed", *[f"{s}_cv" for s in stage_columns(frame)], "kept", "kept_cv",
                             "kept_minus_control_cv", "last_minus_control_cv"] if c in frame]
    lines.append(markdown_table(frame[shown + (["seconds"] if "seconds" in frame else [])]))
    cycles = cycle_summary(frame)
    if len(cycles):
        lines.append("## Pseudo-positives by cycle\n")
        lines.append(markdown_table(cycles))
        per_run = [c for c in frame.columns if c.startswith("cycle")
                   and c.endswith(("_precision", "_lift", "_pseudo", "_soft_auc", "_soft_ece"))]
        if per_run and truth:
            lines.append(markdown_table(frame[["run", *per_run]]))
    lines.append("## Each stage over the runs\n")
    lines.append(markdown_table(stage_summary(frame)))
    if "seconds" in frame:
        total = pd.to_numeric(frame["seconds"], errors="coerce").sum()
        lines.append(f"Training time of the runs: {total / 60:.1f} min in all.\n")
    for note in notes or []:
        lines.append(note + "\n")
    atomic_write_text(out / "study.md", "\n".join(lines))
    study_figure(frame, out / "study.png", title, diffs, truth, figure, cv_figure)
    return {"main": main.to_dict(), "differences": {k: d.to_dict() for k, d in diffs.items()},
            "verdict": verdict(main, "kept - control")}


def study_figure(frame: pd.DataFrame, path: Path, title: str, diffs: dict[str, PairedDifference],
                 truth: bool, figure: str = "test LWLRAP", cv_figure: str = "CV LWLRAP") -> Path:
    """Left: each run's figure by stage (thin lines), the mean +-1 sd (bold), the prior; right: each run's
    kept - control with the mean and its interval."""
    from rfcx_kit.report.plots import plt, save

    stages = [s for s in stage_columns(frame) if (s if truth else f"{s}_cv") in frame]
    keys = stages if truth else [f"{s}_cv" for s in stages]
    values = frame[keys].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120, gridspec_kw={"width_ratios": [3, 1.2]})
    x = np.arange(len(stages))
    for i, run in enumerate(frame["run"]):
        ax.plot(x, values[i], "-", color="tab:blue", alpha=0.25, lw=1)
        kept = frame["kept"].iloc[i]
        if kept in stages:
            ax.plot(stages.index(kept), values[i, stages.index(kept)], "*", color="tab:orange", ms=9, alpha=0.7,
                    label="kept (by CV)" if i == 0 else None)
    mean = np.nanmean(values, axis=0)
    sd = np.nanstd(values, axis=0, ddof=1) if len(frame) > 1 else np.zeros(len(stages))
    ax.errorbar(x, mean, yerr=sd, fmt="o-", color="tab:blue", lw=2, capsize=4, label=f"mean ± sd over {len(frame)} runs")
    for xi, m in zip(x, mean):
        if np.isfinite(m):
            ax.annotate(f"{m:.3f}", (xi, m), xytext=(6, -12), textcoords="offset points", fontsize=7)
    if truth and "prior" in frame and np.isfinite(pd.to_numeric(frame["prior"], errors="coerce")).any():
        prior = float(pd.to_numeric(frame["prior"], errors="coerce").mean())
        ax.axhline(prior, color="black", ls="--", lw=1, label=f"prior: {prior:.3f}")
    ax.set_xticks(x, stages)
    ax.set_ylabel(f"{figure} vs truth" if truth else f"{cv_figure} (original labels)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    key = "kept_minus_control" if truth else "kept_minus_control_cv"
    d = pd.to_numeric(frame[key], errors="coerce").to_numpy(float)
    main = diffs["kept - control (truth)" if truth else "kept - control (CV)"]
    jitter = np.linspace(-0.15, 0.15, len(d)) if len(d) > 1 else np.zeros(len(d))
    bx.plot(jitter, d, "o", color="tab:blue", alpha=0.6, label="runs")
    if main.n >= 2 and math.isfinite(main.low):
        bx.errorbar([0.35], [main.mean], yerr=[[main.mean - main.low], [main.high - main.mean]], fmt="D",
                    color="tab:red", capsize=5, label=f"mean, {main.confidence:.0%} CI".replace("%", " %"))
    bx.axhline(0, color="black", lw=1)
    bx.set_xlim(-0.4, 0.6)
    bx.set_xticks([])
    bx.set_ylabel("kept - control" + (" (truth)" if truth else " (CV)"))
    interval = f"\n{main.confidence:.0%} CI {main.low:+.3f} to {main.high:+.3f}".replace("%", " %") if main.n >= 2 else ""
    bx.set_title(main.text().split(" (")[0] + f" (n = {main.n})" + interval, fontsize=9)
    bx.grid(alpha=0.3)
    bx.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
