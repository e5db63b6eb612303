"""Annotation format ``raven``: Raven Pro selection tables (tab-separated text).

One entry of the annotation-format registry (``data/annotations/registry.py``): its reader, how its first line
is recognised, and where a folder holds it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.data.annotations.registry import AnnotationFormat
from rfcx_kit.data.annotations.table import CANDIDATE, FP, TP, FP_WORDS, TP_WORDS, assemble, find, numbers, read_grid, require, species_column

SPECIES_COLUMNS = ("Annotation", "Species", "Species_name", "Class", "Label")  # the species column when none is named: the first of these the table has
# Raven: a `FP` column marks a false positive with a "yes"-like value.
FP_FLAG = frozenset({"1", "1.0", "yes", "y", "true", "x", "fp"})


def read(path: Path, species: str | None = None) -> pd.DataFrame:
    raw = read_grid(path, "\t", csv.QUOTE_NONE)  # Raven never quotes; an annotation may hold a '"'
    begin = require(raw, path, "Begin Time (s)")
    end = require(raw, path, "End Time (s)")
    name = species_column(raw, path, SPECIES_COLUMNS, species)
    duplicates = 0
    view = find(raw, "View")
    if view is not None:
        # Raven's default export lists each selection once per view: keep the Spectrogram rows (all rows if
        # the table only has Waveform views), one per Selection. A view copy repeats its selection's times, band,
        # species and file: rows that share a Selection id but differ in any of those are other calls, and kept.
        waveform = raw[view].str.lower().str.startswith("waveform")
        kept = raw[~waveform] if (~waveform).any() else raw
        selection = find(raw, "Selection")
        if selection is not None:
            same = [selection, begin, end, name] + [c for c in (find(raw, "Low Freq (Hz)"),
                                                                find(raw, "High Freq (Hz)"), find(raw, "Begin File"),
                                                                find(raw, "Begin Path")) if c is not None]
            kept = kept.drop_duplicates(subset=same, keep="first")
        duplicates = len(raw) - len(kept)
        raw = kept
    low, high = find(raw, "Low Freq (Hz)"), find(raw, "High Freq (Hz)")
    begin_s, end_s = numbers(raw, path, begin), numbers(raw, path, end)
    columns = {"t_min": begin, "t_max": end, "f_min": low or "Low Freq (Hz)", "f_max": high or "High Freq (Hz)",
               "species": name}
    offset = find(raw, "File Offset (s)")
    if offset is not None:
        # Begin Time counts from the start of the first file of a multi-file listing; File Offset from the
        # start of the row's own file.
        t_min = numbers(raw, path, offset)
        t_max = t_min + (end_s - begin_s)
        columns["t_min"] = offset
    else:
        t_min, t_max = begin_s, end_s
    nan = pd.Series(np.nan, index=raw.index)
    f_min = numbers(raw, path, low, required=False) if low else nan
    f_max = numbers(raw, path, high, required=False) if high else nan

    # The recording: Begin File (a file name), else Begin Path (a full path on the annotator's machine), else
    # "" = the table's own file name.
    hint: pd.Series | str = ""
    begin_file, begin_path = find(raw, "Begin File"), find(raw, "Begin Path")
    if begin_file is not None:
        hint = raw[begin_file]
        columns["file_hint"] = begin_file
    if begin_path is not None:
        hint = raw[begin_path] if begin_file is None else hint.where(hint != "", raw[begin_path])
        columns.setdefault("file_hint", begin_path)

    # TP/FP: a trailing '?' on the species, or a Kind/Type column saying fp/absent/0, or an FP column saying
    # yes/1/x; otherwise TP.
    species = raw[name]
    doubtful = species.str.endswith("?")
    species = species.str.rstrip("?").str.strip()
    false_positive = doubtful
    marker = find(raw, "Kind", "Type", exclude=[name])
    if marker is not None:
        false_positive = false_positive | raw[marker].str.lower().isin(FP_WORDS)
    flag = find(raw, "FP", exclude=[name])
    if flag is not None:
        false_positive = false_positive | raw[flag].str.lower().isin(FP_FLAG)
    label = pd.Series(np.where(false_positive, FP, TP), index=raw.index)
    score = find(raw, "Confidence", "Score", exclude=[name])
    confidence: pd.Series | float = np.nan
    if score is not None:
        # a detector's table (`predict --format raven`, BirdNET): its rows are candidates, unless a person marked
        # one true (a Kind/Type of tp, ...) or false (fp, ...) after listening
        confidence = numbers(raw, path, score, required=False)
        verified_tp = raw[marker].str.lower().isin(TP_WORDS) if marker is not None else False
        label = pd.Series(np.where(false_positive, FP, np.where(verified_tp, TP, CANDIDATE)), index=raw.index)
        columns["confidence"] = score
    frame = assemble(path, raw, columns, species=species, t_min=t_min, t_max=t_max, f_min=f_min, f_max=f_max,
                      label=label, file_hint=hint, confidence=confidence)
    frame.attrs["duplicates"] = duplicates
    return frame


def detects(first: str) -> bool:
    """Tab-separated with ``Begin Time (s)``."""
    fields = [f.strip().lower() for f in first.split("\t")]
    return len(fields) > 1 and "begin time (s)" in fields


FORMAT = AnnotationFormat("raven", read, detects, glob="*.txt", detect_order=10, title="Raven Pro selection tables (tab-separated text)")
