"""``rfcx-kit labels``: label tables in and out.

* ``labels import``: annotation exports (Raven selection tables, Audacity label tracks, Arbimon validations, a
  generic CSV) plus a folder of audio -> a data folder that ``stage1`` trains on (``data/labels_import.py``);
* ``labels from-oof``: window predictions made elsewhere (the competition's ``patch,recording_id,s0..s23``)
  (``data/external.py``) -> a pseudo-label table (``method/pseudo.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.scale import SCALES
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.core.grid import COVER, WINDOW, window_positions
from rfcx_kit.core.io import atomic_write_csv
from rfcx_kit.app.options import PROBABILITY, SHARE, at_least, finite
from rfcx_kit.data.labels_import import FORMAT_CHOICES, UNCERTAIN
from rfcx_kit.core.species import Species


@click.group("labels")
def labels_cmd() -> None:
    """Label tables: import your annotations, or pseudo-labels from predictions made elsewhere.

    Annotations: Raven, Audacity, Arbimon or CSV tables; predictions: the competition's window layout."""


@labels_cmd.command("import")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="auto", show_default=True,
              help="What INPUTS are (files, or folders searched for them); auto: each table's own format, told from "
                   "its first line (a folder may mix Raven, Audacity, Arbimon and CSV tables).")
@click.option("--audio", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The recordings the labels belong to (searched recursively). Ids are paths inside it without "
                   "extension, e.g. siteA/rec1.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The data folder to write (train_tp.csv, train_fp.csv, species.csv, recordings.csv).")
@click.option("--species-column", default=None,
              help="The column naming the species [default: the first of Annotation, Species, Class, label].")
@click.option("--species", "species_table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A species list (CSV: name[,species_id,code,f_min,f_max]); names outside it are errors.")
@click.option("--test", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of unlabelled recordings to predict after training (the test split).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out folder.")
@click.option("--uncertain", type=click.Choice(UNCERTAIN), default="skip", show_default=True,
              help="Rows whose species cell is empty or a '?' alone: left out (counted and named in one line), kept "
                   "as calls of no named species (no species is an implicit negative over them), FP boxes of every "
                   "species, or an error naming the row.")
@cli_errors
def import_cmd(inputs: tuple[Path, ...], fmt: str, audio: Path, out: Path, species_column: str | None,
               species_table: Path | None, test: Path | None, overwrite: bool, uncertain: str) -> None:
    """Write a data folder from annotation exports INPUTS and the recordings under --audio.

    \b
    Species named in the tables become ids (sorted by name, or as --species lists them); a table's recording is
    its Begin File (Raven) or the audio file whose name starts the table's. Every box must lie inside its
    recording and below its Nyquist frequency; a problem is one line naming the file and row, and nothing is
    written. FP labels are optional (a Raven row marked FP, an Arbimon 'absent'). A Raven table with a
    Confidence column (what `predict --format raven` writes) gives candidates, listed in candidates.csv with
    their confidence, not boxes: a row a person marked TP or FP in its Kind column is one.
    """
    from rfcx_kit.data.labels_import import import_labels

    result = import_labels(list(inputs), audio, out, fmt, species_column, test, species_table, overwrite, uncertain)
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    rec = result.recordings
    rates = ", ".join(f"{rate:g} Hz x {n}" for rate, n in result.sample_rates)
    extra = "".join(f", {n} {what}" for n, what in ((result.n_unknown, "calls of no named species"),
                                                    (result.n_candidates, "candidates")) if n)
    click.echo(f"wrote {out}: {result.n_tp} TP and {result.n_fp} FP boxes{extra}, {len(result.species)} species, "
               f"{int((rec['split'] == 'train').sum())} train and {int((rec['split'] == 'test').sum())} test "
               f"recordings{f' ({rates})' if rates else ''}")
    if result.n_tp:
        click.echo(f"next: rfcx-kit stage1 --data {out} --run runs/NAME")
    else:
        click.echo(f"next: listen through {out / 'candidates.csv'}; mark the selections tp or fp in a Kind column "
                   "and import them again: a run trains on TP boxes")


@labels_cmd.command("from-oof")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--threshold", type=PROBABILITY, default=0.5, show_default=True,
              help="A vote is a probability strictly above this (logits go through the sigmoid first).")
@click.option("--scale", type=click.Choice(SCALES), default="auto", show_default=True,
              help="Scale of the values; auto: probabilities if all lie in [0,1], else logits.")
@click.option("--votes", type=at_least(1), default=None,
              help="Treat each FILE as one model's predictions of the same recordings (e.g. 5 fold models "
                   "each predicting every recording) and need K of them above the threshold. Without it, "
                   "FILES are disjoint out-of-fold parts: one vote per window.")
@click.option("--pseudo-weight", type=SHARE, default=1.0, show_default=True,
              help="Loss weight of pseudo-labels (e.g. 0.5 for soft positives).")
@click.option("--species-threshold", "species_threshold", multiple=True, metavar="SPECIES=T",
              help="Per-species threshold, e.g. 3=0.6 (repeatable).")
@click.option("--negative-threshold", type=PROBABILITY, default=None,
              help="Also make pseudo-negatives where every prediction is below this (off by default; "
                   "they hurt in the competition).")
@click.option("--tp", "tp_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="train_tp.csv: its windows become tp rows and are never overwritten.")
@click.option("--fp", "fp_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="train_fp.csv: its windows become fp rows and are never overwritten.")
@click.option("--window", type=at_least(1), default=WINDOW, show_default=True, help="Window length in frames.")
@click.option("--cover", type=at_least(0), default=COVER, show_default=True,
              help="Frames each window overlaps the previous (less than --window).")
@click.option("--seconds", type=finite(1.0, 3600.0), default=60.0, show_default=True,
              help="Length of the recordings the predictions are of (the windows' times follow from it).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the label table here (CSV).")
@click.option("--boxes", "boxes_out", type=click.Path(dir_okay=False), default=None,
              help="Write the pseudo-positive windows as boxes a run trains on: relabel --pseudo-boxes FILE.")
@cli_errors
def from_oof_cmd(
    files: tuple[str, ...], threshold: float, scale: str, votes: int | None, pseudo_weight: float,
    species_threshold: tuple[str, ...], negative_threshold: float | None, tp_path: str | None,
    fp_path: str | None, window: int, cover: int, seconds: float, out: str | None, boxes_out: str | None,
) -> None:
    """Turn window predictions FILES (patch,recording_id,s0..s23) into a pseudo-label table.

    \b
    Without --tp/--fp every window is unknown, so every window/species above the threshold becomes a
    pseudo-positive. With them, the original TP/FP windows are included and never overwritten.
    --boxes writes the pseudo-positives as boxes, one per window, that a run's first re-labeling cycle
    trains on instead of its own fold votes: rfcx-kit relabel --run RUN --pseudo-boxes FILE.
    """
    from rfcx_kit.core.grid import frames_of
    from rfcx_kit.data.external import (EXTERNAL_COLUMNS, HOP_LENGTH, SAMPLE_RATE, describe_scale, labelled_boxes,
                                        original_window_labels, read_oof_files, read_votes, window_boxes)
    from rfcx_kit.method.pseudo import build_label_table, label_counts, species_threshold_array

    start = time.perf_counter()
    if cover >= window:
        # the window positions would never advance: refused before anything is read or written
        raise click.BadParameter(f"{cover} must be less than --window ({window})", param_hint="--cover")
    species_thresholds = parse_species_thresholds(species_threshold)

    if votes is None:
        ids, preds, detected = read_oof_files(list(files))
        how = "one out-of-fold vote per window"
    else:
        if not 1 <= votes <= len(files):
            raise click.BadParameter(f"need 1..{len(files)} (one vote per FILE)", param_hint="--votes")
        ids, preds, detected = read_votes(list(files))
        how = f"at least {votes} of {len(files)} models"
    n_windows = preds.shape[-2]
    click.echo(f"read {len(files)} file(s): {len(ids)} recordings x {n_windows} windows x {len(EXTERNAL_COLUMNS)} species "
               f"({time.perf_counter() - start:.2f} s)")
    use_scale, line = describe_scale(preds, detected, scale)
    click.echo(line)
    thresholds = species_threshold_array(threshold, species_thresholds)
    extra = "".join(f", s{k} > {v:g}" for k, v in sorted(species_thresholds.items()))
    click.echo(f"pseudo-positive: {how} with p > {threshold:g}{extra}; weight {pseudo_weight:g}")

    original = np.zeros((len(ids), n_windows, len(EXTERNAL_COLUMNS)), dtype=np.int8)
    if tp_path or fp_path:
        frames = frames_of(seconds, SAMPLE_RATE, HOP_LENGTH)
        positions = window_positions(frames, window=window, cover=cover)
        if len(positions) != n_windows:
            raise DataError(f"the files hold {n_windows} patches per recording, but --window {window} "
                            f"--cover {cover} gives {len(positions)} windows over {frames} frames ({seconds:g} s)")
        boxes = labelled_boxes(tp_path, fp_path, seconds)
        known = boxes["recording_id"].isin(pd.Index(ids))
        original = original_window_labels(boxes, ids, positions, frames=frames)
        click.echo(f"originals: {int((boxes['label'] > 0).sum())} TP and {int((boxes['label'] < 0).sum())} FP "
                   f"boxes; {int((~known).sum())} of them name recordings absent from the predictions (left out)")
    else:
        click.echo("no --tp/--fp: every window is unknown, so every vote above the threshold is a pseudo-positive")

    table = build_label_table(
        ids, original, preds, threshold=thresholds, votes=votes, pseudo_weight=pseudo_weight,
        negative_threshold=negative_threshold, scale=use_scale,
    )
    counts = label_counts(table)
    click.echo("\nrows per species and source:")
    click.echo(counts.to_string())
    totals = counts.sum()
    click.echo("total  " + "  ".join(f"{k} {int(v)}" for k, v in totals.items()))
    if out:
        atomic_write_csv(out, table)
        click.echo(f"wrote {len(table)} rows to {out}")
    if boxes_out:
        boxes = window_boxes(table, preds, ids, seconds, window, cover, use_scale)
        atomic_write_csv(boxes_out, boxes)
        click.echo(f"wrote {len(boxes)} pseudo-positive boxes to {boxes_out}; train on them with "
                   f"rfcx-kit relabel --run RUN --pseudo-boxes {boxes_out}")
    click.echo(f"done in {time.perf_counter() - start:.2f} s")


def parse_species_thresholds(items: Sequence[str]) -> dict[int, float]:
    """``("3=0.6", "s12=0.7")`` -> ``{3: 0.6, 12: 0.7}``."""
    out: dict[int, float] = {}
    n_species = len(Species.rfcx())  # the external layout's s0..s23
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower().removeprefix("s")
        try:
            species, thr = int(key), float(value)
        except ValueError:
            species, thr = -1, math.nan
        if not sep or not 0 <= species < n_species or not 0 <= thr <= 1:
            raise click.BadParameter(
                f"{item!r}: expected SPECIES=THRESHOLD with species 0..{n_species - 1} and threshold in [0, 1]",
                param_hint="--species-threshold",
            )
        if species in out:
            raise click.BadParameter(f"species {species} given twice", param_hint="--species-threshold")
        out[species] = thr
    return out
