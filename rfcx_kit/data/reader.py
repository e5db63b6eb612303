"""Read and validate a competition folder.

Two layouts are accepted:

* Kaggle's: ``train_tp.csv``, ``train_fp.csv``, ``sample_submission.csv``, ``train/*.flac``, ``test/*.flac``
  (``.wav``/``.ogg`` are read too);
* precomputed spectrograms ("Theo Viel's dataset"): the same CSVs with ``train/{recording_id}.npy`` and
  ``test/{recording_id}.npy``, each a 128 x 3751 log-mel array.

Every problem is reported as a :class:`~rfcx_kit.core.errors.DataError` that names the file, the row (1-based
data row, with its line in the file) and the field, before any work starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import AUDIO_SAMPLE_RATE, BOX_COLUMNS, N_SPECIES, SECONDS, SPECIES_COLUMNS

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


@dataclass
class Competition:
    """A validated competition folder.

    Attributes:
        root: the folder.
        layout: ``"audio"`` or ``"npy"``.
        tp, fp: the box tables (columns of :data:`BOX_COLUMNS`).
        train_ids: sorted recording ids with at least one TP or FP row (the labelled train set).
        test_ids: recording ids of ``sample_submission.csv``, in its order.
        extension: file extension of the recordings (``.flac``, ``.npy``, ...).
    """

    root: Path
    layout: str
    tp: pd.DataFrame
    fp: pd.DataFrame
    train_ids: list[str]
    test_ids: list[str]
    extension: str
    warnings: list[str] = field(default_factory=list)

    def path(self, split: str, recording_id: str) -> Path:
        """The recording's source file (audio or precomputed spectrogram)."""
        return self.root / split / f"{recording_id}{self.extension}"

    def ids(self, split: str) -> list[str]:
        return self.train_ids if split == "train" else self.test_ids

    def boxes(self) -> pd.DataFrame:
        """TP and FP boxes in one table with ``label`` +1 (TP) / -1 (FP)."""
        return pd.concat(
            [self.tp.assign(label=np.int8(1)), self.fp.assign(label=np.int8(-1))], ignore_index=True
        )

    def tp_presence(self) -> np.ndarray:
        """``(len(train_ids), 24)`` 0/1: species with a TP box in each train recording."""
        index = {rid: i for i, rid in enumerate(self.train_ids)}
        out = np.zeros((len(self.train_ids), N_SPECIES), dtype=np.int8)
        out[self.tp["recording_id"].map(index).to_numpy(), self.tp["species_id"].to_numpy()] = 1
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
        bad = ~calls["species_id"].isin(range(N_SPECIES))
        if bad.any():
            raise DataError(f"{path}: species_id {calls['species_id'][bad].iloc[0]:g} is not a species 0..{N_SPECIES - 1}")
        calls["species_id"] = calls["species_id"].astype(np.int64)
        return calls


def _row_error(file: Path, row: int, column: str, message: str) -> DataError:
    return DataError(f"{file}: row {row + 1} (line {row + 2}), field '{column}': {message}")


def check_recording_ids(ids: pd.Series, file: Path, column: str = "recording_id") -> None:
    """Refuse ids that are not plain file names (``../x``, ``a/b``, empty, hidden)."""
    text = ids.astype(str)
    bad = ~text.map(lambda s: bool(_PLAIN_ID.match(s)) and ".." not in s)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _row_error(
            file, i, column, f"{text.iloc[i]!r} is not a plain recording id (letters, digits, '_', '-', '.'; no '/' or '..')"
        )


def read_boxes(path: Path, nyquist: float = AUDIO_SAMPLE_RATE / 2, seconds: float = SECONDS) -> pd.DataFrame:
    """Read and validate ``train_tp.csv`` / ``train_fp.csv``."""
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
    check_recording_ids(frame["recording_id"], path)
    for column in BOX_COLUMNS[1:]:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _row_error(path, i, column, f"{frame[column].iloc[i]!r} is not a number")
        frame[column] = numeric
    species = frame["species_id"]
    bad = (species != species.round()) | (species < 0) | (species >= N_SPECIES)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _row_error(path, i, "species_id", f"{species.iloc[i]:g} is not a species in 0..{N_SPECIES - 1}")
    frame["species_id"] = species.astype(np.int64)
    frame["songtype_id"] = frame["songtype_id"].astype(np.int64)
    checks = [
        ("t_min", frame["t_min"] < 0, "is negative"),
        ("t_max", frame["t_max"] > seconds, f"is beyond the {seconds:g} s recording"),
        ("t_max", frame["t_max"] <= frame["t_min"], "is not after t_min"),
        ("f_min", frame["f_min"] < 0, "is negative"),
        ("f_max", frame["f_max"] > nyquist, f"is above the Nyquist frequency {nyquist:g} Hz"),
        ("f_max", frame["f_max"] <= frame["f_min"], "is not above f_min"),
    ]
    first: tuple[int, str, str] | None = None
    for column, mask, message in checks:
        if mask.any():
            i = int(np.flatnonzero(mask.to_numpy())[0])
            if first is None or i < first[0]:
                first = (i, column, f"{float(frame[column].iloc[i]):g} {message}")
    if first is not None:
        raise _row_error(path, *first)
    return frame


def read_sample_submission(path: Path) -> list[str]:
    """Recording ids of ``sample_submission.csv`` (header ``recording_id,s0..s23``, ids unique)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str})
    except Exception as exc:  # empty, not CSV, not UTF-8...: one line naming the file
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    expected = ["recording_id", *SPECIES_COLUMNS]
    if list(frame.columns) != expected:
        raise DataError(f"{path}: header must be {','.join(expected)}, got {','.join(map(str, frame.columns))}")
    check_recording_ids(frame["recording_id"], path)
    dup = frame["recording_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise _row_error(path, i, "recording_id", f"{frame['recording_id'].iloc[i]!r} appears twice")
    if not len(frame):
        raise DataError(f"{path}: no recordings after the header (the test ids come from this file)")
    return frame["recording_id"].tolist()


def _detect_layout(root: Path) -> tuple[str, str]:
    folder = root / "train"
    if not folder.is_dir():
        raise DataError(f"{root}: no train/ folder (expected train/*.flac or train/*.npy)")
    counts: dict[str, int] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            suffix = Path(entry.name).suffix.lower()
            if suffix in (*AUDIO_EXTENSIONS, ".npy"):
                counts[suffix] = counts.get(suffix, 0) + 1
    if not counts:
        raise DataError(f"{folder}: holds no .flac, .wav, .ogg or .npy recordings")
    extension = max(counts, key=lambda k: counts[k])
    return ("npy" if extension == ".npy" else "audio"), extension


def _missing(root: Path, split: str, ids: list[str], extension: str) -> list[str]:
    present = {p.name for p in (root / split).glob(f"*{extension}")} if (root / split).is_dir() else set()
    return [rid for rid in ids if f"{rid}{extension}" not in present]


def _describe_missing(root: Path, split: str, missing: list[str], what: str) -> str:
    head = ", ".join(missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return f"{root / split}: {len(missing)} {what} recording(s) have no file: {head}{more}"


def read_competition(root: str | Path, require_test: bool = True, n_mels: int | None = None) -> Competition:
    """Validate a competition folder and return its tables and layout.

    ``n_mels``: for precomputed arrays, the mel bins the config expects (``features.n_mels``); None: any, as
    long as train and test agree.

    Raises:
        DataError: a CSV is malformed (file, row, field named), or audio is missing for a labelled
        recording (the first few named, with the count).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    layout, extension = _detect_layout(root)
    tp = read_boxes(root / "train_tp.csv")
    fp = read_boxes(root / "train_fp.csv")
    test_ids = read_sample_submission(root / "sample_submission.csv")
    train_ids = sorted(set(tp["recording_id"]) | set(fp["recording_id"]))
    missing = _missing(root, "train", train_ids, extension)
    if missing:
        raise DataError(_describe_missing(root, "train", missing, "labelled"))
    if require_test:
        missing = _missing(root, "test", test_ids, extension)
        if missing:
            raise DataError(_describe_missing(root, "test", missing, "sample_submission.csv"))
    comp = Competition(root, layout, tp, fp, train_ids, test_ids, extension)
    if layout == "npy":
        _check_npy_shape(comp, n_mels)
    return comp


def _check_npy_shape(comp: Competition, expected_mels: int | None = None) -> None:
    """Peek at one precomputed array per split: a wrong shape is better found now than mid-training.

    Every array's shape is checked against the config before training (``data/check.py``)."""
    seen: tuple[int, Path] | None = None
    for split in ("train", "test"):
        ids = comp.ids(split)
        if not ids or not comp.path(split, ids[0]).exists():
            continue
        path = comp.path(split, ids[0])
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
        if array.ndim != 2 or (expected_mels is not None and array.shape[0] != expected_mels):
            want = f"a {expected_mels} x T" if expected_mels is not None else "a 2-D (mel bins x T)"
            raise DataError(f"{path}: expected {want} log-mel array (features.n_mels), got shape {array.shape}")
        if seen is not None and array.shape[0] != seen[0]:
            raise DataError(f"{path}: {array.shape[0]} mel bins, but {seen[1]} has {seen[0]}: train and test "
                            "arrays must share one grid")
        seen = (array.shape[0], path)
