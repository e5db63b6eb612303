"""A PNG of one synthetic recording: its log-mel spectrogram with every planted box drawn on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rfcx_kit.core.io import atomic_path
from rfcx_kit.data.synth.scene import Plan
from rfcx_kit.data.synth.writer import NPY_RATE, RENDER_COLUMNS, npy_features, render_recording

# (kind, labelled) -> how the box is drawn and what the legend says.
STYLES = {
    ("call", "tp"): dict(color="#00ff66", linestyle="-", linewidth=2.2, label="call, labelled TP"),
    ("call", "none"): dict(color="#ffffff", linestyle="--", linewidth=1.2, label="call, unlabelled"),
    ("confuser", "fp"): dict(color="#ff3030", linestyle="-", linewidth=2.2, label="confuser, labelled FP"),
    ("confuser", "none"): dict(color="#ffb000", linestyle=":", linewidth=1.4, label="confuser, unlabelled"),
}


def pick_recording(plan: Plan) -> tuple[str, int]:
    """A telling train recording: one with a TP row, most species, then most sounds; ``(split, index)``."""
    train = plan.events[plan.events["split"] == "train"]
    stats = train.groupby("index").agg(tp=("labelled", lambda s: (s == "tp").any()),
                                       fp=("labelled", lambda s: (s == "fp").any()),
                                       species=("species_id", "nunique"), sounds=("event", "size"))
    stats = stats.sort_values(["tp", "fp", "species", "sounds"], ascending=False, kind="stable")
    return "train", int(stats.index[0])


def write_preview(plan: Plan, path: str | Path, split: str | None = None, index: int | None = None) -> Path:
    """Render one recording (at 32 kHz, as the npy format) and save its spectrogram with boxes as a PNG.

    Defaults to :func:`pick_recording`. Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import mel_bin_of

    if split is None or index is None:
        split, index = pick_recording(plan)
    rid = plan.ids(split)[index]
    events = plan.events[(plan.events["split"] == split) & (plan.events["index"] == index)]
    records = list(events[RENDER_COLUMNS].itertuples(index=False, name=None))
    wave, _ = render_recording(plan.config, split, index, records, NPY_RATE)
    # the set's own grid (the demo profile: 64 mels at hop 1024), as its npy arrays are
    hop, n_mels = plan.config.hop_length, plan.config.n_mels
    grid = FeatureConfig(sample_rate=NPY_RATE, hop_length=hop, n_mels=n_mels)
    spec = npy_features(wave, n_mels, hop)
    seconds = plan.config.seconds
    frames = int(seconds * NPY_RATE) // hop + 1

    fig, ax = plt.subplots(figsize=(16, 5.5), dpi=110)
    ax.imshow(spec[:, :frames], origin="lower", aspect="auto", cmap="magma",
              extent=(0, frames * hop / NPY_RATE, -0.5, spec.shape[0] - 0.5))
    for row in events.itertuples():
        style = STYLES[(row.kind, row.labelled)]
        y0, y1 = mel_bin_of(np.array([row.f_min, row.f_max]), grid)
        ax.add_patch(plt.Rectangle((row.t_min, y0), row.t_max - row.t_min, y1 - y0, fill=False,
                                   **{k: v for k, v in style.items() if k != "label"}))
        ax.text(row.t_min, y1 + 0.5, f"s{row.species_id}", color=style["color"], fontsize=7, va="bottom")
    ticks = np.array([100, 250, 500, 1000, 2000, 4000, 8000, 12000, 16000])
    ax.set_yticks(mel_bin_of(ticks, grid))
    ax.set_yticklabels([f"{t / 1000:g}k" if t >= 1000 else str(t) for t in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    present = sorted(events.loc[events["kind"] == "call", "species_id"].unique())
    ax.set_title(f"synthetic {split} recording {rid}: species calling {', '.join(f's{s}' for s in present)} "
                 f"(log-mel dB, 128 x 3751 as the npy format)", fontsize=10)
    handles = [Line2D([0], [0], **style) for style in STYLES.values()]
    ax.legend(handles=handles, loc="upper right", fontsize=8, facecolor="#222222", labelcolor="white", framealpha=0.8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path

