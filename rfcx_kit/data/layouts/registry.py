"""THE LAYOUT REGISTRY: every way a data folder can be laid out, and the one reader of any of them.

Each layout is one file in this folder, ``layout_<name>.py``, with ``detects(root) -> bool`` (its marker: a file
or folder only it has), ``read(root, require_test, n_mels) -> Competition`` (through ``data/reader.py``'s table
readers and box rule) and a module-level ``LAYOUT = Layout(...)``. :func:`read_competition` asks them in their
``order`` and reads the folder with the first that recognises it; the last, Kaggle's ``train/`` and ``test/``
folders, takes whatever is left and names what is missing.

Adding a layout (BirdCLEF's ``train_audio/<species>/``, say): a new ``layout_<name>.py`` and its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rfcx_kit.core.config import DataConfig
from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.core.registry import discover
from rfcx_kit.data.reader import Competition


@dataclass(frozen=True)
class Layout:
    """One data-folder layout.

    Attributes:
        name: how it is named in logs and errors.
        detects: ``root -> bool``: the folder is laid out this way.
        read: ``(root, require_test, n_mels, options) -> Competition`` (``options``: the config's ``data``
            section); every problem a DataError naming file, row, field.
        order: :func:`read_competition` tries the layouts by this number, lowest first.
        title: one line saying what the folder holds.
    """

    name: str
    detects: Callable[[Path], bool]
    read: Callable[[Path, bool, int | None, DataConfig], Competition]
    order: int
    title: str = ""


def layouts() -> dict[str, Layout]:
    """Every registered layout by name, in the order :func:`read_competition` tries them."""
    found = discover("rfcx_kit.data.layouts", "layout_", "LAYOUT")
    return {layout.name: layout for layout in sorted(found, key=lambda layout: (layout.order, layout.name))}


def read_competition(root: str | Path, require_test: bool = True, n_mels: int | None = None,
                     options: DataConfig | None = None) -> Competition:
    """Validate a data folder of any registered layout and return its tables, species and recordings.

    ``require_test``: every test recording must have its file. ``n_mels``: for precomputed arrays, the mel bins
    the config expects (``features.n_mels``); None: any, as long as train and test agree. ``options``: the
    config's ``data`` section (None: its defaults); ``data.layout`` other than ``auto`` forces that layout.

    Raises:
        DataError: a CSV is malformed (file, row, field named), a box lies outside its recording or above its
        Nyquist frequency, or audio is missing for a labelled recording (the first few named, with the count).
    """
    root = Path(root)
    options = options if options is not None else DataConfig()
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    known = layouts()
    if options.layout != "auto":
        if options.layout not in known:
            raise ConfigError(f"data.layout: {options.layout!r} is not auto or one of {', '.join(known)}")
        return known[options.layout].read(root, require_test, n_mels, options)
    for layout in known.values():
        if layout.detects(root):
            return layout.read(root, require_test, n_mels, options)
    raise DataError(f"{root}: not a data folder of any layout rfcx-kit reads ({', '.join(layouts())})")
