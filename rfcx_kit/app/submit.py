"""`rfcx-kit ensemble`, `submit` and `download`: submissions and the official Kaggle client, over ``submit/``."""

from __future__ import annotations

from pathlib import Path

import click

from rfcx_kit.app.errors import cli_errors
from rfcx_kit.app.options import at_least, finite
from rfcx_kit.core.species import COMPETITION
from rfcx_kit.submit.ensemble import METHODS, ensemble_to_file
from rfcx_kit.submit.kaggle_package import THREADS
from rfcx_kit.submit.kaggle_client import DEFAULT_LOG, STAGING, check_slug, download, list_data_files, submit


def slug_option(slug: str) -> str:
    """``--competition``: a Kaggle slug, never a path (one ``Error:`` line naming the option otherwise)."""
    try:
        return check_slug(slug)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--competition") from None


@click.command("ensemble")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (runs/NAME) whose fold test predictions <stage>/fold{k}/test.csv are averaged.")
@click.option("--stage", default="kept", show_default=True,
              help="Stage of the run: stage1, cycle1, cycle2, ...; 'kept': the stage the re-labeling loop kept "
                   "(RUN/kept.json); 'latest': the highest cycleN present, else stage1.")
@click.option("--run-weight", type=finite(0, None, low_open=True), default=1.0, show_default=True,
              help="Weight of the run in the blend; its folds share it equally.")
@click.option("--with", "with_specs", multiple=True, metavar="FILE[:WEIGHT[:prob|logit]]",
              help="Another submission CSV to blend (repeatable). WEIGHT defaults to 1; the scale is detected "
              "(all values in [0,1] = probabilities, else logits) unless declared.")
@click.option("--method", type=click.Choice(METHODS), default="mean", show_default=True,
              help="mean: weighted mean of the values (probabilities); rank: weighted mean of each input's "
              "within-recording species ranks (scale-free).")
@click.option("--to-prob", is_flag=True,
              help="Turn logit inputs into probabilities (sigmoid) before a mean; without it, mixing logits with "
              "probabilities is refused.")
@click.option("--prior-scaling", is_flag=True,
              help="Multiply each species' odds by test-prior odds / train-prior odds (off by default; needs probabilities).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Competition folder: its sample_submission.csv fixes the recording ids and their order; its "
              "train_tp.csv/train_fp.csv give the train prior. Default: the run's data.yaml / test_ids.txt.")
@click.option("--train-prior", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="CSV species_id,prior: the train prior for --prior-scaling (instead of counting --data's TP boxes).")
@click.option("--test-prior", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="CSV species_id,prior: the test prior for --prior-scaling (default: the shipped RFCX test prevalence).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Submission CSV to write (atomically), e.g. submissions/NAME.csv.")
@cli_errors
def ensemble_cmd(
    run_dir: Path | None,
    stage: str,
    run_weight: float,
    with_specs: tuple[str, ...],
    method: str,
    to_prob: bool,
    prior_scaling: bool,
    data_dir: Path | None,
    train_prior: Path | None,
    test_prior: Path | None,
    out: Path,
) -> None:
    """Average a stage's fold test predictions (and blend other submissions) into one submission CSV.

    The file is validated before it is written."""
    ensemble_to_file(out, run_dir, stage, run_weight, with_specs, method, to_prob, prior_scaling, data_dir,
                     train_prior, test_prior, echo=click.echo)


@click.command("submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--message", required=True, help="Submission description shown on Kaggle (and in the log).")
@click.option("--competition", default=COMPETITION, show_default=True, callback=lambda ctx, param, v: slug_option(v),
              help="Competition slug (the URL's kaggle.com/c/<slug>).")
@click.option("--wait", is_flag=True, help="Poll until Kaggle has scored the submission, then print the public score.")
@click.option("--poll-seconds", type=finite(0.01), default=30.0, show_default=True,
              help="Seconds between status checks with --wait; raised to the kaggle client's minimum (5 s) unless "
              "the client's endpoint is a loopback address (a local stand-in).")
@click.option("--timeout", type=finite(0), default=3600.0, show_default=True,
              help="Give up waiting after this many seconds (exit code 13; the submission stays logged as PENDING).")
@click.option("--dry-run", is_flag=True, help="Validate and print what would be sent (file, size, sha256, competition, "
              "message); no network, no log.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Competition folder whose sample_submission.csv gives the expected ids. Default: the real "
              "competition's shipped test ids.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_LOG, show_default=True,
              help="CSV log of confirmed submissions (time,file,sha256,message,ref,status,score).")
@cli_errors
def submit_cmd(
    file: Path, message: str, competition: str, wait: bool, poll_seconds: float, timeout: float, dry_run: bool,
    data_dir: Path | None, log_path: Path,
) -> None:
    """Validate FILE and submit it to Kaggle through the official client; log it once Kaggle lists it.

    Exit codes: 2 invalid file, 3 no credentials, 4 401, 5 403 (rules not accepted), 6 404, 7 429, 8 5xx,
    9 upload failed, 10 no submissions left, 11 not confirmed, 12 scored ERROR, 13 --wait timed out,
    14 network, 15 other HTTP error.
    """
    submit(file, message, competition, wait=wait, poll_seconds=poll_seconds, timeout=timeout, data_dir=data_dir,
           dry_run=dry_run, log_path=log_path)


@click.command("download")
@click.option("--competition", default=COMPETITION, show_default=True, callback=lambda ctx, param, v: slug_option(v),
              help="Competition slug (the URL's kaggle.com/c/<slug>).")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to fill with train_tp.csv, train_fp.csv, sample_submission.csv, train/, test/ (required "
              "unless --list).")
@click.option("--file", "files", multiple=True,
              help="Download only this data file (repeatable), e.g. the three CSVs to use with precomputed spectrograms.")
@click.option("--keep-zip", is_flag=True, help=f"Keep the downloaded archive in TO/{STAGING}/ after extraction.")
@click.option("--list", "list_only", is_flag=True, help="List the competition's data files and sizes; download nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@cli_errors
def download_cmd(
    competition: str, to: Path | None, files: tuple[str, ...], keep_zip: bool, list_only: bool, no_progress: bool
) -> None:
    """Download and unpack the competition data through the official Kaggle client, resumably.

    Run it again after an interruption: the client resumes the archive, and files already extracted are kept.
    """
    if list_only:
        listed = list_data_files(competition)
        for name, size in listed:
            click.echo(f"{size:>14,d}  {name}")
        click.echo(f"{len(listed)} file(s), {sum(s for _, s in listed):,d} bytes")
        return
    if to is None:
        raise click.UsageError("--to DIR is required (the folder to fill)")
    download(competition, to, files=files, keep_zip=keep_zip, progress=not no_progress)


@click.command("kaggle-package")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder whose stage's fold models go into the package.")
@click.option("--stage", default="kept", show_default=True,
              help="Stage of the run: stage1, cycle1, ...; 'kept': the stage the re-labeling loop kept.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New folder for the package (predict.py, package.json, model_fold{k}.onnx, wheels/, README.md).")
@click.option("--chunk-seconds", type=finite(5, 3600), default=60.0, show_default=True,
              help="Seconds of audio each graph takes at once, a multiple of 5 (2025-2026 soundscapes: 60; longer "
                   "files are cut into chunks, the last zero-padded).")
@click.option("--wheels", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of wheels to ship (pip download --only-binary=:all: --python-version 3.11 -d FOLDER "
                   "onnxruntime soundfile) [default: packed from this environment, for this Python].")
@click.option("--threads", type=at_least(1), default=THREADS, show_default=True,
              help="onnxruntime threads per model, in predict.py too (the measured cost is at this count; on 2 "
                   "cores 2 threads ran 1.1-1.4x faster than 1; predict.py --threads overrides it on Kaggle).")
@cli_errors
def kaggle_package_cmd(run_dir: Path, stage: str, out: Path, chunk_seconds: float, wheels: Path | None,
                       threads: int) -> None:
    """Build an offline inference package for a BirdCLEF notebook (Kaggle scores notebooks, not CSVs).

    \b
    Each fold model becomes one ONNX graph (wave chunk -> framewise probabilities, front end inside), checked
    against torch on real audio of the run and timed here; predict.py turns a folder of soundscapes into
    submission.csv (5-s rows, the classes in the sample submission's order) with numpy, soundfile and onnxruntime
    only, installed from wheels/ with pip --no-index. Given --budget-minutes it drops the models that would not
    fit. What to do on Kaggle is in OUT/README.md: upload OUT as a dataset, run predict.py in a notebook, submit it.
    """
    from rfcx_kit.submit.kaggle_package import build_package  # torch: loaded only when the command runs

    info = build_package(run_dir, out, stage, chunk_seconds, wheels, threads)
    per_minute = [m["seconds_per_audio_minute_here"] for m in info["models"]]
    click.echo(f"{out}: {len(per_minute)} model(s) of {info['stage']}, {len(info['classes'])} classes, chunks of "
               f"{chunk_seconds:g} s; {sum(per_minute):.3f} s per minute of audio for all of them here "
               f"({', '.join(f'{v:.3f}' for v in per_minute)}; {threads} thread(s) each); next: {out / 'README.md'}")
