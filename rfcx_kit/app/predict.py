"""`rfcx-kit predict` and `export`: a trained stage on new recordings, or as ONNX graphs, over ``method/apply`` and
``method/export``."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import click
from click.core import ParameterSource

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.method.selections import FORMATS, SELECTIONS
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.core.io import check_output_path
from rfcx_kit.app.options import PROBABILITY, at_least, finite
from rfcx_kit.data.audio import RECORDING_SUFFIXES
from rfcx_kit.method.events import EventRule

CHECKPOINT_HELP = ("best.pt files instead of --run: repeatable, or a shell glob (runs/r/cycle1/fold*/best.pt, "
                   "quoted or not); the folds are averaged.")


def checkpoint_paths(options: tuple[Path, ...], extra: tuple[Path, ...]) -> tuple[Path, ...]:
    """The checkpoints named by ``--checkpoint`` and the words after it.

    An unquoted glob reaches the command already expanded (``--checkpoint f0/best.pt f1/best.pt``): click gives
    the first to the option and the rest as arguments, gathered here. A quoted glob is expanded here, sorted.
    """
    if extra and not options:
        raise ConfigError(f"unexpected argument {extra[0]}: checkpoints follow --checkpoint")
    out: list[Path] = []
    for path in (*options, *extra):
        text = str(path)
        if not path.exists() and glob.has_magic(text):
            hits = sorted(glob.glob(text))
            if not hits:
                raise ConfigError(f"--checkpoint {text}: no file matches")
            out += [Path(h) for h in hits]
        else:
            out.append(path)
    return tuple(dict.fromkeys(out))  # one model per file, even when a glob and a name both give it


@click.command("predict")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory: predict with the fold models of one of its stages.")
@click.option("--stage", default="kept", show_default=True,
              help="Stage of the run: stage1, cycle1, ...; 'kept': the stage the re-labeling loop kept; 'latest': "
                   "the highest finished cycle, else stage1.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help=CHECKPOINT_HELP)
@click.option("--onnx", "onnx_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder `rfcx-kit export` wrote: predict with its ONNX graphs (onnxruntime on the CPU) instead "
                   "of torch checkpoints.")
@click.option("--audio", "sources", multiple=True, required=True, type=click.Path(path_type=Path),
              help=f"A recording or a folder of them (recursive; {', '.join(RECORDING_SUFFIXES)}). Repeatable.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="csv: the clip-level table in submission format, recording_id,s0..s{K-1}; raven: a folder of "
                   "selection tables, OUT/{recording_id}.selections.txt.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True,
              help="csv: the clip table (a competition's format); raven: one Raven selection table per recording.")
@click.option("--min-conf", type=PROBABILITY, default=0.5, show_default=True,
              help="raven: an event is where the framewise output is at least this (windows: keep the windows and "
                   "species scoring at least this).")
@click.option("--selections", type=click.Choice(SELECTIONS), default="events", show_default=True,
              help="raven: one selection per call-level event of the framewise output, or per window and species.")
@click.option("--merge-gap", type=finite(0, 3600), default=0.5, show_default=True,
              help="raven events: runs of one species at most this many seconds apart merge into one event.")
@click.option("--min-length", type=finite(0, 3600), default=0.2, show_default=True,
              help="raven events: drop events shorter than this many seconds.")
@click.option("--rows", "row_seconds", type=finite(0.0, 3600.0, low_open=True), default=None,
              help="csv: fixed-length rows instead of one row per recording (BirdCLEF's 5-second rows): row_id = "
                   "<recording>_<end second>, each row the max of the fold-mean framewise output over its frames.")
@click.option("--sample-submission", "template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="With --rows: write the rows in this sample submission's layout (its class columns in "
                                 "its order, and its rows where it lists them; every listed row must be predicted).")
@click.option("--windows", "windows_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also the long table recording_id,start_s,end_s,species_id,score (one row per window and species).")
@click.option("--threshold", type=PROBABILITY, default=None,
              help="Keep only window rows scoring at least this in --windows (detections).")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when there is one, else the CPU, as training), cpu, cuda or cuda:N.")
@click.option("--batch", type=at_least(1), default=None,
              help="Recordings decoded and predicted together [default: the run's predict.batch_recordings].")
@click.option("--threads", type=at_least(1), default=None, help="torch CPU threads [default: torch's].")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
@click.argument("more_checkpoints", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@cli_errors
def predict_cmd(run_dir: Path | None, stage: str, checkpoints: tuple[Path, ...], more_checkpoints: tuple[Path, ...],
                onnx_dir: Path | None, sources: tuple[Path, ...], out: Path,
                fmt: str, min_conf: float, selections: str, merge_gap: float, min_length: float,
                row_seconds: float | None, template: Path | None, windows_out: Path | None, threshold: float | None, device: str,
                batch: int | None, threads: int | None, no_progress: bool) -> None:
    """Predict new recordings with a trained stage: soft frame-wise prediction, fold mean.

    Any sample rate and any length of at least one window; no CSVs or feature cache needed. A killed run resumes
    (rerun the same command); an unreadable file is named, the others are still predicted, and the exit code is
    non-zero.
    """
    from rfcx_kit.method.train import resolve_device

    if threshold is not None and windows_out is None:
        raise ConfigError("--threshold keeps detections in the --windows table: give --windows too")
    given = click.get_current_context().get_parameter_source
    for name in ("min_conf", "selections", "merge_gap", "min_length"):
        if fmt != "raven" and given(name) == ParameterSource.COMMANDLINE:
            raise ConfigError(f"--{name.replace('_', '-')} shapes the Raven selections: it does nothing with --format "
                              "csv (for detections in a table: --windows FILE --threshold P)")
    if selections == "windows" and any(given(n) == ParameterSource.COMMANDLINE for n in ("merge_gap", "min_length")):
        raise ConfigError("--merge-gap and --min-length shape events: they do nothing with --selections windows")
    if row_seconds is not None and (fmt != "csv" or windows_out is not None):
        raise ConfigError("--rows writes the row table in --format csv, without --windows")
    if template is not None and row_seconds is None:
        raise ConfigError("--sample-submission lays out the row table: give --rows too")
    if onnx_dir is not None and (run_dir is not None or checkpoints or more_checkpoints):
        raise ConfigError("--onnx predicts with exported graphs: give it without --run and --checkpoint")
    keep = {f"recordings {p}": p for p in sources}
    if run_dir is not None:
        keep["run"] = run_dir
    if onnx_dir is not None:
        keep["--onnx"] = onnx_dir
    check_output_path(out, keep, "--out", replaces=False)
    if windows_out is not None:
        check_output_path(windows_out, {**keep, "--out": out}, "--windows", replaces=False)
    import torch

    from rfcx_kit.method.apply import load_models, predict_files

    if threads:
        torch.set_num_threads(threads)
    if onnx_dir is not None:
        from rfcx_kit.method.onnx_models import load_onnx

        dev = torch.device("cpu")  # onnxruntime's CPU provider
        models = load_onnx(onnx_dir, threads)
    else:
        checkpoints = checkpoint_paths(checkpoints, more_checkpoints)
        dev = resolve_device(device)
        models = load_models(run_dir, stage, checkpoints, dev)
    if fmt == "raven" and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: --format raven writes a folder of selection tables, and this is a file")
    if fmt == "csv" and out.is_dir():
        raise ConfigError(f"--out {out}: a folder; --format csv writes one table (give a file name)")
    events = EventRule(min_conf, merge_gap, min_length) if fmt == "raven" and selections == "events" else None
    summary = predict_files(models, sources, out, windows_out, threshold, dev, batch, progress=not no_progress,
                            fmt=fmt, min_conf=min_conf, events=events, rows=row_seconds, template=template)
    where = f"stage {summary['stage']}, " if summary["stage"] else ""
    kind = "events" if events is not None else "window selections"
    click.echo(f"{summary['predicted']} recordings predicted ({where}{summary['folds']} fold models) -> {out}"
               + (f" ({summary['selections']} {kind} at >= {min_conf:g})" if fmt == "raven" else "")
               + (f" ({summary['rows']} rows of {row_seconds:g} s)" if row_seconds is not None else "")
               + (f", {windows_out}" if windows_out else ""))


@click.command("export")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory whose stage is exported.")
@click.option("--stage", default="kept", show_default=True,
              help="stage1, cycle1, ...; kept: the stage the re-labeling loop kept; latest: the highest finished cycle.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help=CHECKPOINT_HELP)
@click.option("--fold", type=at_least(0), default=None, help="Only this fold [default: every fold].")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the graphs.")
@click.option("--tolerance", type=finite(0.0, 1.0, low_open=True), default=None,
              help="The largest |probability difference| between onnxruntime and torch a kept graph may show, on "
                   "real windows of the run [default: 1e-4].")
@click.argument("more_checkpoints", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@cli_errors
def export_cmd(run_dir: Path | None, stage: str, checkpoints: tuple[Path, ...], more_checkpoints: tuple[Path, ...],
               fold: int | None, fmt: str, out: Path, tolerance: float | None) -> None:
    """Export a stage's fold models to ONNX (for CPU inference without torch, e.g. a Kaggle notebook).

    Each graph is checked with onnxruntime against torch before it is kept: the probabilities (the sigmoid of
    each output) on every window of the run's first test recordings; model.json says how to build its input and
    read its outputs, and what the check was.
    """
    from rfcx_kit.method.export import TOLERANCE, export_stage

    check_output_path(out, {"run": run_dir} if run_dir is not None else {}, "--out", replaces=False)
    info = export_stage(run_dir, stage, checkpoint_paths(checkpoints, more_checkpoints), out, fold,
                        TOLERANCE if tolerance is None else tolerance)
    worst = max(max(g["max_abs_difference"].values()) for g in info["graphs"])
    click.echo(f"{len(info['graphs'])} ONNX graph(s) -> {out} (onnxruntime vs torch: max |probability difference| "
               f"{worst:.1e} on {info['check']['on']})")
    click.echo(json.dumps({g["file"]: g["sha256"][:12] for g in info["graphs"]}))
