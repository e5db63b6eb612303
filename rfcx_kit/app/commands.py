"""The method's training commands, ``rfcx-kit stage1`` and ``rfcx-kit relabel``: options in, :mod:`rfcx_kit.api`'s
``stage1`` / ``relabel`` (the step, then its reports), figures out.

They live here, above the method and the reports, so that the method never imports the reporting that comes
after it in the data flow (docs/architecture.md). Library users call :mod:`rfcx_kit.api` (docs/api.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from rfcx_kit.core.config import BACKENDS, CHOICES
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.method.run import format_metrics
from rfcx_kit.app.options import PROBABILITY, SHARE, at_least


@click.command("stage1")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Competition folder (Kaggle layout with FLAC, or precomputed .npy spectrograms).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory to write (e.g. runs/resnet18-a); later stages read it.")
@click.option("--pipeline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe YAML holding what differs from the defaults (e.g. pipelines/demo.yaml) "
                   "[default: the method post's settings].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one config value, e.g. --set train.epochs=3 (repeatable; unknown keys are errors).")
@click.option("--folds", default=None, metavar="0,1", help="Train only these folds [default: all].")
@click.option("--resume", is_flag=True, help="Continue a killed run: finished folds are kept, others resume from last.pt.")
@click.option("--backend", type=click.Choice(BACKENDS), default="loky", show_default=True,
              help="Where folds run: local processes (loky) or an existing Dask cluster.")
@click.option("--workers", type=at_least(1), default=1, show_default=True, help="Folds trained at once with --backend loky.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Dask scheduler address (with --backend dask).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Feature cache folder for the FLAC layout [default: DATA/features_cache].")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@cli_errors
def stage1_cmd(data: Path, run_dir: Path, pipeline: Path | None, overrides: tuple[str, ...], folds: str | None,
               resume: bool, backend: str, workers: int, scheduler: str | None, cache: Path | None,
               no_progress: bool) -> None:
    """Stage 1 of the method post: train the SED model over multilabel-stratified folds.

    \b
    Writes RUN/: config.yaml (resolved), data.yaml, folds.csv, stage1/fold{k}/ (last.pt, best.pt,
    history.csv, val/test predictions, test.csv), stage1/oof_windows.npy, oof.csv, test.csv,
    metrics.json, and the CV table (RUN/report/cv.md, cv.csv). The data folder and the recipe are
    validated before any training.
    """
    from rfcx_kit import api

    metrics = api.stage1(data, run_dir, pipeline, overrides, folds, resume, backend, workers, scheduler, cache,
                         progress=not no_progress).metrics
    click.echo(f"stage1 done in {metrics['wall_seconds']:.0f} s: {format_metrics(metrics)}")
    click.echo(f"report: {run_dir / 'report' / 'cv.md'}")


@click.command("relabel")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory with a finished stage 1.")
@click.option("--cycles", type=at_least(1), default=None, help="Number of cycles [default: relabel.cycles, 3].")
@click.option("--source", type=click.Choice(CHOICES["relabel.source"]), default=None,
              help="Pseudo-labels from out-of-fold predictions (oof) or every fold model's vote (vote).")
@click.option("--threshold", type=PROBABILITY, default=None,
              help="Framewise probability above which a segment is a pseudo-positive (the floor with tp_quantile).")
@click.option("--votes", type=at_least(1), default=None, help="With --source vote: folds that must agree (the post: 3 of 5).")
@click.option("--pseudo-weight", type=SHARE, default=None, help="Loss weight of pseudo-positives (1 hard, 0.5 soft).")
@click.option("--threshold-rule", type=click.Choice(CHOICES["relabel.threshold_rule"]), default=None,
              help="fixed: --threshold for every species; tp_quantile: per species, a quantile of the previous "
                   "stage's scores inside its TP boxes, never below --threshold.")
@click.option("--init", type=click.Choice(CHOICES["relabel.init"]), default=None,
              help="Weights each cycle starts from.")
@click.option("--early-stop", is_flag=True, default=None, help="Stop when the metric stops improving.")
@click.option("--early-stop-metric", type=click.Choice(CHOICES["relabel.early_stop_metric"]), default=None,
              help="CV LWLRAP on the original labels (the loop never decides on the truth).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Any other override, e.g. --set relabel.epochs=10 --set relabel.species_thresholds={3: 0.7}.")
@click.option("--backend", type=click.Choice(BACKENDS), default="loky", show_default=True,
              help="Where folds run: local processes or an existing Dask cluster.")
@click.option("--workers", type=at_least(1), default=1, show_default=True, help="Folds at once with --backend loky.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Dask scheduler (with --backend dask).")
@click.option("--pseudo-boxes", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Cycle 1's pseudo-positive boxes made elsewhere (labels from-oof --boxes: another model's "
                   "out-of-fold windows), instead of its own fold votes; later cycles vote as usual.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@cli_errors
def relabel_cmd(run_dir: Path, cycles: int | None, source: str | None, threshold: float | None, votes: int | None,
                pseudo_weight: float | None, threshold_rule: str | None, init: str | None,
                early_stop: bool | None, early_stop_metric: str | None, overrides: tuple[str, ...],
                backend: str, workers: int, scheduler: str | None, pseudo_boxes: Path | None, no_progress: bool) -> None:
    """Stage 2: cycle re-labeling on a stage-1 run directory.

    \b
    Each cycle: pseudo-positive boxes from the previous stage's framewise predictions (only where no TP/FP
    box of the species is) -> retrain the folds exactly as stage 1 trains, on TP + pseudo-positive boxes ->
    predict OOF and test -> report. Writes RUN/cycle{c}/ (pseudo_boxes.csv, labels.csv, label_counts.csv,
    fold{k}/, oof_windows.npy, oof_framewise.npy, test.csv, metrics.json) and RUN/report/relabel.md with a
    plot of the metrics by cycle. Rerun the same command to resume.
    """
    options = {"cycles": cycles, "source": source, "threshold": threshold, "votes": votes,
               "pseudo_weight": pseudo_weight, "threshold_rule": threshold_rule, "init": init,
               "early_stop": early_stop, "early_stop_metric": early_stop_metric}
    from rfcx_kit import api

    sets = api.as_overrides({f"relabel.{k}": v for k, v in options.items() if v is not None})
    history = [s.metrics for s in api.relabel(run_dir, cycles, sets + overrides, backend, workers, scheduler,
                                              progress=not no_progress, pseudo_boxes=pseudo_boxes).stages]
    for m in history:
        click.echo(f"{m['stage']}: {format_metrics(m)}" + (f", pseudo-positives={int(m['pseudo_positives'])}"
                                                           if "pseudo_positives" in m else ""))
    click.echo(f"report: {run_dir / 'report' / 'relabel.md'}")
