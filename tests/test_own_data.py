"""Your own recordings and species, end to end: Raven tables in, `labels import`, `stage1`, `relabel --cycles 1`,
`predict --format raven`, Raven tables out.

The made-up set (``tests/own_data.py``): 5 named species, 30 s and 90 s WAV recordings at 22,050 Hz in two site
folders with clashing file names, Raven selection tables with TP selections and a few FP ones; a test folder with a
90 s recording and a 5 s one, shorter than a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from own_data import RATE, SPECIES, TEST, TRAIN, write
from rfcx_kit.app.cli import main

# The grid of the recordings' own rate (22,050 Hz and its Nyquist 11,025 Hz come from the data: nothing sets them),
# hop 512 (23 ms frames), windows of 256 frames (5.9 s) with 32 of cover; a tiny backbone and 2 epochs: this checks
# the plumbing, not what the model learns.
OVERRIDES = ["features.n_mels=32", "windows.window=256",
             "windows.cover=32", "model.backbone=mobilenetv3_small_050", "model.pretrained=false", "train.epochs=2", "train.folds=2",
             "relabel.votes=2", "train.batch_size=8", "train.threads=1", "predict.batch_recordings=4"]
FRAME_S = 512 / RATE


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> dict[str, Path]:
    """Import, stage 1, one cycle and Raven predictions of the test folder, once for every test below."""
    root = tmp_path_factory.mktemp("own")
    write(root)
    data, run, raven = root / "data", root / "run", root / "raven"
    invoke("labels", "import", str(root / "labels"), "--format", "raven", "--audio", str(root / "audio"),
           "--test", str(root / "test"), "--out", str(data))
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    invoke("stage1", "--data", str(data), "--run", str(run), "--no-progress", *sets)
    invoke("relabel", "--run", str(run), "--cycles", "1", "--no-progress")
    invoke("predict", "--run", str(run), "--stage", "cycle1", "--audio", str(root / "test"), "--format", "raven",
           "--selections", "windows", "--min-conf", "0", "--out", str(raven))
    return {"root": root, "data": data, "run": run, "raven": raven}


def test_sample_rate_and_fmax_come_from_the_recordings(own):
    saved = yaml.safe_load((own["run"] / "config.yaml").read_text())["features"]
    assert (saved["sample_rate"], saved["fmax"]) == (RATE, RATE / 2)


def seconds_of(own: dict[str, Path]) -> dict[str, float]:
    return pd.read_csv(own["data"] / "recordings.csv").set_index("recording_id")["seconds"].to_dict()


def test_import_names_species_and_keeps_two_sites_apart(own):
    data = own["data"]
    species = pd.read_csv(data / "species.csv")
    assert sorted(species["name"]) == sorted(SPECIES) and species["species_id"].tolist() == list(range(5))
    recordings = pd.read_csv(data / "recordings.csv")
    train = recordings[recordings["split"] == "train"]
    assert sorted(train["recording_id"]) == sorted(f"{site}/{name}" for site, name, _ in TRAIN)
    assert {"siteA/rec1", "siteB/rec1"} <= set(train["recording_id"])  # same file name, two sites
    assert set(recordings["sample_rate"]) == {RATE}
    assert sorted(recordings["seconds"].unique().tolist()) == [5.0, 30.0, 90.0]
    fp = pd.read_csv(data / "train_fp.csv")
    assert len(fp) == len(TRAIN)  # one FP selection per table
    assert not (data / "sample_submission.csv").exists()  # none needed


def test_the_run_takes_its_size_and_names_from_the_species_table(own):
    run = own["run"]
    assert pd.read_csv(run / "species.csv")["name"].tolist() == pd.read_csv(own["data"] / "species.csv")["name"].tolist()
    oof = pd.read_csv(run / "stage1" / "oof.csv")
    assert list(oof.columns) == ["recording_id", "s0", "s1", "s2", "s3", "s4"]
    test = pd.read_csv(run / "cycle1" / "test.csv")
    assert sorted(test["recording_id"]) == ["siteC/rec1", "siteC/short"]


def test_windows_cover_each_recording_to_its_end_and_no_further(own):
    """Train windows past a 30 s recording's end are absent (NaN), a 90 s one has them all; each window a
    recording has was predicted."""
    run = own["run"]
    ids = (run / "stage1" / "train_ids.txt").read_text().split()
    oof = np.load(run / "stage1" / "oof_windows.npy")  # (R, N, K)
    seconds = seconds_of(own)
    frames = {rid: 1 + int(round(seconds[rid] * RATE)) // 512 for rid in ids}
    stride = 256 - 32
    for i, rid in enumerate(ids):
        need = 1 + -(-(frames[rid] - 256) // stride)
        have = ~np.isnan(oof[i]).all(axis=1)
        assert have.tolist() == [n < need for n in range(oof.shape[1])], rid
    assert max(frames.values()) == max(frames[r] for r in ids if seconds[r] == 90.0)  # the 90 s set the width


def test_raven_tables_carry_names_and_reach_the_end_of_each_recording(own):
    seconds = {f"{site}/{name}": s for site, name, s in TEST}
    for rid, length in seconds.items():
        table = pd.read_csv(own["raven"] / f"{rid}.selections.txt", sep="\t")
        assert list(table.columns[:7]) == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                                           "Low Freq (Hz)", "High Freq (Hz)"]
        assert set(table["Species"]) == set(SPECIES)  # --min-conf 0: every species in every window, by name
        assert (table["Begin Time (s)"] >= 0).all() and (table["End Time (s)"] <= length + 1e-6).all()
        assert (table["End Time (s)"] > table["Begin Time (s)"]).all()
        last = (1 + int(round(length * RATE)) // 512 - 1) * FRAME_S  # the last frame's centre
        assert table["End Time (s)"].max() == pytest.approx(last, abs=1e-3), rid
    short = pd.read_csv(own["raven"] / "siteC/short.selections.txt", sep="\t")
    assert short["Begin Time (s)"].unique().tolist() == [0.0]  # 5 s < one 5.9 s window: one padded window


def test_raven_events_follow_the_framewise_output(own, tmp_path):
    """Events: at --min-conf 0 every frame is above it, so each species is one event over the whole recording;
    at 1.0 nothing is; in between, each event lies inside its recording, in its species' band, and no two events
    of a species are closer than the merge gap."""
    common = ["predict", "--run", str(own["run"]), "--stage", "cycle1", "--audio", str(own["root"] / "test"),
              "--format", "raven"]
    invoke(*common, "--min-conf", "0", "--out", str(tmp_path / "all"))
    for site, name, length in TEST:
        table = pd.read_csv(tmp_path / "all" / f"{site}/{name}.selections.txt", sep="\t")
        last = (1 + int(round(length * RATE)) // 512 - 1) * FRAME_S
        assert sorted(table["Species"]) == sorted(SPECIES)
        assert (table["Begin Time (s)"] == 0).all() and np.allclose(table["End Time (s)"], last, atol=1e-3)
    invoke(*common, "--min-conf", "1", "--out", str(tmp_path / "none"))
    assert all(len(pd.read_csv(p, sep="\t")) == 0 for p in (tmp_path / "none").rglob("*.selections.txt"))
    invoke(*common, "--min-conf", "0.3", "--merge-gap", "1.0", "--min-length", "0.5", "--out", str(tmp_path / "some"))
    species = pd.read_csv(own["data"] / "species.csv").set_index("name")
    for site, name, length in TEST:
        table = pd.read_csv(tmp_path / "some" / f"{site}/{name}.selections.txt", sep="\t")
        assert (table["End Time (s)"] - table["Begin Time (s)"] >= 0.5 - FRAME_S).all()
        assert (table["Begin Time (s)"] >= 0).all() and (table["End Time (s)"] <= length).all()
        assert (table["Low Freq (Hz)"].to_numpy() == species.loc[table["Species"], "f_min"].round(1).to_numpy()).all()
        for _, rows in table.sort_values("Begin Time (s)").groupby("Species"):
            gaps = rows["Begin Time (s)"].to_numpy()[1:] - rows["End Time (s)"].to_numpy()[:-1]
            assert (gaps > 1.0 - FRAME_S).all()


def test_every_box_lies_inside_its_recording(own):
    seconds = seconds_of(own)
    boxes = pd.concat([pd.read_csv(own["data"] / "train_tp.csv"), pd.read_csv(own["data"] / "train_fp.csv"),
                       pd.read_csv(own["run"] / "cycle1" / "pseudo_boxes.csv")])
    limit = boxes["recording_id"].map(seconds)
    assert limit.notna().all()
    assert ((boxes["t_min"] >= 0) & (boxes["t_max"] <= limit + 1e-6) & (boxes["t_max"] > boxes["t_min"])).all()


def test_min_conf_without_raven_is_refused_before_anything_is_written(own, tmp_path):
    out = tmp_path / "clip.csv"
    result = CliRunner().invoke(main, ["predict", "--run", str(own["run"]), "--audio", str(own["root"] / "test"),
                                       "--min-conf", "0.3", "--out", str(out)])
    assert result.exit_code == 2 and "--min-conf shapes the Raven selections" in result.output
    assert not out.exists()


def test_a_recording_below_the_models_band_is_named_and_the_others_are_predicted(own, tmp_path):
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "new"
    audio.mkdir()
    rng = np.random.default_rng(0)
    sf.write(audio / "phone.wav", (0.1 * rng.standard_normal(8000 * 8)).astype(np.float32), 8000)  # Nyquist 4 kHz
    sf.write(audio / "good.wav", (0.1 * rng.standard_normal(22050 * 8)).astype(np.float32), 22050)
    out = tmp_path / "clip.csv"
    result = CliRunner().invoke(main, ["predict", "--run", str(own["run"]), "--audio", str(audio), "--out", str(out)])
    assert result.exit_code != 0
    assert "phone.wav: recorded at 8000 Hz; its Nyquist frequency 4000 Hz is below the model's features.fmax 11025" \
        in result.output
    assert pd.read_csv(out)["recording_id"].astype(str).tolist() == ["good"]


def test_a_resumed_prediction_redoes_a_recording_replaced_under_its_name(own, tmp_path):
    """The journal keys on each file's size and mtime: a killed (here: failed) prediction, then a recording
    replaced under the same name, then the rerun: the new file is predicted, not the journalled old one."""
    import shutil

    import soundfile as sf

    folder = tmp_path / "field"
    shutil.copytree(own["root"] / "test", folder)
    (folder / "siteC" / "broken.wav").write_bytes(b"RIFF not really audio")
    out = tmp_path / "preds.csv"
    args = ["predict", "--run", str(own["run"]), "--audio", str(folder), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "broken.wav" in result.output
    first = pd.read_csv(out).set_index("recording_id")
    assert (tmp_path / "preds.csv.parts").is_dir()  # the journal stays for the rerun
    rec = folder / "siteC" / "rec1.wav"
    wave, rate = sf.read(str(rec), dtype="float32")
    sf.write(str(rec), np.ascontiguousarray(wave[::-1]), rate)  # same name, same length, other content
    (folder / "siteC" / "broken.wav").unlink()
    invoke(*args)
    again = pd.read_csv(out).set_index("recording_id")
    invoke("predict", "--run", str(own["run"]), "--audio", str(rec), "--out", str(tmp_path / "alone.csv"))
    alone = pd.read_csv(tmp_path / "alone.csv").set_index("recording_id")
    assert np.allclose(again.loc["siteC/rec1"].to_numpy(), alone.loc["rec1"].to_numpy(), atol=1e-6)
    assert not np.allclose(first.loc["siteC/rec1"].to_numpy(), again.loc["siteC/rec1"].to_numpy(), atol=1e-6)
    assert np.allclose(first.loc["siteC/short"].to_numpy(), again.loc["siteC/short"].to_numpy())
