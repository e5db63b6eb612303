"""Annotation import: each format's reader alone, the matching of tables to audio, the folder written, and
every refused input (one DataError naming the file and row; nothing written, no temporary folder left)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from rfcx_kit.core.errors import DataError
from rfcx_kit.data import labels_import
from rfcx_kit.data.labels_import import import_labels, read_table
from rfcx_kit.data.layouts import read_competition

RATE = 22050  # Nyquist 11,025 Hz
RAVEN_HEADER = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                "Annotation"]
BOX_COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]


def write_audio(path: Path, seconds: float = 2.0, rate: int = RATE) -> Path:
    """A short clip of low noise (16-bit, a few tens of kB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(path.name)).normal(0.0, 0.01, int(seconds * rate)).astype(np.float32)
    sf.write(path, noise, rate, subtype="PCM_16")
    return path


def write_text(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def raven(path: Path, rows: list[list[object]], header: list[str] = RAVEN_HEADER) -> Path:
    return write_text(path, ["\t".join(header)] + ["\t".join(map(str, row)) for row in rows])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------------------------------------------------------
# readers


def test_raven_keeps_one_spectrogram_row_per_selection_and_reads_fp_markers(tmp_path):
    """Waveform rows (Raven's default export repeats each selection per view) are dropped; a trailing '?'
    makes a row FP; rows and lines are those of the file."""
    path = raven(tmp_path / "rec1.Table.1.selections.txt", [
        [1, "Waveform 1", 1, 0.5, 1.0, 1000, 2000, "sp b"],
        [1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 2000, "sp b"],
        [2, "Waveform 1", 1, 1.25, 1.5, 500, 3000, " sp a? "],
        [2, "Spectrogram 1", 1, 1.25, 1.5, 500, 3000, " sp a? "],
        [3, "Spectrogram 1", 1, 0.0, 0.1, "", "", "sp c"],
    ])
    frame = read_table(path, "raven")
    assert list(frame.columns) == ["source", "row", "line", "file_hint", "species", "t_min", "t_max", "f_min",
                                   "f_max", "label", "songtype", "confidence"]
    assert frame["species"].tolist() == ["sp b", "sp a", "sp c"]
    assert frame["label"].tolist() == [1, -1, 1]
    assert frame["row"].tolist() == [2, 4, 5] and frame["line"].tolist() == [3, 5, 6]
    assert frame["t_min"].tolist() == [0.5, 1.25, 0.0] and frame["t_max"].tolist() == [1.0, 1.5, 0.1]
    assert frame["f_min"].iloc[:2].tolist() == [1000.0, 500.0] and np.isnan(frame["f_max"].iloc[2])
    assert (frame["file_hint"] == "").all() and (frame["source"] == str(path)).all()
    assert frame.attrs["duplicates"] == 2


def test_raven_begin_file_and_file_offset_and_marker_columns(tmp_path):
    """Begin File names the recording; File Offset is the start within it (end = offset + length); a Kind
    column saying 'fp' and an FP column saying '1' make rows FP; a named species column is used."""
    header = ["Selection", "View", "Channel", "Begin File", "Begin Time (s)", "End Time (s)", "File Offset (s)",
              "Low Freq (Hz)", "High Freq (Hz)", "Species", "Kind", "FP"]
    path = raven(tmp_path / "multi.txt", [
        [1, "Spectrogram 1", 1, "rec1.wav", 10.0, 10.5, 0.25, 100, 900, "a", "tp", ""],
        [2, "Spectrogram 1", 1, "siteB/rec2.flac", 70.0, 71.0, 1.0, 200, 800, "b", "fp", ""],
        [3, "Spectrogram 1", 1, "rec1.wav", 12.0, 12.5, 2.0, 200, 800, "c", "", "1"],
    ], header)
    frame = read_table(path, "raven")
    assert frame["file_hint"].tolist() == ["rec1.wav", "siteB/rec2.flac", "rec1.wav"]
    assert frame["t_min"].tolist() == [0.25, 1.0, 2.0]
    assert frame["t_max"].tolist() == [0.75, 2.0, 2.5]
    assert frame["species"].tolist() == ["a", "b", "c"]
    assert frame["label"].tolist() == [1, -1, -1]


def test_raven_species_column_named_explicitly(tmp_path):
    path = raven(tmp_path / "t.txt", [[1, "Spectrogram 1", 1, 0.0, 1.0, 10, 20, "x", "bird"]],
                 RAVEN_HEADER + ["Common Name"])
    assert read_table(path, "raven")["species"].tolist() == ["x"]
    assert read_table(path, "raven", species_column="common name")["species"].tolist() == ["bird"]
    with pytest.raises(DataError, match=r"t\.txt: missing column 'Latin'"):
        read_table(path, "raven", species_column="Latin")


def test_audacity_frequency_lines(tmp_path):
    """A '\\ f_low f_high' line gives the range of the label above it; -1 is undefined; no line: NaN."""
    path = write_text(tmp_path / "rec1.txt", [
        "0.500000\t1.000000\tsp a",
        "\\\t1000.000000\t4000.000000",
        "1.500000\t1.750000\tsp b?",
        "",
        "2.000000\t2.500000\tsp a",
        "\\\t-1.000000\t3000.000000",
    ])
    frame = read_table(path, "audacity")
    assert frame["species"].tolist() == ["sp a", "sp b", "sp a"]
    assert frame["label"].tolist() == [1, -1, 1]
    assert frame["row"].tolist() == [1, 2, 3] and frame["line"].tolist() == [1, 3, 5]
    assert frame["t_min"].tolist() == [0.5, 1.5, 2.0] and frame["t_max"].tolist() == [1.0, 1.75, 2.5]
    np.testing.assert_array_equal(frame["f_min"], [1000.0, np.nan, np.nan])
    np.testing.assert_array_equal(frame["f_max"], [4000.0, np.nan, 3000.0])


def test_arbimon_present_absent_and_skipped(tmp_path):
    path = write_text(tmp_path / "export.csv", [
        "site,recording,species,songtype,x1,x2,y1,y2,validated",
        "A,siteA_2020-01-01_06-00.flac,Eleutherodactylus,Common Song,0.5,1.0,1000,2000,1",
        "A,siteA_2020-01-01_06-00.flac,Eleutherodactylus,Simple Call,1.5,2.0,1500,2500,0",
        "A,siteA_2020-01-01_06-00.flac,Eleutherodactylus,Common Song,2.5,3.0,1000,2000,",
        "B,siteB_2020-01-01_06-00,Setophaga,Common Song,0.1,0.2,3000,4000,1",
    ])
    frame = read_table(path, "arbimon")
    assert frame.attrs["skipped"] == 1
    assert frame["row"].tolist() == [1, 2, 4]
    assert frame["label"].tolist() == [1, -1, 1]
    assert frame["file_hint"].tolist() == ["siteA_2020-01-01_06-00.flac"] * 2 + ["siteB_2020-01-01_06-00"]
    assert frame["songtype"].tolist() == ["Common Song", "Simple Call", "Common Song"]
    assert frame[["t_min", "t_max", "f_min", "f_max"]].iloc[1].tolist() == [1.5, 2.0, 1500.0, 2500.0]
    # the other spelling: species_name, t_min.., present
    other = write_text(tmp_path / "other.csv", ["recording,species_name,t_min,t_max,f_min,f_max,present",
                                                "r.wav,S,0,1,10,20,0"])
    row = read_table(other, "arbimon").iloc[0]
    assert (row["species"], row["label"], row["t_max"], row["f_max"]) == ("S", -1, 1.0, 20.0)


def test_csv_species_and_label_columns(tmp_path):
    """TP/FP column: the first of kind, tp, label that is not the species column; none: all TP."""
    both = write_text(tmp_path / "both.csv", ["recording,species,start,end,label",
                                              "siteA/rec1,x,0,1,tp", "siteA/rec1.wav,y,1,2,fp", "r2,x,0,1,-1",
                                              "r2,y,0,1,1"])
    frame = read_table(both, "csv")
    assert frame["species"].tolist() == ["x", "y", "x", "y"] and frame["label"].tolist() == [1, -1, -1, 1]
    assert frame["file_hint"].tolist() == ["siteA/rec1", "siteA/rec1.wav", "r2", "r2"]
    assert frame["f_min"].isna().all()
    only = write_text(tmp_path / "only.csv", ["recording,label,t_min,t_max,f_min,f_max", "r,x,0,1,10,20"])
    assert read_table(only, "csv")[["species", "label"]].iloc[0].tolist() == ["x", 1]
    bad = write_text(tmp_path / "bad.csv", ["recording,species,t_min,t_max,kind", "r,x,0,1,tp", "r,x,0,1,maybe"])
    with pytest.raises(DataError, match=r"bad\.csv: row 2 \(line 3\), field 'kind': 'maybe' is neither"):
        read_table(bad, "csv")


# ---------------------------------------------------------------------------------------------------------------
# the import


def two_sites(tmp_path: Path) -> tuple[Path, Path]:
    """audio/siteA/rec1.wav, audio/siteB/rec1.wav (labelled), audio/siteA/rec2.wav (not); tables in a labels
    folder laid out like the audio."""
    audio = tmp_path / "audio"
    for rel in ("siteA/rec1.wav", "siteB/rec1.wav", "siteA/rec2.wav"):
        write_audio(audio / rel)
    labels = tmp_path / "labels"
    raven(labels / "siteA" / "rec1.Table.1.selections.txt", [
        [1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta"],
        [1, "Waveform 1", 1, 0.5, 1.0, 1000, 3000, "zeta"],
        [2, "Spectrogram 1", 1, 1.0, 1.5, 2000, 4000, "alpha"],
    ])
    raven(labels / "siteB" / "rec1.Table.1.selections.txt", [
        [1, "Spectrogram 1", 1, 0.25, 0.5, 500, 1000, "alpha?"],
        [2, "Spectrogram 1", 1, 1.2, 2.005, 3000, 5000, "alpha"],  # ends within the 0.01 s tolerance
    ])
    return audio, labels


def test_two_sites_with_clashing_names_and_the_files_written(tmp_path):
    audio, labels = two_sites(tmp_path)
    out = tmp_path / "data"
    result = import_labels([labels], audio, out)
    assert sorted(p.name for p in out.iterdir()) == ["import.json", "recordings.csv", "species.csv",
                                                     "train_fp.csv", "train_tp.csv"]
    assert leftovers(tmp_path) == []
    tp, fp = pd.read_csv(out / "train_tp.csv"), pd.read_csv(out / "train_fp.csv")
    species = pd.read_csv(out / "species.csv")
    recordings = pd.read_csv(out / "recordings.csv")
    assert list(tp.columns) == BOX_COLUMNS and list(fp.columns) == BOX_COLUMNS
    assert list(species.columns) == ["species_id", "code", "name", "f_min", "f_max"]
    assert list(recordings.columns) == ["recording_id", "split", "path", "seconds", "sample_rate"]
    # names -> ids in sorted order; codes from the names; f range = median of the TP boxes
    assert species["name"].tolist() == ["alpha", "zeta"] and species["species_id"].tolist() == [0, 1]
    assert species["code"].tolist() == ["alpha", "zeta"]
    assert species[["f_min", "f_max"]].to_numpy().tolist() == [[2500.0, 4500.0], [1000.0, 3000.0]]
    assert tp.to_numpy().tolist() == [
        ["siteA/rec1", 1, 1, 0.5, 1000.0, 1.0, 3000.0],
        ["siteA/rec1", 0, 1, 1.0, 2000.0, 1.5, 4000.0],
        ["siteB/rec1", 0, 1, 1.2, 3000.0, 2.0, 5000.0],  # clipped to the 2 s recording
    ]
    assert fp.to_numpy().tolist() == [["siteB/rec1", 0, 1, 0.25, 500.0, 0.5, 1000.0]]
    assert recordings["recording_id"].tolist() == ["siteA/rec1", "siteB/rec1"]
    assert recordings["path"].tolist() == [str((audio / "siteA/rec1.wav").resolve()),
                                           str((audio / "siteB/rec1.wav").resolve())]
    assert (recordings["split"] == "train").all() and recordings["seconds"].tolist() == [2.0, 2.0]
    assert (result.n_tp, result.n_fp, result.skipped, result.sample_rates) == (3, 1, 0, [(RATE, 2)])
    summary = json.loads((out / "import.json").read_text())
    assert summary["counts"] == {"tables": 2, "formats": {"raven": 2}, "rows": 4, "tp": 3, "fp": 1, "unknown": 0,
                                 "candidates": 0, "skipped_rows": 0, "uncertain_rows": 0, "uncertain": "skip",
                                 "duplicate_view_rows": 1, "species": 2, "train_recordings": 2,
                                 "test_recordings": 0, "unlabelled_audio": 1}
    assert summary["inputs"]["format"] == "raven" and summary["sample_rates"] == [[RATE, 2]]
    assert any("1 audio file(s)" in w for w in result.warnings)


def test_given_species_table_fixes_ids_codes_and_ranges(tmp_path):
    audio, labels = two_sites(tmp_path)
    species = write_text(tmp_path / "species.csv", ["name,species_id,code,f_min,f_max", "zeta,7,Z1,900,3100",
                                                    "alpha,3,,,", "unused,0,u,,"])
    result = import_labels([labels], audio, tmp_path / "data", species=species)
    table = pd.read_csv(tmp_path / "data" / "species.csv", keep_default_na=False)
    assert table["species_id"].tolist() == [0, 3, 7]
    assert table["code"].tolist() == ["u", "alpha", "Z1"]
    assert table["f_min"].tolist() == ["", "2500.0", "900.0"]  # none given, no TP box: empty
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    assert tp["species_id"].tolist() == [7, 3, 3]
    assert any("unused" in w for w in result.warnings)


def test_arbimon_import_with_songtypes_test_folder_and_mixed_rates(tmp_path):
    audio, test = tmp_path / "audio", tmp_path / "test"
    write_audio(audio / "siteA_06-00.flac", seconds=3.0)
    write_audio(audio / "siteB_06-00.wav", seconds=1.0, rate=16000)
    write_audio(test / "t1.wav", seconds=1.0)
    export = write_text(tmp_path / "export.csv", [
        "recording,species,songtype,x1,x2,y1,y2,validated",
        "siteA_06-00.flac,S,Simple Call,0.5,1.0,1000,2000,1",
        "siteA_06-00.flac,S,Common Song,1.5,2.0,1000,2000,0",
        "siteB_06-00,S,Common Song,0.1,0.2,3000,4000,1",
        "siteB_06-00,T,Common Song,0.1,0.2,3000,4000,",
    ])
    result = import_labels([export], audio, tmp_path / "data", fmt="arbimon", test=test)
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    fp = pd.read_csv(tmp_path / "data" / "train_fp.csv")
    assert tp[["recording_id", "songtype_id"]].to_numpy().tolist() == [["siteA_06-00", 2], ["siteB_06-00", 1]]
    assert fp[["recording_id", "songtype_id"]].to_numpy().tolist() == [["siteA_06-00", 1]]
    assert result.skipped == 1 and result.species["name"].tolist() == ["S"]
    assert result.recordings[["recording_id", "split"]].to_numpy().tolist() == [
        ["siteA_06-00", "train"], ["siteB_06-00", "train"], ["t1", "test"]]
    assert result.sample_rates == [(16000, 1), (RATE, 2)]
    assert any("mixed sample rates" in w for w in result.warnings)


def test_audacity_import_fills_missing_frequencies_with_nyquist(tmp_path):
    write_audio(tmp_path / "audio" / "rec1.wav")
    labels = write_text(tmp_path / "rec1_labels.txt", ["0.5\t1.0\tsp", "1.0\t1.5\tsp", "\\\t100\t900"])
    import_labels([labels], tmp_path / "audio", tmp_path / "data", fmt="audacity")
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    assert tp[["f_min", "f_max"]].to_numpy().tolist() == [[0.0, RATE / 2], [100.0, 900.0]]


def test_existing_out_is_refused_then_replaced_with_overwrite(tmp_path):
    audio, labels = two_sites(tmp_path)
    out = tmp_path / "data"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(DataError, match="not empty"):
        import_labels([labels], audio, out)
    import_labels([labels], audio, out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "train_tp.csv").is_file()
    assert leftovers(tmp_path) == []


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    audio, labels = two_sites(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(labels_import, "atomic_write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        import_labels([labels], audio, tmp_path / "data")
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# refused inputs


def _bad_case(tmp_path: Path, case: str) -> tuple[dict, list[str]]:
    """Write one bad input; return import_labels' arguments and the pieces its message must hold."""
    audio = tmp_path / "audio"
    write_audio(audio / "rec1.wav")
    table = tmp_path / "labels" / "rec1.Table.1.selections.txt"
    good = [1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 2000, "sp a"]
    kwargs: dict = {"inputs": [table], "audio": audio}
    if case == "missing End Time column":
        header = [c for c in RAVEN_HEADER if c != "End Time (s)"]
        raven(table, [[1, "Spectrogram 1", 1, 0.5, 1000, 2000, "sp a"]], header)
        return kwargs, [str(table), "missing column 'End Time (s)'"]
    if case == "non-numeric time":
        raven(table, [good, [2, "Spectrogram 1", 1, "0,5", 1.0, 1000, 2000, "sp a"]])
        return kwargs, [str(table), "row 2 (line 3), field 'Begin Time (s)'", "'0,5' is not a number"]
    if case == "end <= start":
        raven(table, [[1, "Spectrogram 1", 1, 1.0, 1.0, 1000, 2000, "sp a"]])
        return kwargs, [str(table), "row 1 (line 2), field 'End Time (s)'", "not after the start"]
    if case == "unknown species":
        raven(table, [good, [2, "Spectrogram 1", 1, 0.5, 1.0, 1000, 2000, "sp z"]])
        kwargs["species"] = write_text(tmp_path / "species.csv", ["name", "sp a"])
        return kwargs, [str(table), "row 2 (line 3), field 'Annotation'", "'sp z' is not in the species table"]
    if case == "box past the end":
        raven(table, [good, [2, "Spectrogram 1", 1, 1.5, 2.5, 1000, 2000, "sp a"]])
        return kwargs, [str(table), "row 2 (line 3), field 'End Time (s)'", "past the end of recording 'rec1'"]
    if case == "f_max above Nyquist":
        raven(table, [[1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 12000, "sp a"]])
        return kwargs, [str(table), "row 1 (line 2), field 'High Freq (Hz)'", "above the Nyquist frequency"]
    if case == "recording not found":
        table = raven(tmp_path / "labels" / "rec9.Table.1.selections.txt", [good])
        return {**kwargs, "inputs": [table]}, [str(table), "cannot find this table's recording", "rec9"]
    if case == "Begin File not found":
        header = RAVEN_HEADER + ["Begin File"]
        raven(table, [good + ["rec1.wav"], [2, *good[1:], "other.wav"]], header)
        return kwargs, [str(table), "row 2 (line 3), field 'Begin File'", "'other.wav'"]
    if case == "duplicate ids":
        write_audio(audio / "rec1.flac")
        raven(table, [good])
        return kwargs, [str(audio), "rec1.flac", "rec1.wav", "'rec1'"]
    if case == "ambiguous table":
        write_audio(audio / "siteA" / "rec2.wav")
        write_audio(audio / "siteB" / "rec2.wav")
        table = raven(tmp_path / "labels" / "rec2.Table.1.selections.txt", [good])
        return {**kwargs, "inputs": [table]}, [str(table), "siteA/rec2.wav", "siteB/rec2.wav"]
    if case == "empty input":
        raven(table, [])
        return kwargs, [str(table), "no label rows"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "missing End Time column", "non-numeric time", "end <= start", "unknown species", "box past the end",
    "f_max above Nyquist", "recording not found", "Begin File not found", "duplicate ids", "ambiguous table",
    "empty input",
])
def test_bad_input_is_refused_and_nothing_is_written(tmp_path, case):
    kwargs, pieces = _bad_case(tmp_path, case)
    out = tmp_path / "data"
    with pytest.raises(DataError) as info:
        import_labels(out=out, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message, (piece, message)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["the audio", "a parent of the audio", "inside the audio", "the labels' folder"])
def test_out_that_would_delete_or_mix_with_the_inputs_is_refused_even_with_overwrite(tmp_path, where):
    audio, labels = two_sites(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = {"the audio": audio, "a parent of the audio": tmp_path, "inside the audio": audio / "imported",
           "the labels' folder": labels.parent}[where]
    with pytest.raises(DataError, match=r"--out .*(is|holds|lies inside) the"):
        import_labels([labels], audio, out, overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing deleted or written


@pytest.mark.parametrize("name", ['alpha "cf"', "al\tpha", "al\npha", "al\x1bpha"])
def test_species_names_the_written_tables_could_not_hold_are_refused_with_their_row(tmp_path, name):
    quoted = '"' + name.replace('"', '""') + '"'
    path = write_text(tmp_path / "calls.csv", ["recording,species,t_min,t_max,f_min,f_max",
                                               "r,beta,0,1,10,20", f"r,{quoted},0,1,10,20"])
    with pytest.raises(DataError, match=r"calls\.csv: row 2 \(line 3\), field 'species': .*control character .* double quote"):
        read_table(path, "csv")
    # the same rule for a data folder's species.csv
    from rfcx_kit.core.species import Species

    table = write_text(tmp_path / "species.csv", ["species_id,code,name", "0,b,beta", f"1,a,{quoted}"])
    with pytest.raises(DataError, match=r"species\.csv: row 2 \(line 3\), field 'name': .*control character"):
        Species.read(table)


def test_rows_sharing_a_selection_id_with_other_times_are_calls_not_view_copies(tmp_path):
    path = raven(tmp_path / "rec1.Table.1.selections.txt", [
        [1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta"],
        [1, "Spectrogram 2", 1, 0.5, 1.0, 1000, 3000, "zeta"],   # a view copy: dropped
        [1, "Spectrogram 1", 1, 4.0, 4.5, 1000, 3000, "alpha"],  # same id, another call: kept
        [2, "Spectrogram 1", 1, 2.0, 2.5, 2000, 4000, "zeta"],
    ])
    frame = read_table(path, "raven")
    assert sorted(zip(frame["species"], frame["t_min"])) == [("alpha", 4.0), ("zeta", 0.5), ("zeta", 2.0)]


def test_a_begin_file_in_a_folder_that_does_not_exist_is_refused_not_filed_under_another_site(tmp_path):
    audio, _ = two_sites(tmp_path)  # siteA/rec1.wav and siteB/rec1.wav
    table = raven(tmp_path / "labels" / "siteA" / "all.Table.1.selections.txt",
                  [[1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta", "siteC/rec1.wav"]],
                  header=RAVEN_HEADER + ["Begin File"])
    with pytest.raises(DataError, match=r"field 'Begin File': 'siteC/rec1.wav': matches several audio files"):
        import_labels([table], audio, tmp_path / "data")
    # a folder that does exist picks its file, whatever folder the table lies in
    table = raven(table, [[1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta", "siteB/rec1.wav"]],
                  header=RAVEN_HEADER + ["Begin File"])
    import_labels([table], audio, tmp_path / "data")
    assert pd.read_csv(tmp_path / "data" / "train_tp.csv")["recording_id"].tolist() == ["siteB/rec1"]


def test_tables_beside_their_recordings_belong_to_their_own_folder(tmp_path):
    """Raven's default: each table saved next to its recording, the same names in every site; the tables given
    one by one (as a shell glob gives them) with --audio at the root."""
    audio, _ = two_sites(tmp_path)
    a = raven(audio / "siteA" / "rec1.Table.1.selections.txt", [[1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta"]])
    b = raven(audio / "siteB" / "rec1.Table.1.selections.txt", [[1, "Spectrogram 1", 1, 1.0, 1.5, 500, 900, "alpha"]])
    import_labels([a, b], audio, tmp_path / "data")
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    assert sorted(zip(tp["recording_id"], tp["t_min"])) == [("siteA/rec1", 0.5), ("siteB/rec1", 1.0)]


@pytest.mark.parametrize("cell", ["?", ""])
def test_uncertain_rows_are_left_out_and_named_kept_as_unknown_made_fp_or_refused(tmp_path, cell):
    audio, _ = two_sites(tmp_path)
    table = raven(audio / "siteA" / "rec1.Table.1.selections.txt", [
        [1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta"],
        [2, "Spectrogram 1", 1, 1.0, 1.5, 1000, 3000, cell],
        [3, "Spectrogram 1", 1, 0.2, 0.4, 1000, 3000, "alpha"],
    ])
    with pytest.raises(DataError, match=r"row 2 \(line 3\), field 'Annotation': empty species name .*--uncertain"):
        import_labels([table], audio, tmp_path / "data", uncertain="error")
    assert not (tmp_path / "data").exists()
    # the default: left out, counted and named in one line
    result = import_labels([table], audio, tmp_path / "skip")
    assert result.n_tp == 2 and result.n_unknown == 0
    line = [w for w in result.warnings if "uncertain row" in w]
    assert len(line) == 1 and "1 uncertain row(s)" in line[0] and "rec1.Table.1.selections.txt:2" in line[0]
    assert "left out" in line[0]
    counts = json.loads((tmp_path / "skip" / "import.json").read_text())["counts"]
    assert (counts["uncertain_rows"], counts["uncertain"]) == (1, "skip")
    # unknown: a call of no named species, in train_unknown.csv, which the data folder reads back
    result = import_labels([table], audio, tmp_path / "unknown", uncertain="unknown")
    assert (result.n_tp, result.n_fp, result.n_unknown) == (2, 0, 1)
    unknown = pd.read_csv(tmp_path / "unknown" / "train_unknown.csv")
    assert unknown[["recording_id", "species_id", "t_min", "t_max"]].to_numpy().tolist() == [["siteA/rec1", -1, 1.0, 1.5]]
    comp = read_competition(tmp_path / "unknown", require_test=False)
    assert len(comp.unknown) == 1 and (comp.boxes()["label"] == 0).sum() == 1
    # fp: an FP box of every species
    result = import_labels([table], audio, tmp_path / "fp", uncertain="fp")
    fp = pd.read_csv(tmp_path / "fp" / "train_fp.csv")
    assert result.n_fp == 2 and sorted(fp["species_id"]) == [0, 1] and (fp["t_min"] == 1.0).all()


def test_a_crop_over_an_unknown_call_holds_no_implicit_negative():
    from rfcx_kit.data.framewise import FramewiseLabels

    boxes = pd.DataFrame({"recording_id": ["a", "a", "a"], "species_id": [0, 1, -1], "t_min": [0.0, 5.0, 20.0],
                          "t_max": [1.0, 6.0, 21.0], "label": [1, -1, 0]})
    labels = FramewiseLabels(boxes, ["a"], frames=1000, sample_rate=1000, hop_length=100, n_species=3)
    # 10 frames per second: crops of 20 frames at 0 s (the TP box), 5 s (the FP box) and 19.5 s (the unknown call)
    target, weight = labels.crop_targets(np.zeros(3, np.int64), np.array([0, 50, 195]), 20, unlabeled_weight=0.3)
    assert target.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert np.allclose(weight, [[1, 0.3, 0.3], [0.3, 1, 0.3], [0, 0, 0]])
    assert labels.windows([[0, 20], [195, 215]]).tolist() == [[[1, 0, 0], [0, 0, 0]]]  # unknown names no species


def test_auto_reads_a_folder_that_mixes_raven_audacity_and_csv(tmp_path):
    audio, _ = two_sites(tmp_path)
    labels = tmp_path / "mixed"
    raven(labels / "siteA" / "rec1.Table.1.selections.txt", [[1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta"]])
    (labels / "siteB").mkdir()
    (labels / "siteB" / "rec1.txt").write_text("0.2\t0.6\talpha\n\\\t500\t900\n")  # Audacity, with a band
    (labels / "more.csv").write_text("recording,species,t_min,t_max\nsiteA/rec1,alpha,1.2,1.6\n")
    (labels / "README.txt").write_text("Recorded at dawn by the field team.\n")  # not a table: passed over
    result = import_labels([labels], audio, tmp_path / "data", fmt="auto")
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    assert sorted(zip(tp["recording_id"], tp["t_min"])) == [("siteA/rec1", 0.5), ("siteA/rec1", 1.2), ("siteB/rec1", 0.2)]
    summary = json.loads((tmp_path / "data" / "import.json").read_text())
    assert summary["counts"]["formats"] == {"audacity": 1, "csv": 1, "raven": 1} and result.n_tp == 3
    with pytest.raises(DataError, match=r"README.txt: not a label table of a format rfcx-kit reads \(raven, audacity, arbimon, csv"):
        import_labels([labels / "README.txt"], audio, tmp_path / "data2", fmt="auto")


def test_a_detector_table_gives_candidates_with_their_confidence_not_boxes(tmp_path):
    """What `predict --format raven` writes (a Confidence column): candidates, unless a person marked a row."""
    audio, _ = two_sites(tmp_path)
    header = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
              "Species", "Code", "Confidence", "Begin File", "Kind"]
    rows = [[1, "Spectrogram 1", 1, 0.1, 0.9, 1000, 3000, "zeta", "ZETA", 0.91, "rec1.wav", ""],
            [2, "Spectrogram 1", 1, 1.0, 1.4, 500, 900, "alpha", "ALPH", 0.62, "rec1.wav", "tp"],
            [3, "Spectrogram 1", 1, 1.5, 1.9, 500, 900, "alpha", "ALPH", 0.55, "rec1.wav", "fp"]]
    table = audio / "siteA" / "rec1.selections.txt"
    table.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    result = import_labels([table], audio, tmp_path / "data", fmt="auto")
    assert (result.n_tp, result.n_fp, result.n_candidates) == (1, 1, 1)
    candidates = pd.read_csv(tmp_path / "data" / "candidates.csv")
    assert candidates[["recording_id", "species", "t_min", "t_max", "confidence"]].to_numpy().tolist() == [
        ["siteA/rec1", "zeta", 0.1, 0.9, 0.91]]
    species = pd.read_csv(tmp_path / "data" / "species.csv")
    assert candidates["species_id"].iloc[0] == species.set_index("name").loc["zeta", "species_id"]


@pytest.mark.parametrize("fmt", ["raven", "csv"])
def test_a_trailing_separator_is_read_and_a_field_past_the_header_is_named(tmp_path, fmt):
    sep = "\t" if fmt == "raven" else ","
    header = RAVEN_HEADER if fmt == "raven" else ["recording", "species", "t_min", "t_max"]
    row = [1, "Spectrogram 1", 1, 0.5, 1.0, 1000, 3000, "zeta"] if fmt == "raven" else ["rec1", "zeta", 0.5, 1.0]
    other = [2 if i == 0 and fmt == "raven" else v for i, v in enumerate(row)]
    path = write_text(tmp_path / f"t.{'txt' if fmt == 'raven' else 'csv'}",
                      [sep.join(header), sep.join(map(str, row)) + sep, sep.join(map(str, other)) + sep])
    frame = read_table(path, fmt)
    assert frame["species"].tolist() == ["zeta", "zeta"] and frame["t_min"].tolist() == [0.5, 0.5]
    path.write_text(sep.join(header) + "\n" + sep.join(map(str, row)) + "\n" + sep.join(map(str, other)) + sep + "x\n")
    with pytest.raises(DataError, match=r"t\.(txt|csv): .*(line 3).*(fields|saw 9|saw 5)"):
        read_table(path, fmt)
