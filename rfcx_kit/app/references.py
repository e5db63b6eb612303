"""`rfcx-kit oracle` and `control`: the references a re-labeling loop is judged against, over ``method/references``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rfcx_kit.core.config import BACKENDS
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.app.options import at_least
from rfcx_kit.method.run import Run, format_metrics, read_metrics


COMMON_OPTIONS = [
    click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                 help="Run directory with a finished stage 1."),
    click.option("--backend", type=click.Choice(BACKENDS), default="loky", show_default=True,
                 help="Where folds run: local processes or an existing Dask cluster."),
    click.option("--workers", type=at_least(1), default=1, show_default=True, help="Folds at once with --backend loky."),
    click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Dask scheduler (with --backend dask)."),
    click.option("--no-progress", is_flag=True, help="No progress bars (logs only)."),
]


def common_options(func):  # noqa: ANN001, ANN202 - a click decorator
    for option in reversed(COMMON_OPTIONS):
        func = option(func)
    return func


def echo_metrics(run_dir: Path, stage: str, metrics: dict[str, Any]) -> None:
    from rfcx_kit.method.references import gap_closed

    run = Run(run_dir)
    stage1 = read_metrics(run.metrics("stage1"))
    line = f"{stage}: {format_metrics(metrics)}"
    oracle_path = run.metrics("oracle")
    if stage != "oracle" and oracle_path.exists():
        closed = gap_closed(metrics.get("truth_test_lwlrap"), stage1.get("truth_test_lwlrap"),
                            read_metrics(oracle_path).get("truth_test_lwlrap"))
        line += f", gap closed {closed:.2f}" if closed is not None else ""
    click.echo(line)
    click.echo(f"metrics: {run.metrics(stage)}")


@click.command("oracle")
@common_options
@cli_errors
def oracle_cmd(run_dir: Path, backend: str, workers: int, scheduler: str | None, no_progress: bool) -> None:
    """The ceiling: the run's stage-1 recipe trained on every planted call (synthetic data).

    The planted calls are the data set's truth/calls.csv.

    \b
    Same folds, seeds, steps and scoring as stage 1; only the TP boxes differ (all of truth/calls.csv).
    Writes RUN/oracle/ (folds, oof, test.csv, metrics.json). Rerun to resume.
    """
    from rfcx_kit.method.references import run_oracle

    echo_metrics(run_dir, "oracle", run_oracle(run_dir, backend, workers, scheduler, progress=not no_progress))


@click.command("control")
@click.option("--cycles", type=at_least(1), default=None,
              help="Cycles whose extra training to match [default: the run's finished cycles, else relabel.cycles].")
@common_options
@cli_errors
def control_cmd(run_dir: Path, cycles: int | None, backend: str, workers: int, scheduler: str | None,
                no_progress: bool) -> None:
    """The control: stage 1 trained on for as many epochs as the cycles add, with no pseudo-labels.

    \b
    Starts from stage 1's best weights, trains cycles x relabel.epochs epochs at relabel.lr on the original
    labels. Writes RUN/control/ (folds, oof, test.csv, metrics.json). Rerun to resume.
    """
    from rfcx_kit.method.references import run_control

    echo_metrics(run_dir, "control", run_control(run_dir, cycles, backend, workers, scheduler, progress=not no_progress))
