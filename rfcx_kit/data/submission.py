"""Submission files: validation, atomic writing, scale detection, and ``rfcx-kit validate``.

A submission is a CSV with the header ``recording_id,s0,...,s23`` (exactly, in this order), one row per
test recording (each expected id exactly once, any row order) and a finite number in every species cell.
Kaggle only ranks the species within each recording (LWLRAP), so any real-valued scale is accepted;
:func:`detect_scale` tells probabilities from logits so that callers never average the two by accident.

Every problem is a :class:`~rfcx_kit.core.errors.DataError` naming the file, the first bad row (1-based data
row and its line in the file) and the column, in the wording of ``reader.py``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.io import atomic_write_csv
from rfcx_kit.core.scale import LOGIT, PROBABILITY, detect_scale
from rfcx_kit.core.species import SPECIES_COLUMNS, Species, competition_test_ids

__all__ = [
    "HEADER",
    "PROBABILITY",
    "LOGIT",
    "detect_scale",
    "read_expected_ids",
    "validate_submission",
    "write_submission",
]

HEADER = ["recording_id", *SPECIES_COLUMNS]


def header_of(n_species: int | None = None) -> list[str]:
    """``recording_id,s0..s{K-1}``: the competition's clip table for ``K`` species (None: its 24)."""
    return HEADER if n_species is None else ["recording_id", *Species.numbered(n_species).columns]


def header_species(path: str | Path) -> int | None:
    """``K`` of a clip table from its header's ``s0..s{K-1}`` columns (None: unreadable or none: the caller's
    validation then names the problem)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    k = 0
    while header is not None and f"s{k}" in header:
        k += 1
    return k or None


def _name_ids(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return f"{len(ids)} ({shown}{', ...' if len(ids) > limit else ''})"


def _read_csv_rows(path: Path, n_species: int | None = None) -> tuple[list[str], np.ndarray, list[int]]:
    """Parse a submission CSV with the ``csv`` module so that every error can name its line.

    Returns ``(ids, values, lines)``: ``ids`` (R,), ``values`` (R, K) float64 with NaN where a cell is not
    a number, ``lines`` the 1-based file line of each row. The header is checked here.
    """
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # utf-8-sig: Excel's BOM is harmless
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    header_want = header_of(n_species)
    ids: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file; expected the header {','.join(header_want)}")
            _check_header(path, header, n_species)
            for cells in reader:
                if not cells:  # a blank line (a trailing newline too many) carries no row
                    continue
                if len(cells) != len(header_want):
                    raise DataError(
                        f"{path}: row {len(rows) + 1} (line {reader.line_num}): {len(cells)} fields, "
                        f"expected {len(header_want)} (recording_id + {len(header_want) - 1} species)"
                    )
                ids.append(cells[0])
                rows.append(cells[1:])
                lines.append(reader.line_num)
        except (csv.Error, UnicodeDecodeError) as exc:
            where = f"line {reader.line_num}" if reader.line_num else "line 1"
            raise DataError(f"{path}: {where}: not a readable CSV ({exc})") from exc
    values = np.full((len(rows), len(header_want) - 1), np.nan)
    for i, cells in enumerate(rows):
        for j, text in enumerate(cells):
            if "_" in text:  # Python's float() reads "1_0" as 10; no CSV reader (Kaggle's included) does
                continue  # stays NaN; validate_submission names the cell
            try:
                values[i, j] = float(text)
            except ValueError:
                pass  # stays NaN; validate_submission names the cell
    return ids, values, lines


def _check_header(where: object, header: Sequence[object], n_species: int | None = None) -> None:
    names = [str(h) for h in header]
    want_all = header_of(n_species)
    if names == want_all:
        return
    spelled = f"{want_all[0]},s0..{want_all[-1]}"
    for k, (got, want) in enumerate(zip(names, want_all)):
        if got != want:
            raise DataError(
                f"{where}: header column {k + 1} is {got!r}, expected {want!r} "
                f"(the header must be {spelled} in this order)"
            )
    raise DataError(
        f"{where}: header has {len(names)} columns, expected {len(want_all)} ({spelled})"
    )


def read_expected_ids(data_dir: str | Path) -> list[str]:
    """Recording ids of ``DATA_DIR/sample_submission.csv`` in file order (header and uniqueness checked)."""
    path = Path(data_dir) / "sample_submission.csv"
    if not path.is_file():
        raise DataError(f"{path}: file not found (--data must be a competition folder holding sample_submission.csv)")
    ids, _, lines = _read_csv_rows(path)
    duplicate = _first_duplicate(path, ids, lines)
    if duplicate is not None:
        raise DataError(duplicate[1])
    return ids


def _first_duplicate(where: object, ids: Sequence[str], lines: Sequence[int] | None) -> tuple[int, str] | None:
    """``(row, message)`` of the first id that repeats an earlier one, or None."""
    seen: dict[str, int] = {}
    for i, rid in enumerate(ids):
        if rid in seen:
            return i, (
                f"{where}: {_row(i, lines)}, column recording_id: {rid!r} appears again "
                f"(first at {_row(seen[rid], lines)}); each recording must appear once"
            )
        seen[rid] = i
    return None


def _row(i: int, lines: Sequence[int] | None, recording: str | None = None) -> str:
    """'row 3 (line 4, recording 'abc')' for files, 'row 3 (...)' for in-memory frames (1-based data rows)."""
    details = ([f"line {lines[i]}"] if lines is not None else []) + (
        [f"recording {recording!r}"] if recording is not None else []
    )
    return f"row {i + 1}" + (f" ({', '.join(details)})" if details else "")


def validate_submission(
    path_or_df: str | Path | pd.DataFrame,
    expected_ids: Iterable[str] | None = None,
    *,
    check_ids: bool = True,
    ids_from: str | None = None,
    n_species: int | None = None,
) -> pd.DataFrame:
    """Check a submission and return it as a frame.

    Args:
        path_or_df: a CSV path or a frame with the columns ``recording_id,s0..s23``.
        expected_ids: the recording ids the file must hold, each exactly once (any order). ``None`` means the
            real competition's 1992 test ids (:func:`rfcx_kit.core.species.competition_test_ids`).
        check_ids: ``False`` checks only the format (header, unique ids, finite numbers), not the id set.
        ids_from: where the expected ids come from, for messages (e.g. a sample_submission.csv path).
        n_species: ``K``, the columns ``s0..s{K-1}`` (None: the competition's 24).

    Returns:
        ``(R, 25)`` frame in the input's row order: ``recording_id`` (str) and ``s0..s23`` (float64).

    Raises:
        DataError: naming the file, the first bad row (and line) and the column.
    """
    columns = header_of(n_species)[1:]
    if isinstance(path_or_df, pd.DataFrame):
        where: object = "submission frame"
        _check_header(where, list(path_or_df.columns), n_species)
        ids = [str(v) for v in path_or_df["recording_id"].tolist()]
        lines = None
        raw_frame = path_or_df[columns]
        values = raw_frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    else:
        where = Path(path_or_df)
        ids, values, lines = _read_csv_rows(where, n_species)
        raw_frame = None
    if not ids:
        raise DataError(f"{where}: no rows after the header")

    # Row-level problems: report the one in the earliest row (a cell, a repeated id, an unknown id).
    problems: list[tuple[int, str]] = []
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])  # row-major: the first bad row, then its first bad cell
        if raw_frame is not None:
            cell = raw_frame.iloc[i, j]
            text = str(cell) if isinstance(cell, (float, np.floating)) else cell  # 'inf', not np.float64(inf)
        else:
            text = _cell_text(where, lines[i], j)  # re-read one line: cheaper than keeping every cell as text
        reason = "is not a finite number" if _parses(text) else "is not a number"
        problems.append((i, f"{where}: {_row(i, lines, ids[i])}, column {columns[j]}: {text!r} {reason}"))
    duplicate = _first_duplicate(where, ids, lines)
    if duplicate is not None:
        problems.append(duplicate)
    expected: list[str] = []
    if check_ids:
        expected = list(competition_test_ids() if expected_ids is None else expected_ids)
        expected_set = set(expected)
        unknown = [i for i, rid in enumerate(ids) if rid not in expected_set]
        if unknown:
            i = unknown[0]
            source = ids_from or ("the competition's test ids" if expected_ids is None else "the expected ids")
            problems.append((i, f"{where}: {_row(i, lines)}, column recording_id: {ids[i]!r} is not one of {source}"
                                f"{f' ({len(unknown)} such rows)' if len(unknown) > 1 else ''}"))
    if problems:
        raise DataError(min(problems)[1])
    if check_ids:
        present = set(ids)
        missing = [rid for rid in expected if rid not in present]
        if missing:
            raise DataError(
                f"{where}: {len(ids)} rows, expected {len(expected)}; missing recording(s) {_name_ids(missing)}"
            )

    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "recording_id", ids)
    return frame


def _parses(text: object) -> bool:
    if isinstance(text, str) and "_" in text:
        return False
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _cell_text(path: object, line: int, column: int) -> str:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # type: ignore[arg-type]
        reader = csv.reader(handle)
        for cells in reader:
            if reader.line_num == line:
                return cells[column + 1]
    return ""  # pragma: no cover - the line was read moments ago


def write_submission(
    df: pd.DataFrame,
    path: str | Path,
    expected_ids: Iterable[str] | None = None,
    n_species: int | None = None,
    *,
    check_ids: bool = True,
) -> Path:
    """Validate ``df`` (as :func:`validate_submission`) and write it atomically to ``path``.

    Values are written with full float precision (``repr``), so reading the file back gives the same
    numbers. A file under ``path`` is therefore always a complete, valid submission.
    """
    frame = validate_submission(df, expected_ids, check_ids=check_ids, n_species=n_species)
    atomic_write_csv(path, frame)
    return Path(path)


ROW_ID = re.compile(r"^(.+)_(\d+)$")  # BirdCLEF's row_id: <soundscape>_<end second>


def validate_rows(path_or_df: str | Path | pd.DataFrame, sample: str | Path) -> pd.DataFrame:
    """Check a row table (BirdCLEF's ``submission.csv``) against its ``sample_submission.csv``; return it.

    The header must be the sample's (``row_id`` then its classes, in its order). Where the sample lists rows, the
    table holds exactly them, in its order; else every ``row_id`` is ``<soundscape>_<end second>`` and appears once.
    Every score is a finite number in [0, 1]: Kaggle scores probabilities, and its ROC-AUC and cmAP are blind to
    a logit's scale but the host's checker is not.

    Raises:
        DataError naming the file, the first bad row (and line) and column.
    """
    sample = Path(sample)
    try:
        template = pd.read_csv(sample, dtype={"row_id": str})
    except Exception as exc:  # noqa: BLE001 - missing, empty, not CSV
        raise DataError(f"{sample}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    if not len(template.columns) or template.columns[0] != "row_id":
        raise DataError(f"{sample}: the first column must be row_id, got {list(template.columns[:3])}")
    where: object
    if isinstance(path_or_df, pd.DataFrame):
        where, frame = "submission frame", path_or_df.copy()
    else:
        where = Path(path_or_df)
        try:
            frame = pd.read_csv(where, dtype={"row_id": str})
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{where}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    header, expected = [str(c) for c in frame.columns], [str(c) for c in template.columns]
    if header != expected:
        at = next((j for j, (a, b) in enumerate(zip(header, expected)) if a != b), min(len(header), len(expected)))
        got = header[at] if at < len(header) else "(nothing)"
        want = expected[at] if at < len(expected) else "(nothing)"
        raise DataError(f"{where}: column {at + 1} is {got!r}, {sample.name} has {want!r} there "
                        f"({len(header)} columns, expected {len(expected)}: row_id and the classes in its order)")
    if not len(frame):
        raise DataError(f"{where}: no rows after the header")
    ids = frame["row_id"].astype(str)
    if len(template):
        wanted = template["row_id"].astype(str)
        if len(ids) != len(wanted) or not (ids.to_numpy() == wanted.to_numpy()).all():
            diff = next((i for i, (a, b) in enumerate(zip(ids, wanted)) if a != b), min(len(ids), len(wanted)))
            got = ids.iloc[diff] if diff < len(ids) else "(no row)"
            want = wanted.iloc[diff] if diff < len(wanted) else "(no row)"
            raise DataError(f"{where}: row {diff + 1} (line {diff + 2}) is {got!r}, {sample.name} has {want!r} there "
                            f"({len(ids)} rows, expected {len(wanted)}, in its order)")
    else:
        bad = ~ids.map(lambda s: bool(ROW_ID.match(s)))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{where}: row {i + 1} (line {i + 2}), column row_id: {ids.iloc[i]!r} is not "
                            "<soundscape>_<end second>")
        twice = ids.duplicated()
        if twice.any():
            i = int(np.flatnonzero(twice.to_numpy())[0])
            raise DataError(f"{where}: row {i + 1} (line {i + 2}), column row_id: {ids.iloc[i]!r} appears twice")
    classes = expected[1:]
    values = frame[classes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        cell = frame[classes].iloc[i, j]
        raise DataError(f"{where}: row {i + 1} (line {i + 2}), column {classes[j]}: {cell!r} is not a probability "
                        "(a finite number in [0, 1])")
    out = pd.DataFrame(values, columns=classes)
    out.insert(0, "row_id", ids.to_numpy())
    return out
