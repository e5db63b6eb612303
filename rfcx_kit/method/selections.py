"""Raven selection tables of predicted windows: what ecologists open beside the recording (Raven Pro, Sonic
Visualiser, OpenSoundscape and BirdNET-Analyzer read and write the same tab-separated format).

One table per recording, ``DIR/{recording_id}.selections.txt`` (a recording id ``siteA/rec1`` gives
``DIR/siteA/rec1.selections.txt``), one selection per call-level event (``method/events.py``: a run of the
framewise output at or above ``min_conf``), or in window mode one per window and species scoring at least it:

    Selection  View  Channel  Begin Time (s)  End Time (s)  Low Freq (Hz)  High Freq (Hz)  Species  Code  Confidence  Begin File

The band is the species' usual one (its ``species.csv`` row) where known, else 0 Hz to the features' top
frequency. A recording without a selection still gets its table (header only): it was listened to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.io import atomic_write_text
from rfcx_kit.core.species import Species

FORMATS = ("csv", "raven")  # what predict writes: one clip table, or a Raven selection table per recording
SELECTIONS = ("events", "windows")  # a Raven table's rows: call-level events, or the windows above --min-conf

COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
           "Species", "Code", "Confidence", "Begin File"]


def selection_table(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, species: Species, min_conf: float,
                    top_hz: float, begin_file: str) -> pd.DataFrame:
    """One recording's selections.

    Args:
        starts, ends: ``(N,)`` seconds of its windows (ends inside the recording).
        scores: ``(N, K)`` window probabilities.
        species: the ``K`` species (names, codes, bands).
        min_conf: keep the (window, species) cells scoring at least this.
        top_hz: the high edge of a species without a known band (the features' ``fmax``).
    Returns:
        rows in time order, then by falling confidence, numbered from 1 (columns :data:`COLUMNS`).
    """
    window, k = np.nonzero(np.nan_to_num(scores, nan=-1.0) >= min_conf)
    return event_table(starts[window], ends[window], k, scores[window, k], species, top_hz, begin_file)


def event_table(begin: np.ndarray, end: np.ndarray, k: np.ndarray, confidence: np.ndarray, species: Species,
                top_hz: float, begin_file: str) -> pd.DataFrame:
    """Selections of ``M`` detections: ``begin, end (M,)`` seconds, species ``k (M,)``, ``confidence (M,)``; in
    time order, then by falling confidence, numbered from 1, each in its species' band (columns :data:`COLUMNS`)."""
    order = np.lexsort((-np.asarray(confidence, dtype=np.float64), np.asarray(begin, dtype=np.float64)))
    begin, end, k, confidence = (np.asarray(a)[order] for a in (begin, end, k, confidence))
    low = np.nan_to_num(np.asarray(species.f_min, dtype=np.float64), nan=0.0)
    high = np.nan_to_num(np.asarray(species.f_max, dtype=np.float64), nan=top_hz)
    return pd.DataFrame({
        "Selection": np.arange(1, len(k) + 1), "View": "Spectrogram 1", "Channel": 1,
        "Begin Time (s)": np.round(begin.astype(np.float64), 4), "End Time (s)": np.round(end.astype(np.float64), 4),
        "Low Freq (Hz)": np.round(low[k], 1), "High Freq (Hz)": np.round(np.minimum(high[k], top_hz), 1),
        "Species": np.asarray(species.names, dtype=object)[k], "Code": np.asarray(species.codes, dtype=object)[k],
        "Confidence": np.round(confidence.astype(np.float64), 4), "Begin File": begin_file,
    }, columns=COLUMNS)


def table_path(out_dir: Path, recording_id: str) -> Path:
    return Path(out_dir) / f"{recording_id}.selections.txt"


def write_selection_table(path: Path, table: pd.DataFrame) -> None:
    """Tab-separated, written atomically (a reader never sees half a table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, table.to_csv(sep="\t", index=False, lineterminator="\n"))
