"""The ``rfcx-kit`` command line.

Sub-commands live in the module of the step they run (stage1 and relabel, which also write the reports, in
``commands.py``) and are imported only when used, so
``rfcx-kit --help`` answers without importing torch.
"""

from __future__ import annotations

import importlib
import logging

import click

# name -> "module:attribute" of a click command. Order is the order of the method.
COMMANDS: dict[str, str] = {
    "demo": "rfcx_kit.app.demo:demo_cmd",
    "synth": "rfcx_kit.app.synth:synth_cmd",
    "download": "rfcx_kit.app.submit:download_cmd",
    "features": "rfcx_kit.app.data:features_cmd",
    "windows": "rfcx_kit.app.data:windows_cmd",
    "stage1": "rfcx_kit.app.commands:stage1_cmd",
    "relabel": "rfcx_kit.app.commands:relabel_cmd",
    "oracle": "rfcx_kit.app.references:oracle_cmd",
    "control": "rfcx_kit.app.references:control_cmd",
    "study": "rfcx_kit.app.study:study_cmd",
    "labels": "rfcx_kit.app.labels:labels_cmd",
    "weights": "rfcx_kit.app.models:weights_cmd",
    "predict": "rfcx_kit.app.predict:predict_cmd",
    "export": "rfcx_kit.app.predict:export_cmd",
    "ensemble": "rfcx_kit.app.submit:ensemble_cmd",
    "validate": "rfcx_kit.app.data:validate_cmd",
    "submit": "rfcx_kit.app.submit:submit_cmd",
    "score": "rfcx_kit.app.data:score_cmd",
    "report": "rfcx_kit.app.report:report_cmd",
}

_SHORT_HELP = {
    "demo": "Run the whole method on a small synthetic set: data, stage 1, cycles, control, oracle, ensemble, submit.",
    "synth": "Write an RFCX-shaped synthetic data set with hidden ground truth.",
    "download": "Download and unpack the competition files through the official Kaggle client.",
    "features": "Build the memory-mapped log-mel feature cache of a competition folder.",
    "windows": "Print the sliding-window layout as a JSON list of [start, end] frames.",
    "stage1": "Train the SED model over folds and predict by soft frame-wise prediction.",
    "relabel": "Stage 2: cycle re-labeling with pseudo-positives.",
    "oracle": "The ceiling: stage 1's recipe on every planted call (synthetic data).",
    "control": "Stage 1 trained on as long as the cycles, without pseudo-labels.",
    "study": "Stage 1, cycles, control and oracle over data x training seeds: does re-labeling beat more training?",
    "weights": "Download a backbone's pretrained weights ahead of time (Hugging Face hub cache, or a folder).",
    "labels": "Import your annotations (Raven, Audacity, Arbimon, CSV), or pseudo-labels from predictions made elsewhere.",
    "predict": "Predict new recordings (any folder of FLAC/WAV/npy) with a trained stage's fold models.",
    "export": "Export a stage's fold models to ONNX for CPU inference elsewhere.",
    "ensemble": "Average fold predictions (and other submissions) into one submission CSV.",
    "validate": "Check a submission CSV: header, recording ids, finite numbers.",
    "submit": "Validate and submit a CSV through the official Kaggle client.",
    "score": "LWLRAP, precision and recall of a submission-format file against 0/1 labels.",
    "report": "Write report.md with figures for a run directory.",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        if ctx.resilient_parsing or getattr(self, "_listing", False):
            # Listing commands for --help: a placeholder with the short help, no import.
            return click.Command(name, short_help=_SHORT_HELP.get(name, ""))
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    def invoke(self, ctx: click.Context) -> object:
        """Run the sub-command; a usage error (a value outside its option's domain, a missing option) is one
        ``Error:`` line naming the option, without click's usage block (``--help`` still prints it)."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.ctx = None  # UsageError.show prints the usage and the "Try --help" lines only with a context
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's --help: list the commands from placeholders (decided here, not from ``sys.argv``)."""
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
