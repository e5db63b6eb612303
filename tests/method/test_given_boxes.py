"""Pseudo-labels made elsewhere: `labels from-oof --boxes` writes what `relabel --pseudo-boxes` trains cycle 1 on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.core.species import SPECIES_COLUMNS
from rfcx_kit.method.run import Run
from rfcx_kit.method.stage1 import run_stage1

from tiny import make_tiny, tiny_overrides


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("given")
    data = make_tiny(root / "data", n_train=12, n_test=4, truth=True)
    run = root / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    # another model's out-of-fold windows, in the competition's layout: here, stage 1's own
    oof = np.load(Run(run).oof_windows("stage1"))  # (R, N, 24) probabilities
    ids = pd.read_csv(run / "folds.csv", dtype={"recording_id": str})["recording_id"].tolist()
    rows = [pd.DataFrame(oof[:, n, :], columns=SPECIES_COLUMNS).assign(patch=n, recording_id=ids) for n in range(oof.shape[1])]
    frame = pd.concat(rows, ignore_index=True)[["patch", "recording_id", *SPECIES_COLUMNS]]
    frame.to_csv(root / "oof.csv", index=False)
    threshold = float(np.quantile(oof, 0.97))  # a few dozen windows above it
    cli("labels", "from-oof", str(root / "oof.csv"), "--seconds", "10", "--threshold", f"{threshold:.6f}",
        "--tp", str(data / "train_tp.csv"), "--fp", str(data / "train_fp.csv"), "--boxes", str(root / "boxes.csv"),
        "--out", str(root / "table.csv"))
    return {"root": root, "data": data, "run": run}


def test_from_oof_writes_one_box_per_pseudo_positive_window(world: dict[str, Path]) -> None:
    boxes = pd.read_csv(world["root"] / "boxes.csv", dtype={"recording_id": str})
    assert list(boxes.columns) == ["recording_id", "species_id", "t_min", "t_max", "weight", "score"]
    assert len(boxes) > 0 and (boxes["t_max"] > boxes["t_min"]).all() and (boxes["t_max"] <= 10.0).all()
    # each box is a whole window: 512 frames of 16 ms from a window start, cut at the 10 s recording's end
    assert set(np.round(boxes["t_min"] / 0.016).astype(int)) <= {0, 463}
    # exactly the table's pseudo-positive cells (never a window with a TP or FP box of the species)
    table = pd.read_csv(world["root"] / "table.csv", dtype={"recording_id": str})
    pseudo = table[table["source"] == "pseudo_positive"]
    window = np.round(boxes["t_min"] / 0.016).astype(int).map({0: 0, 463: 1})
    assert sorted(zip(boxes["recording_id"], window, boxes["species_id"])) == \
        sorted(zip(pseudo["recording_id"], pseudo["window"], pseudo["species_id"]))


def test_a_box_of_a_recording_the_run_lacks_is_refused_before_anything_is_written(world: dict[str, Path]) -> None:
    bad = pd.read_csv(world["root"] / "boxes.csv", dtype={"recording_id": str})
    bad.loc[0, "recording_id"] = "not_in_the_run"
    bad.to_csv(world["root"] / "bad.csv", index=False)
    result = CliRunner().invoke(main, ["relabel", "--run", str(world["run"]), "--cycles", "1",
                                       "--pseudo-boxes", str(world["root"] / "bad.csv")])
    assert result.exit_code == 2, result.output
    assert "bad.csv: row 1 (line 2), field 'recording_id'" in result.output and "not a train recording" in result.output
    assert not Run(world["run"]).stage("cycle1").exists()


def test_cycle_1_trains_on_the_given_boxes(world: dict[str, Path]) -> None:
    run = Run(world["run"])
    given = world["root"] / "boxes.csv"
    cli("relabel", "--run", str(world["run"]), "--cycles", "1", "--pseudo-boxes", str(given), "--no-progress")
    boxes = pd.read_csv(given, dtype={"recording_id": str})
    used = pd.read_csv(run.pseudo_boxes("cycle1"), dtype={"recording_id": str})
    pd.testing.assert_frame_equal(used, boxes, check_dtype=False)
    counts = pd.read_csv(run.label_counts("cycle1"), index_col=0)
    assert int(counts["pseudo_boxes"].sum()) == len(boxes) and int(counts["pseudo_positive"].sum()) >= len(boxes)
    assert json.loads(run.inputs("cycle1").read_text())["given_pseudo_boxes"]
    assert run.cycle_done("cycle1").exists()
    metrics = json.loads(run.metrics("cycle1").read_text())
    assert metrics["pseudo_boxes"] == len(boxes)
    # a finished cycle 1 takes no other boxes
    result = CliRunner().invoke(main, ["relabel", "--run", str(world["run"]), "--cycles", "1",
                                       "--pseudo-boxes", str(given)])
    assert result.exit_code == 2 and "cycle 1 of" in result.output and "has finished" in result.output
