"""The rules behind the bad inputs real recordings bring, each tried as a user would hit it.

* No output is, holds or lies inside an input, nor the folder you are in (``core/io.check_output_path``).
* A refused start writes nothing; a killed import's leftovers are cleaned by the next one.
* Resumes key on content: a recording replaced under the same name is computed again (feature cache, predict).
* Files as they come: UTF-16 tables, AIFF recordings, a WAV without samples, boxes the model cannot hear,
  windows that do not reach the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from test_bad_inputs import TINY, _sets, expect_refused, snapshot

RAVEN = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies"


def field(root: Path, rate: int = 22050, suffix: str = ".wav", band: tuple[float, float] = (1000, 3000)) -> dict:
    """Two 14 s recordings in two sites, each with a Raven table beside it, and a test folder."""
    rng = np.random.default_rng(1)
    for site in ("siteA", "siteB"):
        path = root / "audio" / site / f"rec1{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), (0.05 * rng.standard_normal(14 * rate)).astype(np.float32), rate,
                 format="AIFF" if suffix == ".aiff" else None)
        rows = [f"1\tSpectrogram 1\t1\t1.0\t2.0\t{band[0]}\t{band[1]}\tCoqui", "2\tSpectrogram 1\t1\t6.0\t7.5\t500\t900\tPiha"]
        (path.parent / "rec1.Table.1.selections.txt").write_text(RAVEN + "\n" + "\n".join(rows) + "\n")
    (root / "test").mkdir(parents=True, exist_ok=True)
    sf.write(str(root / "test" / "new.wav"), (0.05 * rng.standard_normal(20 * rate)).astype(np.float32), rate)
    return {"audio": root / "audio", "test": root / "test", "root": root}


def imported(tmp_path: Path, **kwargs) -> dict:
    from click.testing import CliRunner

    from rfcx_kit.app.cli import main

    w = field(tmp_path, **kwargs)
    data = tmp_path / "data"
    result = CliRunner().invoke(main, ["labels", "import", str(w["audio"]), "--audio", str(w["audio"]), "--test",
                                       str(w["test"]), "--out", str(data)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {**w, "data": data}


# ---- labels import: folders and places -------------------------------------------------------------------------

def test_empty_or_equal_audio_and_test_folders_are_named(tmp_path: Path) -> None:
    w = field(tmp_path)
    (tmp_path / "empty").mkdir()
    out = tmp_path / "data"
    watched = [tmp_path]
    expect_refused(["labels", "import", str(w["audio"]), "--audio", str(tmp_path / "empty"), "--out", str(out)],
                   "the audio folder holds no audio files", watched)
    expect_refused(["labels", "import", str(w["audio"]), "--audio", str(w["audio"]), "--test", str(tmp_path / "empty"),
                    "--out", str(out)], "the test folder holds no audio files", watched)
    expect_refused(["labels", "import", str(w["audio"]), "--audio", str(w["audio"]), "--test", str(w["audio"]),
                    "--out", str(out)], "--test", watched)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-out"
    expect_refused(["labels", "import", str(w["audio"]), "--audio", str(w["audio"]), "--test", str(tmp_path),
                    "--out", str(elsewhere)], "holds the --audio", watched)
    assert not elsewhere.exists()


def test_aiff_recordings_import(tmp_path: Path) -> None:
    w = imported(tmp_path, suffix=".aiff")
    recordings = pd.read_csv(w["data"] / "recordings.csv")
    assert sorted(recordings["recording_id"]) == ["new", "siteA/rec1", "siteB/rec1"]
    assert recordings["path"].str.endswith(".aiff").sum() == 2


def test_the_folder_you_are_in_is_never_an_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = field(tmp_path)
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), str(tmp_path.parent)):
        expect_refused(["labels", "import", str(w["audio"]), "--audio", str(w["audio"]), "--out", out, "--overwrite"],
                       "--out", [tmp_path])


def test_a_killed_import_leaves_nothing_the_next_one_keeps(tmp_path: Path) -> None:
    """A killed import left its half-written temp folder, and one killed between its two renames left the previous
    data folder moved aside: the next import removes the first and puts the second back (dead PIDs only)."""
    from rfcx_kit.data.labels_import import clean_leftovers

    out = tmp_path / "data"
    dead = 2**22 + 12345  # above Linux's pid_max default: no such process
    (tmp_path / f".data.tmp-{dead}-abc").mkdir()
    (tmp_path / f".data.tmp-{dead}-abc" / "train_tp.csv").write_text("half")
    (tmp_path / f".data.old-{dead}-xyz").mkdir()
    (tmp_path / f".data.old-{dead}-xyz" / "species.csv").write_text("previous")
    (tmp_path / f".data.tmp-{os.getpid()}-live").mkdir()  # a running import's: untouched
    done = clean_leftovers(out)
    assert len(done) == 2
    assert (out / "species.csv").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".data.tmp-{os.getpid()}-live", "data"]


def test_utf16_tables_read_as_text(tmp_path: Path) -> None:
    from rfcx_kit.data.labels_import import read_table

    text = RAVEN + "\n1\tSpectrogram 1\t1\t0.5\t1.0\t1000\t3000\tCoquí\n"
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(text.encode(encoding))
        frame = read_table(path, "auto")
        assert frame["species"].tolist() == ["Coquí"] and frame["t_max"].tolist() == [1.0]


def test_a_wav_without_samples_is_named_at_import(tmp_path: Path) -> None:
    w = field(tmp_path)
    sf.write(str(w["audio"] / "siteA" / "rec1.wav"), np.zeros(0, np.float32), 22050)
    expect_refused(["labels", "import", str(w["audio"]), "--audio", str(w["audio"]), "--out", str(tmp_path / "data")],
                   "siteA/rec1.wav: the audio file holds no samples", [tmp_path])


def test_an_mp3_length_is_what_decodes(tmp_path: Path) -> None:
    from rfcx_kit.data.audio import probe

    path = tmp_path / "a.mp3"
    sf.write(str(path), (0.1 * np.random.default_rng(0).standard_normal(44100 * 3)).astype(np.float32), 44100,
             format="MP3")
    seconds, rate = probe(path)
    assert rate == 44100 and seconds == len(sf.read(str(path))[0]) / 44100


# ---- stage 1: what the model cannot see -----------------------------------------------------------------------

def test_boxes_above_the_top_frequency_and_windows_short_of_the_end_stop_stage1(tmp_path: Path) -> None:
    w = imported(tmp_path, band=(17000, 19000), rate=44100)
    run = tmp_path / "runs" / "r"
    out = expect_refused(["stage1", "--data", str(w["data"]), "--run", str(run), "--set", "features.fmax=11025",
                          *_sets(TINY[1:])], "train_tp.csv", [tmp_path / "data", tmp_path / "runs"])
    assert "17000-19000 Hz" in out and "features.fmax" in out and "field 'f_min'" in out
    w = imported(tmp_path / "b")
    expect_refused(["stage1", "--data", str(w["data"]), "--run", str(run), "--set", "windows.n_windows=1",
                    "--set", "windows.window=128", *_sets(TINY[1:])], "n_windows", [tmp_path / "b", tmp_path / "runs"])
    expect_refused(["stage1", "--data", str(w["data"]), "--run", str(run), "--set", "windows.test_n_windows=1",
                    "--set", "windows.window=128", *_sets(TINY[1:])], "cannot cover", [tmp_path / "b", tmp_path / "runs"])
    assert not (tmp_path / "runs").exists()


# ---- resumes key on content --------------------------------------------------------------------------------------

def test_the_feature_cache_recomputes_a_recording_replaced_under_its_name(tmp_path: Path) -> None:
    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import build_cache
    from rfcx_kit.data.layouts import read_competition

    w = imported(tmp_path)
    comp = read_competition(w["data"])
    cfg = FeatureConfig(sample_rate=22050, fmax=11025, n_mels=32)
    cache = build_cache(comp, tmp_path / "cache", cfg, n_jobs=1, progress=False)
    entry = cache / "train" / "siteA" / "rec1.npy"
    first = np.load(entry)
    kept = np.load(cache / "train" / "siteB" / "rec1.npy")
    before = snapshot(cache / "train" / "siteB")
    sf.write(str(w["audio"] / "siteA" / "rec1.wav"), np.zeros(14 * 22050, np.float32), 22050)  # silence now
    build_cache(comp, cache, cfg, n_jobs=1, progress=False)
    assert not np.array_equal(np.load(entry), first) and np.load(entry).max() < first.max()
    assert np.array_equal(np.load(cache / "train" / "siteB" / "rec1.npy"), kept)
    assert snapshot(cache / "train" / "siteB") == before  # the unchanged one was not rewritten


def test_predict_and_export_never_write_into_what_they_read(tmp_path: Path) -> None:
    w = field(tmp_path)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    watched = [tmp_path]
    expect_refused(["predict", "--checkpoint", str(tmp_path / "best.pt"), "--audio", str(w["test"]), "--out",
                    str(w["test"] / "preds.csv")], "inside the recordings", watched)
    expect_refused(["predict", "--checkpoint", str(tmp_path / "best.pt"), "--audio", str(w["test"]), "--out",
                    str(w["test"]), "--format", "raven"], "--out", watched)
    expect_refused(["predict", "--run", str(run), "--audio", str(w["test"]), "--out", str(run / "stage1" / "p.csv")],
                   "inside the run", watched)
    expect_refused(["export", "--run", str(run), "--out", str(run / "onnx")], "inside the run", watched)
