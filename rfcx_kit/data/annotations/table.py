"""What every annotation reader shares: decoding a table's text, reading it as a grid of stripped strings that
counts every line, finding columns by any of their names, numbers and TP/FP words with errors that name the
file, row, line and column, and the one shape every reader returns (:data:`TABLE_COLUMNS`)."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import NAME_RULE, bad_names

TABLE_COLUMNS = ["source", "row", "line", "file_hint", "species", "t_min", "t_max", "f_min", "f_max", "label",
                 "songtype", "confidence"]
# A row's label: a verified presence (TP), a verified absence (FP), a call of no named species (UNKNOWN), or a
# detection nobody has verified yet (CANDIDATE: a Raven table with a Confidence column, as `predict` writes).
TP, FP, UNKNOWN, CANDIDATE = 1, -1, 0, 2
# Words for present / absent in TP/FP columns (compared lowercased and stripped).
TP_WORDS = frozenset({"tp", "1", "+1", "1.0", "true", "yes", "y", "present", "true positive"})
FP_WORDS = frozenset({"fp", "0", "-1", "0.0", "-1.0", "false", "no", "n", "absent", "false positive",
                       "false_positive"})


def row_error(file: object, row: int, line: int, column: str, message: str) -> DataError:
    """``row`` is the 1-based data row, ``line`` the 1-based line of the file (the reader's message format)."""
    return DataError(f"{file}: row {row} (line {line}), field '{column}': {message}")


Check = tuple[str, pd.Series, Callable[[pd.Series], str]]


def first_failure(checks: Sequence[Check]) -> tuple[int, str, Callable[[pd.Series], str]] | None:
    """``(position, field, message)`` of the earliest row failing any check (ties: the first check listed)."""
    first = None
    for name, mask, message in checks:
        hits = np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool))
        if hits.size and (first is None or hits[0] < first[0]):
            first = (int(hits[0]), name, message)
    return first


def raise_first(frame: pd.DataFrame, checks: Sequence[Check], columns: dict[str, dict[str, str]]) -> None:
    """Raise the earliest failure of ``checks`` on a frame with ``source,row,line`` columns.

    ``columns[source]`` maps canonical fields (``t_max``) to the file's own column names (``End Time (s)``) so
    that the message names the column the user sees.
    """
    first = first_failure(checks)
    if first is None:
        return
    i, name, message = first
    at = frame.iloc[i]
    column = columns.get(at["source"], {}).get(name, name)
    raise row_error(at["source"], int(at["row"]), int(at["line"]), column, message(at))


def short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def read_text(path: Path) -> str:
    """The file's text: UTF-16 (Excel's "Unicode text", with its BOM or told by its zero bytes), UTF-8 (a BOM
    dropped), else Latin-1 (Raven on Windows writes the local code page)."""
    data = path.read_bytes()
    head = data[:4096]
    utf16 = ("utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else
             "utf-16-le" if head[1::2].count(0) > len(head) // 4 else
             "utf-16-be" if head[0::2].count(0) > len(head) // 4 else None)
    if utf16 is not None:
        try:
            return data.decode(utf16)
        except UnicodeDecodeError:
            raise DataError(f"{path}: looks like UTF-16 text but does not decode as {utf16}") from None
    if b"\x00" in head:
        raise DataError(f"{path}: holds zero bytes: not a text table (save it as UTF-8 or UTF-16 text)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_grid(path: Path, sep: str, quoting: int) -> pd.DataFrame:
    """A table with a header line as stripped strings (``''`` for empty cells), plus ``_row``/``_line``.

    Blank lines are dropped after reading, so the index still counts every line: data row ``i`` (0-based) sits
    on line ``i + 2``.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty file (expected a header line)")
    try:
        # index_col=False: a row with a trailing separator (one field more than the header) keeps its columns,
        # instead of its first field becoming the index
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            raw = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False,
                              quoting=quoting, index_col=False)
    except Exception as exc:  # noqa: BLE001 - ParserError, ValueError...: one line naming the file
        raise DataError(f"{path}: not a readable table ({short(exc)})") from None
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        # pandas dropped fields past the header's: fine where they are empty (a trailing tab or comma), an error
        # naming the row where they hold something
        records = list(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting))
        width = len(records[0])
        for i, record in enumerate(records[1:], start=1):
            if len(record) > width and any(cell.strip() for cell in record[width:]):
                raise DataError(f"{path}: row {i} (line {i + 1}): {len(record)} fields, but the header names {width}: "
                                f"{record[width:]!r} past the last column")
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.apply(lambda column: column.str.strip())
    raw = raw[(raw != "").any(axis=1)]
    return raw.assign(_row=raw.index + 1, _line=raw.index + 2)


def find(raw: pd.DataFrame, *names: str, exclude: Iterable[str] = ()) -> str | None:
    """The table's own name of the first of ``names`` it has (case-insensitive), or None."""
    exclude = set(exclude)
    lower = {str(c).lower(): c for c in raw.columns if c not in exclude and not str(c).startswith("_")}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def require(raw: pd.DataFrame, path: Path, *names: str, what: str | None = None) -> str:
    column = find(raw, *names)
    if column is None:
        listed = " or ".join(f"'{n}'" for n in names)
        have = ", ".join(c for c in raw.columns if not c.startswith("_"))
        raise DataError(f"{path}: missing column {listed}{f' ({what})' if what else ''}; the columns are: {have}")
    return column


def numbers(raw: pd.DataFrame, path: Path, column: str, required: bool = True) -> pd.Series:
    """The column as floats; an empty cell is NaN where not ``required``, any other non-number an error."""
    text = raw[column]
    value = pd.to_numeric(text, errors="coerce")
    bad = (value.isna() & ((text != "") | required)) | np.isinf(value)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        cell = text.iloc[i]
        raise row_error(path, int(raw["_row"].iloc[i]), int(raw["_line"].iloc[i]), column,
                         "empty (a number is needed)" if cell == "" else f"{cell!r} is not a number")
    return value.astype(float)


def kind_of(text: pd.Series) -> pd.Series:
    """+1 for a present-word, -1 for an absent-word, 0 for anything else (see ``TP_WORDS``/``FP_WORDS``)."""
    lower = text.str.lower()
    return pd.Series(np.where(lower.isin(TP_WORDS), 1, np.where(lower.isin(FP_WORDS), -1, 0)),
                     index=text.index, dtype=np.int8)


def assemble(path: Path, raw: pd.DataFrame, columns: dict[str, str], *, species: pd.Series, t_min: pd.Series,
              t_max: pd.Series, f_min: pd.Series, f_max: pd.Series, label: pd.Series,
              file_hint: pd.Series | str = "", songtype: pd.Series | str = "",
              confidence: pd.Series | float = np.nan) -> pd.DataFrame:
    """The rows in :data:`TABLE_COLUMNS` form, after the checks that need no recording."""
    frame = pd.DataFrame({
        "source": str(path), "row": raw["_row"].astype(np.int64), "line": raw["_line"].astype(np.int64),
        "file_hint": file_hint, "species": species, "t_min": t_min, "t_max": t_max, "f_min": f_min,
        "f_max": f_max, "label": label.astype(np.int8), "songtype": songtype, "confidence": confidence,
    }, index=raw.index)[TABLE_COLUMNS].reset_index(drop=True)
    checks: list[Check] = [  # an empty species is read_table's to judge (--uncertain)
        ("species", bad_names(frame["species"]), lambda r: f"{r['species']!r} {NAME_RULE}"),
        ("t_min", frame["t_min"] < 0, lambda r: f"{r['t_min']:g} s is negative"),
        ("t_max", frame["t_max"] <= frame["t_min"],
         lambda r: f"{r['t_max']:g} s is not after the start ({r['t_min']:g} s)"),
        ("f_min", frame["f_min"] < 0, lambda r: f"{r['f_min']:g} Hz is negative"),
        ("f_max", frame["f_max"] <= frame["f_min"],
         lambda r: f"{r['f_max']:g} Hz is not above the low frequency ({r['f_min']:g} Hz)"),
    ]
    raise_first(frame, checks, {str(path): columns})
    frame.attrs["columns"] = columns
    return frame


def species_column(raw: pd.DataFrame, path: Path, candidates: Sequence[str], given: str | None) -> str:
    """The species column: ``given`` (the user named it), else the first of ``candidates`` the table has."""
    if given is not None:
        return require(raw, path, given, what="the species column named")
    return require(raw, path, *candidates, what="the species; or name the species column")
