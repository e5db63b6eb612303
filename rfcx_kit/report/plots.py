"""PNG figures of a run: LWLRAP by stage, per-species AP, pseudo-positives, one recording, training curves.

Every figure is written atomically with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rfcx_kit.core.io import atomic_path  # noqa: E402


def save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


REFERENCE_STAGES = {"oracle": "tab:purple", "control": "tab:gray"}


def reference_lines(ax, table: pd.DataFrame, prior: float | None = None,  # noqa: ANN001 - a matplotlib Axes
                    spread: dict[str, float] | None = None) -> pd.DataFrame:
    """Draw the prior, the control and the oracle as dashed lines of their test LWLRAP vs truth (with a band of
    +- their standard deviation over runs where ``spread`` gives one); return the other rows (the stages of the
    method, drawn along the x axis)."""
    refs = table[table["stage"].isin(list(REFERENCE_STAGES))]
    lines = list(zip(refs["stage"], pd.to_numeric(refs.get("truth_test_lwlrap"), errors="coerce")))
    colors = dict(REFERENCE_STAGES)
    if prior is not None and np.isfinite(prior):
        lines.append(("prior", prior))
        colors["prior"] = "black"
    for stage, value in lines:
        if np.isfinite(value):
            sd = (spread or {}).get(stage)
            ax.axhline(value, color=colors[stage], ls="--", lw=1.5,
                       label=f"{stage}: {value:.3f}" + (f" ± {sd:.3f}" if sd is not None else ""))
            if sd is not None and np.isfinite(sd):
                ax.axhspan(value - sd, value + sd, color=colors[stage], alpha=0.12, lw=0)
    return table[~table["stage"].isin(list(REFERENCE_STAGES))].reset_index(drop=True)


def lwlrap_by_stage(table: pd.DataFrame, path: Path, prior: float | None = None,
                    spread: dict[str, dict[str, float]] | None = None, title: str = "LWLRAP by stage") -> Path:
    """Lines of CV LWLRAP, truth LWLRAP (OOF and test) and LB by stage, with the value printed at each point;
    the prior, the control and the oracle as dashed reference lines.

    ``spread``: ``{series: {stage: standard deviation}}`` over repeated runs (``table`` then holds their means):
    drawn as error bars on the stages and as bands around the references.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    spread = spread or {}
    if "truth_test_lwlrap" in table:
        table = reference_lines(ax, table, prior, spread.get("truth_test_lwlrap"))
    else:
        table = table[~table["stage"].isin(list(REFERENCE_STAGES))].reset_index(drop=True)
    x = np.arange(len(table))
    series = [("lwlrap", "CV LWLRAP (original TP labels)", "o-"),
              ("cv_lwlrap", "CV LWLRAP (original TP labels)", "o-"),
              ("truth_oof_lwlrap", "OOF LWLRAP vs hidden truth", "^--"),
              ("truth_test_lwlrap", "test LWLRAP vs hidden truth", "s-"),
              ("LB", "public LB", "D-")]
    shown = 0
    for key, label, style in series:
        if key not in table:
            continue
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).any():
            continue
        line = ax.plot(x, values, style, label=label, lw=2, ms=7)[0]
        if key in spread:
            err = np.array([spread[key].get(s, np.nan) for s in table["stage"]])
            ax.errorbar(x, values, yerr=err, fmt="none", ecolor=line.get_color(), capsize=4, lw=1.2)
        for xi, v in zip(x, values):  # each series' values on its own side, so labels do not overlap
            if np.isfinite(v):
                dx, dy = [(-18, 8), (18, 8), (-18, -14), (18, -14)][shown % 4]
                ax.annotate(f"{v:.3f}", (xi, v), textcoords="offset points", xytext=(dx, dy), ha="center",
                            fontsize=7, color=line.get_color())
        shown += 1
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("LWLRAP")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return save(fig, path)


def species_ap(species: pd.DataFrame, path: Path) -> Path:
    """Grouped bars of per-species AP for the first and last stage (CV, and test vs truth where known)."""
    cols = [c for c in species.columns if c != "species"]
    stages = sorted({c.split("_")[-1] for c in cols}, key=lambda s: (s != "stage1", s))
    keep = [c for c in cols if c.endswith(stages[0]) or c.endswith(stages[-1])]
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=120)
    width = 0.8 / max(1, len(keep))
    x = np.arange(len(species))
    for i, col in enumerate(keep):
        label = col.replace("truth_test_ap_", "test vs truth, ").replace("ap_", "CV (TP labels), ")
        ax.bar(x + (i - (len(keep) - 1) / 2) * width, species[col].astype(float).fillna(0), width, label=label)
    ax.set_xticks(x, species["species"], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("average precision")
    ax.set_title("Per-species AP (missing bar: no positive to score)")
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def pseudo_per_species(counts: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: pseudo-positive windows added per species in each cycle."""
    cycles = [c for c in counts.columns if c != "species"]
    fig, ax = plt.subplots(figsize=(11, 4), dpi=120)
    x = np.arange(len(counts))
    width = 0.8 / max(1, len(cycles))
    for i, c in enumerate(cycles):
        ax.bar(x + (i - (len(cycles) - 1) / 2) * width, counts[c], width, label=c)
    ax.set_xticks(x, counts["species"], fontsize=8)
    ax.set_ylabel("pseudo-positive windows")
    ax.set_title("Pseudo-positives added per species and cycle")
    if cycles:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def training_curves(history: dict[str, pd.DataFrame], path: Path) -> Path:
    """Train loss, validation loss and validation LWLRAP by epoch; one colour per stage, one line per fold."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=120)
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(history))))
    for (stage, frame), colour in zip(history.items(), colours):
        for i, (fold, part) in enumerate(frame.groupby("fold")):
            for ax, key in zip(axes, ("train_loss", "val_loss", "val_lwlrap")):
                if key in part:
                    points = part[["epoch", key]].dropna()  # validation may run every few epochs only
                    ax.plot(points["epoch"], points[key], color=colour, alpha=0.8, marker="o", ms=4,
                            label=stage if i == 0 else None)
    for ax, title in zip(axes, ("train loss", "validation loss", "validation LWLRAP (TP labels)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Training curves (one line per fold)")
    return save(fig, path)


def recording_overlay(spec: np.ndarray, positions: list[list[int]], boxes: pd.DataFrame, truth: pd.DataFrame | None,
                      framewise: np.ndarray, pool: int, title: str, path: Path, mel_bin, hop_s: float) -> Path:
    """One recording: spectrogram with the window layout and boxes above; framewise predictions below.

    Args:
        spec: ``(128, T)`` dB.
        boxes: the recording's TP/FP rows (t_min, t_max, f_min, f_max, species_id, label).
        truth: planted calls of the recording (synthetic) or None.
        framewise: ``(24, ceil(T / pool))`` framewise probabilities (max over windows).
        mel_bin: Hz -> fractional mel bin.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6.5), dpi=120, sharex=True,
                                      gridspec_kw={"height_ratios": [2.2, 1.3]})
    seconds = spec.shape[1] * hop_s
    top.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, spec.shape[0]))
    for i, (start, end) in enumerate(positions):  # window layout as brackets along the top
        y = spec.shape[0] + 2 + (i % 2) * 3
        top.plot([start * hop_s, min(end, spec.shape[1]) * hop_s], [y, y], color="tab:orange" if i % 2 else "tab:blue",
                 lw=3, clip_on=False, solid_capstyle="butt")
    if truth is not None:
        for row in truth.itertuples():
            lo, hi = mel_bin(row.f_min), mel_bin(row.f_max)
            top.add_patch(plt.Rectangle((row.t_min, lo), row.t_max - row.t_min, hi - lo, fill=False, ls=":",
                                        lw=1.2, ec="white"))
    for row in boxes.itertuples():
        lo, hi = mel_bin(row.f_min), mel_bin(row.f_max)
        colour = "lime" if row.label > 0 else "red"
        top.add_patch(plt.Rectangle((row.t_min, lo), row.t_max - row.t_min, hi - lo, fill=False, lw=2, ec=colour))
        top.annotate(f"s{row.species_id}", (row.t_min, hi), color=colour, fontsize=8, va="bottom")
    top.set_ylim(0, spec.shape[0] + 8)
    top.set_ylabel("mel bin")
    top.set_title(title + "\nTP box: green, FP box: red, planted calls (hidden truth): dotted; windows: bars on top",
                  fontsize=10)
    t = (np.arange(framewise.shape[1]) + 0.5) * pool * hop_s
    species = sorted(set(boxes["species_id"]) | set(np.argsort(framewise.max(axis=1))[-3:]))
    for s in species:
        bottom.plot(t, framewise[s], lw=1.5, label=f"s{s}")
    bottom.axhline(0.5, color="grey", ls="--", lw=0.8)
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("framewise p")
    bottom.legend(fontsize=8, ncol=min(6, len(species)), loc="upper right")
    bottom.grid(alpha=0.3)
    return save(fig, path)


def relabel_metrics(table: pd.DataFrame, path: Path) -> Path:
    """LWLRAP (CV, truth) and pseudo-positive precision/recall by stage; the oracle and the control (when they
    ran) as horizontal lines of test LWLRAP vs truth."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    table = reference_lines(ax, table)
    x = np.arange(len(table))
    styles = {"cv_lwlrap": ("CV LWLRAP (TP labels)", "o-"), "truth_test_lwlrap": ("test LWLRAP vs truth", "s-"),
              "truth_oof_lwlrap": ("OOF LWLRAP vs truth", "^--"),
              "pseudo_precision": ("pseudo-positive precision", "d:"), "pseudo_recall": ("pseudo-positive recall", "v:")}
    for key, (label, style) in styles.items():
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(values).any():
            ax.plot(x, values, style, label=label, lw=2, ms=7)
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("Metrics by re-labeling cycle")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)
