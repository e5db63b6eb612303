"""`rfcx-kit demo` end to end at a reduced size: every artefact it promises exists and holds what it should."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfcx_kit.app.demo import run_demo
from rfcx_kit.core.metrics import lwlrap
from rfcx_kit.core.species import SPECIES_COLUMNS
from rfcx_kit.data.submission import validate_submission

FAST = ("model.backbone=mobilenetv3_small_050", "train.epochs=1", "relabel.epochs=1", "train.threads=1",
        "relabel.windows_per_epoch=32")


def figure_texts(fig) -> dict[str, list[str]]:  # noqa: ANN001 - a matplotlib Figure
    """What a figure says: titles, axis labels, tick labels and legend entries of each of its axes."""
    out: dict[str, list[str]] = {"title": [], "label": [], "ticks": [], "legend": []}
    for ax in fig.axes:
        out["title"].append(ax.get_title())
        out["label"] += [ax.get_xlabel(), ax.get_ylabel()]
        out["ticks"] += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        if ax.get_legend() is not None:
            out["legend"] += [t.get_text() for t in ax.get_legend().get_texts()]
    return out


@pytest.mark.timeout(600)
def test_demo_reduced_size_writes_every_artefact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synth (FLAC) -> cache -> stage1 -> 3 cycles -> ensemble -> validate -> stand-in submit -> report."""
    from rfcx_kit.report import plots

    drawn: dict[str, dict[str, list[str]]] = {}
    real_save = plots.save

    def save(fig, path):  # noqa: ANN001, ANN202 - records what each figure shows, then saves it
        drawn[Path(path).name] = figure_texts(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save", save)
    out = tmp_path / "demo"
    summary = run_demo(out, n_train=24, n_test=8, seconds=10.0, seed=3, overrides=FAST, cycles=3,
                       submit="standin", fmt="flac", progress=False)
    data, run = out / "data", out / "run"
    # the output folder is flat: no path segment repeats
    assert sorted(p.name for p in out.iterdir()) == ["cv_table.csv", "cv_table.md", "data", "kaggle-standin",
                                                    "report.md", "run", "submissions", "summary.json"]
    for path in out.rglob("*"):
        parts = path.relative_to(out).parts
        assert len(set(parts)) == len(parts), path
    # data: competition layout, hidden truth, feature cache
    for name in ("train_tp.csv", "train_fp.csv", "sample_submission.csv", "truth/calls.csv",
                 "truth/test_presence.csv", "features_cache/manifest.csv"):
        assert (data / name).exists(), name
    assert len(list((data / "train").glob("*.flac"))) == 24
    # run: stage 1 and three cycles, each with per-fold outputs and metrics
    stages = ["stage1", "cycle1", "cycle2", "cycle3"]
    for stage in stages:
        metrics = json.loads((run / stage / "metrics.json").read_text())
        assert 0.0 <= metrics["cv_lwlrap"] <= 1.0 and 0.0 <= metrics["truth_test_lwlrap"] <= 1.0
        for k in range(3):
            assert (run / stage / f"fold{k}" / "best.pt").exists()
    for cycle in stages[1:]:
        for name in ("labels.csv", "label_counts.csv", "pseudo_boxes.csv"):
            assert (run / cycle / name).exists(), (cycle, name)
    # the references: the oracle (every planted call) and the control (as many extra epochs, no pseudo-labels)
    for stage in ("oracle", "control"):
        assert 0.0 <= json.loads((run / stage / "metrics.json").read_text())["truth_test_lwlrap"] <= 1.0
    # the submission is valid and the stand-in's score is its LWLRAP against the synthetic truth
    sub = validate_submission(out / "submissions" / "demo.csv", pd.read_csv(data / "sample_submission.csv")["recording_id"])
    truth = pd.read_csv(data / "truth" / "test_presence.csv", dtype={"recording_id": str}).set_index("recording_id")
    expected = lwlrap(truth.loc[sub["recording_id"], SPECIES_COLUMNS].to_numpy(), sub[SPECIES_COLUMNS].to_numpy())
    log = pd.read_csv(out / "submissions" / "log.csv")
    assert len(log) == 1 and log["status"].iloc[0] == "COMPLETE"
    assert float(log["score"].iloc[0]) == pytest.approx(expected, abs=1e-5)
    # the report: markdown with figures that exist and are real pictures; LB filled from the log
    report = (out / "report.md").read_text()
    for png in ("lwlrap_by_stage.png", "species_ap.png", "pseudo_per_species.png", "recording.png",
                "training_curves.png", "relabel.png"):
        path = run / "report" / png
        assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        if png != "relabel.png":
            assert f"run/report/{png}" in report
    cv = pd.read_csv(run / "report" / "cv.csv", keep_default_na=False)
    assert cv["stage"].tolist() == stages + ["control", "oracle"]
    kept = json.loads((run / "kept.json").read_text())
    assert summary["kept"] == kept and summary["final_stage"] == kept["stage"] in stages
    best_cv = max(stages, key=lambda s: json.loads((run / s / "metrics.json").read_text())["cv_lwlrap"])
    assert kept["stage"] == best_cv  # the submitted stage is the one with the best CV on the original labels
    assert float(cv.loc[cv["stage"] == kept["stage"], "LB"].iloc[0]) == pytest.approx(expected, abs=1e-5)
    # the prior: one constant ranking by train frequency, scored against the test truth
    from rfcx_kit.core.metrics import prior_lwlrap

    train_truth = pd.read_csv(data / "truth" / "train_presence.csv")[SPECIES_COLUMNS].to_numpy()
    test_truth = truth.loc[sub["recording_id"], SPECIES_COLUMNS].to_numpy()
    assert summary["prior"]["truth_test_lwlrap"] == pytest.approx(prior_lwlrap(train_truth, test_truth))
    for row in summary["stages"][1:]:
        assert np.isfinite(row["pseudo_lift"]) or row["pseudo_positives"] == 0
    assert (out / "cv_table.md").exists()
    # the report tells the truth at a glance: the submitted stage against stage 1, positives beside each AP
    submitted = kept["stage"]
    species_fig = drawn["species_ap.png"]
    assert set(species_fig["legend"]) == {"CV (TP labels), stage1", f"CV (TP labels), {submitted}",
                                          "test vs truth, stage1", f"test vs truth, {submitted}"}
    assert not any("oracle" in t or "control" in t for t in species_fig["legend"])
    species = pd.read_csv(run / "report" / "species.csv")
    tp = pd.read_csv(data / "train_tp.csv")
    assert species["positives"].tolist() == [tp.loc[tp["species_id"] == k, "recording_id"].nunique()
                                             for k in range(len(species))]
    assert species["test_positives"].tolist() == truth.loc[sub["recording_id"], SPECIES_COLUMNS].sum().tolist()
    ticks = [t for t in species_fig["ticks"] if t.startswith("s")]
    # every species once, with its counts, in the order of the submitted stage's gain over stage 1
    assert sorted(ticks) == sorted(f"s{k}{'*' if n < 3 else ''}\n{n}/{m}" for k, (n, m) in
                                   enumerate(zip(species["positives"], species["test_positives"])))
    recording_fig = drawn["recording.png"]
    assert "frequency (kHz, mel scale)" in recording_fig["label"]
    assert {"1", "2", "4", "8"} <= set(recording_fig["ticks"])
    assert set(drawn["training_curves.png"]["legend"]) >= set(stages) | {"control", "oracle"}
    assert any(t.startswith("prior, test vs truth: ") for t in drawn["relabel.png"]["legend"])
    assert report.startswith("# rfcx-kit report: demo (rfcx-kit demo, recipe demo)")
    assert str(tmp_path) not in report and "The CV is optimistic" in report
    assert "|stage1|" in report and not any(len(c.split(".")[-1]) > 3 for c in
                                             report.split("|") if c.replace(".", "").isdigit() and "." in c)
    assert [s["stage"] for s in summary["stages"]] == stages
    assert np.isfinite(summary["seconds"])
    assert summary["oracle"]["truth_test_lwlrap"] == pytest.approx(
        json.loads((run / "oracle" / "metrics.json").read_text())["truth_test_lwlrap"])
    assert "truth_test_lwlrap" in summary["control"] and "gap_closed" in summary
    assert 0 < summary["labelled_calls"] < summary["planted_calls"]
    assert summary["labelled_share"] == pytest.approx(summary["labelled_calls"] / summary["planted_calls"])
    # every JSON file the demo wrote is strict JSON: a bare NaN or Infinity is refused
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    files = sorted(out.rglob("*.json"))
    assert len(files) > 10
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)
