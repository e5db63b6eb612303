"""The tables of a data folder, read and validated: the box tables and THE BOX RULE, the species, the test ids,
``recordings.csv``, pseudo-positive boxes, and the validated :class:`Competition` a layout gives.

How a folder is laid out (the competition's ``train/``/``test/`` folders, precomputed arrays, one's own
recordings through ``recordings.csv``) is ``data/layouts/``: each layout reads its folder with these readers, and
``data.layouts.read_competition`` reads any of them.

``train_fp.csv`` is optional everywhere; ``sample_submission.csv`` only names the test recordings. The species
come from ``species.csv``, else from ``sample_submission.csv``'s columns, else from the ids in the label tables
(the competition's 24 when they fit).

Every problem is reported as a :class:`~rfcx_kit.core.errors.DataError` that names the file, the row (1-based
data row, with its line in the file) and the field, before any work starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import BOX_COLUMNS, SPECIES_FILE, Species, infer_species

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3")
RECORDINGS_FILE = "recordings.csv"
RECORDING_COLUMNS = ["recording_id", "split", "path", "seconds", "sample_rate"]
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_PLAIN_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_. ()+,=-]*$")
TIME_TOLERANCE = 0.01  # s: a box may end this much past its recording (exports round to ms)


@dataclass
class Competition:
    """A validated competition folder.

    Attributes:
        root: the folder.
        layout: ``"audio"`` or ``"npy"``.
        tp, fp: the box tables (columns of :data:`BOX_COLUMNS`).
        train_ids: sorted recording ids with at least one TP or FP row (the labelled train set).
        test_ids: recording ids of ``sample_submission.csv`` (or ``recordings.csv``'s test rows), in its order.
        extension: file extension of the recordings (``.flac``, ``.npy``, ...; ``""`` when recordings.csv names them).
        species: the species table (its size is the model head's, the metrics' and the clip tables').
        recordings: ``recordings.csv`` indexed by recording_id (path, split, seconds, sample_rate), or None.
    """

    root: Path
    layout: str
    tp: pd.DataFrame
    fp: pd.DataFrame
    train_ids: list[str]
    test_ids: list[str]
    extension: str
    warnings: list[str] = field(default_factory=list)
    species: Species = field(default_factory=Species.rfcx)
    recordings: pd.DataFrame | None = None
    # which train recordings must share a fold (near-duplicates: BirdCLEF's same label, author and length), by id;
    # None: each its own
    groups: pd.Series | None = None
    # label tables beyond train_tp/train_fp.csv that a run's fingerprint covers (names inside the folder)
    label_files: tuple[str, ...] = ()
    # calls of no named species (``train_unknown.csv``): no species is an implicit negative where they are
    unknown: pd.DataFrame = field(default_factory=lambda: empty_boxes())

    def path(self, split: str, recording_id: str) -> Path:
        """The recording's source file (audio or precomputed spectrogram)."""
        if self.recordings is not None:
            return Path(self.recordings.at[recording_id, "path"])
        return self.root / split / f"{recording_id}{self.extension}"

    def ids(self, split: str) -> list[str]:
        return self.train_ids if split == "train" else self.test_ids

    def boxes(self) -> pd.DataFrame:
        """TP, FP and unknown boxes in one table with ``label`` +1 (TP) / -1 (FP) / 0 (a call of no named species,
        species_id :data:`UNKNOWN_SPECIES`)."""
        return pd.concat(
            [self.tp.assign(label=np.int8(1)), self.fp.assign(label=np.int8(-1)), self.unknown.assign(label=np.int8(0))],
            ignore_index=True)

    def labelled(self) -> np.ndarray:
        """``(len(train_ids),)`` bool: train recordings with any box. The rest (BirdCLEF's unlabelled soundscapes)
        are predicted out of fold but never scored: they have no labels to score against."""
        boxed = set(self.tp["recording_id"]) | set(self.fp["recording_id"]) | set(self.unknown["recording_id"])
        return np.fromiter((rid in boxed for rid in self.train_ids), bool, len(self.train_ids))

    def tp_presence(self) -> np.ndarray:
        """``(len(train_ids), K)`` 0/1: species with a TP box in each train recording."""
        return self._presence(self.tp)

    def fp_presence(self) -> np.ndarray:
        """``(len(train_ids), K)`` 0/1: species with an FP box in each train recording (all 0 without FP rows)."""
        return self._presence(self.fp)

    def _presence(self, boxes: pd.DataFrame) -> np.ndarray:
        index = {rid: i for i, rid in enumerate(self.train_ids)}
        out = np.zeros((len(self.train_ids), len(self.species)), dtype=np.int8)
        # int64 explicitly: a table without rows (TP-only labels have no FP row) would give float indices
        out[boxes["recording_id"].map(index).to_numpy(dtype=np.int64), boxes["species_id"].to_numpy(dtype=np.int64)] = 1
        return out

    @property
    def truth_dir(self) -> Path | None:
        """``truth/`` of a synthetic data set (never read by training; used by reports only)."""
        path = self.root / "truth"
        return path if path.is_dir() else None

    def planted_calls(self, split: str = "train") -> pd.DataFrame | None:
        """Every planted call of ``split`` (``truth/calls.csv``, kind ``call``): a synthetic set's complete
        labels; None where the data has no truth (the real competition)."""
        truth = self.truth_dir
        if truth is None or not (truth / "calls.csv").exists():
            return None
        path = truth / "calls.csv"
        try:
            calls = pd.read_csv(path, dtype={"recording_id": str})
        except Exception as exc:  # noqa: BLE001 - empty, not CSV, not UTF-8
            raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
        need = ["split", "recording_id", "species_id", "kind", "t_min", "t_max"]
        missing = [c for c in need if c not in calls.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
        calls = calls[(calls["split"] == split) & (calls["kind"] == "call")].reset_index(drop=True)
        for column in ("species_id", "t_min", "t_max"):
            numeric = pd.to_numeric(calls[column], errors="coerce")
            if numeric.isna().any():
                i = int(np.flatnonzero(numeric.isna().to_numpy())[0])
                raise DataError(f"{path}: a {split} call, column {column}: {calls[column].iloc[i]!r} is not a number")
            calls[column] = numeric
        bad = ~calls["species_id"].isin(range(len(self.species)))
        if bad.any():
            raise DataError(f"{path}: species_id {calls['species_id'][bad].iloc[0]:g} is not a species "
                            f"0..{len(self.species) - 1}")
        calls["species_id"] = calls["species_id"].astype(np.int64)
        return calls


def row_error(file: Path, row: int, column: str, message: str) -> DataError:
    """The one-line error of a table's cell: ``FILE: row R (line L), field 'F': message`` (``row`` from 0)."""
    return DataError(f"{file}: row {row + 1} (line {row + 2}), field '{column}': {message}")


_row_error = row_error


def _plain_path(text: str) -> bool:
    parts = text.split("/")
    return all(_PLAIN_PART.match(p) and p not in (".", "..") for p in parts)


def check_recording_ids(ids: pd.Series, file: Path, column: str = "recording_id", nested: bool = False) -> None:
    """Refuse ids that are not plain file names (``../x``, empty, hidden; ``a/b`` unless ``nested``: ids of
    ``recordings.csv`` are paths relative to the audio folder, ``siteA/rec1``)."""
    text = ids.astype(str)
    if nested:
        bad = ~text.map(_plain_path)
        what = "a relative recording path (parts of letters, digits, '_', '-', '.', ' '; no '..', no leading '/')"
    else:
        bad = ~text.map(lambda s: bool(_PLAIN_ID.match(s)) and ".." not in s)
        what = "a plain recording id (letters, digits, '_', '-', '.'; no '/' or '..')"
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _row_error(file, i, column, f"{text.iloc[i]!r} is not {what}")


UNKNOWN_FILE = "train_unknown.csv"  # boxes of calls whose species nobody named (labels import --uncertain unknown)
UNKNOWN_SPECIES = -1  # their species_id and songtype_id


def read_boxes(path: Path, n_species: int | None = None, limits: pd.DataFrame | tuple[float, float] | None = None,
               nested: bool = False, unknown: bool = False) -> pd.DataFrame:
    """Read and validate a box table (``train_tp.csv`` / ``train_fp.csv``): the one box reader, one set of rules.

    Args:
        n_species: species ids must be in ``0..n_species - 1`` (None: any integer >= 0; the table is inferred).
        limits: indexed by recording_id, ``seconds`` and ``sample_rate`` of each recording (NaN: unknown), or one
            ``(seconds, sample_rate)`` for all: a box must end inside its recording (within
            :data:`TIME_TOLERANCE`) and stay below its Nyquist frequency.
        nested: ids may be relative paths (``siteA/rec1``).
        unknown: ``train_unknown.csv``: every species_id is :data:`UNKNOWN_SPECIES` (a call nobody named).
    Returns:
        the table with :data:`BOX_COLUMNS` (ints for the ids, floats for the edges).
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str})
    except Exception as exc:
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    missing = [c for c in BOX_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(BOX_COLUMNS)}")
    frame = frame[BOX_COLUMNS].copy()
    if frame["recording_id"].isna().any():
        raise _row_error(path, int(np.flatnonzero(frame["recording_id"].isna())[0]), "recording_id", "empty")
    check_recording_ids(frame["recording_id"], path, nested=nested)
    for column in BOX_COLUMNS[1:]:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _row_error(path, i, column, f"{frame[column].iloc[i]!r} is not a number")
        frame[column] = numeric
    species = frame["species_id"]
    bad = (species != species.round()) | (species < 0)
    if n_species is not None:
        bad |= species >= n_species
    if unknown:
        bad = species != UNKNOWN_SPECIES
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        known = f"in 0..{n_species - 1}" if n_species is not None else "id (an integer >= 0)"
        known = f"{UNKNOWN_SPECIES} (unknown)" if unknown else known
        raise _row_error(path, i, "species_id", f"{species.iloc[i]:g} is not a species {known}")
    frame["species_id"] = species.astype(np.int64)
    frame["songtype_id"] = frame["songtype_id"].astype(np.int64)
    seconds = nyquist = pd.Series(np.nan, index=frame.index)
    if isinstance(limits, tuple):
        seconds = pd.Series(float(limits[0]), index=frame.index)
        nyquist = pd.Series(float(limits[1]) / 2, index=frame.index)
    elif limits is not None and len(frame):
        known = limits.reindex(frame["recording_id"])
        seconds = pd.Series(known["seconds"].to_numpy(np.float64), index=frame.index)
        nyquist = pd.Series(known["sample_rate"].to_numpy(np.float64) / 2, index=frame.index)
    fault = first_box_fault(frame, seconds, nyquist)
    if fault is not None:
        raise _row_error(path, *fault)
    return frame


def first_box_fault(boxes: pd.DataFrame, seconds: pd.Series | float | None = None,
                    nyquist: pd.Series | float | None = None) -> tuple[int, str, str] | None:
    """THE BOX RULE, for every reader and writer of boxes: the earliest row that breaks it, or None.

    A box starts at 0 s or later and before its recording ends, ends after it starts and at most
    :data:`TIME_TOLERANCE` past its recording's ``seconds``; its band (where the table has ``f_min``/``f_max``)
    starts at 0 Hz or above, ends above its start and at or below the recording's ``nyquist``. ``seconds``/``nyquist``: one value, or one per row (NaN or None:
    unknown, not checked). Each caller names the place its own way (file and line, or row).

    Returns:
        ``(position, column, message)``: the 0-based row, the field, and the value with what is wrong with it.
    """
    n = len(boxes)
    seconds = pd.Series(np.nan if seconds is None else seconds, index=boxes.index, dtype=np.float64)
    nyquist = pd.Series(np.nan if nyquist is None else nyquist, index=boxes.index, dtype=np.float64)
    rid = boxes["recording_id"] if "recording_id" in boxes else pd.Series([""] * n, index=boxes.index)

    def of(i: int) -> str:
        return f" of recording '{rid.iloc[i]}'" if rid.iloc[i] != "" else ""

    checks: list[tuple[str, pd.Series, Callable[[int], str]]] = [
        ("t_min", boxes["t_min"] < 0, lambda i: "s is negative"),
        ("t_min", boxes["t_min"] >= seconds, lambda i: f"s starts at or after the end{of(i)} ({seconds.iloc[i]:g} s)"),
        ("t_max", boxes["t_max"] > seconds + TIME_TOLERANCE,
         lambda i: f"s is past the end{of(i)} ({seconds.iloc[i]:g} s)"),
        ("t_max", boxes["t_max"] <= boxes["t_min"], lambda i: "s is not after t_min"),
    ]
    if "f_min" in boxes and "f_max" in boxes:
        checks += [
            ("f_min", boxes["f_min"] < 0, lambda i: "Hz is negative"),
            ("f_max", boxes["f_max"] > nyquist,
             lambda i: f"Hz is above the Nyquist frequency {nyquist.iloc[i]:g} Hz{of(i)}"),
            ("f_max", boxes["f_max"] <= boxes["f_min"], lambda i: "Hz is not above f_min"),
        ]
    first: tuple[int, str, str] | None = None
    for column, mask, message in checks:
        hits = np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool))
        if hits.size and (first is None or hits[0] < first[0]):
            i = int(hits[0])
            first = (i, column, f"{float(boxes[column].iloc[i]):g} {message(i)}")
    return first


PSEUDO_BOX_COLUMNS = ["recording_id", "species_id", "t_min", "t_max", "weight", "score"]


def check_pseudo_boxes(boxes: pd.DataFrame, where: str | Path, seconds: pd.Series, n_species: int) -> pd.DataFrame:
    """A pseudo-positive box table (a cycle's ``pseudo_boxes.csv``, one box per pseudo-positive window) against the
    one box rule: its columns, recordings among ``seconds``' index (each recording's length), species ids
    ``0..n_species - 1``, times inside the recording, weights finite and > 0. ``where`` names it in errors.
    Returns the table with :data:`PSEUDO_BOX_COLUMNS`, typed."""
    missing = [c for c in PSEUDO_BOX_COLUMNS if c not in boxes.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; expected {','.join(PSEUDO_BOX_COLUMNS)}")
    frame = boxes[PSEUDO_BOX_COLUMNS].copy()
    frame["recording_id"] = frame["recording_id"].astype(str)
    for column in PSEUDO_BOX_COLUMNS[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    species = frame["species_id"]
    checks = [
        ("recording_id", ~frame["recording_id"].isin(seconds.index), "is not a train recording of the run"),
        ("species_id", ~species.isin(np.arange(n_species)), f"is not a species in 0..{n_species - 1}"),
        ("weight", ~(np.isfinite(frame["weight"]) & (frame["weight"] > 0)), "is not a finite weight > 0"),
        ("t_min", ~(np.isfinite(frame["t_min"]) & np.isfinite(frame["t_max"])), "is not a number"),
    ]
    for column, bad, why in checks:
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _row_error(Path(where), i, column, f"{boxes[column].iloc[i]!r} {why}")
    fault = first_box_fault(frame, frame["recording_id"].map(seconds))
    if fault is not None:
        raise _row_error(Path(where), *fault)
    frame["species_id"] = species.astype(np.int64)
    return frame


def read_pseudo_boxes(path: Path, seconds: pd.Series, n_species: int) -> pd.DataFrame:
    """Read and check a pseudo-positive box table (:func:`check_pseudo_boxes`)."""
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str})
    except Exception as exc:
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    return check_pseudo_boxes(frame, path, seconds, n_species)


def empty_boxes() -> pd.DataFrame:
    """A box table without rows (a data folder without ``train_fp.csv``)."""
    return pd.DataFrame({c: pd.Series(dtype=str if c == "recording_id" else (np.int64 if c.endswith("_id") else float))
                         for c in BOX_COLUMNS})


def read_sample_submission(path: Path, n_species: int | None = None) -> tuple[list[str], int]:
    """Recording ids of ``sample_submission.csv`` (header ``recording_id,s0..s{K-1}``, ids unique) and ``K``."""
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str})
    except Exception as exc:  # empty, not CSV, not UTF-8...: one line naming the file
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    k = n_species if n_species is not None else max(1, len(frame.columns) - 1)
    expected = ["recording_id", *Species.numbered(k).columns]
    if list(frame.columns) != expected:
        raise DataError(f"{path}: header must be {','.join(expected[:4])},...,{expected[-1]}, got "
                        f"{','.join(map(str, frame.columns[:6]))}{',...' if len(frame.columns) > 6 else ''}"
                        if len(expected) > 6 else
                        f"{path}: header must be {','.join(expected)}, got {','.join(map(str, frame.columns))}")
    check_recording_ids(frame["recording_id"], path)
    dup = frame["recording_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise _row_error(path, i, "recording_id", f"{frame['recording_id'].iloc[i]!r} appears twice")
    if not len(frame):
        raise DataError(f"{path}: no recordings after the header (the test ids come from this file)")
    return frame["recording_id"].tolist(), k


def read_recordings(path: Path) -> pd.DataFrame:
    """``recordings.csv`` -> indexed by recording_id: split (train|test), path (absolute, or relative to the
    data folder), seconds, sample_rate. Every problem names the file, row and field."""
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str, "path": str, "split": str})
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    missing = [c for c in RECORDING_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(RECORDING_COLUMNS)}")
    if frame["recording_id"].isna().any():
        raise _row_error(path, int(np.flatnonzero(frame["recording_id"].isna())[0]), "recording_id", "empty")
    check_recording_ids(frame["recording_id"], path, nested=True)
    dup = frame["recording_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise _row_error(path, i, "recording_id", f"{frame['recording_id'].iloc[i]!r} appears twice")
    bad = ~frame["split"].isin(["train", "test"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _row_error(path, i, "split", f"{frame['split'].iloc[i]!r} is not train or test")
    for column in ("seconds", "sample_rate"):
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric) | (numeric <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _row_error(path, i, column, f"{frame[column].iloc[i]!r} is not a positive number")
        frame[column] = numeric
    files = frame["path"].fillna("").map(lambda p: Path(p) if Path(p).is_absolute() else path.parent / p)
    absent = ~files.map(lambda p: p.is_file())
    if absent.any():
        i = int(np.flatnonzero(absent.to_numpy())[0])
        raise _row_error(path, i, "path", f"{files.iloc[i]} is not a file")
    frame["path"] = files.map(str)
    return frame.set_index("recording_id", drop=False)


def audio_limits(paths: dict[str, Path]) -> pd.DataFrame:
    """``seconds`` and ``sample_rate`` of audio files (``data/audio.probe``: headers, an MP3 counted), by id."""
    from rfcx_kit.data.audio import probe

    rows = {}
    for rid, path in paths.items():
        seconds, rate = probe(path)
        rows[rid] = (seconds, float(rate))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["seconds", "sample_rate"])










@dataclass
class LabelTables:
    """What every layout's label tables give: the species, the TP/FP/unknown boxes, the labelled train ids and
    ``sample_submission.csv``'s test ids (``has_submission``: whether the folder has one)."""

    species: Species
    tp: pd.DataFrame
    fp: pd.DataFrame
    unknown: pd.DataFrame
    train_ids: list[str]
    test_ids: list[str]
    has_submission: bool


def read_label_tables(root: Path, nested: bool) -> LabelTables:
    """The species table (``species.csv``, else ``sample_submission.csv``'s columns, else the label ids), the box
    tables through :func:`read_boxes` and the test ids of ``sample_submission.csv``. ``nested``: ids may be
    relative paths."""
    species = Species.read(root / SPECIES_FILE) if (root / SPECIES_FILE).is_file() else None
    submission = root / "sample_submission.csv"
    test_ids: list[str] = []
    if submission.is_file():
        test_ids, k = read_sample_submission(submission, len(species) if species is not None else None)
        species = species or infer_species(k - 1)
    k = len(species) if species is not None else None
    tp = read_boxes(root / "train_tp.csv", k, nested=nested)
    fp = read_boxes(root / "train_fp.csv", k, nested=nested) if (root / "train_fp.csv").exists() else empty_boxes()
    if species is None:
        species = infer_species(int(max(tp["species_id"].max() if len(tp) else 0, fp["species_id"].max() if len(fp) else 0)))
    unknown = read_boxes(root / UNKNOWN_FILE, None, None, nested, unknown=True) if (root / UNKNOWN_FILE).exists() \
        else empty_boxes()
    train_ids = sorted(set(tp["recording_id"]) | set(fp["recording_id"]) | set(unknown["recording_id"]))
    return LabelTables(species, tp, fp, unknown, train_ids, test_ids, submission.is_file())


def with_limits(root: Path, tables: LabelTables, limits: pd.DataFrame, nested: bool) -> LabelTables:
    """The same tables read again against each recording's length and rate (the box rule, now with them known)."""
    k = len(tables.species)
    tp = read_boxes(root / "train_tp.csv", k, limits, nested)
    fp = read_boxes(root / "train_fp.csv", k, limits, nested) if (root / "train_fp.csv").exists() else tables.fp
    unknown = read_boxes(root / UNKNOWN_FILE, None, limits, nested, unknown=True) if (root / UNKNOWN_FILE).exists() \
        else tables.unknown
    return LabelTables(tables.species, tp, fp, unknown, tables.train_ids, tables.test_ids, tables.has_submission)


def check_band(comp: Competition, fmax: float) -> None:
    """Every recording reaches the features' top frequency: one recorded at a rate whose Nyquist is below ``fmax``
    would have empty mel bands where the others have sound, and a model learns the recorder instead of the species.
    Mixed rates are fine otherwise (each recording is resampled to ``features.sample_rate``)."""
    if comp.recordings is None:
        return
    rates = comp.recordings["sample_rate"].to_numpy(np.float64)
    low = np.flatnonzero(rates / 2 < fmax)
    if len(low):
        i = int(low[0])
        path = comp.root / RECORDINGS_FILE
        raise _row_error(path, i, "sample_rate", f"{rates[i]:g} Hz ({comp.recordings.index[i]}): its Nyquist "
                         f"frequency {rates[i] / 2:g} Hz is below features.fmax {fmax:g} Hz, so its top mel bands "
                         f"would be empty where the others hold sound ({len(low)} recording(s)); set "
                         f"features.fmax={rates.min() / 2:g} or leave them out")


def check_box_band(comp: Competition, fmin: float, fmax: float) -> None:
    """Every TP and FP box reaches into the features' band ``[fmin, fmax]``: a box wholly above ``fmax`` (a 17 kHz
    call under an 11 kHz model) or below ``fmin`` is a call the model cannot hear, and training on it would teach
    the species from whatever else sounds at that time. Refused, naming the first such row and the count."""
    for name, table in (("train_tp.csv", comp.tp), ("train_fp.csv", comp.fp)):
        outside = ((table["f_min"] >= fmax) | (table["f_max"] <= fmin)).to_numpy()
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            row = table.iloc[i]
            raise _row_error(comp.root / name, i, "f_min" if row["f_min"] >= fmax else "f_max",
                             f"the box {row['f_min']:g}-{row['f_max']:g} Hz of {row['recording_id']} lies outside the "
                             f"features' band {fmin:g}-{fmax:g} Hz, so the model cannot hear it ({int(outside.sum())} "
                             "box(es)); raise features.fmax (recordings at twice that rate or more) or leave them out")


def check_box_limits(comp: Competition) -> None:
    """The competition's audio layout: every box inside its recording and below its Nyquist frequency, with each
    labelled recording's length and rate read from its header (nothing decoded). ``recordings.csv`` carries them
    (checked by :func:`read_competition`); precomputed arrays are checked against their frames
    (``method/preflight.check_box_frames``)."""
    if comp.recordings is not None or comp.layout != "audio":
        return
    limits = audio_limits({rid: comp.path("train", rid) for rid in comp.train_ids})
    for name in ("train_tp.csv", "train_fp.csv"):
        if (comp.root / name).exists():
            read_boxes(comp.root / name, len(comp.species), limits)


