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
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.core.io import atomic_write_csv, atomic_write_json, check_output_path
from rfcx_kit.core.species import BOX_COLUMNS, NAME_RULE, bad_names
from rfcx_kit.data.annotations.registry import detect_format, formats, get_format
from rfcx_kit.data.annotations.table import (CANDIDATE, Check, FP, TABLE_COLUMNS, TP, UNKNOWN, find, numbers, raise_first, read_grid, require, row_error)
from rfcx_kit.data.audio import AUDIO_SUFFIXES, probe
from rfcx_kit.data.reader import UNKNOWN_FILE, UNKNOWN_SPECIES, first_box_fault

log = logging.getLogger(__name__)

FORMATS = tuple(formats())  # the registered annotation formats (data/annotations/registry.py)
FORMAT_CHOICES = ("auto", *FORMATS)  # auto: each table's own format, told from its contents
AUDIO_EXTENSIONS = AUDIO_SUFFIXES  # the formats every step decodes (data/audio.py)
CANDIDATE_COLUMNS = ["recording_id", "species_id", "species", "t_min", "t_max", "f_min", "f_max", "confidence",
                     "source"]
SPECIES_OUT_COLUMNS = ["species_id", "code", "name", "f_min", "f_max"]
RECORDING_COLUMNS = ["recording_id", "split", "path", "seconds", "sample_rate"]

# Table files looked for inside an input folder.
# Species column, when none is named: the first of these the table has (case-insensitive).
# Words for present / absent in TP/FP columns (compared lowercased and stripped).
# Raven: a `FP` column marks a false positive with a "yes"-like value.


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












# ----------------------------------------------------------------------------------------------------------------
# reading one table




























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
            raise DataError(f"{path}: not a label table of a format rfcx-kit reads ({', '.join(FORMATS)}: its first "
                            "line names none of their columns); give --format")
        fmt = found
    frame = get_format(fmt).read(path, species_column)
    frame.attrs.setdefault("skipped", 0)
    frame.attrs.setdefault("duplicates", 0)
    if uncertain not in UNCERTAIN:
        raise DataError(f"unknown --uncertain {uncertain!r}; expected one of {', '.join(UNCERTAIN)}")
    empty = frame["species"] == ""
    if uncertain == "error":
        raise_first(frame, [("species", empty, lambda r: "empty species name (nothing, or a '?' alone): name it, "
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
    raw = read_grid(path, ",", csv.QUOTE_MINIMAL)
    name = require(raw, path, "name")
    table = pd.DataFrame({"source": str(path), "row": raw["_row"], "line": raw["_line"], "name": raw[name]})
    ids = find(raw, "species_id")
    table["species_id"] = numbers(raw, path, ids) if ids else np.arange(len(raw), dtype=float)
    code = find(raw, "code")
    table["code"] = raw[code].replace("", np.nan) if code else np.nan
    for edge in ("f_min", "f_max"):
        column = find(raw, edge)
        table[edge] = numbers(raw, path, column, required=False) if column else np.nan
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
    raise_first(table, checks, {str(path): {"name": name, "species_id": ids or "species_id", "code": code or "code"}})
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
    globs = tuple(dict.fromkeys(f.glob for f in formats().values())) if fmt == "auto" else (get_format(fmt).glob,)
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
        raise row_error(at["source"], int(at["row"]), int(at["line"]), column, f"{hint!r}: {what}")
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
        raise row_error(at["source"], int(at["row"]), int(at["line"]),
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
        raise_first(labels, [("species", unknown, lambda r: f"{r['species']!r} is not in the species table "
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
