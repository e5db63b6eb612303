"""Atomic file writes: write to a temporary file beside the target, then rename.

A killed process therefore never leaves a truncated file under the final name, which matters for
resumable work (feature caches, checkpoints, predictions): a file that exists is a finished file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the result the usual file mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` whose result appears under ``path`` only once the block has finished writing."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_csv(path: str | Path, frame: pd.DataFrame, **kwargs: Any) -> None:
    kwargs.setdefault("index", False)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, **kwargs)


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file (the result can be opened with ``mmap_mode='r'``)."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
