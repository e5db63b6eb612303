"""The report's figures say what they draw: fitted axes, truth never drawn as CV, the kept stage marked, one epoch
axis across stages, colour-blind-safe colours, whole counts, species by change."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from rfcx_kit.report import plots

OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    kept = []

    def keep(fig, path):  # noqa: ANN001, ANN202 - plots.save's signature
        kept.append(fig)
        return path

    monkeypatch.setattr(plots, "save", keep)
    return kept


def test_fitted_limits_and_epoch_offsets() -> None:
    low, high = plots.fitted_limits(np.array([0.25, 0.31, np.nan]))
    assert low == pytest.approx(0.23) and high == pytest.approx(0.33)
    assert plots.fitted_limits(np.array([np.nan])) == (0.0, 1.0)
    assert plots.fitted_limits(np.array([0.99, 1.0]))[1] == pytest.approx(1.02)
    epochs = {s: pd.DataFrame({"epoch": range(1, n + 1), "fold": 0}) for s, n in
              (("stage1", 12), ("cycle1", 6), ("cycle2", 6), ("control", 18))}
    assert plots.epoch_offsets(epochs) == {"stage1": 0, "cycle1": 12, "cycle2": 18, "control": 12}


def test_series_colours_are_colour_blind_safe_and_shared() -> None:
    assert {c.upper() for c in plots.COLOURS.values()} <= OKABE_ITO and len(set(plots.COLOURS.values())) == 6
    assert {c.upper() for c in plots.PAIR} <= OKABE_ITO


def test_lwlrap_by_stage_fits_its_axis_names_truth_lines_and_marks_the_kept_stage(figures: list,
                                                                                  tmp_path: Path) -> None:
    table = pd.DataFrame({"stage": ["stage1", "cycle1", "control", "oracle"], "cv_lwlrap": [0.30, 0.314, 0.31, 0.5],
                          "truth_test_lwlrap": [0.268, 0.259, 0.314, 0.55]})
    plots.lwlrap_by_stage(table, tmp_path / "a.png", kept="cycle1")
    ax = figures[-1].axes[0]
    low, high = ax.get_ylim()
    assert 0.2 < low < 0.259 and 0.55 < high < 0.7  # fitted, not 0-1
    labels = ax.get_legend_handles_labels()[1]
    assert "control, test vs truth: 0.314" in labels and "kept: cycle1" in labels
    lines = {line.get_label(): mcolors.to_hex(line.get_color()).upper() for line in ax.get_lines()}
    assert lines["CV LWLRAP (original TP labels)"] == plots.COLOURS["cv"].upper()
    assert lines["test LWLRAP vs hidden truth"] == plots.COLOURS["truth_test"].upper()


def test_species_ap_puts_the_largest_gain_first(figures: list, tmp_path: Path) -> None:
    species = pd.DataFrame({"species": ["a", "b", "c"], "positives": [5, 5, 5], "ap_stage1": [0.5, 0.5, 0.5],
                            "ap_cycle1": [0.4, 0.9, 0.6]})
    plots.species_ap(species, tmp_path / "s.png", ("stage1", "cycle1"))
    ticks = [t.get_text().split("\n")[0] for t in figures[-1].axes[0].get_xticklabels()]
    assert ticks == ["b", "c", "a"]


def test_pseudo_counts_have_whole_ticks_and_cycles_go_on_from_their_stage(figures: list, tmp_path: Path) -> None:
    plots.pseudo_per_species(pd.DataFrame({"species": ["a", "b"], "cycle1": [1, 2]}), tmp_path / "p.png")
    ticks = figures[-1].axes[0].get_yticks()
    assert np.allclose(ticks, np.round(ticks))
    history = {"stage1": pd.DataFrame({"epoch": [1, 2, 3] * 2, "fold": [0] * 3 + [1] * 3, "train_loss": 1.0}),
               "cycle1": pd.DataFrame({"epoch": [1, 2] * 2, "fold": [0] * 2 + [1] * 2, "train_loss": 0.5})}
    plots.training_curves(history, tmp_path / "t.png")
    lines = figures[-1].axes[0].get_lines()
    starts = sorted({float(line.get_xdata()[0]) for line in lines})
    assert starts == [1.0, 4.0]  # cycle 1's epoch 1 comes after stage 1's 3
    assert len({line.get_linestyle() for line in lines}) == 2  # the folds told apart
