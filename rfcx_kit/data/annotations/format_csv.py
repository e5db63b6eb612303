"""Annotation format ``csv``: a generic CSV: recording, species, t_min, t_max [, f_min, f_max, kind].

One entry of the annotation-format registry (``data/annotations/registry.py``): its reader, how its first line
is recognised, and where a folder holds it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.data.annotations.registry import AnnotationFormat
from rfcx_kit.data.annotations.table import assemble, find, kind_of, numbers, raise_first, read_grid, require, row_error, species_column

SPECIES_COLUMNS = ("Annotation", "Species", "Species_name", "Class", "Label")  # the species column when none is named: the first of these the table has


def read(path: Path, species: str | None = None) -> pd.DataFrame:
    raw = read_grid(path, ",", csv.QUOTE_MINIMAL)
    recording = require(raw, path, "recording", "recording_id")
    name = species_column(raw, path, SPECIES_COLUMNS, species)
    if find(raw, "t_min") is not None or find(raw, "start") is None:
        t_cols = (require(raw, path, "t_min", "start"), require(raw, path, "t_max", "end"))
    else:
        t_cols = (require(raw, path, "start"), require(raw, path, "end"))
    f_cols = (find(raw, "f_min"), find(raw, "f_max"))
    nan = pd.Series(np.nan, index=raw.index)
    columns = {"t_min": t_cols[0], "t_max": t_cols[1], "f_min": f_cols[0] or "f_min", "f_max": f_cols[1] or "f_max",
               "species": name, "file_hint": recording}
    # TP/FP: the first of kind, tp, label that is not the species column; no such column: every row is TP.
    kind_column = find(raw, "kind", "tp", "label", exclude=[name])
    if kind_column is not None:
        label = kind_of(raw[kind_column])
        bad = label == 0
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, int(raw["_row"].iloc[i]), int(raw["_line"].iloc[i]), kind_column,
                             f"{raw[kind_column].iloc[i]!r} is neither TP (tp, 1, present) nor FP (fp, 0, -1, absent)")
    else:
        label = pd.Series(1, index=raw.index)
    frame = assemble(
        path, raw, columns, species=raw[name], t_min=numbers(raw, path, t_cols[0]),
        t_max=numbers(raw, path, t_cols[1]),
        f_min=numbers(raw, path, f_cols[0], required=False) if f_cols[0] else nan,
        f_max=numbers(raw, path, f_cols[1], required=False) if f_cols[1] else nan,
        label=label, file_hint=raw[recording],
    )
    raise_first(frame, [("file_hint", frame["file_hint"] == "", lambda r: "empty recording")], {str(path): columns})
    return frame


def detects(first: str) -> bool:
    """A CSV header with ``recording`` or ``recording_id`` (told after Arbimon's, which may have ``recording`` too)."""
    columns = {c.strip().strip('"').lower() for c in next(csv.reader([first]), [])}
    return bool(columns & {"recording", "recording_id"})


FORMAT = AnnotationFormat("csv", read, detects, glob="*.csv", detect_order=40, title="a generic CSV: recording, species, t_min, t_max [, f_min, f_max, kind]")
