"""The competition-folder reader: every validation error, both layouts, audio length, the real CSVs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import RFCX_DATA, requires_shared

from rfcx_kit.data.audio import load_audio
from rfcx_kit.core.errors import DataError
from rfcx_kit.data.reader import check_box_limits, read_boxes
from rfcx_kit.data.layouts import read_competition


def write_boxes(path: Path, **changes) -> Path:
    """A valid 4-row box CSV, with ``changes = {field: value}`` applied to data row 3 (0-based index 2)."""
    frame = pd.DataFrame({
        "recording_id": ["r0", "r1", "r2", "r3"],
        "species_id": [0, 5, 23, 7],
        "songtype_id": [1, 1, 4, 1],
        "t_min": [0.0, 10.5, 20.0, 59.0],
        "f_min": [100.0, 2000.0, 0.0, 5000.0],
        "t_max": [1.5, 12.0, 60.0, 60.0],
        "f_max": [900.0, 4000.0, 24000.0, 8000.0],
    }).astype(object)
    for column, value in changes.items():
        frame.loc[2, column] = value
    frame.to_csv(path, index=False)
    return path


def test_valid_boxes_are_read_with_numeric_types(tmp_path):
    """A valid table (edges at 0 s, 60 s, 0 Hz and 24 kHz included) reads back unchanged, typed."""
    frame = read_boxes(write_boxes(tmp_path / "train_tp.csv"))
    assert frame["recording_id"].tolist() == ["r0", "r1", "r2", "r3"]
    assert frame["species_id"].dtype == np.int64 and frame["songtype_id"].dtype == np.int64
    assert frame["t_max"].tolist() == [1.5, 12.0, 60.0, 60.0]
    assert frame["f_max"].max() == 24000.0


@pytest.mark.parametrize(
    "field, value, why",
    [
        ("species_id", 24, "not a species in 0..23"),
        ("species_id", -1, "not a species in 0..23"),
        ("species_id", 2.5, "not a species in 0..23"),
        ("t_min", -0.5, "is negative"),
        ("t_max", 60.5, "60.5 s is past the end of recording 'r2' (60 s)"),
        ("t_min", 60.0, "starts at or after the end of recording 'r2'"),
        ("t_max", 20.0, "is not after t_min"),       # t_max == t_min
        ("t_max", 19.0, "is not after t_min"),       # t_max < t_min
        ("f_min", -1.0, "is negative"),
        ("f_max", 24000.5, "above the Nyquist frequency 24000 Hz"),
        ("f_max", 0.0, "is not above f_min"),         # f_max == f_min
        ("t_min", "abc", "is not a number"),
        ("f_max", "", "is not a number"),             # empty field
        ("species_id", "s3", "is not a number"),
        ("recording_id", "../x", "not a plain recording id"),
        ("recording_id", "a/b", "not a plain recording id"),
        ("recording_id", "..", "not a plain recording id"),
        ("recording_id", ".hidden", "not a plain recording id"),
        ("recording_id", "", "empty"),
    ],
)
def test_each_bad_value_is_an_error_naming_file_row_and_field(tmp_path, field, value, why):
    """Every kind of bad value in a box table raises DataError naming the file, data row 3 (line 4 of the
    file, after the header) and the offending field, with the reason."""
    path = write_boxes(tmp_path / "train_fp.csv", **{field: value})
    ids = [f"r{i}" for i in range(4)]  # the competition's recordings: 24 species, 60 s at 48 kHz
    limits = pd.DataFrame({"seconds": 60.0, "sample_rate": 48000.0}, index=ids)
    with pytest.raises(DataError) as info:
        read_boxes(path, 24, limits)
    message = str(info.value)
    assert str(path) in message
    assert "row 3 (line 4)" in message
    assert f"field '{field}'" in message
    assert why in message


def test_the_first_bad_row_is_reported(tmp_path):
    """With problems in two rows (different fields), the error names the earlier row."""
    path = tmp_path / "train_tp.csv"
    write_boxes(path, t_max=70.0)  # row 3
    frame = pd.read_csv(path)
    frame.loc[1, "f_min"] = -5.0  # row 2
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=re.escape("row 2 (line 3), field 'f_min'")):
        read_boxes(path)


@pytest.mark.parametrize("column", ["recording_id", "species_id", "t_min", "f_max"])
def test_missing_column_is_an_error_naming_file_and_column(tmp_path, column):
    """A table without one of the 7 columns is refused, naming the file and the missing column."""
    path = write_boxes(tmp_path / "train_tp.csv")
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_boxes(path)
    assert str(path) in str(info.value) and f"missing column(s) {column}" in str(info.value)


def test_sample_submission_problems_name_file_row_and_field(tmp_path, make_competition):
    """sample_submission.csv with a bad header, a duplicated id or a path-like id is refused by name."""
    root = make_competition(tmp_path, n_train=2, n_test=3, seconds=0.5)
    sub_path = root / "sample_submission.csv"
    sub = pd.read_csv(sub_path)
    sub.drop(columns=["s5"]).to_csv(sub_path, index=False)  # s0..s4, s6..s23: not a species table's columns
    with pytest.raises(DataError, match="header must be recording_id,s0"):
        read_competition(root)
    bad = sub.copy()
    bad.loc[2, "recording_id"] = bad.loc[0, "recording_id"]
    bad.to_csv(sub_path, index=False)
    with pytest.raises(DataError, match=re.escape("row 3 (line 4), field 'recording_id'") + ".*appears twice"):
        read_competition(root)
    bad.loc[2, "recording_id"] = "../../etc/passwd"
    bad.to_csv(sub_path, index=False)
    with pytest.raises(DataError, match="not a plain recording id"):
        read_competition(root)


def test_flac_layout_is_read(tmp_path, make_competition):
    """A Kaggle-layout folder reads as layout 'audio' with .flac files; train ids are the sorted union of
    TP and FP ids; test ids keep sample_submission's order; each id's path is its FLAC file."""
    root = make_competition(tmp_path, n_train=3, n_test=2, seconds=0.5)
    sub = pd.read_csv(root / "sample_submission.csv")
    sub.iloc[::-1].to_csv(root / "sample_submission.csv", index=False)  # reversed order must be kept
    comp = read_competition(root)
    assert (comp.layout, comp.extension) == ("audio", ".flac")
    assert comp.train_ids == ["train000", "train001", "train002"]
    assert comp.test_ids == ["test001", "test000"]
    assert comp.path("train", "train001") == root / "train" / "train001.flac"
    assert len(comp.tp) == 3 and len(comp.fp) == 3
    assert comp.tp_presence().sum() == 3 and comp.tp_presence()[1, 1] == 1


def test_npy_layout_is_read(tmp_path, make_competition):
    """The precomputed-spectrogram layout (train/*.npy, test/*.npy of 128 x 3751) reads as layout 'npy'."""
    root = make_competition(tmp_path, n_train=2, n_test=1, layout="npy")
    comp = read_competition(root)
    assert (comp.layout, comp.extension) == ("npy", ".npy")
    assert comp.path("test", "test000") == root / "test" / "test000.npy"
    assert np.load(comp.path("train", "train001")).shape == (128, 3751)


def test_npy_of_the_wrong_shape_is_refused_by_name(tmp_path, make_competition):
    """A precomputed array that is not what the config asks (here 64 x 3751 for 128 mel bins) is an error naming
    the file and the shape; without a config, train and test arrays of different grids are refused."""
    root = make_competition(tmp_path, n_train=2, n_test=1, layout="npy", frames=50)
    np.save(root / "train" / "train000.npy", np.zeros((64, 3751), dtype=np.float32))
    with pytest.raises(DataError, match=re.escape(f"{root / 'train' / 'train000.npy'}: expected a 128 x T")):
        read_competition(root, n_mels=128)
    with pytest.raises(DataError, match=re.escape(f"{root / 'test' / 'test000.npy'}: 128 mel bins, but "
                                                  f"{root / 'train' / 'train000.npy'} has 64")):
        read_competition(root)


def test_missing_audio_names_the_first_few_and_the_count(tmp_path, make_competition):
    """With 7 of 8 labelled recordings missing, the error gives the count and the first five ids
    (sorted), then 'and 2 more'; a missing test recording of sample_submission.csv is reported too."""
    root = make_competition(tmp_path, n_train=8, n_test=2, seconds=0.2)
    for i in range(1, 8):
        (root / "train" / f"train{i:03d}.flac").unlink()
    with pytest.raises(DataError) as info:
        read_competition(root)
    message = str(info.value)
    assert str(root / "train") in message
    assert "7 labelled recording(s) have no file: train001, train002, train003, train004, train005 and 2 more" in message
    assert "train006" not in message and "train000" not in message

    root = make_competition(tmp_path / "second", n_train=2, n_test=2, seconds=0.2)
    (root / "test" / "test001.flac").unlink()
    with pytest.raises(DataError, match=r"1 sample_submission.csv recording\(s\) have no file: test001"):
        read_competition(root)
    assert read_competition(root, require_test=False).test_ids == ["test000", "test001"]


def test_unreadable_audio_is_an_error_naming_the_file(tmp_path, make_competition):
    """Garbage bytes under a .flac name: decoding raises DataError naming that file (no soundfile traceback)."""
    root = make_competition(tmp_path, n_train=2, n_test=1, seconds=0.2)
    bad = root / "train" / "train001.flac"
    bad.write_bytes(b"this is not a flac file" * 100)
    comp = read_competition(root)  # the CSVs and the presence of files are fine
    with pytest.raises(DataError, match=re.escape(f"{bad}: cannot read audio")):
        check_box_limits(comp)  # each labelled recording's header gives its length and rate: read before training
    with pytest.raises(DataError, match=re.escape(f"{bad}: cannot read audio")):
        load_audio(bad)
    empty = tmp_path / "empty.flac"
    sf.write(empty, np.zeros(0, dtype=np.float32), 48000)
    with pytest.raises(DataError, match=re.escape(str(empty))):
        load_audio(empty)


def test_audio_shorter_than_expected_is_padded_with_a_warning(tmp_path, caplog):
    """A 2 s file asked as 3 s at 48 kHz (no resampling): the wave is its samples then zeros, the status
    says 'padded from 2.00 s', and a warning naming the file is logged."""
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(96000)).astype(np.float32)
    path = tmp_path / "short.flac"
    sf.write(path, wave, 48000)
    decoded, _ = sf.read(path, dtype="float32")
    with caplog.at_level(logging.WARNING, logger="rfcx_kit.data.audio"):
        out, status = load_audio(path, sample_rate=48000, seconds=3.0)
    assert out.shape == (144000,) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:96000], decoded)
    assert not out[96000:].any()
    assert status == "padded from 2.00 s"
    assert any(r.levelno == logging.WARNING and str(path) in r.getMessage() for r in caplog.records)


def test_audio_longer_than_expected_is_cut_with_a_warning(tmp_path, caplog):
    """A 2 s file asked as 1.5 s: the first 1.5 s are kept, status 'cut from 2.00 s', warning logged; a file
    of the right length gives status 'ok' and no warning."""
    rng = np.random.default_rng(1)
    path = tmp_path / "long.flac"
    sf.write(path, (0.1 * rng.standard_normal(96000)).astype(np.float32), 48000)
    decoded, _ = sf.read(path, dtype="float32")
    with caplog.at_level(logging.WARNING, logger="rfcx_kit.data.audio"):
        out, status = load_audio(path, sample_rate=48000, seconds=1.5)
    np.testing.assert_array_equal(out, decoded[:72000])
    assert status == "cut from 2.00 s"
    assert any("cut to" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rfcx_kit.data.audio"):
        _, status = load_audio(path, sample_rate=48000, seconds=2.0)
    assert status == "ok" and not caplog.records


def test_stereo_audio_is_mixed_to_mono(tmp_path):
    """A 2-channel file becomes the mean of its channels."""
    left = np.full(4800, 0.5, dtype=np.float32)
    right = np.full(4800, -0.25, dtype=np.float32)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 48000)
    out, _ = load_audio(path, sample_rate=48000, seconds=0.1)
    np.testing.assert_allclose(out, 0.125, atol=1e-4)


@requires_shared
def test_real_csvs_pass_validation_with_the_known_counts():
    """The real train_tp.csv / train_fp.csv pass every check: 1216 TP rows over 1132 recordings, 7781 FP
    rows over 3958 recordings, 4727 labelled recordings together (363 in both)."""
    tp = read_boxes(RFCX_DATA / "train_tp.csv")
    fp = read_boxes(RFCX_DATA / "train_fp.csv")
    assert (len(tp), tp["recording_id"].nunique()) == (1216, 1132)
    assert (len(fp), fp["recording_id"].nunique()) == (7781, 3958)
    tp_ids, fp_ids = set(tp["recording_id"]), set(fp["recording_id"])
    assert len(tp_ids | fp_ids) == 4727 and len(tp_ids & fp_ids) == 363
    assert set(tp["species_id"]) == set(range(24)) == set(fp["species_id"])
