"""Layout ``folders``: the competition's, Kaggle's files or precomputed spectrograms.

``train_tp.csv``, ``train_fp.csv`` (optional), ``sample_submission.csv``, ``train/*.flac`` and ``test/*.flac``
(``.wav``/``.ogg``/``.mp3`` are read too), or ``train/{recording_id}.npy`` and ``test/{recording_id}.npy`` log-mel
arrays ("Theo Viel's dataset", 128 x 3751). Without ``sample_submission.csv`` the test recordings are the files in
``test/``. Each recording's length and rate are checked against its boxes before training (``check_box_limits``:
it opens every file). The last layout tried: it takes any folder and names what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rfcx_kit.core.config import DataConfig
from rfcx_kit.core.errors import DataError
from rfcx_kit.data.layouts.registry import Layout
from rfcx_kit.data.reader import AUDIO_EXTENSIONS, Competition, read_label_tables


def detects(root: Path) -> bool:
    return True  # the fallback: read() names what a folder of this layout lacks


def read(root: Path, require_test: bool = True, n_mels: int | None = None,
         options: DataConfig | None = None) -> Competition:
    layout, extension = storage(root)
    tables = read_label_tables(root, nested=False)
    test_ids = tables.test_ids
    if not tables.has_submission and (root / "test").is_dir():
        test_ids = sorted(p.name[: -len(extension)] for p in (root / "test").glob(f"*{extension}"))
    missing = _missing(root, "train", tables.train_ids, extension)
    if missing:
        raise DataError(_describe_missing(root, "train", missing, "labelled"))
    if require_test:
        missing = _missing(root, "test", test_ids, extension)
        if missing:
            raise DataError(_describe_missing(root, "test", missing, "sample_submission.csv"))
    comp = Competition(root, layout, tables.tp, tables.fp, tables.train_ids, test_ids, extension,
                       species=tables.species, unknown=tables.unknown)
    if layout == "npy":
        check_npy_shape(comp, n_mels)
    return comp


def storage(root: Path) -> tuple[str, str]:
    """``("audio" | "npy", the extension most of train/'s recordings have)``."""
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


def check_npy_shape(comp: Competition, expected_mels: int | None = None) -> None:
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


LAYOUT = Layout("folders", detects, read, order=90,
                title="the competition's train/ and test/ folders of audio or .npy log-mel arrays, with its tables")
