"""Submission validation, atomic writing, scale detection and ``rfcx-kit validate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.data import validate_cmd
from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import SPECIES_COLUMNS, competition_test_ids
from rfcx_kit.data.submission import (
    LOGIT,
    PROBABILITY,
    detect_scale,
    read_expected_ids,
    validate_submission,
    write_submission,
)

from conftest import SHARED  # noqa: E402 - conftest is the one place that knows where ../shared is
RFCX = SHARED / "data" / "rfcx"
requires_shared = pytest.mark.skipif(not RFCX.is_dir(), reason=f"{RFCX} is absent (the real RFCX submission files)")
EXTERNAL_LOGITS = RFCX / "external" / "kuto5046_0206_232645_effb2sed_stage3_submission.csv"
EXTERNAL_PROBS = RFCX / "external" / "kuto5046_0211_095250_effb2sed_stage3v2_submission.csv"

IDS = ["a01", "b02", "c03"]
HEADER = "recording_id," + ",".join(SPECIES_COLUMNS)


def _row(rid: str, values: list[str] | None = None) -> str:
    return rid + "," + ",".join(values or [f"0.{k:02d}" for k in range(24)])


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _write(tmp_path / "good.csv", [HEADER, *(_row(r) for r in IDS)])


# ------------------------------------------------------------------------------------------------------
# Real files


@requires_shared
@pytest.mark.parametrize("path, scale", [
    (RFCX / "sample_submission.csv", PROBABILITY), (EXTERNAL_LOGITS, LOGIT), (EXTERNAL_PROBS, PROBABILITY)])
def test_real_submissions_validate_against_the_shipped_test_ids(path: Path, scale: str):
    frame = validate_submission(path)  # None = the real competition's 1992 ids
    assert len(frame) == 1992 and list(frame.columns) == ["recording_id", *SPECIES_COLUMNS]
    assert set(frame["recording_id"]) == set(competition_test_ids())
    assert detect_scale(frame) == scale


@requires_shared
def test_validate_command_on_real_files_with_and_without_data():
    runner = CliRunner()
    for path in (RFCX / "sample_submission.csv", EXTERNAL_LOGITS, EXTERNAL_PROBS):
        result = runner.invoke(validate_cmd, [str(path)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("OK: ") and "1992 recordings" in result.output
    result = runner.invoke(validate_cmd, [str(EXTERNAL_LOGITS), "--data", str(RFCX)])
    assert result.exit_code == 0 and "logits" in result.output


# ------------------------------------------------------------------------------------------------------
# What is accepted


def test_any_row_order_blank_trailing_lines_and_a_bom_are_accepted(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text("\ufeff" + "\n".join([HEADER, _row("c03"), _row("a01"), _row("b02")]) + "\n\n", encoding="utf-8")
    frame = validate_submission(path, IDS)
    assert list(frame["recording_id"]) == ["c03", "a01", "b02"]  # the file's order is kept
    assert frame["s7"].tolist() == [0.07] * 3 and frame["s7"].dtype == np.float64


def test_none_means_the_real_competition_ids(tmp_path: Path):
    ids = list(competition_test_ids())
    frame = pd.DataFrame(np.full((len(ids), 24), 0.25), columns=SPECIES_COLUMNS)
    frame.insert(0, "recording_id", ids)
    assert len(validate_submission(frame)) == 1992
    with pytest.raises(DataError, match=r"1991 rows, expected 1992; missing recording\(s\) 1 \(" + ids[-1]):
        validate_submission(frame.iloc[:-1])
    assert len(validate_submission(frame.iloc[:-1], check_ids=False)) == 1991  # format only


# ------------------------------------------------------------------------------------------------------
# What is refused, naming the first bad row / line / column


@pytest.mark.parametrize("lines, expected", [
    ([], r"empty file"),
    ([HEADER], r"no rows after the header"),
    ([HEADER.replace("s5,", "s05,"), _row("a01")], r"header column 7 is 's05', expected 's5'"),
    ([HEADER.replace("recording_id", "id")], r"header column 1 is 'id', expected 'recording_id'"),
    ([HEADER + ",extra", _row("a01")], r"header has 26 columns, expected 25"),
    ([HEADER, _row("a01"), "b02,0.1,0.2"], r"row 2 \(line 3\): 3 fields, expected 25"),
    ([HEADER, _row("a01"), _row("b02", ["0.1"] * 23 + ["abc"])], r"row 2 \(line 3, recording 'b02'\), column s23: 'abc' is not a number"),
    ([HEADER, _row("a01", ["0.1"] * 5 + [""] + ["0.1"] * 18)], r"row 1 \(line 2, recording 'a01'\), column s5: '' is not a number"),
    ([HEADER, _row("a01"), _row("b02"), _row("c03", ["inf"] + ["0"] * 23)], r"row 3 \(line 4, recording 'c03'\), column s0: 'inf' is not a finite number"),
    ([HEADER, _row("a01", ["0"] * 10 + ["nan"] + ["0"] * 13)], r"column s10: 'nan' is not a finite number"),
    ([HEADER, _row("a01"), _row("b02"), _row("a01")], r"row 3 \(line 4\), column recording_id: 'a01' appears again \(first at row 1 \(line 2\)\)"),
    ([HEADER, _row("a01"), _row("zz9"), _row("c03")], r"row 2 \(line 3\), column recording_id: 'zz9' is not one of the expected ids"),
    ([HEADER, _row("a01"), _row("c03")], r"2 rows, expected 3; missing recording\(s\) 1 \(b02\)"),
])
def test_errors_name_the_first_bad_row_and_column(tmp_path: Path, lines: list[str], expected: str):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(DataError, match=expected) as info:
        validate_submission(path, IDS)
    assert str(info.value).startswith(str(path))


def test_first_bad_cell_is_found_in_row_major_order(tmp_path: Path):
    # Row 2 has a bad s20, row 3 a bad s1: row 2 is reported although s1 is the earlier column.
    path = _write(tmp_path / "s.csv", [
        HEADER, _row("a01"), _row("b02", ["0"] * 20 + ["x"] + ["0"] * 3), _row("c03", ["0", "y"] + ["0"] * 22)])
    with pytest.raises(DataError, match=r"row 2 \(line 3, recording 'b02'\), column s20: 'x'"):
        validate_submission(path, IDS)


def test_the_earliest_bad_row_wins_whatever_the_kind_of_problem(tmp_path: Path):
    # A repeated id in row 3 is reported before a non-number in row 4 and an unknown id in row 5.
    path = _write(tmp_path / "s.csv", [
        HEADER, _row("a01"), _row("b02"), _row("a01"), _row("c03", ["z"] * 24), _row("zz9")])
    with pytest.raises(DataError, match=r"row 3 \(line 4\), column recording_id: 'a01' appears again"):
        validate_submission(path, IDS)


def test_frame_errors_name_the_row(tmp_path: Path):
    frame = pd.DataFrame(np.zeros((3, 24)), columns=SPECIES_COLUMNS)
    frame.insert(0, "recording_id", IDS)
    frame.loc[1, "s3"] = np.inf
    with pytest.raises(DataError, match=r"submission frame: row 2 \(recording 'b02'\), column s3: 'inf' is not a finite number"):
        validate_submission(frame, IDS)
    with pytest.raises(DataError, match=r"header column 2 is 's1', expected 's0'"):
        validate_submission(frame[["recording_id", *SPECIES_COLUMNS[1:], "s0"]], IDS)


def test_validate_command_reports_one_line_and_exit_code_2(tmp_path: Path, good: Path):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "sample_submission.csv", [HEADER, *(_row(r, ["0.5"] * 24) for r in IDS)])
    runner = CliRunner()
    result = runner.invoke(validate_cmd, [str(good), "--data", str(data)])
    assert result.exit_code == 0 and "3 recordings" in result.output and "probabilities" in result.output
    # Without --data the real competition ids are expected: these three are not among them.
    result = runner.invoke(validate_cmd, [str(good)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: {good}: row 1 (line 2), column recording_id: 'a01' is not one of the real rfcx-species-audio-detection test ids (3 such rows)"
    )
    result = runner.invoke(validate_cmd, [str(good), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "sample_submission.csv: file not found" in result.output


def test_read_expected_ids_refuses_duplicates(tmp_path: Path):
    _write(tmp_path / "sample_submission.csv", [HEADER, _row("a01"), _row("a01")])
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column recording_id: 'a01' appears again"):
        read_expected_ids(tmp_path)


# ------------------------------------------------------------------------------------------------------
# Writing and scale


def test_write_submission_round_trips_exactly_and_never_leaves_a_bad_file(tmp_path: Path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.random((3, 24)) ** 7, columns=SPECIES_COLUMNS)  # tiny values need full precision
    frame.insert(0, "recording_id", IDS)
    path = write_submission(frame, tmp_path / "out" / "sub.csv", IDS)
    back = validate_submission(path, IDS)
    assert np.array_equal(back[SPECIES_COLUMNS].to_numpy(), frame[SPECIES_COLUMNS].to_numpy())

    before = path.read_bytes()
    broken = frame.copy()
    broken.loc[2, "s0"] = np.nan
    with pytest.raises(DataError, match="row 3"):
        write_submission(broken, path, IDS)
    assert path.read_bytes() == before  # the earlier file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["sub.csv"]  # no temporary file left


@pytest.mark.parametrize("values, scale", [
    ([0.0, 0.5, 1.0], PROBABILITY),
    ([0.5, 0.5], PROBABILITY),
    ([-0.01, 0.5], LOGIT),
    ([0.2, 1.0001], LOGIT),
    ([-3.0, 2.0], LOGIT),
])
def test_detect_scale(values: list[float], scale: str):
    assert detect_scale(np.array(values)) == scale
