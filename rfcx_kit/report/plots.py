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
    labels: list[tuple[np.ndarray, str]] = []  # (values, colour) of each series drawn
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
        labels.append((values, line.get_color()))
        shown += 1
    value_labels(ax, x, labels)
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("LWLRAP")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return save(fig, path)


def spread_labels(values: list[float], gap: float) -> list[float]:
    """Label heights for ``values`` (one x position): each label at its value, pushed apart to at least ``gap``
    from its neighbours, in the values' order. ``[0.50, 0.51, 0.52], 0.04`` -> ``[0.47, 0.51, 0.55]``."""
    order = np.argsort(values, kind="stable")
    placed = np.asarray(values, dtype=float)[order].copy()
    for i in range(1, len(placed)):  # push up where two are closer than the gap
        placed[i] = max(placed[i], placed[i - 1] + gap)
    shift = (placed - np.asarray(values, dtype=float)[order]).mean()  # centred on the values, not above them
    out = np.empty_like(placed)
    out[order] = placed - shift
    return out.tolist()


def value_labels(ax, x: np.ndarray, series: list[tuple[np.ndarray, str]], gap: float = 0.045) -> None:  # noqa: ANN001
    """Each point's value, 3 decimals, to the right of its stage, spread so that no two labels overlap."""
    for i, xi in enumerate(x):
        points = [(float(v[i]), c) for v, c in series if np.isfinite(v[i])]
        if not points:
            continue
        for (v, colour), y in zip(points, spread_labels([p[0] for p in points], gap)):
            ax.annotate(f"{v:.3f}", (xi, v), xytext=(xi + 0.14, y), textcoords="data", ha="left", va="center",
                        fontsize=7, color=colour, zorder=5,  # above the lines, on a white ground
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                        arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "alpha": 0.6})


def species_ap(species: pd.DataFrame, path: Path, stages: tuple[str, str], min_positives: int = 3) -> Path:
    """Grouped bars of per-species AP: stage 1 against ``stages[1]`` (the submitted stage), CV on the TP labels
    and test against truth where known. Under each species: its positives (``positives``: train recordings with
    a TP row; ``test_positives``: test recordings holding it, with truth). A species with fewer than
    ``min_positives`` CV positives is starred and its CV bars hatched: its AP is a coin toss, not a signal.

    Args:
        species: one row per species: ``species``, ``positives`` [``test_positives``], ``ap_STAGE``
            [``truth_test_ap_STAGE``].
    """
    first, last = stages
    kinds = [("ap_", "CV (TP labels)"), ("truth_test_ap_", "test vs truth")]
    bars = [(f"{prefix}{stage}", f"{what}, {stage}", prefix == "ap_")
            for prefix, what in kinds for stage in dict.fromkeys((first, last)) if f"{prefix}{stage}" in species]
    few = species["positives"].to_numpy() < min_positives if "positives" in species else np.zeros(len(species), bool)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(species) + 2), 4.6), dpi=120)
    width = 0.8 / max(1, len(bars))
    x = np.arange(len(species))
    for i, (col, label, cv) in enumerate(bars):
        drawn = ax.bar(x + (i - (len(bars) - 1) / 2) * width, species[col].astype(float).fillna(0), width,
                       label=label)
        if cv:
            for bar, faint in zip(drawn, few):
                if faint:
                    bar.set_hatch("///")
                    bar.set_alpha(0.45)
    ticks = []
    for row, faint in zip(species.itertuples(index=False), few):
        count = f"{int(row.positives)}" if "positives" in species else ""
        if "test_positives" in species:
            count += f"/{int(row.test_positives)}"
        ticks.append(f"{row.species}{'*' if faint else ''}\n{count}")
    ax.set_xticks(x, ticks, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("average precision")
    counted = "n = train recordings with a TP row" + (" / test recordings with the species" if
                                                       "test_positives" in species else "")
    ax.set_title(f"Per-species AP, {first} against {last} (submitted)\n{counted}; * fewer than {min_positives} "
                 "positives: hatched CV bars are noise; no bar: no positive to score", fontsize=9)
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
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
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for n, (stage, frame) in enumerate(history.items()):
        colour = plt.cm.tab10(n % 10)  # a distinct colour, line style and marker per stage
        for i, (fold, part) in enumerate(frame.groupby("fold")):
            for ax, key in zip(axes, ("train_loss", "val_loss", "val_lwlrap")):
                if key in part:
                    points = part[["epoch", key]].dropna()  # validation may run every few epochs only
                    ax.plot(points["epoch"], points[key], color=colour, ls=styles[n % len(styles)], alpha=0.8,
                            marker=markers[n % len(markers)], ms=4, lw=1.2, label=stage if i == 0 else None)
    for ax, title in zip(axes, ("train loss", "validation loss", "validation LWLRAP (TP labels)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="stage", title_fontsize=8)
    fig.suptitle("Training curves (one line per fold; a colour, line style and marker per stage)")
    return save(fig, path)


def recording_overlay(spec: np.ndarray, positions: list[list[int]], boxes: pd.DataFrame, truth: pd.DataFrame | None,
                      framewise: np.ndarray, pool: int, title: str, path: Path, mel_bin, hop_s: float,
                      codes: list[str] | None = None, band: tuple[float, float] | None = None) -> Path:
    """One recording: spectrogram with the window layout and boxes above; framewise predictions below.

    Args:
        spec: ``(128, T)`` dB.
        boxes: the recording's TP/FP rows (t_min, t_max, f_min, f_max, species_id, label).
        truth: planted calls of the recording (synthetic) or None.
        framewise: ``(K, ceil(T / pool))`` framewise probabilities (max over windows).
        mel_bin: Hz -> fractional mel bin (the y axis is labelled in kHz at those positions).
        codes: the species' codes (``s0``.. when None); band: ``(fmin, fmax)`` Hz of the spectrogram.
    """
    name = (lambda s: codes[s]) if codes is not None else (lambda s: f"s{s}")
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
            top.annotate(name(int(row.species_id)), (row.t_max, lo), color="white", fontsize=7, va="top",
                         ha="right")
    for row in boxes.itertuples():
        lo, hi = mel_bin(row.f_min), mel_bin(row.f_max)
        colour = "lime" if row.label > 0 else "red"
        top.add_patch(plt.Rectangle((row.t_min, lo), row.t_max - row.t_min, hi - lo, fill=False, lw=2, ec=colour))
        top.annotate(name(int(row.species_id)), (row.t_min, hi), color=colour, fontsize=8, va="bottom")
    top.set_ylim(0, spec.shape[0] + 8)
    low, high = band if band is not None else (0.0, 16000.0)
    khz = [k for k in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128) if low <= k * 1000 <= high]
    top.set_yticks(np.asarray(mel_bin(np.asarray(khz) * 1000.0), dtype=float), [f"{k:g}" for k in khz])
    top.set_ylabel("frequency (kHz, mel scale)")
    top.set_title(title + "\nTP box: green, FP box: red, planted calls (hidden truth): dotted; windows: bars on top",
                  fontsize=10)
    t = (np.arange(framewise.shape[1]) + 0.5) * pool * hop_s
    species = sorted(set(boxes["species_id"]) | set(np.argsort(framewise.max(axis=1))[-3:]))
    for s in species:
        bottom.plot(t, framewise[s], lw=1.5, label=name(int(s)))
    bottom.axhline(0.5, color="grey", ls="--", lw=0.8)
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("framewise p")
    bottom.legend(fontsize=8, ncol=min(6, len(species)), loc="upper right")
    bottom.grid(alpha=0.3)
    return save(fig, path)


def relabel_metrics(table: pd.DataFrame, path: Path, prior: float | None = None) -> Path:
    """LWLRAP (CV, truth) and pseudo-positive precision/recall by stage; the prior, the oracle and the control
    (when they ran) as horizontal lines of test LWLRAP vs truth."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    table = reference_lines(ax, table, prior)
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
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return save(fig, path)
