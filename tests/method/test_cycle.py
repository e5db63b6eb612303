"""Stage 2, cycle re-labeling: label tables per cycle, soft weights in the loss, sampling, resume, early stop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rfcx_kit.method.cycle as cycle_module
import rfcx_kit.method.stage1 as stage1_module
from rfcx_kit.method.cycle import _improved, run_relabel
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.method.pseudo import read_label_table
from rfcx_kit.method.stage1 import run_stage1
from rfcx_kit.method.context import load_context
from rfcx_kit.report.markdown import write_relabel_report
from rfcx_kit.method.train import train_fold

from tiny import make_tiny, tiny_overrides


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("relabel")
    data = make_tiny(root / "data")
    run_stage1(data, root / "runs" / "base", overrides=tiny_overrides(epochs=1), progress=False)
    return root / "runs" / "base"


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _boxes(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["recording_id", "species_id", "t_min", "t_max", "label", "weight"])


def test_crop_targets_by_hand() -> None:
    """Crop targets and weights: TP -> (1, 1) and wins over a pseudo box; a pseudo box alone -> (1, its weight);
    FP -> (0, 1); any other species -> an implicit negative (0, unlabeled_weight)."""
    hop = 512 / 32000  # one frame
    boxes = _boxes([("a", 3, 10 * hop, 20 * hop, 1, 1.0),    # TP, frames 10..20
                    ("a", 3, 12 * hop, 18 * hop, 1, 0.5),    # a pseudo box inside the TP: the TP wins
                    ("a", 5, 40 * hop, 50 * hop, 1, 0.5),    # pseudo-positive only
                    ("a", 7, 0 * hop, 5 * hop, -1, 1.0)])    # FP
    labels = FramewiseLabels(boxes, ["a"], frames=100)
    target, weight = labels.crop_targets(np.array([0, 0]), np.array([0, 30]), 32, unlabeled_weight=0.3)
    # crop 0 = frames [0, 32): TP s3 and FP s7; crop 1 = [30, 62): the pseudo s5 only
    assert target[0, 3] == 1 and weight[0, 3] == 1.0
    assert target[0, 7] == 0 and weight[0, 7] == 1.0
    assert target[0, 5] == 0 and weight[0, 5] == pytest.approx(0.3)
    assert target[1, 5] == 1 and weight[1, 5] == 0.5
    assert target[1, 3] == 0 and weight[1, 3] == pytest.approx(0.3)
    others = np.setdiff1d(np.arange(24), [3, 5, 7])
    assert np.all(target[:, others] == 0) and np.allclose(weight[:, others], 0.3)
    # unlabeled_weight 1 is the post's clipwise BCE: every cell weighs 1 except the soft pseudo one
    _, w1 = labels.crop_targets(np.array([0]), np.array([0]), 32, unlabeled_weight=1.0)
    assert np.all(w1 == 1.0)


def test_implicit_negative_weight_reaches_the_loss() -> None:
    """clipwise BCE with weights is the weighted mean of the per-cell BCE terms (hand-computed)."""
    from rfcx_kit.model.losses import clipwise_bce

    logits = torch.tensor([[0.3, -0.2, 1.5]])
    target = torch.tensor([[1.0, 0.0, 0.0]])
    weight = torch.tensor([[1.0, 0.3, 0.5]])
    terms = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")[0]
    expected = (terms[0] + 0.3 * terms[1] + 0.5 * terms[2]) / 1.8
    torch.testing.assert_close(clipwise_bce(logits, target, weight), expected)
    torch.testing.assert_close(clipwise_bce(logits, target), terms.mean())  # no weight: the plain mean


def test_votes_and_cap_per_species_by_hand() -> None:
    """Window-level votes: a cell is a pseudo-positive where at least `votes` fold models score strictly above
    the species' threshold and no TP/FP box of the species is in the window; the cap keeps each species' cells
    with the highest mean score."""
    from rfcx_kit.method.pseudo import build_label_table, cap_per_species

    preds = np.zeros((3, 2, 2, 24))  # 3 folds, 2 recordings, 2 windows
    preds[:, 0, 0, 4] = [0.9, 0.8, 0.1]   # 2 of 3 above 0.5 -> pseudo (mean 0.6)
    preds[:, 0, 1, 4] = [0.9, 0.5, 0.2]   # 0.5 is not above 0.5: 1 vote -> no
    preds[:, 1, 0, 4] = [0.7, 0.7, 0.7]   # 3 votes (mean 0.7)
    preds[:, 1, 1, 4] = [0.99, 0.99, 0.99]  # would vote, but a TP box of s4 is in the window
    preds[:, 1, 1, 9] = [0.6, 0.6, 0.0]   # s9: 2 votes
    original = np.zeros((2, 2, 24), dtype=np.int8)
    original[1, 1, 4] = 1
    table = build_label_table(["a", "b"], original, preds, threshold=0.5, votes=2)
    pseudo = table[table["source"] == "pseudo_positive"]
    assert pseudo[["recording_id", "window", "species_id"]].values.tolist() == [["a", 0, 4], ["b", 0, 4], ["b", 1, 9]]
    assert table[table["source"] == "tp"][["recording_id", "window", "species_id"]].values.tolist() == [["b", 1, 4]]
    cap = np.zeros(24, dtype=np.int64)
    cap[4], cap[9] = 1, 5
    capped = build_label_table(["a", "b"], original, preds, threshold=0.5, votes=2, max_per_species=cap)
    kept = capped[capped["source"] == "pseudo_positive"]
    assert kept[["recording_id", "window", "species_id"]].values.tolist() == [["b", 0, 4], ["b", 1, 9]]  # 0.7 > 0.6
    # ties keep the first cells in (recording, window) order
    mask = np.ones((1, 3, 2), dtype=bool)
    assert cap_per_species(mask, np.zeros((1, 3, 2)), np.array([2, 0]))[0, :, 0].tolist() == [True, True, False]
    assert not cap_per_species(mask, np.zeros((1, 3, 2)), np.array([2, 0]))[..., 1].any()


def test_window_thresholds_by_hand() -> None:
    """tp_quantile: per species the quantile of its TP windows' scores, never below the floor; a species
    without a TP window gets 1.0; fixed: one threshold for all."""
    from rfcx_kit.method.pseudo import window_thresholds

    scores = np.zeros((2, 3, 24))
    original = np.zeros((2, 3, 24), dtype=np.int8)
    scores[0, 0, 1], scores[1, 2, 1] = 0.8, 0.4
    original[0, 0, 1] = original[1, 2, 1] = 1
    scores[0, 1, 2] = 0.1
    original[0, 1, 2] = 1
    original[1, 1, 3] = -1  # an FP window never sets a threshold
    thr = window_thresholds(scores, original, "tp_quantile", threshold=0.3, quantile=0.5)
    assert thr[1] == pytest.approx(0.6) and thr[2] == pytest.approx(0.3)
    assert thr[3] == 1.0 and thr[0] == 1.0
    assert np.all(window_thresholds(scores, original, "fixed", threshold=0.7) == 0.7)


def test_peak_boxes_by_hand() -> None:
    """A pseudo-positive window becomes a one-segment box at its peak inside that window (not the peak of the
    recording), and a box never ends past the recording."""
    from rfcx_kit.method.pseudo import peak_boxes

    positions = [[0, 8], [6, 14]]  # 2 windows of 8 frames over 13 frames, pooled by 2 -> 7 segments
    timeline = np.zeros((1, 24, 7))
    timeline[0, 5] = [0.9, 0.1, 0.3, 0.2, 0.1, 0.8, 0.7]
    table = pd.DataFrame({"recording_id": ["a", "a"], "window": [0, 1], "species_id": [5, 5], "weight": [1.0, 0.5]})
    boxes = peak_boxes(table, timeline, ["a"], positions, pool=2, frame_seconds=0.25, seconds=3.1)
    # window 0 = segments 0..3: peak 0 -> [0, 0.5) s; window 1 = segments 3..6: peak 5 -> [2.5, 3.0) s
    assert boxes[["t_min", "t_max", "score", "weight"]].values.tolist() == [[0.0, 0.5, 0.9, 1.0], [2.5, 3.0, 0.8, 0.5]]
    timeline[0, 5, 5] = 0.0  # now the last segment peaks: [3.0, 3.5) s, cut to the 3.1 s recording
    assert peak_boxes(table[1:], timeline, ["a"], positions, 2, 0.25, 3.1)[["t_min", "t_max"]].values.tolist() == [[3.0, 3.1]]
    assert len(peak_boxes(table[:0], timeline, ["a"], positions, 2, 0.25, 3.1)) == 0


def test_kept_stage_by_hand() -> None:
    """The kept stage: the best CV LWLRAP on the original labels (stage 1 included; a tie keeps the earlier
    stage; a stage without the figure is skipped), or the last with rule 'last'. The truth never counts."""
    from rfcx_kit.method.cycle import choose_kept

    history = [{"stage": "stage1", "cv_lwlrap": 0.50, "truth_test_lwlrap": 0.9},
               {"stage": "cycle1", "cv_lwlrap": 0.56, "truth_test_lwlrap": 0.1},
               {"stage": "cycle2", "cv_lwlrap": 0.56},
               {"stage": "cycle3", "cv_lwlrap": float("nan")}]
    kept = choose_kept(history)
    assert kept["stage"] == "cycle1" and kept["metric"] == "cv_lwlrap"
    assert list(kept["candidates"]) == ["stage1", "cycle1", "cycle2", "cycle3"]
    assert choose_kept(history[:1])["stage"] == "stage1"
    assert choose_kept([{"stage": "stage1", "cv_lwlrap": 0.6}, {"stage": "cycle1", "cv_lwlrap": 0.5}])["stage"] == "stage1"
    assert choose_kept(history, "last")["stage"] == "cycle3"


def test_relabel_runs_cycles_and_never_overwrites_original_labels(stage1_run: Path, tmp_path: Path) -> None:
    """Two cycles: label tables keep every TP/FP window, pseudo-positives only where unknown, reports written."""
    run = _copy_run(stage1_run, tmp_path / "run")
    history = run_relabel(run, cycles=2, overrides=("relabel.epochs=1", "relabel.threshold=0.3"), progress=False)
    assert [h["stage"] for h in history] == ["stage1", "cycle1", "cycle2"]
    ctx = load_context(run)
    for cycle in (1, 2):
        table = read_label_table(run / f"cycle{cycle}" / "labels.csv")
        index = {rid: i for i, rid in enumerate(ctx.train_ids)}
        rows = table["recording_id"].map(index).to_numpy()
        orig = ctx.window_labels[rows, table["window"].to_numpy(), table["species_id"].to_numpy()]
        src = table["source"].to_numpy()
        assert np.all(orig[src == "tp"] == 1) and np.all(orig[src == "fp"] == -1)
        assert np.all(orig[src == "pseudo_positive"] == 0)
        assert (src == "tp").sum() == (ctx.window_labels == 1).sum()
        assert (src == "fp").sum() == (ctx.window_labels == -1).sum()
        metrics = json.loads((run / f"cycle{cycle}" / "metrics.json").read_text())
        assert metrics["pseudo_positives"] == (src == "pseudo_positive").sum()
        for k in range(3):
            assert (run / f"cycle{cycle}" / f"fold{k}" / "test.csv").exists()
    assert not (run / "report" / "relabel.md").exists()  # the method writes no reports: the command does
    write_relabel_report(run)
    assert (run / "report" / "relabel.md").exists() and (run / "report" / "relabel.png").stat().st_size > 5000
    table = pd.read_csv(run / "report" / "relabel.csv")
    assert table["stage"].tolist() == ["stage1", "cycle1", "cycle2"]
    kept = json.loads((run / "kept.json").read_text())
    best = max(history, key=lambda h: h["cv_lwlrap"])["stage"]
    assert kept["stage"] == best and kept["rule"] == "cv"
    from rfcx_kit.submit.ensemble import resolve_stage

    assert resolve_stage(run) == run / best  # ensemble and submit take the kept stage by default
    assert resolve_stage(run, "latest") == run / "cycle2"


def test_killed_relabel_resumes_at_the_cycle_and_fold(stage1_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill during cycle 1's fold 1 resumes there: fold 0 is not retrained, results equal a straight run."""
    straight = _copy_run(stage1_run, tmp_path / "straight")
    killed = _copy_run(stage1_run, tmp_path / "killed")
    overrides = ("relabel.epochs=2",)
    run_relabel(straight, cycles=1, overrides=overrides, progress=False)

    class Killed(BaseException):
        pass

    def dying_train_fold(fold: int, **kwargs):  # noqa: ANN202
        if fold == 1:
            def die(epoch: int) -> None:
                raise Killed()
            kwargs["on_epoch_end"] = die
        return train_fold(fold, **kwargs)

    monkeypatch.setattr(stage1_module, "train_fold", dying_train_fold)
    with pytest.raises(Killed):
        run_relabel(killed, cycles=1, overrides=overrides, progress=False)
    monkeypatch.undo()
    done0 = killed / "cycle1" / "fold0" / "done.json"
    assert done0.exists() and not (killed / "cycle1" / "fold1" / "done.json").exists()
    assert (killed / "cycle1" / "fold1" / "last.pt").exists()
    stamp = done0.stat().st_mtime_ns
    run_relabel(killed, cycles=1, progress=False)
    assert done0.stat().st_mtime_ns == stamp  # fold 0 was not redone
    a = pd.read_csv(straight / "cycle1" / "test.csv")
    b = pd.read_csv(killed / "cycle1" / "test.csv")
    pd.testing.assert_frame_equal(a, b)


def test_improvement_rule() -> None:
    """A stage improves only if it beats every earlier stage on the chosen metric."""
    h = [{"cv_lwlrap": 0.5}, {"cv_lwlrap": 0.6}, {"cv_lwlrap": 0.55}]
    assert _improved("cv", h[:2]) and not _improved("cv", h)
    with pytest.raises(Exception, match="truth"):
        _improved("truth", h)


def test_early_stop_ends_the_loop(stage1_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With early stop on, the first cycle that does not improve is the last one run."""
    run = _copy_run(stage1_run, tmp_path / "run")
    monkeypatch.setattr(cycle_module, "_improved", lambda metric, history, name="lwlrap": False)
    history = run_relabel(run, cycles=3, overrides=("relabel.epochs=1", "relabel.early_stop=true"), progress=False)
    assert [h["stage"] for h in history] == ["stage1", "cycle1"]
    assert not (run / "cycle2").exists()


def test_pseudo_quality_by_hand_and_with_no_pseudo_positives() -> None:
    """Precision/recall of pseudo-positives against planted calls; a cycle whose threshold nothing reaches
    (0 pseudo-positives) reports precision NaN and recall 0 instead of failing."""
    from types import SimpleNamespace

    from rfcx_kit.method.cycle import pseudo_quality

    ctx = SimpleNamespace(train_ids=["a", "b"], window_labels=np.zeros((2, 3, 24), dtype=np.int8),
                          window_valid=np.ones((2, 3), dtype=bool))
    ctx.window_labels[0, 0, 5] = 1  # an original TP: not counted as recoverable
    truth = np.zeros((2, 3, 24), dtype=bool)
    truth[0, 0, 5] = truth[0, 1, 5] = truth[1, 2, 7] = truth[1, 0, 3] = True
    table = pd.DataFrame({"recording_id": ["a", "a", "b", "b"], "window": [0, 1, 2, 1],
                          "species_id": [5, 5, 7, 7], "source": ["original", "pseudo_positive", "pseudo_positive",
                                                                 "pseudo_positive"], "weight": 1.0})
    out = pseudo_quality(table, ctx, truth)
    assert out["pseudo_positives"] == 3
    assert out["pseudo_precision"] == pytest.approx(2 / 3)  # (a,1,5) and (b,2,7) hit; (b,1,7) does not
    assert out["pseudo_recall"] == pytest.approx(2 / 3)  # 3 planted cells unknown to the labels, 2 recovered
    # chance: s5 has 5 unknown windows, 1 with a call (0.2); s7 has 6, 1 with a call (1/6); pseudo species 5, 7, 7
    assert out["pseudo_chance_precision"] == pytest.approx((0.2 + 1 / 6 + 1 / 6) / 3)
    assert out["pseudo_lift"] == pytest.approx((2 / 3) / ((0.2 + 1 / 6 + 1 / 6) / 3))
    empty = pseudo_quality(table[table["source"] == "original"], ctx, truth)
    assert empty["pseudo_positives"] == 0 and np.isnan(empty["pseudo_precision"]) and empty["pseudo_recall"] == 0
    assert pseudo_quality(table, ctx, None) == {"pseudo_positives": 3.0}


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 run on a tiny set whose every train recording holds one unlabelled call (truth/ present)."""
    root = tmp_path_factory.mktemp("truth")
    data = make_tiny(root / "data", truth=True)
    run_stage1(data, root / "runs" / "base", overrides=tiny_overrides(epochs=1), progress=False)
    return root / "runs" / "base"


def test_loop_cannot_run_away(truth_run: Path, tmp_path: Path) -> None:
    """Even with a threshold every score passes (0), each cycle adds at most max_pseudo_per_tp windows per TP box
    of a species, never where a TP/FP box of the species is, each box inside its window and recording, and
    reports their precision against truth."""
    run = _copy_run(truth_run, tmp_path / "run")
    history = run_relabel(run, cycles=3, overrides=("relabel.epochs=1", "relabel.threshold_rule=fixed",
                                                    "relabel.threshold=0", "relabel.max_pseudo_per_tp=2"),
                          progress=False)
    ctx = load_context(run)
    n_tp = np.bincount(ctx.comp.tp["species_id"], minlength=24)
    index = {rid: i for i, rid in enumerate(ctx.train_ids)}
    frame_s = ctx.cfg.features.hop_length / ctx.cfg.features.sample_rate
    for m in history[1:]:
        table = read_label_table(run / m["stage"] / "labels.csv")
        pseudo = table[table["source"] == "pseudo_positive"]
        per_species = np.bincount(pseudo["species_id"], minlength=24)
        assert np.all(per_species <= 2 * n_tp) and per_species.sum() == m["pseudo_positives"] > 0, m["stage"]
        rows = pseudo["recording_id"].map(index).to_numpy()
        assert np.all(ctx.window_labels[rows, pseudo["window"], pseudo["species_id"]] == 0)
        boxes = pd.read_csv(run / m["stage"] / "pseudo_boxes.csv", dtype={"recording_id": str})
        assert len(boxes) == len(pseudo) == m["pseudo_boxes"]
        start = np.asarray(ctx.positions)[pseudo["window"].to_numpy(), 0] * frame_s
        end = np.asarray(ctx.positions)[pseudo["window"].to_numpy(), 1] * frame_s
        assert np.all(boxes["t_min"].to_numpy() >= start - 1e-6) and np.all(boxes["t_max"].to_numpy() <= end + 1e-6)
        assert boxes["t_max"].max() <= ctx.cfg.features.seconds and np.all(boxes["t_max"] > boxes["t_min"])
        assert 0.0 <= m["pseudo_box_precision"] <= 1.0 and 0.0 <= m["pseudo_precision"] <= 1.0
        assert np.isfinite(m["pseudo_lift"])
    assert len(history) == 4


def test_oracle_and_control_rows_and_gap_closed(truth_run: Path, tmp_path: Path) -> None:
    """The oracle trains on every planted call; the control trains stage 1 on for cycles x relabel.epochs epochs;
    both are scored, appear in the relabel table, and the gap closed is (stage - stage1) / (oracle - stage1)."""
    from rfcx_kit.method.references import gap_closed, run_control, run_oracle
    from rfcx_kit.report.markdown import relabel_table

    run = _copy_run(truth_run, tmp_path / "run")
    run_relabel(run, cycles=1, overrides=("relabel.epochs=2",), progress=False)
    control = run_control(run, progress=False)
    assert control["epochs"] == 2  # 1 cycle x 2 epochs
    history = pd.read_csv(run / "control" / "fold0" / "history.csv")
    assert len(history) == 2
    oracle = run_oracle(run, progress=False)
    assert oracle["stage"] == "oracle" and 0 <= oracle["truth_test_lwlrap"] <= 1
    table = relabel_table(run)
    assert table["stage"].tolist() == ["stage1", "cycle1", "control", "oracle"]
    s1, o = table["truth_test_lwlrap"].iloc[0], table["truth_test_lwlrap"].iloc[3]
    for row in table.itertuples():
        expected = gap_closed(row.truth_test_lwlrap, s1, o)
        if row.stage == "oracle" or expected is None:
            assert np.isnan(row.gap_closed)
        else:
            assert row.gap_closed == pytest.approx(expected)
    # rerunning is a no-op that returns the same metrics
    assert run_control(run, progress=False)["truth_test_lwlrap"] == control["truth_test_lwlrap"]


def test_gap_closed_by_hand() -> None:
    from rfcx_kit.method.references import gap_closed

    assert gap_closed(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert gap_closed(0.55, 0.6, 0.8) == pytest.approx(-0.25)
    assert gap_closed(0.7, 0.6, 0.6) is None and gap_closed(None, 0.6, 0.8) is None
    assert gap_closed(float("nan"), 0.6, 0.8) is None


def test_oracle_needs_truth(stage1_run: Path) -> None:
    from rfcx_kit.core.errors import RfcxError
    from rfcx_kit.method.references import run_oracle

    with pytest.raises(RfcxError, match="truth/calls.csv"):
        run_oracle(stage1_run, progress=False)


def test_with_one_species_the_kept_stage_is_chosen_by_its_average_precision_not_lwlrap() -> None:
    from rfcx_kit.method.cycle import choose_kept

    history = [{"stage": "stage1", "cv_lwlrap": 1.0, "per_species_ap": [0.61]},
               {"stage": "cycle1", "cv_lwlrap": 1.0, "per_species_ap": [0.74]},
               {"stage": "cycle2", "cv_lwlrap": 1.0, "per_species_ap": [0.70]}]
    kept = choose_kept(history)
    assert kept["stage"] == "cycle1" and kept["metric"] == "cv_ap" and "one species" in kept["note"]
    assert kept["candidates"] == {"stage1": 0.61, "cycle1": 0.74, "cycle2": 0.70}
    two = [dict(h, per_species_ap=[0.5, 0.5]) for h in history]  # LWLRAP ties: the earlier stage, as before
    assert choose_kept(two)["stage"] == "stage1" and "note" not in choose_kept(two)
