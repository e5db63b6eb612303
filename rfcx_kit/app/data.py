"""`rfcx-kit features`, `windows`, `validate` and `score`: the data's commands, over ``data/`` and ``core/metrics``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rfcx_kit.core.config import FeatureConfig, load_config
from rfcx_kit.core.errors import DataError
from rfcx_kit.data.synth.scene import SPLITS
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.core.grid import COVER, WINDOW, window_positions
from rfcx_kit.app.options import JOBS, at_least, finite
from rfcx_kit.core.scale import PROBABILITY, detect_scale
from rfcx_kit.core.species import COMPETITION, SPECIES_COLUMNS, competition_test_ids
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.data.submission import read_expected_ids, validate_rows, validate_submission


@click.command("features")
@click.option("--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Competition folder (train_tp.csv, train_fp.csv, sample_submission.csv, train/, test/).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the cache [default: DATA/features_cache].")
@click.option("--split", "splits", type=click.Choice(SPLITS), multiple=True,
              help="Only these splits (repeatable) [default: both].")
@click.option("--n-jobs", type=JOBS, default=None, help="Parallel worker processes over files [default: all cores].")
@click.option("--batch-size", type=at_least(1), default=None, help="Recordings per batched STFT in a worker [default: 1, fastest on CPU].")
@click.option("--pipeline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe whose `features` section sets the parameters [default: the method post's].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set features.n_mels=64 (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
@cli_errors
def features_cmd(data: Path, cache: Path | None, splits: tuple[str, ...], n_jobs: int | None,
                 batch_size: int | None, pipeline: Path | None, overrides: tuple[str, ...], no_progress: bool) -> None:
    """Build the log-mel feature cache of a competition folder.

    Validates the folder, then computes 128 x 3751 log-mel arrays (float16, memory-mappable) in parallel
    over files with a progress bar. A killed build resumes: finished entries are not redone, and no
    half-written entry is ever read. The precomputed-spectrogram layout needs no cache (it is only checked).
    """
    from rfcx_kit.data.check import CHECKED_NAME, check_arrays
    from rfcx_kit.data.features import FeatureStore, build_cache, default_cache_dir

    from rfcx_kit.method.preflight import resolve_features

    full = load_config(pipeline, overrides)
    splits = splits or ("train", "test")
    comp = read_competition(data, require_test="test" in splits)
    resolve_features(full, comp)  # one's own recordings: their rate, as stage 1 takes it (the same cache)
    cfg = full.features
    if batch_size is not None:  # its domain (>= 1) is the option's
        cfg.batch_size = batch_size
    if comp.layout == "npy":
        store = FeatureStore.open(comp, None, cfg)
        paths = {f"{s}/{rid}": store.path(s, rid) for s in splits for rid in comp.ids(s)}
        check_arrays(paths, cfg.n_mels, cfg.frames, None, progress=not no_progress)  # nothing is written into the data
        click.echo(f"{data}: precomputed spectrogram layout ({len(comp.train_ids)} train, {len(comp.test_ids)} test), "
                   "every array checked (dtype, shape, finite); no cache needed, arrays are memory-mapped directly.")
        return
    cache_dir = Path(cache or default_cache_dir(comp.root))
    build_cache(comp, cache_dir, cfg, splits=splits, n_jobs=n_jobs, progress=not no_progress)
    store = FeatureStore.open(comp, cache_dir, cfg)
    paths = {f"{s}/{rid}": store.path(s, rid) for s in splits for rid in comp.ids(s)}
    check_arrays(paths, cfg.n_mels, cfg.frames, cache_dir / CHECKED_NAME, progress=not no_progress)
    click.echo(f"feature cache ready: {cache_dir} ({len(comp.train_ids)} train, {len(comp.test_ids)} test; every "
               "array checked)")


@click.command("windows")
@click.option("--frames", type=at_least(1), default=FeatureConfig(seconds=60.0).frames, show_default=True,
              help="Frames of a recording (3751 = 60 s at hop 512, 32 kHz; the demo grid's 1876 at hop 1024).")
@click.option("--window", type=at_least(1), default=WINDOW, show_default=True, help="Frames per window.")
@click.option("--cover", type=at_least(0), default=None,
              help=f"Frames shared by neighbouring windows [default: {COVER} unless --n-windows].")
@click.option("--n-windows", type=at_least(1), default=None, help="Number of windows (instead of, or with, --cover).")
def windows_cmd(frames: int, window: int, cover: int | None, n_windows: int | None) -> None:
    """Print the window layout as a JSON list of [start, end] frame pairs.

    As the method post prints it.     The last window may run past the end of the recording; it is zero-padded. Preview a setting before
    training: `rfcx-kit windows --cover 256` gives the 14 windows the post's team used at test time.
    """
    if cover is None and n_windows is None:
        cover = COVER
    try:
        positions = window_positions(frames, window, cover, n_windows)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(positions, separators=(", ", ": ")))


@click.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Competition folder: check the ids against DATA/sample_submission.csv. "
    f"Default: the {len(competition_test_ids())} test ids of the real {COMPETITION} competition, shipped with rfcx-kit.",
)
@cli_errors
def validate_cmd(file: Path, data_dir: Path | None) -> None:
    """Check a submission CSV: its header, recording ids and numbers.

    \b
    A clip table (RFCX): the header recording_id,s0..s{K-1}, exactly the expected recording ids (each once),
    finite numbers. A row table (BirdCLEF, first column row_id): DATA/sample_submission.csv's header and rows in
    its order, probabilities in [0, 1]. Prints one OK line, or one error line naming the first bad row and column
    (exit code 2)."""
    if _first_column(file) == "row_id":
        if data_dir is None:
            raise DataError(f"{file}: a row table (row_id, ...) is checked against its sample submission: give "
                            "--data, the competition folder that holds sample_submission.csv")
        rows = validate_rows(file, data_dir / "sample_submission.csv")
        click.echo(f"OK: {file}: {len(rows)} rows x {rows.shape[1] - 1} classes, the header and rows of "
                   f"{data_dir / 'sample_submission.csv'}; probabilities in [{rows.iloc[:, 1:].to_numpy().min():.4g}, "
                   f"{rows.iloc[:, 1:].to_numpy().max():.4g}]")
        return
    if data_dir is not None:
        expected: list[str] | None = read_expected_ids(data_dir)
        source = f"the ids of {data_dir / 'sample_submission.csv'}"
    else:
        expected = None  # the shipped ids of the real competition
        source = f"the real {COMPETITION} test ids"
    frame = validate_submission(file, expected, ids_from=source)
    values = frame[SPECIES_COLUMNS].to_numpy()
    scale = detect_scale(values)
    click.echo(
        f"OK: {file}: {len(frame)} recordings x {len(SPECIES_COLUMNS)} species, exactly {source}; "
        f"values in [{values.min():.4g}, {values.max():.4g}] "
        + ("look like probabilities (all within [0, 1])" if scale == PROBABILITY else "are logits (outside [0, 1])")
    )


def _first_column(file: Path) -> str | None:
    """The first header field of a CSV (None when unreadable: the full check names why)."""
    try:
        with open(file, encoding="utf-8") as handle:
            return handle.readline().split(",", 1)[0].strip().strip('"')
    except (OSError, UnicodeDecodeError):
        return None


@click.command("score")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--truth",
    "truth_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="0/1 labels in submission format (recording_id,s0..s23); every truth recording must be in FILE.",
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=finite(),
    help="A cell counts as predicted positive when its score is above this (use 0 for logits).",
)
@click.option("--per-species", is_flag=True, help="Also print each species' positives, AP and LWLRAP share.")
@cli_errors
def score_cmd(file: Path, truth_path: Path, threshold: float, per_species: bool) -> None:
    """LWLRAP, precision and recall of FILE (recording_id,s0..s23 scores) against --truth.

    \b
    LWLRAP ranks the species of each recording (scikit-learn's tie rule: tied scores share the worst
    rank); recordings without a positive label drop out. Precision and recall are micro-averaged over all
    (recording, species) cells at --threshold.
    """
    from rfcx_kit import api  # the one scorer, shared with the Python API

    result = api.score(file, truth_path, threshold)
    if result.outside_unit and threshold == 0.5:
        click.echo("note: scores lie outside [0, 1] (logits?); precision/recall use --threshold 0.5 as given", err=True)
    click.echo(f"recordings  {result.recordings} ({result.positive_recordings} with a positive label, "
               f"{result.positives} labels)")
    click.echo(f"LWLRAP      {result.lwlrap:.4f}")
    click.echo(f"precision   {result.precision:.4f}  (score > {threshold:g})")
    click.echo(f"recall      {result.recall:.4f}")
    if per_species:
        table = result.per_species
        click.echo("")
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
