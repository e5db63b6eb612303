"""Turn annotation exports (Raven, Audacity, Arbimon, a generic CSV) plus a folder of audio into a data folder.

The folder written by :func:`import_labels` holds:

* ``train_tp.csv`` and ``train_fp.csv``: ``recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max``
  (the competition's box columns; ``train_fp.csv`` is written even when it has no rows);
* ``species.csv``: ``species_id,code,name,f_min,f_max``;
* ``recordings.csv``: ``recording_id,split,path,seconds,sample_rate`` (``path`` absolute, split ``train``/``test``);
* ``import.json``: the inputs, the counts and the sample rates seen.

Reading happens in two steps, so that each reader can be tested alone: :func:`read_table` turns one export
into rows of one shape (``source,row,line,file_hint,species,t_min,t_max,f_min,f_max,label,songtype``);
:func:`import_labels` then matches the rows to audio files, names species with ids, checks every box against
its recording and writes the folder atomically. Every problem is a :class:`~rfcx_kit.core.errors.DataError`
of one line naming the file and, where there is one, the row (``row i (line l), field 'x'``); nothing is
written when any check fails.

Recording ids are audio paths relative to the audio folder, without extension, with ``/`` separators
(``siteA/rec1``), so two sites may share file names.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.core.io import atomic_write_csv, atomic_write_json, check_output_path
from rfcx_kit.core.species import BOX_COLUMNS, NAME_RULE, bad_names
from rfcx_kit.data.audio import AUDIO_SUFFIXES, probe
from rfcx_kit.data.reader import UNKNOWN_FILE, UNKNOWN_SPECIES, first_box_fault

log = logging.getLogger(__name__)

FORMATS = ("raven", "audacity", "arbimon", "csv")
FORMAT_CHOICES = ("auto", *FORMATS)  # auto: each table's own format, told from its contents
AUDIO_EXTENSIONS = AUDIO_SUFFIXES  # the formats every step decodes (data/audio.py)
TABLE_COLUMNS = ["source", "row", "line", "file_hint", "species", "t_min", "t_max", "f_min", "f_max", "label",
                 "songtype", "confidence"]
# A row's label: a verified presence (TP), a verified absence (FP), a call of no named species (UNKNOWN), or a
# detection nobody has verified yet (CANDIDATE: a Raven table with a Confidence column, as `predict` writes).
TP, FP, UNKNOWN, CANDIDATE = 1, -1, 0, 2
CANDIDATE_COLUMNS = ["recording_id", "species_id", "species", "t_min", "t_max", "f_min", "f_max", "confidence",
                     "source"]
SPECIES_OUT_COLUMNS = ["species_id", "code", "name", "f_min", "f_max"]
RECORDING_COLUMNS = ["recording_id", "split", "path", "seconds", "sample_rate"]

# Table files looked for inside an input folder.
_TABLE_GLOBS = {"raven": "*.txt", "audacity": "*.txt", "arbimon": "*.csv", "csv": "*.csv"}
# Species column, when none is named: the first of these the table has (case-insensitive).
_SPECIES_CANDIDATES = {
    "raven": ("Annotation", "Species", "Species_name", "Class", "Label"),
    "arbimon": ("species", "species_name"),
    "csv": ("Annotation", "Species", "Species_name", "Class", "Label"),
}
# Words for present / absent in TP/FP columns (compared lowercased and stripped).
_TP_WORDS = frozenset({"tp", "1", "+1", "1.0", "true", "yes", "y", "present", "true positive"})
_FP_WORDS = frozenset({"fp", "0", "-1", "0.0", "-1.0", "false", "no", "n", "absent", "false positive",
                       "false_positive"})
# Raven: a `FP` column marks a false positive with a "yes"-like value.
_RAVEN_FP_FLAG = frozenset({"1", "1.0", "yes", "y", "true", "x", "fp"})


@dataclass
class ImportResult:
    """What :func:`import_labels` wrote.

    Attributes:
        out: the data folder.
        n_tp, n_fp: rows of ``train_tp.csv`` / ``train_fp.csv``.
        n_unknown, n_candidates: rows of ``train_unknown.csv`` / ``candidates.csv`` (none: not written).
        species: the ``species.csv`` table (``species_id,code,name,f_min,f_max``).
        recordings: the ``recordings.csv`` table (``recording_id,split,path,seconds,sample_rate``).
        sample_rates: ``[(rate_hz, n_recordings), ...]`` over train and test recordings, by rate.
        skipped: label rows left out (Arbimon rows with no 1/0 validation).
        warnings: one line each (mixed sample rates, unlabelled audio, skipped rows, unused species).
    """

    out: Path
    n_tp: int
    n_fp: int
    species: pd.DataFrame
    recordings: pd.DataFrame
    sample_rates: list[tuple[int, int]]
    skipped: int
    warnings: list[str] = field(default_factory=list)
    n_unknown: int = 0
    n_candidates: int = 0


# ----------------------------------------------------------------------------------------------------------------
# errors


# Rows whose species cell is empty or a '?' alone (uncertain rows): left out (counted and named in one line), kept
# as calls of no named species (train_unknown.csv: no species is an implicit negative over them), FP boxes of
# every species (nothing of the list called there), or an error naming the row.
UNCERTAIN = ("skip", "unknown", "fp", "error")


def _row_error(file: object, row: int, line: int, column: str, message: str) -> DataError:
    """``row`` is the 1-based data row, ``line`` the 1-based line of the file (the reader's message format)."""
    return DataError(f"{file}: row {row} (line {line}), field '{column}': {message}")


Check = tuple[str, pd.Series, Callable[[pd.Series], str]]


def _first_failure(checks: Sequence[Check]) -> tuple[int, str, Callable[[pd.Series], str]] | None:
    """``(position, field, message)`` of the earliest row failing any check (ties: the first check listed)."""
    first = None
    for name, mask, message in checks:
        hits = np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool))
        if hits.size and (first is None or hits[0] < first[0]):
            first = (int(hits[0]), name, message)
    return first


def _raise_first(frame: pd.DataFrame, checks: Sequence[Check], columns: dict[str, dict[str, str]]) -> None:
    """Raise the earliest failure of ``checks`` on a frame with ``source,row,line`` columns.

    ``columns[source]`` maps canonical fields (``t_max``) to the file's own column names (``End Time (s)``) so
    that the message names the column the user sees.
    """
    first = _first_failure(checks)
    if first is None:
        return
    i, name, message = first
    at = frame.iloc[i]
    column = columns.get(at["source"], {}).get(name, name)
    raise _row_error(at["source"], int(at["row"]), int(at["line"]), column, message(at))


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


# ----------------------------------------------------------------------------------------------------------------
# reading one table


def _read_text(path: Path) -> str:
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


def _read_grid(path: Path, sep: str, quoting: int) -> pd.DataFrame:
    """A table with a header line as stripped strings (``''`` for empty cells), plus ``_row``/``_line``.

    Blank lines are dropped after reading, so the index still counts every line: data row ``i`` (0-based) sits
    on line ``i + 2``.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    text = _read_text(path)
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
        raise DataError(f"{path}: not a readable table ({_short(exc)})") from None
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


def _find(raw: pd.DataFrame, *names: str, exclude: Iterable[str] = ()) -> str | None:
    """The table's own name of the first of ``names`` it has (case-insensitive), or None."""
    exclude = set(exclude)
    lower = {str(c).lower(): c for c in raw.columns if c not in exclude and not str(c).startswith("_")}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _require(raw: pd.DataFrame, path: Path, *names: str, what: str | None = None) -> str:
    column = _find(raw, *names)
    if column is None:
        listed = " or ".join(f"'{n}'" for n in names)
        have = ", ".join(c for c in raw.columns if not c.startswith("_"))
        raise DataError(f"{path}: missing column {listed}{f' ({what})' if what else ''}; the columns are: {have}")
    return column


def _species_column(raw: pd.DataFrame, path: Path, fmt: str, species_column: str | None) -> str:
    if species_column is not None:
        return _require(raw, path, species_column, what="the species column named")
    return _require(raw, path, *_SPECIES_CANDIDATES[fmt], what="the species; or name the species column")


def _numbers(raw: pd.DataFrame, path: Path, column: str, required: bool = True) -> pd.Series:
    """The column as floats; an empty cell is NaN where not ``required``, any other non-number an error."""
    text = raw[column]
    value = pd.to_numeric(text, errors="coerce")
    bad = (value.isna() & ((text != "") | required)) | np.isinf(value)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        cell = text.iloc[i]
        raise _row_error(path, int(raw["_row"].iloc[i]), int(raw["_line"].iloc[i]), column,
                         "empty (a number is needed)" if cell == "" else f"{cell!r} is not a number")
    return value.astype(float)


def _kind(text: pd.Series) -> pd.Series:
    """+1 for a present-word, -1 for an absent-word, 0 for anything else (see ``_TP_WORDS``/``_FP_WORDS``)."""
    lower = text.str.lower()
    return pd.Series(np.where(lower.isin(_TP_WORDS), 1, np.where(lower.isin(_FP_WORDS), -1, 0)),
                     index=text.index, dtype=np.int8)


def _assemble(path: Path, raw: pd.DataFrame, columns: dict[str, str], *, species: pd.Series, t_min: pd.Series,
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
    _raise_first(frame, checks, {str(path): columns})
    frame.attrs["columns"] = columns
    return frame


def _read_raven(path: Path, species_column: str | None) -> pd.DataFrame:
    raw = _read_grid(path, "\t", csv.QUOTE_NONE)  # Raven never quotes; an annotation may hold a '"'
    begin = _require(raw, path, "Begin Time (s)")
    end = _require(raw, path, "End Time (s)")
    name = _species_column(raw, path, "raven", species_column)
    duplicates = 0
    view = _find(raw, "View")
    if view is not None:
        # Raven's default export lists each selection once per view: keep the Spectrogram rows (all rows if
        # the table only has Waveform views), one per Selection. A view copy repeats its selection's times, band,
        # species and file: rows that share a Selection id but differ in any of those are other calls, and kept.
        waveform = raw[view].str.lower().str.startswith("waveform")
        kept = raw[~waveform] if (~waveform).any() else raw
        selection = _find(raw, "Selection")
        if selection is not None:
            same = [selection, begin, end, name] + [c for c in (_find(raw, "Low Freq (Hz)"),
                                                                _find(raw, "High Freq (Hz)"), _find(raw, "Begin File"),
                                                                _find(raw, "Begin Path")) if c is not None]
            kept = kept.drop_duplicates(subset=same, keep="first")
        duplicates = len(raw) - len(kept)
        raw = kept
    low, high = _find(raw, "Low Freq (Hz)"), _find(raw, "High Freq (Hz)")
    begin_s, end_s = _numbers(raw, path, begin), _numbers(raw, path, end)
    columns = {"t_min": begin, "t_max": end, "f_min": low or "Low Freq (Hz)", "f_max": high or "High Freq (Hz)",
               "species": name}
    offset = _find(raw, "File Offset (s)")
    if offset is not None:
        # Begin Time counts from the start of the first file of a multi-file listing; File Offset from the
        # start of the row's own file.
        t_min = _numbers(raw, path, offset)
        t_max = t_min + (end_s - begin_s)
        columns["t_min"] = offset
    else:
        t_min, t_max = begin_s, end_s
    nan = pd.Series(np.nan, index=raw.index)
    f_min = _numbers(raw, path, low, required=False) if low else nan
    f_max = _numbers(raw, path, high, required=False) if high else nan

    # The recording: Begin File (a file name), else Begin Path (a full path on the annotator's machine), else
    # "" = the table's own file name.
    hint: pd.Series | str = ""
    begin_file, begin_path = _find(raw, "Begin File"), _find(raw, "Begin Path")
    if begin_file is not None:
        hint = raw[begin_file]
        columns["file_hint"] = begin_file
    if begin_path is not None:
        hint = raw[begin_path] if begin_file is None else hint.where(hint != "", raw[begin_path])
        columns.setdefault("file_hint", begin_path)

    # TP/FP: a trailing '?' on the species, or a Kind/Type column saying fp/absent/0, or an FP column saying
    # yes/1/x; otherwise TP.
    species = raw[name]
    doubtful = species.str.endswith("?")
    species = species.str.rstrip("?").str.strip()
    false_positive = doubtful
    marker = _find(raw, "Kind", "Type", exclude=[name])
    if marker is not None:
        false_positive = false_positive | raw[marker].str.lower().isin(_FP_WORDS)
    flag = _find(raw, "FP", exclude=[name])
    if flag is not None:
        false_positive = false_positive | raw[flag].str.lower().isin(_RAVEN_FP_FLAG)
    label = pd.Series(np.where(false_positive, FP, TP), index=raw.index)
    score = _find(raw, "Confidence", "Score", exclude=[name])
    confidence: pd.Series | float = np.nan
    if score is not None:
        # a detector's table (`predict --format raven`, BirdNET): its rows are candidates, unless a person marked
        # one true (a Kind/Type of tp, ...) or false (fp, ...) after listening
        confidence = _numbers(raw, path, score, required=False)
        verified_tp = raw[marker].str.lower().isin(_TP_WORDS) if marker is not None else False
        label = pd.Series(np.where(false_positive, FP, np.where(verified_tp, TP, CANDIDATE)), index=raw.index)
        columns["confidence"] = score
    frame = _assemble(path, raw, columns, species=species, t_min=t_min, t_max=t_max, f_min=f_min, f_max=f_max,
                      label=label, file_hint=hint, confidence=confidence)
    frame.attrs["duplicates"] = duplicates
    return frame


def _read_audacity(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    lines = pd.Series(_read_text(path).splitlines() or [""], dtype=object)  # an empty file: one blank line
    parts = lines.str.split("\t", n=2, expand=True).reindex(columns=[0, 1, 2]).fillna("")
    parts = parts.apply(lambda column: column.str.strip())
    parts.columns = ["start", "end", "label"]
    parts["_line"] = parts.index + 1
    blank = (parts[["start", "end", "label"]] == "").all(axis=1)
    is_freq = parts["start"] == "\\"
    labels = parts[~blank & ~is_freq].copy()
    labels["_row"] = np.arange(1, len(labels) + 1)
    freq = parts[is_freq].rename(columns={"end": "f_low", "label": "f_high"}).copy()
    # A frequency line carries the range of the label line just above it.
    orphan = ~(freq.index - 1).isin(labels.index)
    if orphan.any():
        line = int(freq["_line"][orphan].iloc[0])
        raise DataError(f"{path}: line {line}: a frequency line ('\\<tab>f_low<tab>f_high') must follow a label line")
    freq.index = freq.index - 1
    freq["_row"] = labels.loc[freq.index, "_row"]
    f_low = _numbers(freq, path, "f_low").reindex(labels.index)
    f_high = _numbers(freq, path, "f_high").reindex(labels.index)
    # Audacity writes -1 for an undefined edge of the spectral selection.
    f_low, f_high = f_low.where(f_low >= 0), f_high.where(f_high >= 0)
    columns = {"t_min": "start", "t_max": "end", "f_min": "f_low", "f_max": "f_high", "species": "label"}
    species = labels["label"]
    doubtful = species.str.endswith("?")
    label = pd.Series(np.where(doubtful, -1, 1), index=labels.index)
    return _assemble(path, labels, columns, species=species.str.rstrip("?").str.strip(),
                     t_min=_numbers(labels, path, "start"), t_max=_numbers(labels, path, "end"), f_min=f_low,
                     f_max=f_high, label=label)


def _read_arbimon(path: Path, species_column: str | None) -> pd.DataFrame:
    raw = _read_grid(path, ",", csv.QUOTE_MINIMAL)
    recording = _require(raw, path, "recording")
    name = _species_column(raw, path, "arbimon", species_column)
    validated = _require(raw, path, "validated", "present", what="1 = present, 0 = absent")
    kind = _kind(raw[validated])
    # Rows not (yet) validated, or validated with another value, are left out and counted.
    skipped = int((kind == 0).sum())
    raw, kind = raw[kind != 0], kind[kind != 0]
    if _find(raw, "x1") is not None or _find(raw, "t_min") is None:
        t_cols = (_require(raw, path, "x1", "t_min"), _require(raw, path, "x2", "t_max"))
        f_cols = (_find(raw, "y1", "f_min"), _find(raw, "y2", "f_max"))
    else:
        t_cols = (_require(raw, path, "t_min"), _require(raw, path, "t_max"))
        f_cols = (_find(raw, "f_min"), _find(raw, "f_max"))
    nan = pd.Series(np.nan, index=raw.index)
    songtype = _find(raw, "songtype", "songtype_id", "songtype_name")
    columns = {"t_min": t_cols[0], "t_max": t_cols[1], "f_min": f_cols[0] or "y1", "f_max": f_cols[1] or "y2",
               "species": name, "file_hint": recording}
    frame = _assemble(
        path, raw, columns, species=raw[name], t_min=_numbers(raw, path, t_cols[0]),
        t_max=_numbers(raw, path, t_cols[1]),
        f_min=_numbers(raw, path, f_cols[0], required=False) if f_cols[0] else nan,
        f_max=_numbers(raw, path, f_cols[1], required=False) if f_cols[1] else nan,
        label=kind, file_hint=raw[recording], songtype=raw[songtype] if songtype else "",
    )
    hint_missing = frame["file_hint"] == ""
    _raise_first(frame, [("file_hint", hint_missing, lambda r: "empty recording name")], {str(path): columns})
    frame.attrs["skipped"] = skipped
    return frame


def _read_csv(path: Path, species_column: str | None) -> pd.DataFrame:
    raw = _read_grid(path, ",", csv.QUOTE_MINIMAL)
    recording = _require(raw, path, "recording", "recording_id")
    name = _species_column(raw, path, "csv", species_column)
    if _find(raw, "t_min") is not None or _find(raw, "start") is None:
        t_cols = (_require(raw, path, "t_min", "start"), _require(raw, path, "t_max", "end"))
    else:
        t_cols = (_require(raw, path, "start"), _require(raw, path, "end"))
    f_cols = (_find(raw, "f_min"), _find(raw, "f_max"))
    nan = pd.Series(np.nan, index=raw.index)
    columns = {"t_min": t_cols[0], "t_max": t_cols[1], "f_min": f_cols[0] or "f_min", "f_max": f_cols[1] or "f_max",
               "species": name, "file_hint": recording}
    # TP/FP: the first of kind, tp, label that is not the species column; no such column: every row is TP.
    kind_column = _find(raw, "kind", "tp", "label", exclude=[name])
    if kind_column is not None:
        label = _kind(raw[kind_column])
        bad = label == 0
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _row_error(path, int(raw["_row"].iloc[i]), int(raw["_line"].iloc[i]), kind_column,
                             f"{raw[kind_column].iloc[i]!r} is neither TP (tp, 1, present) nor FP (fp, 0, -1, absent)")
    else:
        label = pd.Series(1, index=raw.index)
    frame = _assemble(
        path, raw, columns, species=raw[name], t_min=_numbers(raw, path, t_cols[0]),
        t_max=_numbers(raw, path, t_cols[1]),
        f_min=_numbers(raw, path, f_cols[0], required=False) if f_cols[0] else nan,
        f_max=_numbers(raw, path, f_cols[1], required=False) if f_cols[1] else nan,
        label=label, file_hint=raw[recording],
    )
    _raise_first(frame, [("file_hint", frame["file_hint"] == "", lambda r: "empty recording")], {str(path): columns})
    return frame


def detect_format(path: Path) -> str | None:
    """A table's format told from its first line: ``raven`` (tab-separated with ``Begin Time (s)``), ``audacity``
    (no header: two numbers and a label, tab-separated), ``arbimon`` (CSV with ``validated``/``present``, or
    ``recording`` with ``x1``), ``csv`` (CSV with ``recording``/``recording_id``); None: none of them."""
    try:
        text = _read_text(path)
    except OSError:
        return None
    first = next((line for line in text.splitlines() if line.strip()), "")
    fields = [f.strip().lower() for f in first.split("\t")]
    if len(fields) > 1 and "begin time (s)" in fields:
        return "raven"
    if len(fields) in (2, 3):
        try:
            float(fields[0]), float(fields[1])
            return "audacity"
        except ValueError:
            pass
    columns = {c.strip().strip('"').lower() for c in next(csv.reader([first]), [])}
    if "validated" in columns or "present" in columns or {"recording", "x1"} <= columns:
        return "arbimon"
    if columns & {"recording", "recording_id"}:
        return "csv"
    return None


def read_table(path: str | Path, fmt: str, species_column: str | None = None, uncertain: str = "skip") -> pd.DataFrame:
    """Read one annotation export into rows of one shape, before any matching to audio.

    Formats (``fmt``):

    * ``raven``: a Raven Pro selection table (tab-separated; ``Begin Time (s)``, ``End Time (s)`` required;
      ``Low Freq (Hz)``, ``High Freq (Hz)``, ``View``, ``Selection``, ``Begin File``, ``Begin Path``,
      ``File Offset (s)`` used when present). With a ``View`` column only non-Waveform rows are kept, one per
      ``Selection`` (Raven lists every selection once per view). With ``File Offset (s)`` the box is
      ``[offset, offset + (end - begin)]``.
    * ``audacity``: a label-track export, no header: ``start<TAB>end<TAB>label`` lines, each optionally
      followed by ``\\<TAB>f_low<TAB>f_high`` (negative = undefined). Fields are named ``start``, ``end``,
      ``label``, ``f_low``, ``f_high`` in errors. ``species_column`` is not used.
    * ``arbimon``: an Arbimon validation export (CSV): ``recording``, ``species``/``species_name``, optional
      ``songtype``, ``x1,x2,y1,y2`` (s, s, Hz, Hz) or ``t_min,t_max,f_min,f_max``, and ``validated`` (or
      ``present``): 1 = TP, 0 = FP; rows with any other value (empty: not validated) are left out and counted
      in ``frame.attrs["skipped"]``.
    * ``auto``: each table's format from its first line (:func:`detect_format`).
    * ``csv``: ``recording`` (path relative to the audio folder, extension optional), a species column,
      ``t_min,t_max`` (or ``start,end``), optional ``f_min,f_max``, and an optional TP/FP column: the first of
      ``kind``, ``tp``, ``label`` that is not the species column, holding ``tp``/``1``/``present`` or
      ``fp``/``0``/``-1``/``absent`` (anything else is an error); without one every row is TP.

    Species column: ``species_column`` if given (case-insensitive), else the first of ``Annotation``,
    ``Species``, ``Species_name``, ``Class``, ``Label`` (Arbimon: ``species``, ``species_name``).

    TP/FP markers for free-text species (raven, audacity): a trailing ``?`` on the species makes the row FP
    (the ``?`` is dropped from the name). Raven also reads the first of a ``Kind``/``Type`` column (FP when
    it says ``fp``, ``false positive``, ``absent``, ``no``, ``false``, ``0`` or ``-1``) and an ``FP`` column
    (FP when it says ``1``, ``yes``, ``true``, ``x`` or ``fp``). Every other row is TP, except in a Raven table
    with a ``Confidence`` (or ``Score``) column, a detector's output such as ``predict --format raven`` writes:
    its rows are candidates (label 2, with their confidence) unless the Kind/Type column says TP or FP.

    Uncertain rows (an empty species cell, or a ``?`` alone): ``uncertain`` ``skip`` leaves them out (counted in
    ``frame.attrs["uncertain"]``, their file and row in ``frame.attrs["uncertain_rows"]``), ``unknown`` keeps them
    as calls of no named species (label 0), ``fp`` as FP boxes of every species (label -1, species ``""``),
    ``error`` refuses the first one.

    Returns:
        A frame with :data:`TABLE_COLUMNS`: ``source`` (the path as given), ``row`` (1-based data row of the
        file, as errors report it), ``line`` (1-based line of the file), ``file_hint`` (the file the row names
        — Raven ``Begin File``/``Begin Path``, the ``recording`` column — or ``""``: the table's own file name
        names the recording), ``species`` (stripped name), ``t_min``/``t_max`` (s), ``f_min``/``f_max`` (Hz,
        NaN where the table has none), ``label`` (int8 +1 TP / -1 FP), ``songtype`` (Arbimon's text, else
        ``""``). ``frame.attrs`` holds ``columns`` (field -> the file's column name), ``skipped`` and
        ``duplicates`` (Raven rows dropped as Waveform/duplicate views).

    Raises:
        DataError: a missing column, a non-number, a negative start, an end not after its start, a negative
        or inverted frequency range, an empty species — naming the file, row, line and column.
    """
    path = Path(path)
    if fmt not in FORMAT_CHOICES:
        raise DataError(f"unknown label format {fmt!r}; expected one of {', '.join(FORMAT_CHOICES)}")
    if fmt == "auto":
        found = detect_format(path)
        if found is None:
            raise DataError(f"{path}: not a Raven, Audacity, Arbimon or CSV label table (its first line names none "
                            "of their columns); give --format")
        fmt = found
    if fmt == "raven":
        frame = _read_raven(path, species_column)
    elif fmt == "audacity":
        frame = _read_audacity(path)
    elif fmt == "arbimon":
        frame = _read_arbimon(path, species_column)
    else:
        frame = _read_csv(path, species_column)
    frame.attrs.setdefault("skipped", 0)
    frame.attrs.setdefault("duplicates", 0)
    if uncertain not in UNCERTAIN:
        raise DataError(f"unknown --uncertain {uncertain!r}; expected one of {', '.join(UNCERTAIN)}")
    empty = frame["species"] == ""
    if uncertain == "error":
        _raise_first(frame, [("species", empty, lambda r: "empty species name (nothing, or a '?' alone): name it, "
                                                            "or say what such rows are with --uncertain "
                                                            "skip|unknown|fp")],
                     {str(path): frame.attrs["columns"]})
    attrs = dict(frame.attrs)
    attrs.update(format=fmt, uncertain=int(empty.sum()),
                 uncertain_rows=[f"{path.name}:{r}" for r in frame.loc[empty, "row"].head(3)])
    if uncertain == "skip":
        frame = frame[~empty].reset_index(drop=True)
    else:
        frame.loc[empty, "label"] = np.int8(UNKNOWN if uncertain == "unknown" else FP)
    frame.attrs.update(attrs)
    return frame


# ----------------------------------------------------------------------------------------------------------------
# audio


def _strip_audio_ext(name: str) -> str:
    """``rec1.wav`` -> ``rec1``; a name without an audio extension (``rec.2020``) is kept whole."""
    stem, dot, ext = name.rpartition(".")
    return stem if dot and f".{ext.lower()}" in AUDIO_EXTENSIONS else name


class _AudioFiles:
    """The audio files under one folder and the ways to look them up (by id, relative path, name, stem)."""

    def __init__(self, root: Path, split: str, exclude: Path | None = None) -> None:
        if not root.is_dir():
            raise DataError(f"{root}: audio folder not found" if not root.exists() else f"{root}: not a folder")
        found = []
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            # hidden files (macOS' ._rec1.wav) are not recordings
            if path.suffix.lower() not in AUDIO_EXTENSIONS or any(p.startswith(".") for p in rel.parts):
                continue
            if exclude is not None and path.resolve().is_relative_to(exclude):
                continue  # the test folder sits inside the audio folder: its files are test recordings
            if path.is_file():
                found.append(rel.as_posix())
        found.sort()
        if not found:
            what = "the test folder" if split == "test" else "the audio folder"
            besides = f" besides the test folder {exclude}" if exclude is not None and split == "train" else ""
            raise DataError(f"{root}: {what} holds no audio files{besides} ({', '.join(AUDIO_EXTENSIONS)}, searched "
                            "recursively; hidden files are passed over)")
        self.root, self.split = root, split
        frame = pd.DataFrame({"rel": pd.Series(found, dtype=object)})
        frame["recording_id"] = frame["rel"].str.rsplit(".", n=1).str[0]  # every file has an audio extension
        frame["name"] = frame["rel"].str.rsplit("/", n=1).str[-1]
        frame["stem"] = frame["recording_id"].str.rsplit("/", n=1).str[-1]
        frame["folder"] = frame["rel"].str.rpartition("/")[0]
        dup = frame["recording_id"].duplicated(keep=False)
        if dup.any():
            rid = frame["recording_id"][dup].iloc[0]
            both = ", ".join(frame["rel"][frame["recording_id"] == rid])
            raise DataError(f"{root}: audio files {both} give the same recording id {rid!r} (an id is the path "
                            f"without extension): remove or rename one")
        self.frame = frame
        self.by_rel = dict(zip(frame["rel"], frame.index))
        self.by_id = dict(zip(frame["recording_id"], frame.index))
        self.by_name = frame.groupby("name").groups
        self.by_stem = frame.groupby("stem").groups

    def path(self, i: int) -> Path:
        return self.root / self.frame["rel"].iloc[i]

    def _prefer_folder(self, found: list[int], folder: str) -> list[int]:
        same = [i for i in found if self.frame["folder"].iloc[i] == folder]
        return same if same else found

    def for_hint(self, hint: str, folder: str) -> list[int]:
        """Files a table row names (``rec1.wav``, ``siteA/rec1``, ``C:\\x\\siteA\\rec1.wav``): by relative path
        (with or without extension), else by name (with or without extension); several: those whose relative
        path ends the hint, then those in the table's own relative folder."""
        h = hint.replace("\\", "/").strip()
        while h.startswith("./"):
            h = h[2:]
        if h in self.by_rel:
            return [self.by_rel[h]]
        if _strip_audio_ext(h) in self.by_id:
            return [self.by_id[_strip_audio_ext(h)]]
        base = h.rsplit("/", 1)[-1]
        found = list(self.by_name.get(base, [])) or list(self.by_stem.get(_strip_audio_ext(base), []))
        if len(found) > 1 and "/" in h:
            # the hint names folders: only files whose path ends it are candidates; none (``siteC/rec1.wav`` beside
            # siteA/rec1 and siteB/rec1) is an error, never the table's own folder's file
            tail = [i for i in found if _strip_audio_ext(h).endswith("/" + self.frame["recording_id"].iloc[i])]
            return tail or found
        return self._prefer_folder(found, folder) if len(found) > 1 else found

    def table_stems(self, table_name: str) -> list[str]:
        """Prefixes of the table's file name that end at a '.', '_', '-' or ' ' (or at its end), longest first."""
        cuts = [i for i, ch in enumerate(table_name) if ch in "._- "] + [len(table_name)]
        return sorted({table_name[:i] for i in cuts if i > 0}, key=len, reverse=True)

    def for_table(self, table_name: str, folder: str) -> list[int]:
        """Files whose stem starts the table's name (``rec1`` for ``rec1.Table.1.selections.txt``): the longest
        such stem; several files with it: those in the table's own relative folder."""
        for stem in self.table_stems(table_name):
            if stem in self.by_stem:
                return self._prefer_folder(list(self.by_stem[stem]), folder)
        return []


def _probe(paths: list[Path]) -> tuple[list[float], list[int]]:
    """Duration (s) and sample rate of each file (``data/audio.probe``: its header; an MP3 decoded and counted;
    a file without samples is an error naming it)."""
    found = [probe(path) for path in paths]
    return [f[0] for f in found], [f[1] for f in found]


# ----------------------------------------------------------------------------------------------------------------
# species


def _read_species_table(path: Path) -> pd.DataFrame:
    """``name`` (required), ``species_id``, ``code``, ``f_min``, ``f_max`` (optional) -> those five columns.

    Without ``species_id`` the ids follow the table's row order (0, 1, ...). Empty codes/frequencies are
    NaN here and filled later.
    """
    raw = _read_grid(path, ",", csv.QUOTE_MINIMAL)
    name = _require(raw, path, "name")
    table = pd.DataFrame({"source": str(path), "row": raw["_row"], "line": raw["_line"], "name": raw[name]})
    ids = _find(raw, "species_id")
    table["species_id"] = _numbers(raw, path, ids) if ids else np.arange(len(raw), dtype=float)
    code = _find(raw, "code")
    table["code"] = raw[code].replace("", np.nan) if code else np.nan
    for edge in ("f_min", "f_max"):
        column = _find(raw, edge)
        table[edge] = _numbers(raw, path, column, required=False) if column else np.nan
    table = table.reset_index(drop=True)
    sid = table["species_id"]
    checks: list[Check] = [
        ("name", table["name"] == "", lambda r: "empty species name"),
        ("name", bad_names(table["name"]), lambda r: f"{r['name']!r} {NAME_RULE}"),
        ("name", table["name"].duplicated(), lambda r: f"{r['name']!r} appears twice"),
        ("species_id", (sid != sid.round()) | (sid < 0), lambda r: f"{r['species_id']:g} is not an id 0, 1, ..."),
        ("species_id", sid.duplicated(), lambda r: f"{r['species_id']:g} appears twice"),
        ("code", table["code"].notna() & table["code"].duplicated(), lambda r: f"{r['code']!r} appears twice"),
        ("f_max", table["f_max"] <= table["f_min"], lambda r: f"{r['f_max']:g} Hz is not above f_min"),
    ]
    _raise_first(table, checks, {str(path): {"name": name, "species_id": ids or "species_id", "code": code or "code"}})
    table["species_id"] = table["species_id"].astype(np.int64)
    return table[SPECIES_OUT_COLUMNS]


def _codes(names: pd.Series, taken: pd.Series) -> pd.Series:
    """Short identifiers for names without a code: lowercased, runs of non-alphanumerics -> '_', unique
    (``_2``, ``_3``... appended) and distinct from the codes already ``taken``."""
    base = names.str.lower().str.replace(r"[^0-9a-z]+", "_", regex=True).str.strip("_").replace("", "species")
    used = set(taken.dropna())
    out = []
    for code in base:  # a per-species loop (tens of names): uniqueness depends on the ones before
        candidate, n = code, 1
        while candidate in used:
            n += 1
            candidate = f"{code}_{n}"
        used.add(candidate)
        out.append(candidate)
    return pd.Series(out, index=names.index, dtype=object)


# ----------------------------------------------------------------------------------------------------------------
# the import


def _tables(inputs: Sequence[Path], fmt: str) -> list[tuple[Path, str]]:
    """``(table, folder)`` per table file: an input file is one table (folder ``""``); an input folder gives
    its table files, recursively (raven/audacity ``*.txt``, arbimon/csv ``*.csv``; auto: those of both whose
    first line is a label table's, :func:`detect_format`: a README.txt beside them is not one), with their folder
    relative to it (which picks among audio files sharing a name)."""
    tables: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    globs = ("*.txt", "*.csv") if fmt == "auto" else (_TABLE_GLOBS[fmt],)
    for root in inputs:
        if root.is_dir():
            found = sorted(p for g in globs for p in root.rglob(g)
                           if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
                           and (fmt != "auto" or detect_format(p) is not None))
            pairs = [(p, p.parent.relative_to(root).as_posix().strip(".")) for p in found]
        elif root.exists():
            pairs = [(root, "")]
        else:
            raise DataError(f"{root}: label file or folder not found")
        for path, folder in pairs:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                tables.append((path, folder))
    return tables


def _folder_in(audio: Path, table: Path, folder: str) -> str:
    """The table's folder relative to the audio root where it lies inside it, else ``folder``."""
    try:
        return table.resolve().parent.relative_to(audio.resolve()).as_posix().strip(".")
    except ValueError:
        return folder


def _check_out(out: Path, overwrite: bool, keep: dict[str, Path] | None = None) -> None:
    """Refuse an ``out`` that is not a folder, that is not empty (without ``overwrite``), or whose replacement
    would delete or mix with what the import reads: ``keep`` (name -> path: the audio folder, the test folder,
    the tables) may not be ``out``, lie inside it, or hold it (``out`` inside the audio tree would be read back
    as recordings by the next import)."""
    try:
        check_output_path(out, keep or {})
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder exists and is not empty (overwrite to replace it)")


def _match_recordings(labels: pd.DataFrame, tables: list[tuple[Path, str]], audio: _AudioFiles,
                      columns: dict[str, dict[str, str]]) -> pd.Series:
    """The recording id of every label row (aligned with ``labels``); an unknown or ambiguous file is an error.

    One look-up per distinct (table, file_hint), not per row.
    """
    keys = labels[["table", "file_hint"]].drop_duplicates()
    ids = []
    for table, hint in keys.itertuples(index=False):
        path, folder = tables[table]
        found = audio.for_hint(hint, folder) if hint else audio.for_table(path.name, folder)
        if len(found) == 1:
            ids.append(audio.frame["recording_id"].iloc[found[0]])
            continue
        listed = ", ".join(audio.frame["rel"].iloc[i] for i in found)
        if not hint:
            if found:
                raise DataError(f"{path}: the table's name matches several audio files under {audio.root}: {listed}; "
                                f"pass the labels folder laid out like the audio folder, or name the file per row "
                                f"(Begin File)")
            tried = ", ".join(reversed(audio.table_stems(path.name)))
            raise DataError(f"{path}: cannot find this table's recording: no audio file "
                            f"({'/'.join(AUDIO_EXTENSIONS)}) under {audio.root} has a stem that starts the table's "
                            f"name (looked for: {tried})")
        at = labels[(labels["table"] == table) & (labels["file_hint"] == hint)].iloc[0]
        column = columns[at["source"]].get("file_hint", "recording")
        what = (f"matches several audio files under {audio.root}: {listed}" if found else
                f"no audio file under {audio.root} has this relative path or file name (with or without extension)")
        raise _row_error(at["source"], int(at["row"]), int(at["line"]), column, f"{hint!r}: {what}")
    keys = keys.assign(recording_id=ids)
    return labels[["table", "file_hint"]].merge(keys, on=["table", "file_hint"], how="left")["recording_id"].set_axis(
        labels.index)


def _songtype_ids(labels: pd.DataFrame) -> pd.Series:
    """Per species, its distinct songtypes -> 1, 2, ... (no songtype first, then numbers, then text)."""
    pairs = labels[["species_id", "songtype"]].drop_duplicates()
    pairs = pairs.assign(_given=pairs["songtype"] != "", _number=pd.to_numeric(pairs["songtype"], errors="coerce"))
    pairs = pairs.sort_values(["species_id", "_given", "_number", "songtype"], na_position="last")
    pairs["songtype_id"] = pairs.groupby("species_id").cumcount() + 1
    merged = labels[["species_id", "songtype"]].merge(pairs[["species_id", "songtype", "songtype_id"]],
                                                      on=["species_id", "songtype"], how="left")
    return merged["songtype_id"].astype(np.int64).set_axis(labels.index)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def clean_leftovers(out: Path) -> list[Path]:
    """What a killed import left beside ``out``: its half-written ``.{name}.tmp-PID-*`` folder is removed, and a
    previous ``out`` it had moved aside (``.{name}.old-PID-*``) is put back where ``out`` is missing. Only a dead
    process's leftovers are touched (the PID in the name); returns what was removed or restored."""
    done = []
    if not out.parent.is_dir():
        return done
    for path in sorted(out.parent.glob(f".{out.name}.*-*-*")):
        kind, _, rest = path.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            os.replace(path, out)  # killed between the two renames: the previous folder comes back
        else:
            shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def _write_folder(out: Path, files: dict[str, pd.DataFrame], summary: dict) -> None:
    """Write every file into ``.{out.name}.tmp-PID-XXXX`` beside ``out``, then rename that folder onto ``out``
    (an existing ``out`` is first renamed aside and removed once the new one is in place). A killed import's
    leftovers are cleaned by the next one (:func:`clean_leftovers`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual mode
    old: Path | None = None
    try:
        for name, frame in files.items():
            atomic_write_csv(tmp / name, frame)
        atomic_write_json(tmp / "import.json", summary)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{tmp.name.rsplit('-', 1)[-1]}"
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                old = None
                raise
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _read_all(tables: list[tuple[Path, str]], inputs: list[Path], fmt: str, species_column: str | None,
              uncertain: str) -> tuple[pd.DataFrame, dict[str, dict[str, str]], dict[str, Any]]:
    """Step 1: every table read and checked alone -> all rows (``table``: its index), each file's column names, and
    the counts (skipped, duplicates, uncertain rows and the first few named, formats)."""
    frames, columns = [], {}
    read: dict[str, Any] = {"skipped": 0, "duplicates": 0, "uncertain_rows": 0, "uncertain_named": [], "formats": {}}
    for i, (path, _) in enumerate(tables):
        frame = read_table(path, fmt, species_column, uncertain)
        columns[str(path)] = frame.attrs["columns"]
        read["skipped"] += frame.attrs["skipped"]
        read["uncertain_rows"] += frame.attrs["uncertain"]
        read["uncertain_named"] += frame.attrs["uncertain_rows"]
        read["duplicates"] += frame.attrs["duplicates"]
        read["formats"][frame.attrs["format"]] = read["formats"].get(frame.attrs["format"], 0) + 1
        frames.append(frame.assign(table=i))
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*TABLE_COLUMNS, "table"])
    if labels.empty:
        named = ", ".join(str(p) for p in inputs) or "(no inputs)"
        skipped = read["skipped"]
        raise DataError(f"{named}: no label rows ({len(tables)} {fmt} table(s) found"
                        f"{f', {skipped} row(s) skipped as not validated' if skipped else ''})")
    return labels, columns, read


def _recordings_of(labels: pd.DataFrame, tables: list[tuple[Path, str]], columns: dict[str, dict[str, str]],
                   audio: Path, test: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, _AudioFiles, pd.DataFrame]:
    """Step 2: the recording of every row, and the train (labelled) and test recordings with length and rate."""
    if test is not None and (test.resolve() == audio.resolve() or test.resolve() in audio.resolve().parents):
        raise DataError(f"--test {test}: it {'is' if test.resolve() == audio.resolve() else 'holds'} the --audio "
                        f"folder {audio}; test recordings are kept apart from the labelled ones (a subfolder of "
                        "--audio is fine: its files are test recordings)")
    test_files = _AudioFiles(test, "test") if test is not None else None  # each refuses a folder without audio
    train_files = _AudioFiles(audio, "train", exclude=test.resolve() if test is not None else None)
    labels["recording_id"] = _match_recordings(labels, tables, train_files, columns)
    # a recording is a train recording where a person labelled it: candidates alone do not make one
    used = train_files.frame[train_files.frame["recording_id"].isin(
        labels.loc[labels["label"] != CANDIDATE, "recording_id"])]
    used = used.sort_values("recording_id")
    recordings = pd.DataFrame({"recording_id": used["recording_id"], "split": "train",
                               "path": [str(train_files.path(i).resolve()) for i in used.index]})
    if test_files is not None:
        clash = test_files.frame["recording_id"].isin(used["recording_id"])
        if clash.any():
            rel = test_files.frame["rel"][clash].iloc[0]
            rid = test_files.frame["recording_id"][clash].iloc[0]
            raise DataError(f"{test / rel}: test recording id {rid!r} is also a train recording "
                            f"({audio / train_files.frame['rel'].iloc[train_files.by_id[rid]]}); rename one")
        tested = test_files.frame.sort_values("recording_id")
        recordings = pd.concat([recordings, pd.DataFrame({
            "recording_id": tested["recording_id"], "split": "test",
            "path": [str(test_files.path(i).resolve()) for i in tested.index]})], ignore_index=True)
    recordings = recordings.reset_index(drop=True)
    recordings["seconds"], recordings["sample_rate"] = _probe([Path(p) for p in recordings["path"]])

    return labels, recordings, train_files, used


def _check_boxes(labels: pd.DataFrame, recordings: pd.DataFrame, train_files: _AudioFiles, used: pd.DataFrame,
                 columns: dict[str, dict[str, str]]) -> tuple[pd.DataFrame, int]:
    """Step 3: every box inside its recording and below its Nyquist frequency (the recordings only candidates name
    are probed for it); edges filled and clipped. Returns the rows and how many candidate-only recordings."""
    probed = pd.DataFrame({"recording_id": train_files.frame["recording_id"],
                           "path": [train_files.path(i) for i in train_files.frame.index]})
    candidate_ids = set(labels.loc[labels["label"] == CANDIDATE, "recording_id"]) - set(used["recording_id"])
    probed = probed[probed["recording_id"].isin(candidate_ids)]
    info = recordings[recordings["split"] == "train"].set_index("recording_id")
    if len(probed):  # the recordings only candidates name: their length and rate, for the same box checks
        seconds_c, rate_c = _probe([Path(p) for p in probed["path"]])
        info = pd.concat([info, pd.DataFrame({"seconds": seconds_c, "sample_rate": rate_c},
                                             index=probed["recording_id"].to_numpy())])
    seconds = labels["recording_id"].map(info["seconds"])
    rate = labels["recording_id"].map(info["sample_rate"])
    nyquist = rate / 2
    f_max = labels["f_max"].fillna(nyquist)
    fault = first_box_fault(labels.assign(f_min=labels["f_min"].fillna(0.0), f_max=f_max), seconds, nyquist)
    if fault is not None:  # the one box rule (data/reader.py), named in the file's own row and column
        i, name, message = fault
        at = labels.iloc[i]
        raise _row_error(at["source"], int(at["row"]), int(at["line"]),
                         columns.get(at["source"], {}).get(name, name), message)
    labels["t_max"] = np.minimum(labels["t_max"], seconds)
    labels["f_min"] = labels["f_min"].fillna(0.0)
    labels["f_max"] = f_max

    return labels, len(probed)


def _name_species(labels: pd.DataFrame, species_path: Path | None, columns: dict[str, dict[str, str]],
                  inputs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Step 4: species names -> ids (the given table's, else the sorted names); an uncertain row names none: kept
    as unknown, or an FP box of every species; codes and bands filled. Returns the rows and the species table."""
    unnamed = labels["species"] == ""
    if species_path is not None:
        table = _read_species_table(species_path)
        unknown = ~labels["species"].isin(table["name"]) & ~unnamed
        _raise_first(labels, [("species", unknown, lambda r: f"{r['species']!r} is not in the species table "
                                                            f"{species_path}")], columns)
    else:
        names = sorted(labels.loc[~unnamed, "species"].unique())
        table = pd.DataFrame({"species_id": np.arange(len(names), dtype=np.int64), "code": np.nan, "name": names,
                              "f_min": np.nan, "f_max": np.nan})
    if not len(table):
        raise DataError(f"{', '.join(str(p) for p in inputs)}: no row names a species ({len(labels)} uncertain row(s))")
    labels["species_id"] = labels["species"].map(dict(zip(table["name"], table["species_id"]))).fillna(
        UNKNOWN_SPECIES).astype(np.int64)
    every = labels[unnamed & (labels["label"] == FP)]
    if len(every):  # --uncertain fp: nothing of the list called there
        labels = pd.concat([labels[~(unnamed & (labels["label"] == FP))],
                            every.loc[every.index.repeat(len(table))].assign(
                                species_id=np.tile(table["species_id"].to_numpy(np.int64), len(every)))],
                           ignore_index=True)
    table = table.sort_values("species_id").reset_index(drop=True)
    missing_code = table["code"].isna()
    table["code"] = table["code"].astype(object)
    table.loc[missing_code, "code"] = _codes(table.loc[missing_code, "name"], table["code"])
    medians = labels[labels["label"] == 1].groupby("species_id")[["f_min", "f_max"]].median()
    for edge in ("f_min", "f_max"):
        table[edge] = table[edge].fillna(table["species_id"].map(medians[edge])).round(3)
    labels["songtype_id"] = _songtype_ids(labels)

    return labels, table


def _tables_written(labels: pd.DataFrame, table: pd.DataFrame, recordings: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Step 5: the data folder's tables (TP, FP, species, recordings; unknown calls and candidates where any)."""
    boxes = labels.assign(t_min=labels["t_min"].round(6), t_max=labels["t_max"].round(6),
                          f_min=labels["f_min"].round(3), f_max=labels["f_max"].round(3))
    boxes = boxes.sort_values(["recording_id", "t_min", "t_max", "species_id"], kind="stable")
    tp = boxes.loc[boxes["label"] == TP, BOX_COLUMNS].reset_index(drop=True)
    fp = boxes.loc[boxes["label"] == FP, BOX_COLUMNS].reset_index(drop=True)
    unknown_boxes = boxes.loc[boxes["label"] == UNKNOWN, BOX_COLUMNS].assign(
        species_id=UNKNOWN_SPECIES, songtype_id=UNKNOWN_SPECIES).reset_index(drop=True)
    names = dict(zip(table["species_id"], table["name"]))
    candidates = boxes.loc[boxes["label"] == CANDIDATE].assign(
        species=lambda b: b["species_id"].map(names), confidence=lambda b: b["confidence"].round(4))
    candidates = candidates[CANDIDATE_COLUMNS].reset_index(drop=True)
    recordings = recordings[RECORDING_COLUMNS]  # train then test, each by id
    files = {"train_tp.csv": tp, "train_fp.csv": fp, "species.csv": table[SPECIES_OUT_COLUMNS],
             "recordings.csv": recordings}
    if len(unknown_boxes):
        files[UNKNOWN_FILE] = unknown_boxes
    if len(candidates):
        files["candidates.csv"] = candidates
    return files


def _warnings(sample_rates: list[tuple[int, int]], unlabelled: int, audio: Path, read: dict[str, Any],
              uncertain: str, table: pd.DataFrame, labels: pd.DataFrame) -> list[str]:
    """The import's warning lines (mixed rates, unused audio, skipped and uncertain rows, unused species)."""
    skipped, uncertain_rows, uncertain_named = read["skipped"], read["uncertain_rows"], read["uncertain_named"]
    warnings = []
    if len(sample_rates) > 1:
        warnings.append("recordings have mixed sample rates: " + ", ".join(f"{r} Hz ({n})" for r, n in sample_rates))
    if unlabelled:
        warnings.append(f"{unlabelled} audio file(s) under {audio} have no label rows and are not used")
    if skipped:
        warnings.append(f"{skipped} row(s) left out: their validation is neither 1 (present) nor 0 (absent)")
    if uncertain_rows:
        became = {"skip": "left out", "unknown": "kept as calls of no named species (train_unknown.csv)",
                  "fp": "kept as FP boxes of every species"}[uncertain]
        more = " ..." if uncertain_rows > len(uncertain_named[:3]) else ""
        warnings.append(f"{uncertain_rows} uncertain row(s) (no species, or a '?' alone: "
                        f"{', '.join(uncertain_named[:3])}{more}) {became}; --uncertain skip|unknown|fp|error says "
                        "what they become")
    unused = table.loc[~table["species_id"].isin(labels["species_id"]), "name"]
    if len(unused):
        warnings.append(f"{len(unused)} species of the species table have no label rows: "
                        + ", ".join(unused.head(10)) + (" ..." if len(unused) > 10 else ""))

    return warnings


def import_labels(inputs: list[Path], audio: Path, out: Path, fmt: str = "raven", species_column: str | None = None,
                  test: Path | None = None, species: Path | None = None, overwrite: bool = False,
                  uncertain: str = "skip") -> ImportResult:
    """Read annotation tables, match them to audio and write a data folder (see the module docstring).

    Args:
        inputs: table files and/or folders of tables (read recursively; see :func:`_tables`).
        audio: folder of train audio (recursive; .wav .flac .ogg .mp3). Only recordings that a label row
            names become train recordings; the others are counted (``unlabelled_audio``) and not used.
        out: the folder to write; an existing non-empty one is refused unless ``overwrite``.
        fmt: ``raven``, ``audacity``, ``arbimon``, ``csv`` or ``auto`` (each table's own; see :func:`read_table`).
        uncertain: what rows without a species become: ``skip``, ``unknown``, ``fp`` or ``error`` (see
            :func:`read_table`); skipped ones are counted and named in one warning line.
        species_column: the column that holds species names (default: see :func:`read_table`).
        test: optional folder of test audio: every audio file in it is a test recording (ids relative to it,
            distinct from the train ids).
        species: optional species table (CSV: ``name``; optional ``species_id``, ``code``, ``f_min``,
            ``f_max``). With it every name must be in it (exact match after stripping) and its ids are used
            (row order where it has no ``species_id``); without it ids are 0, 1, ... over the sorted names seen.

    Matching a table to its recording: a row's file hint (Raven ``Begin File``/``Begin Path``, the
    ``recording`` column) by relative path or by file name, with or without extension; no hint (Raven without
    Begin File, Audacity): the audio file whose stem starts the table's file name, the longest such stem. Where
    several files fit, the one in the table's folder relative to its input folder wins; still several: error.

    Boxes: missing f_min is 0, missing f_max the recording's Nyquist frequency; a box may end up to
    ``data.reader.TIME_TOLERANCE`` past its recording (it is clipped), no further; f_max may not exceed Nyquist.
    Times are rounded to 1 µs and frequencies to 1 mHz (no float noise such as 1.2000000000000002).

    Output: ``train_tp.csv``/``train_fp.csv`` (:data:`BOX_COLUMNS`; songtype_id: Arbimon's songtypes per
    species -> 1, 2, ..., else 1), ``species.csv`` (:data:`SPECIES_OUT_COLUMNS`; f_min/f_max the median of the
    species' TP boxes unless the species table gives them; empty where neither), ``recordings.csv``
    (:data:`RECORDING_COLUMNS`), ``import.json``. Written atomically: all or nothing.

    Raises:
        DataError: any malformed table, unknown species, unmatched or ambiguous recording, box outside its
        recording, clashing recording ids, no label rows at all, or an existing ``out`` — before anything is
        written.
    """
    if fmt not in FORMAT_CHOICES:
        raise DataError(f"unknown label format {fmt!r}; expected one of {', '.join(FORMAT_CHOICES)}")
    if uncertain not in UNCERTAIN:
        raise DataError(f"unknown --uncertain {uncertain!r}; expected one of {', '.join(UNCERTAIN)}")
    inputs = [Path(p) for p in inputs]
    audio, out = Path(audio), Path(out)
    test = Path(test) if test is not None else None
    species_path = Path(species) if species is not None else None
    keep = {"audio": audio, **({"test recordings": test} if test is not None else {})}
    keep.update({f"labels {p.name}": p for p in inputs})
    for path in clean_leftovers(out):
        log.info("removed or restored %s, left by a killed import", path)
    _check_out(out, overwrite, keep)

    # A table inside the audio tree (Raven's default: siteA/rec0.Table.1.selections.txt beside siteA/rec0.wav)
    # belongs to its own folder there, however it was named on the command line.
    tables = [(path, _folder_in(audio, path, folder)) for path, folder in _tables(inputs, fmt)]
    labels, columns, read = _read_all(tables, inputs, fmt, species_column, uncertain)
    labels, recordings, train_files, used = _recordings_of(labels, tables, columns, audio, test)
    labels, probed = _check_boxes(labels, recordings, train_files, used, columns)
    labels, table = _name_species(labels, species_path, columns, inputs)
    files = _tables_written(labels, table, recordings)
    recordings = files["recordings.csv"]
    rates = recordings["sample_rate"].value_counts().sort_index()
    sample_rates = [(int(r), int(n)) for r, n in rates.items()]
    unlabelled = len(train_files.frame) - len(used) - probed  # the candidates' recordings are used too
    warnings = _warnings(sample_rates, unlabelled, audio, read, uncertain, table, labels)
    tp, fp = files["train_tp.csv"], files["train_fp.csv"]
    n_unknown, n_candidates = len(files.get(UNKNOWN_FILE, ())), len(files.get("candidates.csv", ()))
    summary = {
        "inputs": {
            "labels": [str(p.resolve()) for p in inputs], "format": fmt, "species_column": species_column,
            "audio": str(audio.resolve()), "test": str(test.resolve()) if test is not None else None,
            "species": str(species_path.resolve()) if species_path is not None else None, "out": str(out.resolve()),
            "overwrite": overwrite,
        },
        "tables": [str(p) for p, _ in tables],
        "counts": {
            "tables": len(tables), "formats": read["formats"], "rows": len(labels), "tp": len(tp), "fp": len(fp),
            "unknown": n_unknown, "candidates": n_candidates, "skipped_rows": read["skipped"],
            "uncertain_rows": read["uncertain_rows"], "uncertain": uncertain,
            "duplicate_view_rows": read["duplicates"], "species": len(table),
            "train_recordings": int((recordings["split"] == "train").sum()),
            "test_recordings": int((recordings["split"] == "test").sum()), "unlabelled_audio": unlabelled,
        },
        "sample_rates": [list(pair) for pair in sample_rates],
        "warnings": warnings,
    }
    _check_out(out, overwrite, keep)  # again: the reading above can take a while
    _write_folder(out, files, summary)
    return ImportResult(out=out, n_tp=len(tp), n_fp=len(fp), species=table[SPECIES_OUT_COLUMNS].copy(),
                        recordings=recordings, sample_rates=sample_rates, skipped=read["skipped"], warnings=warnings,
                        n_unknown=n_unknown, n_candidates=n_candidates)
