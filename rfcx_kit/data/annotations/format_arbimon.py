"""Annotation format ``arbimon``: Arbimon validation exports (CSV).

One entry of the annotation-format registry (``data/annotations/registry.py``): its reader, how its first line
is recognised, and where a folder holds it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.data.annotations.registry import AnnotationFormat
from rfcx_kit.data.annotations.table import assemble, find, kind_of, numbers, raise_first, read_grid, require, species_column

SPECIES_COLUMNS = ("species", "species_name")  # the species column when none is named: the first of these the table has


def read(path: Path, species: str | None = None) -> pd.DataFrame:
    raw = read_grid(path, ",", csv.QUOTE_MINIMAL)
    recording = require(raw, path, "recording")
    name = species_column(raw, path, SPECIES_COLUMNS, species)
    validated = require(raw, path, "validated", "present", what="1 = present, 0 = absent")
    kind = kind_of(raw[validated])
    # Rows not (yet) validated, or validated with another value, are left out and counted.
    skipped = int((kind == 0).sum())
    raw, kind = raw[kind != 0], kind[kind != 0]
    if find(raw, "x1") is not None or find(raw, "t_min") is None:
        t_cols = (require(raw, path, "x1", "t_min"), require(raw, path, "x2", "t_max"))
        f_cols = (find(raw, "y1", "f_min"), find(raw, "y2", "f_max"))
    else:
        t_cols = (require(raw, path, "t_min"), require(raw, path, "t_max"))
        f_cols = (find(raw, "f_min"), find(raw, "f_max"))
    nan = pd.Series(np.nan, index=raw.index)
    songtype = find(raw, "songtype", "songtype_id", "songtype_name")
    columns = {"t_min": t_cols[0], "t_max": t_cols[1], "f_min": f_cols[0] or "y1", "f_max": f_cols[1] or "y2",
               "species": name, "file_hint": recording}
    frame = assemble(
        path, raw, columns, species=raw[name], t_min=numbers(raw, path, t_cols[0]),
        t_max=numbers(raw, path, t_cols[1]),
        f_min=numbers(raw, path, f_cols[0], required=False) if f_cols[0] else nan,
        f_max=numbers(raw, path, f_cols[1], required=False) if f_cols[1] else nan,
        label=kind, file_hint=raw[recording], songtype=raw[songtype] if songtype else "",
    )
    hint_missing = frame["file_hint"] == ""
    raise_first(frame, [("file_hint", hint_missing, lambda r: "empty recording name")], {str(path): columns})
    frame.attrs["skipped"] = skipped
    return frame


def detects(first: str) -> bool:
    """A CSV header with ``validated`` or ``present``, or ``recording`` with ``x1``."""
    columns = {c.strip().strip('"').lower() for c in next(csv.reader([first]), [])}
    return "validated" in columns or "present" in columns or {"recording", "x1"} <= columns


FORMAT = AnnotationFormat("arbimon", read, detects, glob="*.csv", detect_order=30, title="Arbimon validation exports (CSV)")
