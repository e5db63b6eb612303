"""Field recordings as ecologists keep them, through the README's own-data commands as written.

The folder (``tests/field_data.py``): Raven tables beside their WAVs and an MP3, TP-only, two sites with clashing
file names, ``?`` and empty species cells, a 22,000 Hz recorder, a stereo file, a 4 s clip. The commands are read
from the README's "Your own recordings and species" block and run in order, offline, from a fresh folder; only
the training is shortened (``--set`` appended to stage1 and relabel: this checks the path, not what is learnt).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from field_data import LABELLED, SPECIES, UNLABELLED, write
from rfcx_kit.app.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SHORTER = {"stage1": ["--set", "train.epochs=6", "--set", "train.steps_per_epoch=8", "--set", "features.n_mels=32",
                      "--set", "train.threads=1", "--set", "train.val_every=6", "--no-progress"],
           "relabel": ["--set", "relabel.epochs=2", "--no-progress"], "predict": ["--threads", "1"]}


def readme_commands() -> list[list[str]]:
    """The rfcx-kit lines of the README's own-data bash block, split as a shell would."""
    text = README.read_text()
    section = text[text.index("## Your own recordings and species"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("rfcx-kit ")]


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("field")
    write(root)
    outputs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
        for args in readme_commands():
            result = CliRunner().invoke(main, args + SHORTER.get(args[0], []), catch_exceptions=False)
            assert result.exit_code == 0, (args, result.output)
            outputs.append((args, result.output))
    return {"root": root, "outputs": outputs}


def test_the_readme_block_is_the_whole_path() -> None:
    commands = [args[:2] if args[0] == "labels" else args[:1] for args in readme_commands()]
    assert commands == [["labels", "import"], ["stage1"], ["relabel"], ["predict"], ["labels", "import"]]


def test_tables_beside_their_audio_import_with_uncertain_rows_named(field) -> None:
    root = field["root"]
    first = field["outputs"][0][1]
    assert "2 uncertain row(s)" in first and "rec0.Table.1.selections.txt:5" in first and "dawn.Table.1.selections.txt:4" in first
    recordings = pd.read_csv(root / "data/mine/recordings.csv").set_index("recording_id")
    assert sorted(recordings.index[recordings["split"] == "train"]) == ["siteA/dawn", "siteA/rec0", "siteB/rec0",
                                                                      "siteB/short"]
    assert sorted(recordings.index[recordings["split"] == "test"]) == ["siteC/new", "siteC/tiny"]
    rates = recordings["sample_rate"].to_dict()
    assert (rates["siteA/rec0"], rates["siteA/dawn"], rates["siteB/rec0"]) == (22000, 44100, 32000)
    assert recordings.loc["siteA/dawn", "seconds"] == pytest.approx(30.0, abs=0.05)  # decoded, not the header's
    tp = pd.read_csv(root / "data/mine/train_tp.csv")
    named = sum(isinstance(s, int) for _, _, _, _, calls in LABELLED for s, _, _ in calls)
    assert len(tp) == named and len(pd.read_csv(root / "data/mine/train_fp.csv")) == 0
    species = pd.read_csv(root / "data/mine/species.csv").set_index("name")
    assert sorted(species.index) == sorted(SPECIES)
    # each site's table went to its own recording: siteB/rec0's first call is species 2 at 2 s
    first_b = tp[tp["recording_id"] == "siteB/rec0"].sort_values("t_min").iloc[0]
    assert (first_b["species_id"], first_b["t_min"]) == (species.loc[SPECIES[2], "species_id"], 2.0)


def test_stage1_took_its_rate_from_the_recordings_and_trained_without_fp_rows(field) -> None:
    root = field["root"]
    saved = yaml.safe_load((root / "runs/mine/config.yaml").read_text())
    assert (saved["features"]["sample_rate"], saved["features"]["fmax"]) == (44100, 11000.0)
    assert saved["model"]["pretrained"] is False
    assert (root / "runs/mine/kept.json").exists() and (root / "runs/mine/cycle1/test.csv").exists()
    result = CliRunner().invoke(main, ["report", "--run", str(root / "runs/mine")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "There are no FP rows" in (root / "runs/mine/report.md").read_text()


def test_detections_are_events_inside_each_recording_in_the_species_band(field) -> None:
    root = field["root"]
    species = pd.read_csv(root / "data/mine/species.csv").set_index("name")
    total = 0
    for rel, _, seconds, _, _ in UNLABELLED:
        table = pd.read_csv(root / "detections" / f"{rel.rsplit('.', 1)[0]}.selections.txt", sep="\t")
        total += len(table)
        assert (table["Begin Time (s)"] >= 0).all() and (table["End Time (s)"] <= seconds + 1e-6).all()
        assert (table["Confidence"] >= 0.5).all()
        assert np.allclose(table["Low Freq (Hz)"], species.loc[table["Species"], "f_min"].round(1))
    assert total > 0, "nothing detected at 0.5: the re-import below would have no rows"
    field["total"] = total


def test_the_detections_come_back_as_candidates_with_their_confidence(field) -> None:
    root = field["root"]
    assert "candidates" in field["outputs"][-1][1] and "not used" not in field["outputs"][-1][1]
    candidates = pd.read_csv(root / "data/review/candidates.csv")
    tables = pd.concat([pd.read_csv(p, sep="\t") for p in sorted((root / "detections").rglob("*.selections.txt"))])
    assert len(candidates) == len(tables) > 0
    assert sorted(candidates["confidence"]) == pytest.approx(sorted(tables["Confidence"]), abs=1e-4)
    assert set(candidates["recording_id"]) <= {rel.rsplit(".", 1)[0] for rel, *_ in UNLABELLED}
    assert len(pd.read_csv(root / "data/review/train_tp.csv")) == 0  # candidates are not boxes
