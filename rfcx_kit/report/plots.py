"""PNG figures of a run: LWLRAP by stage, per-species AP, pseudo-positives, one recording, training curves.

Every figure is written atomically with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rfcx_kit.core.io import atomic_path  # noqa: E402


def save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


# One colour per quantity in every figure, from Okabe and Ito's colour-blind-safe palette: the same series keeps
# its colour from one figure to the next, and no two series differ only by red against green.
COLOURS = {"cv": "#0072B2", "truth_test": "#D55E00", "truth_oof": "#009E73", "LB": "#CC79A7",
           "pseudo_precision": "#E69F00", "pseudo_recall": "#56B4E9"}
PAIR = ("#0072B2", "#E69F00")  # stage 1 against the submitted stage
REFERENCE_STAGES = {"oracle": "#7B3294", "control": "#666666"}


def fitted_limits(values: np.ndarray, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """A y range fitted to the finite ``values`` with a margin of a tenth of their spread (at least 0.02), inside
    ``[low, high + 0.02]``: a spread of 0.25-0.31 is drawn over the axis, not squashed into a 0-1 one."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return low, high
    pad = max(0.02, 0.1 * float(v.max() - v.min()))
    return max(low, float(v.min()) - pad), min(high + 0.02, float(v.max()) + pad)


def epoch_offsets(history: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Where each stage's epochs start on one axis: stage 1 at 0; a cycle after the stage it starts from (the cycle
    before, or stage 1); the control and the oracle after stage 1 (the control trains on from it)."""
    last = {stage: int(frame["epoch"].max()) if len(frame) else 0 for stage, frame in history.items()}
    offsets: dict[str, int] = {}
    for stage in history:
        if stage.startswith("cycle") and stage[5:].isdigit():
            before = "stage1" if stage == "cycle1" else f"cycle{int(stage[5:]) - 1}"
        elif stage == "control":
            before = "stage1"
        else:
            before = None
        offsets[stage] = offsets.get(before, 0) + last.get(before, 0) if before in last else 0
    return offsets


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
                       label=f"{stage}, test vs truth: {value:.3f}" + (f" ± {sd:.3f}" if sd is not None else ""))
            if sd is not None and np.isfinite(sd):
                ax.axhspan(value - sd, value + sd, color=colors[stage], alpha=0.12, lw=0)
    return table[~table["stage"].isin(list(REFERENCE_STAGES))].reset_index(drop=True)


def lwlrap_by_stage(table: pd.DataFrame, path: Path, prior: float | None = None,
                    spread: dict[str, dict[str, float]] | None = None, title: str = "LWLRAP by stage",
                    kept: str | None = None) -> Path:
    """Lines of CV LWLRAP, truth LWLRAP (OOF and test) and LB by stage, with the value printed at each point;
    the prior, the control and the oracle as dashed reference lines.

    ``spread``: ``{series: {stage: standard deviation}}`` over repeated runs (``table`` then holds their means):
    drawn as error bars on the stages and as bands around the references.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    spread = spread or {}
    everything = [pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float) for c in
                  ("lwlrap", "cv_lwlrap", "truth_oof_lwlrap", "truth_test_lwlrap", "LB") if c in table]
    if prior is not None:
        everything.append(np.array([prior], dtype=float))
    if "truth_test_lwlrap" in table:
        table = reference_lines(ax, table, prior, spread.get("truth_test_lwlrap"))
    else:
        table = table[~table["stage"].isin(list(REFERENCE_STAGES))].reset_index(drop=True)
    x = np.arange(len(table))
    series = [("lwlrap", "CV LWLRAP (original TP labels)", "o-", "cv"),
              ("cv_lwlrap", "CV LWLRAP (original TP labels)", "o-", "cv"),
              ("truth_oof_lwlrap", "OOF LWLRAP vs hidden truth", "^--", "truth_oof"),
              ("truth_test_lwlrap", "test LWLRAP vs hidden truth", "s-", "truth_test"),
              ("LB", "public LB", "D-", "LB")]
    shown = 0
    labels: list[tuple[np.ndarray, str]] = []  # (values, colour) of each series drawn
    for key, label, style, colour in series:
        if key not in table:
            continue
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).any():
            continue
        line = ax.plot(x, values, style, label=label, lw=2, ms=7, color=COLOURS[colour])[0]
        if key in spread:
            err = np.array([spread[key].get(s, np.nan) for s in table["stage"]])
            ax.errorbar(x, values, yerr=err, fmt="none", ecolor=line.get_color(), capsize=4, lw=1.2)
        labels.append((values, line.get_color()))
        shown += 1
    value_labels(ax, x, labels)
    mark_kept(ax, list(table["stage"]), kept)
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(*fitted_limits(np.concatenate(everything) if everything else np.array([])))
    ax.set_ylabel("LWLRAP (axis fitted to the values)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return save(fig, path)


def mark_kept(ax, stages: list[str], kept: str | None) -> None:  # noqa: ANN001 - a matplotlib Axes
    """A shaded column behind the stage the loop kept (what ensemble, predict and export use)."""
    if kept in stages:
        i = stages.index(kept)
        ax.axvspan(i - 0.4, i + 0.4, color="#F0E442", alpha=0.25, lw=0, label=f"kept: {kept}")


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
    change = f"truth_test_ap_{last}" if f"truth_test_ap_{last}" in species else f"ap_{last}"
    if change in species and change.replace(last, first) in species and first != last:
        # the species the submitted stage gained most on first, those it lost on last
        gain = species[change].astype(float) - species[change.replace(last, first)].astype(float)
        species = species.assign(_gain=gain.fillna(-np.inf)).sort_values("_gain", ascending=False, kind="stable")
        species = species.drop(columns="_gain").reset_index(drop=True)
    kinds = [("ap_", "CV (TP labels)"), ("truth_test_ap_", "test vs truth")]
    bars = [(f"{prefix}{stage}", f"{what}, {stage}", prefix == "ap_")
            for prefix, what in kinds for stage in dict.fromkeys((first, last)) if f"{prefix}{stage}" in species]
    few = species["positives"].to_numpy() < min_positives if "positives" in species else np.zeros(len(species), bool)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(species) + 2), 4.6), dpi=120)
    width = 0.8 / max(1, len(bars))
    x = np.arange(len(species))
    for i, (col, label, cv) in enumerate(bars):
        drawn = ax.bar(x + (i - (len(bars) - 1) / 2) * width, species[col].astype(float).fillna(0), width,
                       label=label, color=PAIR[0] if col.endswith(first) and first != last else PAIR[1],
                       alpha=1.0 if cv else 0.6, edgecolor="black" if not cv else None, linewidth=0.4)
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
    ax.set_title(f"Per-species AP, {first} against {last} (submitted), largest gain first\n{counted}; * fewer than "
                 f"{min_positives} positives: hatched CV bars are noise; no bar: no positive to score", fontsize=9)
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
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # counts: whole ticks
    ax.set_title("Pseudo-positives added per species and cycle")
    if cycles:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def training_curves(history: dict[str, pd.DataFrame], path: Path) -> Path:
    """Train loss, validation loss and validation LWLRAP by epoch; one colour per stage, one line per fold."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=120)
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]  # one per fold
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
    offsets = epoch_offsets(history)
    folds = sorted({int(f) for frame in history.values() for f in frame["fold"].unique()})
    for n, (stage, frame) in enumerate(history.items()):
        colour = palette[n % len(palette)]  # a colour per stage
        for fold, part in frame.groupby("fold"):
            for ax, key in zip(axes, ("train_loss", "val_loss", "val_lwlrap")):
                if key in part:
                    points = part[["epoch", key]].dropna()  # validation may run every few epochs only
                    ax.plot(points["epoch"] + offsets[stage], points[key], color=colour,
                            ls=styles[folds.index(int(fold)) % len(styles)], alpha=0.85, marker="o", ms=2.5, lw=1.2)
    for ax, title in zip(axes, ("train loss", "validation loss", "validation LWLRAP (TP labels)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    stage_keys = [Line2D([], [], color=palette[n % len(palette)], lw=2, label=stage) for n, stage in enumerate(history)]
    fold_keys = [Line2D([], [], color="black", ls=styles[i % len(styles)], lw=1.2, label=f"fold {f}")
                 for i, f in enumerate(folds)]
    axes[0].legend(handles=stage_keys, fontsize=8, title="stage", title_fontsize=8)
    axes[1].legend(handles=fold_keys, fontsize=8, title="fold", title_fontsize=8)
    fig.suptitle("Training curves (a colour per stage, a line style per fold; a cycle's epochs go on from the "
                 "stage it starts from)")
    return save(fig, path)


def recording_overlay(spec: np.ndarray, positions: list[list[int]], boxes: pd.DataFrame, truth: pd.DataFrame | None,
                      framewise: np.ndarray, pool: int, title: str, path: Path, mel_bin, hop_s: float,
                      codes: list[str] | None = None, band: tuple[float, float] | None = None,
                      pseudo: pd.DataFrame | None = None, bands: dict[int, tuple[float, float]] | None = None) -> Path:
    """One recording: spectrogram with the window layout and boxes above; framewise predictions below.

    Args:
        spec: ``(128, T)`` dB.
        boxes: the recording's TP/FP rows (t_min, t_max, f_min, f_max, species_id, label).
        truth: planted calls of the recording (synthetic) or None.
        framewise: ``(K, ceil(T / pool))`` framewise probabilities (max over windows).
        mel_bin: Hz -> fractional mel bin (the y axis is labelled in kHz at those positions).
        codes: the species' codes (``s0``.. when None); band: ``(fmin, fmax)`` Hz of the spectrogram.
        pseudo: the pseudo-positive boxes the cycles added to the recording (t_min, t_max, species_id), drawn dashed
            over their species' band (``bands``: species id -> (f_min, f_max) Hz; else the whole height).
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
    for row in (pseudo.itertuples() if pseudo is not None else ()):
        f_lo, f_hi = (bands or {}).get(int(row.species_id), (float("nan"), float("nan")))
        lo, hi = ((mel_bin(f_lo), mel_bin(f_hi)) if np.isfinite(f_lo) and np.isfinite(f_hi)
                  else (0.0, float(spec.shape[0])))
        top.add_patch(plt.Rectangle((row.t_min, lo), row.t_max - row.t_min, hi - lo, fill=False, lw=1.6, ls="--",
                                    ec="#56B4E9"))
        top.annotate(name(int(row.species_id)), (row.t_max, hi), color="#56B4E9", fontsize=7, va="bottom", ha="right")
    top.set_ylim(0, spec.shape[0] + 8)
    low, high = band if band is not None else (0.0, 16000.0)
    khz = [k for k in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128) if low <= k * 1000 <= high]
    top.set_yticks(np.asarray(mel_bin(np.asarray(khz) * 1000.0), dtype=float), [f"{k:g}" for k in khz])
    top.set_ylabel("frequency (kHz, mel scale)")
    top.set_title(title + "\nTP box: green, FP box: red, pseudo-positive box: dashed blue, planted calls (hidden "
                  "truth): dotted; windows: bars on top", fontsize=10)
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


def relabel_metrics(table: pd.DataFrame, path: Path, prior: float | None = None, kept: str | None = None) -> Path:
    """LWLRAP (CV, truth) and pseudo-positive precision/recall by stage; the prior, the oracle and the control
    (when they ran) as horizontal lines of test LWLRAP vs truth."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    table = reference_lines(ax, table, prior)
    x = np.arange(len(table))
    styles = {"cv_lwlrap": ("CV LWLRAP (TP labels)", "o-", "cv"),
              "truth_test_lwlrap": ("test LWLRAP vs truth", "s-", "truth_test"),
              "truth_oof_lwlrap": ("OOF LWLRAP vs truth", "^--", "truth_oof"),
              "pseudo_precision": ("pseudo-positive precision", "d:", "pseudo_precision"),
              "pseudo_recall": ("pseudo-positive recall", "v:", "pseudo_recall")}
    for key, (label, style, colour) in styles.items():
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(values).any():
            ax.plot(x, values, style, label=label, lw=2, ms=7, color=COLOURS[colour])
    mark_kept(ax, list(table["stage"]), kept)
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(0, 1.05)  # precision and recall share this axis: the whole 0-1 range
    ax.set_ylabel("score")
    ax.set_title("Metrics by re-labeling cycle")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return save(fig, path)
