"""The ``rfcx-kit`` command line.

Each sub-command lives in the app module of the step it runs and is imported here, so the import graph (and
``tests/test_architecture.py``) sees every edge. The app modules import torch, timm and matplotlib inside the
commands that need them, so ``rfcx-kit --help`` stays light.
"""

from __future__ import annotations

import logging

import click

from rfcx_kit.app.commands import relabel_cmd, stage1_cmd
from rfcx_kit.app.data import features_cmd, score_cmd, validate_cmd, windows_cmd
from rfcx_kit.app.demo import demo_cmd
from rfcx_kit.app.labels import labels_cmd
from rfcx_kit.app.models import weights_cmd
from rfcx_kit.app.predict import export_cmd, predict_cmd
from rfcx_kit.app.references import control_cmd, oracle_cmd
from rfcx_kit.app.report import report_cmd
from rfcx_kit.app.study import study_cmd
from rfcx_kit.app.submit import download_cmd, ensemble_cmd, kaggle_package_cmd, submit_cmd
from rfcx_kit.app.synth import synth_cmd

# In the order of the method (the group's --help lists them so).
COMMANDS: list[click.Command] = [
    demo_cmd, synth_cmd, download_cmd, features_cmd, windows_cmd, stage1_cmd, relabel_cmd, oracle_cmd, control_cmd,
    study_cmd, labels_cmd, weights_cmd, predict_cmd, export_cmd, ensemble_cmd, validate_cmd, submit_cmd,
    kaggle_package_cmd, score_cmd, report_cmd,
]


class MethodGroup(click.Group):
    """The commands in the method's order; a usage error is one ``Error:`` line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # insertion order: the method's, not the alphabet's

    def invoke(self, ctx: click.Context) -> object:
        """Run the sub-command; a usage error (a value outside its option's domain, a missing option) is one
        ``Error:`` line naming the option, without click's usage block (``--help`` still prints it)."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.ctx = None  # UsageError.show prints the usage and the "Try --help" lines only with a context
            raise


@click.group(cls=MethodGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120,
                                               "terminal_width": 120})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="rfcx-kit")
def main(verbose: int, quiet: bool) -> None:
    """rfcx-kit: windowed SED, cycle re-labeling and Kaggle submission for RFCX-style competitions.

    \b
    The method, in order:
      synth | download -> features -> stage1 -> relabel -> ensemble -> validate -> submit
      predict (new recordings), export (ONNX)
    Start with `rfcx-kit demo` to see all of it run on a small synthetic data set.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


for _command in COMMANDS:
    main.add_command(_command)
