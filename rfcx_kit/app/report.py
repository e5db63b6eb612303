"""`rfcx-kit report`: report.md and its figures for a run, over ``report/markdown``."""

from __future__ import annotations

from pathlib import Path

import click

from rfcx_kit.core.errors import DataError
from rfcx_kit.app.errors import cli_errors


@click.command("report")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory (after stage1, and relabel if run).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Submission log for the LB column [default: submissions/log.csv].")
@click.option("--name", default=None, help="The report's title [default: the run folder's name].")
@cli_errors
def report_cmd(run_dir: Path, log_path: Path | None, name: str | None) -> None:
    """Write RUN/report.md with the CV and re-labeling tables and PNG figures under RUN/report/.

    Figures: LWLRAP by stage (CV, truth, LB), per-species AP, pseudo-positives per species and cycle, one
    recording's spectrogram with its windows, labels and framewise predictions, and the training curves.
    """
    from rfcx_kit.report.markdown import write_report

    if log_path is not None and not log_path.is_file():
        raise DataError(f"--log {log_path}: no such file (the default is submissions/log.csv)")
    path = write_report(run_dir, log_path, name=name)
    click.echo(f"report: {path}")
