"""Every feature array checked before any training: header, dtype, shape, size, finiteness.

The header pass reads only each ``.npy`` file's header (no data), so a broken file anywhere in a large set is
named before any work starts. The finiteness pass streams every array once through a memory map; the files
it verified are recorded in a feature cache (``checked.json``: name -> [size, mtime_ns]), so a later run
re-reads only files that changed; a precomputed data folder is never written to and is streamed every time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.io import atomic_write_text

CHECKED_NAME = "checked.json"
MIN_FRAME_SHARE = 0.9  # up to 10 % shorter than features.seconds implies is zero-padded (FeatureStore); shorter is refused


def read_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, shape, data offset)`` of a ``.npy`` file, from its header alone."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
            return np.dtype(dtype), tuple(shape), handle.tell()
    except FileNotFoundError:
        raise DataError(f"{path}: feature file missing") from None
    except (ValueError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc or 'empty or truncated header'})") from None


def check_header(path: Path, n_mels: int, frames: int | None) -> None:
    """One array's header: float dtype, ``(n_mels, T)`` with ``T`` close to ``frames`` (None: any length), a
    complete file."""
    dtype, shape, offset = read_header(path)
    if dtype.kind != "f":
        raise DataError(f"{path}: dtype {dtype} is not a float log-mel array (float16 or float32 expected)")
    if len(shape) != 2 or shape[0] != n_mels:
        raise DataError(f"{path}: shape {shape}, expected ({n_mels}, T) log-mel frames (features.n_mels={n_mels})")
    if frames is not None and shape[1] < MIN_FRAME_SHARE * frames:
        raise DataError(f"{path}: {shape[1]} frames, expected {frames} (features.seconds and hop_length give "
                        f"{frames}); the recording is too short or was cut")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise DataError(f"{path}: {size} bytes, the header promises {expected}: the file is truncated or padded")


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def check_arrays(paths: dict[str, Path], n_mels: int, frames: int | None, record: Path | None = None,
                 progress: bool = False) -> int:
    """Check every array of ``paths`` (name -> file); returns how many were streamed for finiteness.

    Raises :class:`DataError` naming the first bad file. ``record``: the ``checked.json`` to read and update.
    """
    for path in paths.values():  # headers first: cheap, and a wrong file is named before any long pass
        check_header(path, n_mels, frames)
    done: dict[str, list[int]] = {}
    if record is not None and record.is_file():
        try:
            done = json.loads(record.read_text())
        except ValueError:
            done = {}
    todo = [(name, path) for name, path in paths.items() if done.get(name) != _stamp(path)]
    from rfcx_kit.core.progress import progress_bar

    for name, path in progress_bar(todo, unit="file", desc="checking arrays", enabled=progress and len(todo) >= 50):
        array = np.load(path, mmap_mode="r")
        # In row blocks: a float16 array of 128 x 3751 is 1 MB, but never hold more than a block as float32.
        for lo in range(0, array.shape[0], 32):
            if not np.isfinite(array[lo:lo + 32]).all():
                raise DataError(f"{path}: holds NaN or infinite values; rebuild or drop this recording")
        done[name] = _stamp(path)
    if record is not None and todo and os.access(record.parent, os.W_OK):
        atomic_write_text(record, json.dumps(done, sort_keys=True))
    return len(todo)
