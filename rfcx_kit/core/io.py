"""Atomic file writes: write to a temporary file beside the target, then rename.

A killed process therefore never leaves a truncated file under the final name, which matters for
resumable work (feature caches, checkpoints, predictions): a file that exists is a finished file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as ``None`` and numpy scalars/arrays as Python ones,
    so that ``json.dumps(..., allow_nan=False)`` writes strict JSON (``null``, never a bare ``NaN``)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (see :func:`strict_json`)."""
    return json.dumps(strict_json(value), indent=indent, allow_nan=False)


def atomic_write_json(path: str | Path, value: Any, indent: int | None = 2) -> None:
    """Write ``value`` as strict JSON, atomically."""
    atomic_write_text(path, json_text(value, indent) + "\n")


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


def check_output_path(out: str | Path, keep: dict[str, Path], option: str = "--out", replaces: bool = True) -> None:
    """The one rule for where a command writes: ``out`` may not be, hold or lie inside an input (``keep``: name ->
    path: the audio, the test recordings, a run, the tables), nor be the folder you are in or one above it.

    ``replaces``: the command replaces ``out`` whole (a folder it writes), so one that holds an input would delete
    it; otherwise (a file written beside others) only ``out`` being an input, or lying inside a folder the command
    reads, is refused. A name of ``keep`` starting with ``labels`` is a table, which may sit beside ``out``.

    Raises:
        ConfigError naming the option, the path and the input.
    """
    from rfcx_kit.core.errors import ConfigError

    out = Path(out)
    resolved = out.resolve()
    here = Path.cwd().resolve()
    if replaces and (resolved == here or resolved in here.parents):
        raise ConfigError(f"{option} {out}: it is {'the folder you are in' if resolved == here else 'above the folder you are in'}"
                          f" ({resolved}); replacing it would pull the floor from under this shell: name a new folder")
    for name, path in keep.items():
        inside = Path(path).resolve()
        if inside == resolved or (replaces and resolved in inside.parents):
            raise ConfigError(f"{option} {out}: it {'is' if inside == resolved else 'holds'} the {name} ({path}); "
                              "writing there would delete or overwrite them: write elsewhere")
        if not name.startswith("labels") and inside.is_dir() and inside in resolved.parents:
            raise ConfigError(f"{option} {out}: it lies inside the {name} ({path}), which this command reads: "
                              "outputs stay out of inputs (the next import or prediction would find them there); "
                              "write elsewhere")
