"""LWLRAP and friends: hand-computed cases, a literal implementation of the formula, scikit-learn, real data."""

from __future__ import annotations

import glob
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score

from rfcx_kit.app.data import score_cmd
from rfcx_kit.core.metrics import lwlrap, lwlrap_per_class, per_species_ap, precision_recall
from rfcx_kit.core.species import SPECIES_COLUMNS

SHARED = Path("/work/shared/data/rfcx")


def formula_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """The formula written out literally, one sample and one positive class at a time.

    rank(c) = 1 + number of classes with a strictly higher score (correct when no scores tie).
    """
    total, count = 0.0, 0
    for t, s in zip(truth, scores):
        positives = [c for c in range(len(t)) if t[c]]
        for c in positives:
            rank = 1 + sum(1 for other in range(len(s)) if s[other] > s[c])
            hits = sum(1 for p in positives if 1 + sum(1 for o in range(len(s)) if s[o] > s[p]) <= rank)
            total += hits / rank
            count += 1
    return total / count


def dcase_tie_by_order(truth: np.ndarray, scores: np.ndarray) -> float:
    """The DCASE 2019 reference's ranking (``np.argsort(scores)[::-1]``), which breaks ties by position."""
    total, count = 0.0, 0
    for t, s in zip(truth, scores):
        rank = np.empty(len(s), dtype=int)
        rank[np.argsort(s, kind="stable")[::-1]] = np.arange(1, len(s) + 1)
        positives = np.flatnonzero(t)
        for c in positives:
            total += (rank[positives] <= rank[c]).sum() / rank[c]
            count += 1
    return total / count


def sklearn_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    return label_ranking_average_precision_score(truth, scores, sample_weight=truth.sum(1))


# ---------------------------------------------------------------------------------------------- hand cases


def test_perfect_and_worst_single_positive() -> None:
    assert lwlrap(np.array([[0, 1, 0]]), np.array([[0.1, 0.9, 0.5]])) == 1.0
    assert lwlrap(np.array([[1, 0, 0]]), np.array([[0.1, 0.9, 0.5]])) == pytest.approx(1 / 3)


def test_hand_computed_label_weighting() -> None:
    truth = np.array([[1, 0, 0, 0], [0, 1, 1, 1]])
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.9, 0.1, 0.2, 0.3]])
    # Row 0: its positive ranks 1st -> 1. Row 1: class 3 ranks 2nd (1 hit) -> 1/2, class 2 3rd (2 hits)
    # -> 2/3, class 1 4th (3 hits) -> 3/4. Four labels weigh the same: (1 + 1/2 + 2/3 + 3/4) / 4.
    expected = (1 + 1 / 2 + 2 / 3 + 3 / 4) / 4
    assert lwlrap(truth, scores) == pytest.approx(expected)
    # Not the per-sample mean (which would be (1 + 23/36) / 2 = 0.819...).
    assert abs(lwlrap(truth, scores) - (1 + (1 / 2 + 2 / 3 + 3 / 4) / 3) / 2) > 0.05


def test_ties_constant_predictions_note_example() -> None:
    # notes/rfcx.md: "constant predictions (all 0.5: 0.444 vs 0.417)". The case: 4 classes, two recordings
    # with 1 and 2 positives. sklearn's rule ranks every tied positive 4th: (1 * 1/4 + 2 * 2/4) / 3 = 5/12.
    truth = np.array([[0, 1, 0, 0], [1, 0, 1, 0]])
    scores = np.full(truth.shape, 0.5)
    assert lwlrap(truth, scores) == pytest.approx(5 / 12)
    assert round(lwlrap(truth, scores), 3) == 0.417
    assert lwlrap(truth, scores) == pytest.approx(sklearn_lwlrap(truth, scores))
    # The DCASE reference's tie-by-position rule gives 4/9 = 0.444 on the same input: we do not use it.
    assert dcase_tie_by_order(truth, scores) == pytest.approx(4 / 9)


def test_partial_tie_takes_worst_rank() -> None:
    truth = np.array([[1, 0, 1, 0]])
    scores = np.array([[0.5, 0.5, 0.9, 0.1]])
    # class 2 ranks 1st -> 1; class 0 ties with the negative class 1 for 2nd/3rd -> rank 3, 2 hits -> 2/3.
    assert lwlrap(truth, scores) == pytest.approx((1 + 2 / 3) / 2)
    # Tied positives only among themselves cost nothing.
    assert lwlrap(np.array([[1, 1, 0]]), np.array([[0.7, 0.7, 0.1]])) == 1.0


def test_precision_recall_hand_case() -> None:
    truth = np.array([[1, 0, 1], [0, 0, 1]])
    scores = np.array([[0.9, 0.6, 0.4], [0.2, 0.1, 0.8]])
    # Predicted (> 0.5): (0,0) TP, (0,1) FP, (1,2) TP -> precision 2/3; positives 3, found 2 -> recall 2/3.
    assert precision_recall(truth, scores) == pytest.approx((2 / 3, 2 / 3))
    assert precision_recall(truth, scores, threshold=0.85) == pytest.approx((1.0, 1 / 3))
    precision, recall = precision_recall(truth, scores, threshold=1.0)
    assert math.isnan(precision) and recall == 0.0
    # Strictly greater than: a score equal to the threshold is not a positive prediction.
    assert precision_recall(np.array([[1]]), np.array([[0.5]]))[1] == 0.0


# ------------------------------------------------------------------------------------------ random data


def test_equals_literal_formula_without_ties() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((60, 24)) < 0.15).astype(int)
    truth[0] = 0  # a recording without positives
    truth[1] = 1  # and one with every class positive
    scores = rng.normal(size=truth.shape)
    assert len(np.unique(scores)) == scores.size
    assert lwlrap(truth, scores) == pytest.approx(formula_lwlrap(truth, scores), abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equals_sklearn_weighted_lrap_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = (rng.random((300, 24)) < 0.1).astype(int)
    truth[rng.integers(0, 300, 5), rng.integers(0, 24, 5)] = 1
    scores = rng.integers(0, 5, size=truth.shape) / 4  # only 5 distinct values: ties everywhere
    assert lwlrap(truth, scores) == pytest.approx(sklearn_lwlrap(truth, scores), abs=1e-12)


def test_recordings_without_positives_drop_out() -> None:
    rng = np.random.default_rng(4)
    truth = (rng.random((40, 24)) < 0.1).astype(int)
    truth[:, 3] |= rng.random(40) < 0.5
    scores = rng.random(truth.shape)
    extra_truth = np.vstack([truth, np.zeros((25, 24), dtype=int)])
    extra_scores = np.vstack([scores, rng.random((25, 24))])
    assert lwlrap(extra_truth, extra_scores) == pytest.approx(lwlrap(truth, scores), abs=1e-15)
    assert math.isnan(lwlrap(np.zeros((3, 24)), rng.random((3, 24))))


def test_invariant_to_monotone_transform() -> None:
    rng = np.random.default_rng(5)
    truth = (rng.random((50, 24)) < 0.1).astype(int)
    truth[:, 0] = 1
    logits = rng.normal(size=truth.shape)
    assert lwlrap(truth, logits) == pytest.approx(lwlrap(truth, 1 / (1 + np.exp(-logits))), abs=1e-15)


def test_per_class_contributions_sum_to_lwlrap() -> None:
    rng = np.random.default_rng(6)
    truth = (rng.random((80, 24)) < 0.12).astype(int)
    truth[:, 7] = 0  # a class without any positive
    truth[0, 0] = 1
    scores = rng.integers(0, 7, size=truth.shape).astype(float)
    per_class, weight = lwlrap_per_class(truth, scores)
    assert per_class.shape == weight.shape == (24,)
    assert weight.sum() == pytest.approx(1.0)
    assert np.allclose(weight, truth.sum(0) / truth.sum())
    assert math.isnan(per_class[7]) and weight[7] == 0.0
    assert np.nansum(per_class * weight) == pytest.approx(lwlrap(truth, scores), abs=1e-12)


def test_per_class_hand_case() -> None:
    truth = np.array([[1, 0, 0, 0], [0, 1, 1, 1]])
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.9, 0.1, 0.2, 0.3]])
    per_class, weight = lwlrap_per_class(truth, scores)
    assert per_class == pytest.approx([1.0, 3 / 4, 2 / 3, 1 / 2])
    assert weight == pytest.approx([0.25, 0.25, 0.25, 0.25])


def test_per_species_ap_matches_sklearn_columns() -> None:
    rng = np.random.default_rng(7)
    truth = (rng.random((70, 24)) < 0.2).astype(int)
    truth[:, 5] = 0
    scores = rng.random(truth.shape)
    ap = per_species_ap(truth, scores)
    assert ap.shape == (24,) and math.isnan(ap[5])
    for k in [0, 11, 23]:
        assert ap[k] == pytest.approx(average_precision_score(truth[:, k], scores[:, k]))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape|recordings"):
        lwlrap(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="0 and 1"):
        lwlrap(np.full((2, 3), 2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        lwlrap(np.eye(3), np.array([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]]))


# ----------------------------------------------------------------------------------------- score command


def _frame(ids: list[str], values: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=SPECIES_COLUMNS)
    frame.insert(0, "recording_id", ids)
    return frame


@pytest.fixture()
def small_files(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    ids = [f"rec{i:03d}" for i in range(30)]
    truth = (rng.random((30, 24)) < 0.1).astype(int)
    truth[:, 2] = 1
    scores = rng.random((30, 24)).round(3)
    truth_path, pred_path = tmp_path / "truth.csv", tmp_path / "pred.csv"
    _frame(ids, truth).to_csv(truth_path, index=False)
    order = rng.permutation(30)  # a different row order: the command must align by recording_id
    _frame([ids[i] for i in order], scores[order]).to_csv(pred_path, index=False)
    return pred_path, truth_path, truth, scores


def test_score_command_prints_metrics(small_files, monkeypatch) -> None:
    pred_path, truth_path, truth, scores = small_files
    from rfcx_kit.app.cli import main

    args = ["score", str(pred_path), "--truth", str(truth_path), "--per-species"]
    monkeypatch.setattr(sys, "argv", ["rfcx-kit", *args])  # the lazy CLI looks at argv
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    precision, recall = precision_recall(truth, scores)
    assert f"LWLRAP      {lwlrap(truth, scores):.4f}" in result.output
    assert f"precision   {precision:.4f}" in result.output
    assert f"recall      {recall:.4f}" in result.output
    ap = per_species_ap(truth, scores)
    table_line = next(line for line in result.output.splitlines() if line.split()[:1] == ["s2"])
    assert table_line.split()[1:3] == ["30", f"{ap[2]:.4f}"]


def test_score_command_threshold(small_files) -> None:
    pred_path, truth_path, truth, scores = small_files
    result = CliRunner().invoke(score_cmd, [str(pred_path), "--truth", str(truth_path), "--threshold", "0.9"])
    assert result.exit_code == 0, result.output
    assert f"recall      {precision_recall(truth, scores, 0.9)[1]:.4f}" in result.output
    assert "species" not in result.output  # no table without --per-species


def test_score_command_names_missing_and_extra_ids(small_files, tmp_path: Path) -> None:
    pred_path, truth_path, _, _ = small_files
    pred = pd.read_csv(pred_path)
    pred = pred[pred.recording_id != "rec007"]
    pred.loc[len(pred)] = ["stranger", *[0.5] * 24]
    bad_path = tmp_path / "bad.csv"
    pred.to_csv(bad_path, index=False)
    result = CliRunner().invoke(score_cmd, [str(bad_path), "--truth", str(truth_path)])
    assert result.exit_code == 2
    assert "Error:" in result.output and "Traceback" not in result.output
    assert "missing 1 (rec007)" in result.output
    assert "1 (stranger)" in result.output


def test_score_command_rejects_non_binary_truth_and_missing_columns(small_files, tmp_path: Path) -> None:
    pred_path, truth_path, _, _ = small_files
    truth = pd.read_csv(truth_path).astype({"s9": float})
    truth.loc[4, "s9"] = 0.7
    soft_path = tmp_path / "soft.csv"
    truth.to_csv(soft_path, index=False)
    result = CliRunner().invoke(score_cmd, [str(pred_path), "--truth", str(soft_path)])
    assert result.exit_code == 2 and "0/1" in result.output and "rec004" in result.output

    no_column = pd.read_csv(pred_path).drop(columns="s23")
    no_column_path = tmp_path / "no_column.csv"
    no_column.to_csv(no_column_path, index=False)
    result = CliRunner().invoke(score_cmd, [str(no_column_path), "--truth", str(truth_path)])
    assert result.exit_code == 2 and "s23" in result.output


# -------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED / "external").is_dir(), reason="shared RFCX data not present")
def test_real_oof_predictions_give_published_lwlrap() -> None:
    """kuto5046's stage-3 v2 OOF (5th-place team), max over the 8 patches, against TP-only clip truth."""
    files = sorted(glob.glob(str(SHARED / "external" / "*_oof_fold*.csv")))
    assert len(files) == 5
    oof = pd.concat([pd.read_csv(f, dtype={"recording_id": str}) for f in files])
    clip = oof.groupby("recording_id")[SPECIES_COLUMNS].max()
    assert len(clip) == 4727
    tp = pd.read_csv(SHARED / "train_tp.csv", dtype={"recording_id": str})
    truth = pd.crosstab(tp.recording_id, tp.species_id).clip(upper=1).reindex(columns=range(24), fill_value=0)
    truth = truth.reindex(clip.index, fill_value=0)  # FP-only recordings have no positive: they drop out
    assert int(truth.to_numpy().any(1).sum()) == 1132
    score = lwlrap(truth.to_numpy(), clip.to_numpy())
    assert round(score, 4) == 0.7934
    assert score == pytest.approx(sklearn_lwlrap(truth.to_numpy(), clip.to_numpy()), abs=1e-12)


def test_prior_by_hand() -> None:
    """The prior scores every test recording with one ranking of the species by train frequency; ties rank by
    species order. Hand-computed on 3 species: frequencies (2/4, 3/4, 2/4) rank s1 > s0 > s2."""
    from rfcx_kit.core.metrics import prior_lwlrap, prior_scores

    train = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [0, 0, 0]])
    scores = prior_scores(train, 2)
    assert scores.tolist() == [[2.0, 3.0, 1.0], [2.0, 3.0, 1.0]]
    test = np.array([[0, 0, 1],    # s2 ranked 3rd: precision 1/3
                     [1, 1, 0]])   # s1 1st (1/1), s0 2nd (2/2)
    assert prior_lwlrap(train, test) == pytest.approx((1 / 3 + 1 + 1) / 3)
