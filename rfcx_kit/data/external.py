"""Window predictions made elsewhere, and the competition's boxes as window labels.

The competition's external layout (a top team's out-of-fold files, ``patch,recording_id,s0..s23``): one row per
window (``patch``) of a 60 s recording on the method post's grid (Theo Viel's 32 kHz arrays, 3751 centred
frames, windows of 512 frames with 49 of cover). ``rfcx-kit labels from-oof`` reads them here and hands them to
the loop's one pseudo-label design (``method/pseudo.py``).

Shapes: ``R`` recordings, ``N`` windows per recording, ``K`` = 24 species, ``F`` files (models).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.grid import COVER, RECORDING_RATE, WINDOW, rfcx_grid
from rfcx_kit.core.scale import detect_scale
from rfcx_kit.core.species import Species
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.data.reader import first_box_fault, read_boxes

# The default spectrogram grid, from the one place that defines it: predictions made elsewhere for the
# competition are on it ...
_GRID = rfcx_grid()
FRAMES, SAMPLE_RATE, HOP_LENGTH = _GRID.frames, _GRID.sample_rate, _GRID.hop_length
# ... with the competition's species: the external layout's columns are s0..s23.
EXTERNAL_COLUMNS = Species.rfcx().columns


def original_window_labels(
    boxes: pd.DataFrame,
    recording_ids: Sequence[str],
    positions: Sequence[Sequence[int]],
    frames: int = FRAMES,
    sample_rate: int = SAMPLE_RATE,
    hop_length: int = HOP_LENGTH,
    n_species: int | None = None,
) -> np.ndarray:
    """Window-level original labels of the TP/FP boxes.

    Args:
        boxes: columns ``recording_id, species_id, t_min, t_max, label`` (``label`` +1 TP, -1 FP), one row
            per box. Boxes of recordings not in ``recording_ids`` are ignored (the caller may pass a subset).
        recording_ids: the ``R`` recordings, in the row order of the result.
        positions: ``N`` windows as ``[start, end)`` frames (``rfcx_kit.data.window.window_positions``); frames
            at or past ``frames`` are padding and hold no box.
        frames, sample_rate, hop_length: the spectrogram grid (see :func:`box_frames`).
    Returns:
        ``(R, N, K)`` int8: +1 where a TP box overlaps the window, -1 where an FP box does and no TP box
        of the same species does (TP wins), 0 unknown. ``n_species``: ``K`` (None: inferred from the ids).
    """
    ids = pd.Index(np.asarray(recording_ids, dtype=object))
    if not ids.is_unique:
        raise ValueError("recording_ids must be unique")
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    if len(pos) == 0 or np.any(pos[:, 1] <= pos[:, 0]) or np.any(pos[:, 0] < 0):
        raise ValueError(f"positions must be non-empty [start, end) pairs with end > start >= 0: {positions}")
    k = len(EXTERNAL_COLUMNS) if n_species is None else n_species
    boxes = _check_boxes(boxes, k, (frames - 1) * hop_length / sample_rate)
    return FramewiseLabels(boxes, list(ids), frames, sample_rate, hop_length, k).windows(pos.tolist())


def _check_boxes(boxes: pd.DataFrame, n_species: int, seconds: float) -> pd.DataFrame:
    """A box frame given in memory: its columns, species, labels +-1, and the one box rule
    (``data.reader.first_box_fault``). Errors name ``box row i`` (0-based)."""
    missing = [c for c in ("recording_id", "species_id", "t_min", "t_max", "label") if c not in boxes.columns]
    if missing:
        raise DataError(f"boxes lack column(s) {missing}; have {list(boxes.columns)}")
    number = {c: pd.to_numeric(boxes[c], errors="coerce").astype(np.float64) for c in ("species_id", "t_min", "t_max", "label")}
    checks = [
        (~number["species_id"].isin(np.arange(n_species)), f"species_id must be an integer 0..{n_species - 1}"),
        (~(np.isfinite(number["t_min"]) & np.isfinite(number["t_max"])), "t_min/t_max must be finite numbers"),
        (~number["label"].isin((1, -1)), "label must be +1 (TP) or -1 (FP)"),
        (boxes["recording_id"].isna(), "recording_id is empty"),
    ]
    for bad, why in checks:
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise DataError(f"box row {i}: {why} (row: {boxes.iloc[i].to_dict()})")
    fault = first_box_fault(pd.DataFrame({"recording_id": boxes["recording_id"].astype(str), "t_min": number["t_min"],
                                          "t_max": number["t_max"]}), seconds)
    if fault is not None:
        i, column, message = fault
        raise DataError(f"box row {i}, field '{column}': {message} (row: {boxes.iloc[i].to_dict()})")
    return boxes


def labelled_boxes(tp: str | Path | None = None, fp: str | Path | None = None,
                   seconds: float | None = None) -> pd.DataFrame:
    """``train_tp.csv`` / ``train_fp.csv`` as one frame with ``label`` +1 (TP) / -1 (FP).

    Each file goes through the data layer's one box reader (``data.reader.read_boxes``: columns, ids, species,
    times inside the recording, frequencies below Nyquist, errors naming file, row and field).
    Columns: recording_id (text), species_id, t_min, t_max, label.
    """
    # the competition's recordings: its 24 species, 60 s (or ``seconds``) at 48 kHz
    limits = (_GRID.seconds if seconds is None else float(seconds), float(RECORDING_RATE))
    parts = [read_boxes(Path(path), len(EXTERNAL_COLUMNS), limits)[["recording_id", "species_id", "t_min", "t_max"]]
             .assign(label=label)
             for path, label in ((tp, 1), (fp, -1)) if path is not None]
    if not parts:
        return pd.DataFrame({"recording_id": [], "species_id": [], "t_min": [], "t_max": [], "label": []})
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Window predictions made elsewhere: patch,recording_id,s0..s23
# --------------------------------------------------------------------------------------------------
def _read_oof_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One file in the external layout -> (recording_id (n,) object, patch (n,) int64, values (n, 24)
    float64, line (n,) int64 file line of each row: header = line 1). Checks columns, types, finiteness,
    and that each recording has patches 0..P-1 exactly once (P = this file's largest patch + 1)."""
    try:
        frame = pd.read_csv(path, dtype={"recording_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from exc
    need = ["patch", "recording_id"] + EXTERNAL_COLUMNS
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected patch,recording_id,s0..s23")
    if frame.empty:
        raise DataError(f"{path}: no rows")
    line = np.arange(len(frame), dtype=np.int64) + 2

    rid = frame["recording_id"]
    if rid.isna().any():
        i = int(np.argmax(rid.isna().to_numpy()))
        raise DataError(f"{path}: line {line[i]}: recording_id is empty")
    patch_f = pd.to_numeric(frame["patch"], errors="coerce").to_numpy(np.float64)
    bad = ~(np.isfinite(patch_f) & (patch_f >= 0) & (patch_f == np.round(patch_f)))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: line {line[i]}: patch {frame['patch'].iloc[i]!r} is not an integer >= 0")
    patch = patch_f.astype(np.int64)

    values = frame[EXTERNAL_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise DataError(f"{path}: line {line[i]}, column {EXTERNAL_COLUMNS[j]}: "
                        f"{frame[EXTERNAL_COLUMNS[j]].iloc[i]!r} is not a finite number")

    keys = pd.DataFrame({"recording_id": rid.to_numpy(object), "patch": patch})
    dup = keys.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.argmax(((keys["recording_id"] == keys["recording_id"].iat[i])
                               & (keys["patch"] == patch[i])).to_numpy()))
        raise DataError(f"{path}: line {line[i]}: recording {rid.iat[i]} patch {patch[i]} appears a second "
                        f"time (first at line {line[first]}); each patch must appear exactly once")
    n_patches = int(patch.max()) + 1
    sizes = keys.groupby("recording_id", sort=False).size()
    short = sizes[sizes < n_patches]
    if len(short):
        name = short.index[0]
        rows = np.flatnonzero((keys["recording_id"] == name).to_numpy())
        lacking = sorted(set(range(n_patches)) - set(patch[rows].tolist()))
        shown = ", ".join(map(str, lacking[:10])) + (f" and {len(lacking) - 10} more" if len(lacking) > 10 else "")
        raise DataError(f"{path}: recording {name} (first row at line {line[rows[0]]}) has no patch "
                        f"{shown}: every recording needs patches 0..{n_patches - 1} "
                        f"exactly once ({len(short)} recording(s) incomplete)")
    return rid.to_numpy(object), patch, values, line


def read_oof_files(paths: Sequence[str | Path]) -> tuple[list[str], np.ndarray, str]:
    """Read window predictions in the external layout ``patch,recording_id,s0..s23`` (one file per fold).

    The files are parts of one out-of-fold set: every recording must sit in exactly one file, with patches
    (windows) ``0..N-1`` exactly once each, and ``N`` the same in all files.

    Returns:
        ``recording_ids`` (``R``, in order of first appearance, file by file), ``preds`` ``(R, N, K)``
        float64 as stored (not converted), and the detected scale (:func:`detect_scale`).
    Raises:
        DataError naming the file and line of the first problem.
    """
    if not paths:
        raise DataError("no prediction files given")
    parts = [_read_oof_file(p) for p in paths]
    n_patches = [int(part[1].max()) + 1 for part in parts]
    if len(set(n_patches)) > 1:
        detail = ", ".join(f"{p}: {n}" for p, n in zip(paths, n_patches))
        raise DataError(f"files disagree on the number of patches per recording ({detail})")

    # A recording in two files: name both files and lines (first row of the recording in each).
    firsts = pd.concat(
        [pd.DataFrame({"recording_id": rid, "file": k, "line": line}).drop_duplicates("recording_id")
         for k, (rid, _, _, line) in enumerate(parts)],
        ignore_index=True,
    )
    twice = firsts.duplicated("recording_id", keep=False)
    if twice.any():
        name = firsts.loc[twice, "recording_id"].iat[0]
        where = firsts[firsts["recording_id"] == name]
        detail = " and ".join(f"{paths[f]} (line {ln})" for f, ln in zip(where["file"], where["line"]))
        raise DataError(f"recording {name} is in two files: {detail} "
                        f"({int(twice.sum() // 2)} recording(s) shared); out-of-fold files must not overlap")

    rid = np.concatenate([part[0] for part in parts])
    patch = np.concatenate([part[1] for part in parts])
    values = np.concatenate([part[2] for part in parts])
    row, ids = pd.factorize(rid)  # order of first appearance
    preds = np.empty((len(ids), n_patches[0], len(EXTERNAL_COLUMNS)), dtype=np.float64)
    preds[row, patch] = values  # every (row, patch) is set exactly once: checked above
    return [str(x) for x in ids], preds, detect_scale(preds)


# --------------------------------------------------------------------------------------------------
# rfcx-kit labels from-oof
# --------------------------------------------------------------------------------------------------
def read_votes(files: Sequence[str]) -> tuple[list[str], np.ndarray, str]:
    """Each file = one model's predictions of the same recordings -> ``(F, R, N, K)`` aligned to file 1."""
    ids, first, _ = read_oof_files([files[0]])
    index = pd.Index(ids)
    stack = [first]
    for path in files[1:]:
        other_ids, preds, _ = read_oof_files([path])
        other = pd.Index(other_ids)
        if preds.shape[1] != first.shape[1]:
            raise DataError(f"{path}: {preds.shape[1]} patches per recording, {files[0]} has {first.shape[1]}")
        if len(other) != len(index) or not index.isin(other).all():
            lacking = index.difference(other)
            extra = other.difference(index)
            raise DataError(
                f"with --votes every FILE is one model's predictions of the same recordings; {path} lacks "
                f"{len(lacking)} and adds {len(extra)} recording(s) compared with {files[0]} "
                f"(without --votes, FILES are joined as disjoint out-of-fold parts)"
            )
        stack.append(preds[other.get_indexer(index)])
    preds = np.stack(stack)
    return ids, preds, detect_scale(preds)


def describe_scale(preds: np.ndarray, detected: str, asked: str) -> tuple[str, str]:
    """(scale to use, one line for the user saying which and why)."""
    lo, hi = float(preds.min()), float(preds.max())
    span = f"{preds.size:,} values in [{lo:.4g}, {hi:.4g}]"
    if asked == "auto":
        if detected == "prob":
            return "prob", f"values are probabilities (all in [0,1]: {span}); --scale logit if they are logits"
        return "logit", f"values are logits (not all in [0,1]: {span}); converted with the sigmoid"
    if asked == "prob" and detected == "logit":
        raise DataError(f"--scale prob, but the values are not all in [0,1] ({span}): are they logits?")
    if asked == "prob":
        return "prob", f"values taken as probabilities (--scale prob; {span})"
    note = "; note: all are in [0,1], as probabilities would be" if detected == "prob" else ""
    return "logit", f"values taken as logits (--scale logit; {span}){note}; converted with the sigmoid"


def window_boxes(table: pd.DataFrame, preds: np.ndarray, recording_ids: Sequence[str], seconds: float | None = None,
                 window: int = WINDOW, cover: int = COVER, scale: str = "prob") -> pd.DataFrame:
    """The pseudo-positive windows of a label table as boxes a run can train on (``relabel --pseudo-boxes``).

    A window is the box: from its first frame's centre to its last real frame's, on the external layout's grid
    for recordings of ``seconds`` (None: the competition's 60); its score is the mean probability of the models that voted.

    Args:
        table: the label table (``build_label_table``); its ``pseudo_positive`` rows become boxes.
        preds: ``(R, N, K)`` or ``(F, R, N, K)`` the predictions the table came from, on ``scale``.
        recording_ids: the ``R`` recordings of ``preds``.
    Returns:
        ``recording_id, species_id, t_min, t_max, weight, score`` (``data.reader.PSEUDO_BOX_COLUMNS``).
    Raises:
        DataError: the window layout does not give ``N`` windows over recordings of ``seconds``.
    """
    from rfcx_kit.core.grid import window_positions
    from rfcx_kit.core.scale import to_prob
    from rfcx_kit.data.reader import PSEUDO_BOX_COLUMNS

    seconds = _GRID.seconds if seconds is None else seconds
    frames = _GRID.frames_of(seconds)
    positions = np.asarray(window_positions(frames, window=window, cover=cover), dtype=np.int64)
    if len(positions) != preds.shape[-2]:
        raise DataError(f"the files hold {preds.shape[-2]} patches per recording, but --window {window} --cover "
                        f"{cover} gives {len(positions)} windows over {seconds:g} s ({frames} frames; --seconds)")
    pseudo = table[table["source"] == "pseudo_positive"]
    prob = to_prob(preds, scale)
    prob = prob.mean(axis=0) if prob.ndim == 4 else prob
    row = pd.Index(np.asarray(recording_ids, dtype=object)).get_indexer(pseudo["recording_id"].astype(str))
    n = pseudo["window"].to_numpy(np.int64)
    s = pseudo["species_id"].to_numpy(np.int64)
    step = _GRID.frame_seconds
    return pd.DataFrame({
        "recording_id": pseudo["recording_id"].astype(str).to_numpy(), "species_id": s,
        "t_min": np.round(positions[n, 0] * step, 4),
        "t_max": np.round(np.minimum(positions[n, 1] - 1, frames - 1) * step, 4),
        "weight": pseudo["weight"].to_numpy(np.float64), "score": prob[row, n, s].astype(np.float64),
    })[PSEUDO_BOX_COLUMNS]
