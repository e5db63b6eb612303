"""Pseudo-label tables (rfcx_kit.method.pseudo): original window labels, votes, thresholds, the table, from-oof."""

from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.core.errors import DataError
from rfcx_kit.core.io import atomic_write_csv
from rfcx_kit.data.framewise import box_frames as _box_frames
from rfcx_kit.core.scale import detect_scale, to_prob
from rfcx_kit.data.external import original_window_labels, read_oof_files
from rfcx_kit.method.pseudo import build_label_table, label_counts, pseudo_positive_mask, read_label_table
from rfcx_kit.core.species import SPECIES_COLUMNS
from rfcx_kit.core.grid import window_positions

from conftest import SHARED  # noqa: E402 - conftest is the one place that knows where ../shared is
RFCX = SHARED / "data" / "rfcx"
OOF_FILES = [RFCX / "external" / f"kuto5046_0211_095250_effb2sed_stage3v2_oof_fold{k}.csv" for k in range(5)]
needs_real = pytest.mark.skipif(
    not all(p.exists() for p in OOF_FILES + [RFCX / "train_tp.csv", RFCX / "train_fp.csv"]),
    reason=f"real RFCX files not found under {RFCX} (shared data folder absent)",
)

POSITIONS = window_positions(3751, window=512, cover=49)  # [[0, 512], [463, 975], ..., [3241, 3753]]
FRAME_S = 512 / 32000  # 16 ms between frame centres



def box_frames(t_min, t_max):
    """First and last (inclusive) frame of boxes, from the shared framewise rule."""
    first, stop = _box_frames(t_min, t_max)
    return first, stop - 1

def run_cli(*args: str):
    return CliRunner().invoke(main, ["labels", "from-oof", *map(str, args)], catch_exceptions=False)


# --------------------------------------------------------------------------------------------------
# original_window_labels
# --------------------------------------------------------------------------------------------------
def boxes_frame(rows):
    return pd.DataFrame(rows, columns=["recording_id", "species_id", "t_min", "t_max", "label"])


def t(frame: int) -> float:
    """Centre time of a frame, as a decimal in a CSV would hold it (e.g. 44.544 for frame 2784)."""
    return round(frame * FRAME_S, 3)


@pytest.mark.parametrize(
    "first, last, windows",
    [
        (400, 462, [0]),        # ends one frame before window 1 starts (463)
        (400, 463, [0, 1]),     # ends on window 1's first frame
        (511, 520, [0, 1]),     # starts on window 0's last frame (511)
        (512, 520, [1]),        # starts just past window 0
        (3749, 3750, [7]),      # the last real frames: only the last window (frames 3751, 3752 are padding)
        (0, 3750, list(range(8))),
    ],
)
def test_window_labels_at_frame_boundaries(first, last, windows):
    # Edges exactly on frame centres: the closed interval [t_min, t_max] includes both edge frames.
    labels = original_window_labels(boxes_frame([("a", 5, t(first), t(last), 1)]), ["a"], POSITIONS)
    assert labels.shape == (1, 8, 24) and labels.dtype == np.int8
    assert np.flatnonzero(labels[0, :, 5]).tolist() == windows
    assert labels[0, :, 5].max() == 1 and labels[0, :, np.arange(24) != 5].sum() == 0


def test_every_frame_centre_edge_is_inclusive():
    # A box starting (ending) on frame f's centre, written as 3-decimal seconds, starts (ends) at frame f,
    # for every f. t * sr / hop misses the integer by a rounding error for 35 of these 3751 decimals (and
    # for 38 real box edges), so a bare ceil/floor would move the edge by one frame there.
    frames = np.arange(5, 3746)
    centres = np.array([t(f) for f in frames])
    first, _ = box_frames(centres, centres + 0.05)
    _, last = box_frames(centres - 0.05, centres)
    np.testing.assert_array_equal(first, frames)
    np.testing.assert_array_equal(last, frames)


def test_box_edges_just_off_a_frame_centre():
    # 1 ms after frame 463's centre: frame 463 is no longer covered; 1 ms before 462's end likewise.
    assert box_frames(np.array([t(463) + 0.001]), np.array([t(600)]))[0].tolist() == [464]
    assert box_frames(np.array([t(400)]), np.array([t(463) - 0.001]))[1].tolist() == [462]
    labels = original_window_labels(boxes_frame([("a", 0, t(400), t(463) - 0.001, -1)]), ["a"], POSITIONS)
    assert np.flatnonzero(labels[0, :, 0]).tolist() == [0]


def test_short_box_takes_the_frame_nearest_its_centre():
    # [frame 462.2, frame 462.9] contains no frame centre; its centre (462.55) is nearest frame 463,
    # which lies in windows 0 and 1.
    box = boxes_frame([("a", 2, 462.2 * FRAME_S, 462.9 * FRAME_S, 1)])
    assert box_frames(box.t_min.to_numpy(), box.t_max.to_numpy())[0].tolist() == [463]
    assert np.flatnonzero(original_window_labels(box, ["a"], POSITIONS)[0, :, 2]).tolist() == [0, 1]
    # centre 462.4 -> frame 462: window 0 only.
    box = boxes_frame([("a", 2, 462.1 * FRAME_S, 462.7 * FRAME_S, 1)])
    assert np.flatnonzero(original_window_labels(box, ["a"], POSITIONS)[0, :, 2]).tolist() == [0]


def test_tp_wins_over_fp_and_other_recordings_are_ignored():
    boxes = boxes_frame([
        ("b", 3, t(100), t(200), -1),   # FP in window 0 ...
        ("b", 3, t(150), t(160), 1),    # ... and a TP in the same window: TP wins
        ("b", 3, t(600), t(700), -1),   # FP alone in window 1
        ("b", 4, t(600), t(700), 1),    # other species: independent
        ("zzz", 3, t(0), t(3750), 1),   # a recording not asked for
    ])
    labels = original_window_labels(boxes, ["a", "b"], POSITIONS)
    assert labels[0].sum() == 0
    assert labels[1, :, 3].tolist() == [1, -1, 0, 0, 0, 0, 0, 0]
    assert labels[1, :, 4].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]


def reference_window_labels(boxes, recording_ids, positions, frames=3751, hop=512, sr=32000):
    """Straightforward loops over boxes, windows and frames (the spec in words)."""
    out = np.zeros((len(recording_ids), len(positions), 24), dtype=np.int8)
    for rid, species, t_min, t_max, label in boxes.itertuples(index=False):
        if rid not in recording_ids:
            continue
        covered = [f for f in range(frames + 100) if t_min <= f * hop / sr <= t_max]
        if not covered:
            covered = [math.floor((t_min + t_max) / 2 * sr / hop + 0.5)]
        covered = [f for f in covered if 0 <= f < frames]
        r = recording_ids.index(rid)
        for n, (start, end) in enumerate(positions):
            if any(start <= f < end for f in covered):
                if label == 1:
                    out[r, n, species] = 1
                elif out[r, n, species] == 0:
                    out[r, n, species] = -1
    return out


def test_window_labels_match_a_frame_by_frame_loop():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(150):
        if rng.random() < 0.5:  # edges on frame centres, as many real boxes are
            a, b = np.sort(rng.integers(0, 3751, 2))
            t_min, t_max = t(int(a)), t(int(b))
        else:
            t_min = float(rng.uniform(0, 59.9))
            t_max = min(60.0, t_min + float(rng.choice([0.005, 0.3, 2.0, 8.0])))
        rows.append((str(rng.choice(["r1", "r2", "r3", "r4"])), int(rng.integers(0, 24)), t_min, t_max,
                     int(rng.choice([1, -1]))))
    boxes = boxes_frame(rows)
    ids = ["r1", "r2", "r3"]  # r4 is left out on purpose
    np.testing.assert_array_equal(original_window_labels(boxes, ids, POSITIONS),
                                  reference_window_labels(boxes, ids, POSITIONS))


def test_bad_boxes_are_reported():
    with pytest.raises(DataError, match="species_id"):
        original_window_labels(boxes_frame([("a", 24, 1.0, 2.0, 1)]), ["a"], POSITIONS)
    with pytest.raises(DataError, match="is not after t_min"):
        original_window_labels(boxes_frame([("a", 1, 2.0, 1.0, 1)]), ["a"], POSITIONS)
    with pytest.raises(DataError, match="label"):
        original_window_labels(boxes_frame([("a", 1, 1.0, 2.0, 0)]), ["a"], POSITIONS)


# --------------------------------------------------------------------------------------------------
# Votes, thresholds, the table
# --------------------------------------------------------------------------------------------------
def test_vote_counting_on_hand_made_fold_predictions():
    preds = np.full((5, 1, 4, 24), 0.1)
    # window 0: 2 folds above 0.5; window 1: 3; window 2: 4; window 3: 2 above plus one exactly 0.5.
    preds[:2, 0, 0, 7] = 0.9
    preds[:3, 0, 1, 7] = 0.51
    preds[:4, 0, 2, 7] = 0.8
    preds[:2, 0, 3, 7] = 0.9
    preds[2, 0, 3, 7] = 0.5  # not a vote: strictly above the threshold
    hits = {k: np.flatnonzero(pseudo_positive_mask(preds, 0.5, votes=k)[0, :, 7]).tolist()
            for k in (1, 2, 3, 4, 5)}
    assert hits == {1: [0, 1, 2, 3], 2: [0, 1, 2, 3], 3: [1, 2], 4: [2], 5: []}
    assert np.flatnonzero(pseudo_positive_mask(preds, 0.5)[0, :, 7]).tolist() == [1, 2]  # default: 3 of 5
    assert pseudo_positive_mask(preds, 0.5, votes=1)[..., np.arange(24) != 7].sum() == 0
    with pytest.raises(ValueError, match="votes"):
        pseudo_positive_mask(preds, 0.5, votes=6)


def test_out_of_fold_predictions_give_one_vote():
    preds = np.array([0.2, 0.5, 0.500001, 0.9])[None, :, None] * np.ones((1, 4, 24))
    assert pseudo_positive_mask(preds, 0.5)[0, :, 0].tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="votes"):
        pseudo_positive_mask(preds, 0.5, votes=2)


def test_per_species_thresholds():
    preds = np.full((1, 1, 24), 0.55)
    preds[0, 0, 9] = 0.65
    per_species = np.full(24, 0.5)
    per_species[[3, 9]] = 0.6
    mask = pseudo_positive_mask(preds, per_species)[0, 0]
    assert np.flatnonzero(~mask).tolist() == [3]  # 0.55 < 0.6 on s3; s9's 0.65 still passes 0.6
    table = build_label_table(["a"], np.zeros((1, 1, 24), np.int8), preds, species_thresholds={3: 0.6, 9: 0.7})
    assert sorted(set(range(24)) - set(table.species_id)) == [3, 9]
    with pytest.raises(ValueError, match="species"):
        build_label_table(["a"], np.zeros((1, 1, 24), np.int8), preds, species_thresholds={24: 0.6})


def test_a_pseudo_positive_never_replaces_an_original_label():
    ids = ["r0", "r1"]
    original = np.zeros((2, 3, 24), np.int8)
    original[0, 0, 1] = 1      # TP, predicted high
    original[0, 1, 1] = -1     # FP, predicted high: a model disagreeing with a person does not win
    original[1, 2, 5] = 1      # TP, predicted low: stays TP, never a pseudo-negative
    preds = np.full((2, 3, 24), 0.001)
    preds[0, :, 1] = 0.99
    preds[1, 2, 5] = 0.001
    table = build_label_table(ids, original, preds, pseudo_weight=0.5, negative_threshold=0.01)
    by_key = table.set_index(["recording_id", "window", "species_id"])
    assert by_key.loc[("r0", 0, 1)].tolist() == ["tp", 1.0]
    assert by_key.loc[("r0", 1, 1)].tolist() == ["fp", 1.0]
    assert by_key.loc[("r0", 2, 1)].tolist() == ["pseudo_positive", 0.5]
    assert by_key.loc[("r1", 2, 5)].tolist() == ["tp", 1.0]
    assert by_key.index.is_unique
    assert len(table) == 2 * 3 * 24  # every entry known: originals, one positive, negatives elsewhere
    assert (table.source == "pseudo_positive").sum() == 1


def test_pseudo_negatives_are_off_by_default_and_never_overlap_positives():
    rng = np.random.default_rng(1)
    preds = rng.uniform(0, 1, (5, 6, 8, 24)) ** 3  # many values near 0
    original = rng.choice(np.array([-1, 0, 1], np.int8), size=(6, 8, 24), p=[0.1, 0.8, 0.1])
    ids = [f"r{i}" for i in range(6)]
    assert set(build_label_table(ids, original, preds, votes=3).source) <= {"tp", "fp", "pseudo_positive"}

    # A negative threshold above the positive one: an entry can pass both tests; positive wins.
    table = build_label_table(ids, original, preds, threshold=0.2, votes=1, negative_threshold=0.9)
    assert not table.duplicated(["recording_id", "window", "species_id"]).any()
    positive = pseudo_positive_mask(preds, 0.2, votes=1) & (original == 0)
    all_below = (preds < 0.9).all(axis=0) & (original == 0)
    assert (positive & all_below).any()  # the overlap case really occurs
    assert (table.source == "pseudo_positive").sum() == positive.sum()
    assert (table.source == "pseudo_negative").sum() == (all_below & ~positive).sum()

    # Every fold must be below the negative threshold.
    one = np.full((5, 1, 1, 24), 0.001)
    one[4, 0, 0, 0] = 0.02
    negatives = build_label_table(["a"], np.zeros((1, 1, 24), np.int8), one, negative_threshold=0.01)
    assert sorted(negatives.species_id) == list(range(1, 24))
    assert set(negatives.source) == {"pseudo_negative"}


def test_table_is_sorted_in_the_given_recording_order():
    original = np.zeros((3, 2, 24), np.int8)
    preds = np.full((3, 2, 24), 0.9)
    table = build_label_table(["c", "a", "b"], original, preds)
    assert table.recording_id.tolist() == ["c"] * 48 + ["a"] * 48 + ["b"] * 48
    assert table.window.tolist()[:48] == [0] * 24 + [1] * 24
    assert table.species_id.tolist()[:24] == list(range(24))
    assert list(table.columns) == ["recording_id", "window", "species_id", "source", "weight"]


def test_logit_predictions_are_thresholded_as_probabilities():
    probs = np.random.default_rng(2).uniform(0.01, 0.99, (4, 8, 24))
    logits = np.log(probs / (1 - probs))
    assert detect_scale(probs) == "prob" and detect_scale(logits) == "logit"
    assert detect_scale(np.array([0.0, 1.0, np.nan])) == "prob"
    np.testing.assert_allclose(to_prob(logits, "logit"), probs, rtol=1e-12)
    ids = [str(i) for i in range(4)]
    original = np.zeros((4, 8, 24), np.int8)
    pd.testing.assert_frame_equal(build_label_table(ids, original, logits, scale="logit"),
                                  build_label_table(ids, original, probs))
    pd.testing.assert_frame_equal(build_label_table(ids, original, logits, scale="auto"),
                                  build_label_table(ids, original, probs))
    with pytest.raises(ValueError, match="outside"):
        build_label_table(ids, original, logits)  # the default scale is "prob"


def test_label_table_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    ids = ["000123456", "1e5abcdef", "0ab12cd34", "999999999"]  # all-digit / float-looking ids survive CSV
    original = rng.choice(np.array([-1, 0, 1], np.int8), size=(4, 8, 24), p=[0.2, 0.6, 0.2])
    preds = rng.uniform(0, 1, (4, 8, 24))
    table = build_label_table(ids, original, preds, threshold=0.7, pseudo_weight=0.5, negative_threshold=0.05)
    path = tmp_path / "labels.csv"
    atomic_write_csv(path, table)
    read = read_label_table(path)
    pd.testing.assert_frame_equal(read, table)

    # every window/species the table names is one row: originals, and the votes above and below the thresholds
    unknown = original == 0
    assert len(table) == int((~unknown).sum() + (unknown & ((preds > 0.7) | (preds < 0.05))).sum())


def test_label_counts_has_every_species():
    table = pd.DataFrame({"recording_id": ["a", "a", "b"], "window": [0, 1, 0], "species_id": [3, 3, 23],
                          "source": ["tp", "pseudo_positive", "fp"], "weight": [1.0, 1.0, 1.0]})
    counts = label_counts(table)
    assert counts.index.tolist() == SPECIES_COLUMNS and counts.index.name == "species_id"
    assert counts.columns.tolist() == ["tp", "fp", "pseudo_positive", "pseudo_negative"]
    assert counts.loc["s3"].tolist() == [1, 0, 1, 0] and counts.loc["s23"].tolist() == [0, 1, 0, 0]
    assert counts.to_numpy().sum() == 3


# --------------------------------------------------------------------------------------------------
# read_oof_files
# --------------------------------------------------------------------------------------------------
def write_oof(path, rows):
    """rows: (patch, recording_id, value for every species)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patch", "recording_id", *SPECIES_COLUMNS])
        for patch, rid, value in rows:
            writer.writerow([patch, rid, *([value] * 24)])
    return path


def full(rid, n=3, value=0.1):
    return [(p, rid, value + p / 100) for p in range(n)]


def test_read_oof_files_joins_folds(tmp_path):
    a = write_oof(tmp_path / "fold0.csv", full("0012", value=0.2)[::-1] + full("x1"))  # patches out of order
    b = write_oof(tmp_path / "fold1.csv", full("y2", value=0.6))
    ids, preds, scale = read_oof_files([a, b])
    assert ids == ["0012", "x1", "y2"] and scale == "prob"
    assert preds.shape == (3, 3, 24)
    np.testing.assert_allclose(preds[0, :, 5], [0.2, 0.21, 0.22])
    np.testing.assert_allclose(preds[2, :, 0], [0.6, 0.61, 0.62])


@pytest.mark.parametrize(
    "rows, pattern",
    [
        (full("a") + [(0, "b", 0.1), (2, "b", 0.1)],
         r"fold0\.csv: recording b \(first row at line 5\) has no patch 1"),
        (full("a") + [(1, "a", 0.3)],
         r"fold0\.csv: line 5: recording a patch 1 appears a second time \(first at line 3\)"),
        ([(0, "a", 0.1), (1, "a", "nan"), (2, "a", 0.1)],
         r"fold0\.csv: line 3, column s0: .*not a finite number"),
        ([(0, "a", 0.1), ("one", "a", 0.1)], r"fold0\.csv: line 3: patch 'one' is not an integer"),
    ],
)
def test_read_oof_files_errors_name_file_and_line(tmp_path, rows, pattern):
    path = write_oof(tmp_path / "fold0.csv", rows)
    with pytest.raises(DataError, match=pattern):
        read_oof_files([path])


def test_read_oof_files_rejects_a_recording_in_two_files(tmp_path):
    a = write_oof(tmp_path / "fold0.csv", full("a") + full("b"))
    b = write_oof(tmp_path / "fold1.csv", full("c") + full("b"))
    pattern = r"recording b is in two files: .*fold0\.csv \(line 5\) and .*fold1\.csv \(line 5\)"
    with pytest.raises(DataError, match=pattern):
        read_oof_files([a, b])


def test_read_oof_files_rejects_other_layouts(tmp_path):
    a = write_oof(tmp_path / "fold0.csv", full("a", n=3))
    b = write_oof(tmp_path / "fold1.csv", full("b", n=4))
    with pytest.raises(DataError, match="disagree on the number of patches"):
        read_oof_files([a, b])
    bad = tmp_path / "bad.csv"
    bad.write_text("recording_id,s0\na,0.1\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) \['patch'"):
        read_oof_files([bad])


def test_from_oof_reports_errors_without_traceback(tmp_path):
    path = write_oof(tmp_path / "fold0.csv", full("a") + [(0, "b", 0.1)])
    result = CliRunner().invoke(main, ["labels", "from-oof", str(path)])
    assert result.exit_code == 2
    assert "Error:" in result.output and "fold0.csv" in result.output and "has no patch 1, 2" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------------------------------
# rfcx-kit labels from-oof on rows cut from the real external files
# --------------------------------------------------------------------------------------------------
def printed_counts(output: str) -> dict[str, list[int]]:
    """The per-species table the command prints: {"s0": [tp, fp, pseudo_positive, pseudo_negative], ...}."""
    rows = re.findall(r"^(s\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", output, flags=re.M)
    return {name: [int(v) for v in values] for name, *values in rows}


def cut_real_rows(tmp_path, n_per_file=3, transform=float):
    """The first ``n_per_file`` recordings (all 8 patches) of fold0 and fold1, as two small CSVs."""
    paths, rows = [], []
    for k in (0, 1):
        with open(OOF_FILES[k], newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            kept, chosen = [], []
            for row in reader:
                if row[1] not in chosen:
                    if len(chosen) == n_per_file:
                        continue
                    chosen.append(row[1])
                kept.append(row)
        path = tmp_path / f"cut_fold{k}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in kept:
                writer.writerow(row[:2] + [repr(transform(float(v))) for v in row[2:]])
        paths.append(path)
        rows += kept
    return paths, rows


def hand_labels(rows, with_boxes):
    """Expected label rows by plain loops: {(recording, window, species): source}."""
    boxes = []
    if with_boxes:
        for name, label in (("train_tp.csv", 1), ("train_fp.csv", -1)):
            with open(RFCX / name, newline="") as handle:
                for box in csv.DictReader(handle):
                    boxes.append((box["recording_id"], int(box["species_id"]), float(box["t_min"]),
                                  float(box["t_max"]), label))
    recordings = sorted({row[1] for row in rows})
    original = reference_window_labels(boxes_frame(boxes), recordings, POSITIONS)
    expected = {}
    for row in rows:
        patch, rid, values = int(row[0]), row[1], [float(v) for v in row[2:]]
        for species in range(24):
            known = original[recordings.index(rid), patch, species]
            if known == 1:
                expected[(rid, patch, species)] = "tp"
            elif known == -1:
                expected[(rid, patch, species)] = "fp"
            elif values[species] > 0.5:
                expected[(rid, patch, species)] = "pseudo_positive"
    return expected


def counts_of(expected):
    out = {f"s{k}": [0, 0, 0, 0] for k in range(24)}
    column = {"tp": 0, "fp": 1, "pseudo_positive": 2, "pseudo_negative": 3}
    for (_, _, species), source in expected.items():
        out[f"s{species}"][column[source]] += 1
    return out


@needs_real
@pytest.mark.parametrize("with_boxes", [False, True])
def test_from_oof_on_real_rows_gives_hand_counts(tmp_path, with_boxes):
    paths, rows = cut_real_rows(tmp_path)
    expected = hand_labels(rows, with_boxes)
    out = tmp_path / "labels.csv"
    extra = ["--tp", RFCX / "train_tp.csv", "--fp", RFCX / "train_fp.csv"] if with_boxes else []
    result = run_cli(*paths, "--threshold", "0.5", *extra, "--out", out)
    assert result.exit_code == 0, result.output
    assert "values are probabilities (all in [0,1]" in result.output
    assert printed_counts(result.output) == counts_of(expected)

    table = read_label_table(out)
    got = {(r.recording_id, r.window, r.species_id): r.source for r in table.itertuples()}
    assert got == expected
    assert (table.weight == 1.0).all()
    if with_boxes:  # the cut holds TP and FP recordings (e.g. 00b404881 TP, 005f1f9a5 FP): not a vacuous check
        assert {"tp", "fp", "pseudo_positive"} == set(table.source)
        # and some windows above the threshold hold an original label, so "never overwrite" is exercised
        above = set(hand_labels(rows, with_boxes=False))
        assert any(expected[key] in ("tp", "fp") for key in above)
    else:
        assert set(table.source) == {"pseudo_positive"}


@needs_real
def test_from_oof_detects_logits_and_gives_the_same_labels(tmp_path):
    paths, rows = cut_real_rows(tmp_path, n_per_file=2, transform=lambda p: math.log(p / (1 - p)))
    out = tmp_path / "labels.csv"
    result = run_cli(*paths, "--pseudo-weight", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    assert "values are logits" in result.output
    expected = hand_labels(rows, with_boxes=False)  # rows hold the original probabilities
    table = read_label_table(out)
    assert {(r.recording_id, r.window, r.species_id): r.source for r in table.itertuples()} == expected
    assert (table.weight == 0.5).all()
    # Calling logits probabilities is refused, not silently thresholded.
    refused = CliRunner().invoke(main, ["labels", "from-oof", *map(str, paths), "--scale", "prob"])
    assert refused.exit_code == 2 and "are they logits" in refused.output


@needs_real
def test_from_oof_species_threshold_and_votes(tmp_path):
    paths, rows = cut_real_rows(tmp_path, n_per_file=2)
    base = printed_counts(run_cli(*paths).output)
    raised = printed_counts(
        run_cli(*paths, "--species-threshold", "3=0.9", "--species-threshold", "s1=0.99").output)
    s3 = sum(float(r[2 + 3]) > 0.9 for r in rows)
    s1 = sum(float(r[2 + 1]) > 0.99 for r in rows)
    assert raised["s3"][2] == s3 < base["s3"][2]
    assert raised["s1"][2] == s1
    assert {k: v for k, v in raised.items() if k not in ("s1", "s3")} == \
        {k: v for k, v in base.items() if k not in ("s1", "s3")}

    # --votes: every FILE predicts the same recordings; here three files: two copies and one 0.1 lower
    # (still in [0, 1], so all three are read as probabilities).
    one = paths[0]
    low = tmp_path / "low.csv"
    frame = pd.read_csv(one, dtype={"recording_id": str})
    frame[SPECIES_COLUMNS] = frame[SPECIES_COLUMNS] - 0.1
    frame.to_csv(low, index=False)
    high_values = pd.read_csv(one)[SPECIES_COLUMNS].to_numpy()
    low_values = pd.read_csv(low)[SPECIES_COLUMNS].to_numpy()
    two_of_three = printed_counts(run_cli(one, one, low, "--votes", "2").output)
    three_of_three = printed_counts(run_cli(one, low, one, "--votes", "3").output)
    assert [two_of_three[f"s{k}"][2] for k in range(24)] == (high_values > 0.5).sum(axis=0).tolist()
    assert [three_of_three[f"s{k}"][2] for k in range(24)] == (low_values > 0.5).sum(axis=0).tolist()
    assert (high_values > 0.5).sum() > (low_values > 0.5).sum() > 0
    mixed = CliRunner().invoke(main, ["labels", "from-oof", *map(str, paths), "--votes", "2"])
    assert mixed.exit_code == 2 and "same recordings" in mixed.output


@needs_real
def test_from_oof_on_all_real_files_is_fast(tmp_path):
    out = tmp_path / "labels.csv"
    start = time.perf_counter()
    result = run_cli(*OOF_FILES, "--tp", RFCX / "train_tp.csv", "--fp", RFCX / "train_fp.csv", "--out", out)
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert seconds < 60, f"from-oof on all five files took {seconds:.1f} s"
    assert "4727 recordings x 8 windows" in result.output
    table = read_label_table(out)
    assert table.recording_id.nunique() == 4727
    # Every TP/FP recording has at least one original label; 1132 recordings hold a TP box.
    assert table.loc[table.source.isin(["tp", "fp"]), "recording_id"].nunique() == 4727
    assert table.loc[table.source == "tp", "recording_id"].nunique() == 1132


def test_labelled_boxes_go_through_the_one_box_reader(tmp_path: Path) -> None:
    from rfcx_kit.data.external import labelled_boxes

    header = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"
    tp, fp = tmp_path / "train_tp.csv", tmp_path / "train_fp.csv"
    tp.write_text(header + "007a,3,1,1.5,1000,2.5,2000\n")
    fp.write_text(header + "b,4,1,10,500,11,900\n")
    boxes = labelled_boxes(tp, fp)
    assert boxes["recording_id"].tolist() == ["007a", "b"] and boxes["label"].tolist() == [1, -1]
    assert boxes["species_id"].tolist() == [3, 4] and boxes["t_max"].tolist() == [2.5, 11.0]
    # the data layer's rules, with its message naming file, row and field
    fp.write_text(header + "b,4,1,59.8,500,60.4,900\n")
    with pytest.raises(DataError, match=r"train_fp\.csv: row 1 \(line 2\), field 't_max': 60.4 s is past the end of recording .b. \(60 s\)"):
        labelled_boxes(tp, fp)
    assert labelled_boxes(None, None).empty


def test_every_pseudo_label_rule_is_a_config_choice_and_each_choice_a_rule() -> None:
    from rfcx_kit.core.config import CHOICES
    from rfcx_kit.method.pseudo import THRESHOLD_RULES

    assert tuple(THRESHOLD_RULES) == CHOICES["relabel.threshold_rule"]


def test_the_threshold_rules_on_hand_made_scores() -> None:
    from rfcx_kit.method.pseudo import window_thresholds

    scores = np.zeros((2, 3, 3))
    original = np.zeros((2, 3, 3), dtype=np.int8)
    scores[0, :, 0] = [0.9, 0.7, 0.1]
    original[0, :2, 0] = 1  # species 0: two TP windows scored 0.9 and 0.7
    scores[1, 0, 1], original[1, 0, 1] = 0.2, 1  # species 1: one TP window at 0.2, under the floor
    np.testing.assert_allclose(window_thresholds(scores, original, "fixed", 0.5), [0.5, 0.5, 0.5])
    # the median of its TP windows, never below the floor; no TP window: 1.0 (no pseudo-positive)
    np.testing.assert_allclose(window_thresholds(scores, original, "tp_quantile", 0.5, 0.5), [0.8, 0.5, 1.0])
    with pytest.raises(ValueError, match="use one of fixed, tp_quantile"):
        window_thresholds(scores, original, "median")
