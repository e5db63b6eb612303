"""``rfcx-kit demo``: the whole method on a small synthetic set, in minutes on a laptop CPU.

Steps: synthesise an RFCX-shaped data set (FLAC, with hidden truth) -> feature cache -> stage 1 (folds,
soft frame-wise prediction, CV) -> 3 cycles of re-labeling -> ensemble -> validate -> submit through the
REAL ``kaggle`` client to a stand-in Kaggle server on 127.0.0.1 that scores against the synthetic truth
(``--submit dry-run`` only prints what would be sent) -> report.md with figures.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from rfcx_kit.core.errors import RfcxError
from rfcx_kit.core.numerics import MODES
from rfcx_kit.data.synth.scene import PROFILES
from rfcx_kit.data.synth.writer import FORMATS
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.app.options import SEED, SHARE, at_least, finite
from rfcx_kit.data.synth.scene import MAX_SECONDS, MIN_SECONDS

from rfcx_kit.data.synth.birdclef import PROFILE as BIRDCLEF

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "demo"  # the shipped pipelines/demo.yaml, in a checkout or an installed package
DEMO_TRAIN, DEMO_TEST = 300, 100  # recordings of the demo's synthetic set (docs/method-notes.md, section 9)


def step(i: int, n: int, text: str) -> float:
    click.secho(f"\n[{i}/{n}] {text}", bold=True)
    return time.time()


def done(started: float, text: str = "") -> None:
    click.echo(f"      done in {time.time() - started:.0f} s{': ' + text if text else ''}")


def truth_scorer(truth_csv: Path):  # noqa: ANN201 - Callable[[bytes], str]
    """The stand-in's "public LB": LWLRAP of an uploaded submission against the synthetic test truth."""
    import io

    from rfcx_kit.core.metrics import lwlrap
    from rfcx_kit.core.species import SPECIES_COLUMNS

    truth = pd.read_csv(truth_csv, dtype={"recording_id": str}).set_index("recording_id")

    def score(data: bytes) -> str:
        sub = pd.read_csv(io.BytesIO(data), dtype={"recording_id": str}).set_index("recording_id")
        return f"{lwlrap(truth.loc[sub.index, SPECIES_COLUMNS].to_numpy(), sub[SPECIES_COLUMNS].to_numpy()):.5f}"

    return score


def submit_to_standin(file: Path, message: str, data: Path, log_path: Path, home: Path) -> str:
    """Submit ``file`` with the real client (a subprocess) to a stand-in on 127.0.0.1; returns its score line."""
    from rfcx_kit.submit.standin import StandIn

    config_dir = home / "kaggle-standin"
    config_dir.mkdir(parents=True, exist_ok=True)
    standin = StandIn(scorer=truth_scorer(data / "truth" / "test_presence.csv"))
    (config_dir / "kaggle.json").write_text(json.dumps({"username": standin.username, "key": standin.key}))
    (config_dir / "kaggle.json").chmod(0o600)
    with standin:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
        env.update(standin.client_env())
        env["KAGGLE_CONFIG_DIR"] = str(config_dir)
        cmd = [sys.executable, "-m", "rfcx_kit", "submit", str(file), "-m", message, "--data", str(data),
               "--wait", "--poll-seconds", "0.2", "--timeout", "60", "--log", str(log_path)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if standin.foreign_requests():
            raise RfcxError("the demo's submit tried to leave 127.0.0.1")
    if result.returncode != 0:
        raise RfcxError(f"demo submit failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def labelled_share(data: Path) -> tuple[int, int]:
    """(planted train calls with a TP row, planted calls in the train recordings the pipeline sees)."""
    from rfcx_kit.data.layouts import read_competition

    comp = read_competition(data)
    calls = pd.read_csv(data / "truth" / "calls.csv", dtype={"recording_id": str})
    calls = calls[(calls["split"] == "train") & (calls["kind"] == "call") & calls["recording_id"].isin(comp.train_ids)]
    return int((calls["labelled"] == "tp").sum()), len(calls)



# What `rfcx-kit study` (defaults) measured, quoted where a demo run cannot measure it: docs/method-notes.md §12.
# The README's study table is the source; change both together.
STUDY_FIGURE = "kept - control +0.046 +- 0.009, 95 % CI +0.036 to +0.055 over 3 data x 2 training seeds at 600 + 300"

def run_demo(out: Path, n_train: int | None = None, n_test: int | None = None, seconds: float = 60.0, seed: int = 7,
             tp_share: float | None = None, label_scale: float = 1.0, profile: str = "demo",
             recipe: Path | None = None, overrides: tuple[str, ...] = (), cycles: int | None = None,
             submit: str = "standin", fmt: str = "npy", progress: bool = True) -> dict:
    """Run every step into ``out`` through the Python API, as a user's script would; returns a summary (also
    written to ``out/summary.json``)."""
    from rfcx_kit import api
    from rfcx_kit.core.config import load_config
    from rfcx_kit.core.io import atomic_write_json
    from rfcx_kit.core.numerics import describe as describe_numerics
    from rfcx_kit.core.recipes import resolve_recipe
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.method.run import Run, format_metrics

    recipe = resolve_recipe(recipe or DEFAULT_RECIPE)
    out = Path(out)
    if seconds != 60.0:  # the features must know the recordings' length
        overrides = (f"features.seconds={seconds}",) + tuple(overrides)
    cfg = load_config(recipe, overrides)
    data, run_dir, subs = out / "data", out / "run", out / "submissions"
    n = 8
    started = time.time()

    t = step(1, n, f"synthesise the train and test recordings (profile {profile}, {fmt}, {seconds:g} s) -> {data}")
    # npy arrays on the recipe's grid, whatever the profile
    api.synth(data, n_train, n_test, profile, seconds, seed, fmt, pipeline=recipe, overrides=overrides,
              progress=progress, label_scale=label_scale, tp_share=tp_share)
    comp = read_competition(data)
    labelled, planted = labelled_share(data)
    done(t, f"{len(comp.train_ids)} train + {len(comp.test_ids)} test recordings, {len(comp.tp)} TP rows, {len(comp.fp)} FP rows: {labelled} of {planted} planted train calls "
             f"({labelled / max(1, planted):.1%}, 1 in {planted / max(1, labelled):.1f}) have a TP row; the rest "
             f"are in {data / 'truth'} (never read by training)")

    if comp.layout == "audio":
        t = step(2, n, "log-mel feature cache (parallel, resumable)")
        api.features(data, recipe, overrides, cache=data / "features_cache", progress=progress)
        done(t)
    else:
        step(2, n, "precomputed spectrograms: no feature cache needed")

    t = step(3, n, f"stage 1: {recipe.name}, folds -> train -> soft frame-wise prediction")
    s1 = api.stage1(data, run_dir, recipe, overrides, resume=Run(run_dir).config.exists(), progress=progress)
    done(t, format_metrics(s1.metrics))

    cycles = cycles if cycles is not None else cfg.relabel.cycles
    t = step(4, n, f"stage 2: {cycles} cycles of re-labeling")
    loop = api.relabel(run_dir, cycles, progress=progress)
    done(t, "; ".join(f"{s.stage}: {format_metrics(s.metrics)}" for s in loop.stages[1:]))

    t = step(5, n, "references: the control (stage 1 trained on as long as the cycles, no pseudo-labels) "
                    "and the oracle (stage 1's recipe on every planted call)")
    control = api.control(run_dir, cycles=len(loop.stages) - 1, progress=progress)
    oracle = api.oracle(run_dir, progress=progress)
    done(t, f"control: {format_metrics(control.metrics)}; oracle: {format_metrics(oracle.metrics)}")

    kept = json.loads(Run(run_dir).kept.read_text())
    t = step(6, n, f"ensemble the kept stage's folds ({kept['stage']}, best CV LWLRAP on the original labels) "
                    "-> validate")
    sub_path = subs / "demo.csv"
    api.ensemble(run_dir, "kept", out=sub_path, echo=click.echo)
    api.validate(sub_path, data)
    done(t, f"{sub_path} is a valid submission ({len(comp.test_ids)} rows)")

    log_path = subs / "log.csv"
    if submit == "standin":
        t = step(7, n, "submit with the official kaggle client to a stand-in Kaggle on 127.0.0.1 "
                        "(its 'public LB' is LWLRAP against the synthetic test truth)")
        line = submit_to_standin(sub_path, "rfcx-kit demo", data, log_path, out)
        done(t, line)
    else:
        t = step(7, n, "submit --dry-run (nothing is sent)")
        api.submit(sub_path, "rfcx-kit demo", data, dry_run=True, log=log_path)
        done(t)

    t = step(8, n, "report")
    report = api.report(run_dir, log_path, out=out / "report.md",
                        name=f"{Path(out).resolve().name} (rfcx-kit demo, recipe {recipe.stem})")
    done(t, str(report))

    table = api.stages(run_dir)
    prior = api.prior(data)
    method = table[~table["stage"].isin(["oracle", "control"])]
    refs = table.set_index("stage")
    final = refs.loc[kept["stage"]]
    summary = {"seconds": round(time.time() - started, 1), "report": str(report), "submission": str(sub_path),
               "recipe": recipe.name, "seed": seed, "train_seed": cfg.train.seed, "profile": profile,
               "labelled_calls": labelled, "planted_calls": planted, "labelled_share": labelled / max(1, planted),
               "prior": {"stage": "prior", "truth_test_lwlrap": prior},
               "stages": method.to_dict("records"),
               "oracle": refs.loc["oracle"].to_dict(), "control": refs.loc["control"].to_dict(),
               "kept": kept, "final_stage": kept["stage"], "gap_closed": final.get("gap_closed"),
               "kept_minus_control": final["truth_test_lwlrap"] - refs.loc["control", "truth_test_lwlrap"],
               "numerics": describe_numerics()}
    atomic_write_json(out / "summary.json", summary)
    echo_summary(summary, table)
    return summary


def echo_summary(summary: dict, table: pd.DataFrame) -> None:
    """The demo's closing lines: time, numerics, the labelled share, one row per stage, the kept stage and the study."""
    labelled, planted, kept = summary["labelled_calls"], summary["planted_calls"], summary["kept"]
    prior = summary["prior"]["truth_test_lwlrap"]
    click.secho(f"\nrfcx-kit demo finished in {summary['seconds']:.0f} s", bold=True)
    click.echo(f"numerics: {summary['numerics']['mode']} ({summary['numerics']['torch_cpu_capability']}, "
               f"{summary['numerics']['torch_threads']} threads)")
    click.echo(f"labels: {labelled} of {planted} planted train calls have a TP row "
               f"({summary['labelled_share']:.1%}, 1 in {planted / max(1, labelled):.1f})")
    columns = ["stage", "cv_lwlrap", "truth_test_lwlrap", "gap_closed", "pseudo_positives", "pseudo_precision",
               "pseudo_lift", "pseudo_recall"]
    shown = pd.concat([pd.DataFrame([{"stage": "prior", "truth_test_lwlrap": prior}]), table], ignore_index=True)
    shown = shown[[c for c in columns if c in shown]].copy()
    if "pseudo_positives" in shown:  # a count, and only where a cycle made pseudo-labels
        cycle = shown["stage"].str.startswith("cycle")
        shown["pseudo_positives"] = [str(int(v)) if c else "-" for v, c in zip(shown["pseudo_positives"], cycle)]
    click.echo(shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}" if np.isfinite(v) else "-"))
    values = ", ".join(f"{k} {v:.3f}" for k, v in kept["candidates"].items() if v is not None)
    click.echo(f"kept: {kept['stage']} (best CV LWLRAP on the original labels: {values})")
    click.echo(f"kept - control: {summary['kept_minus_control']:+.3f} on this run; one run at this scale cannot show "
               f"whether re-labeling beats the same training without it; the study does: {STUDY_FIGURE} "
               "(`rfcx-kit study`, README)")
    click.echo(f"report: {summary['report']}\nsubmission: {summary['submission']}")


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for everything the demo writes (data, run, submissions, report).")
@click.option("--train", "n_train", type=at_least(1), default=DEMO_TRAIN, show_default=True, help="Synthetic train recordings.")
@click.option("--test", "n_test", type=at_least(1), default=None, show_default=f"{DEMO_TEST} (birdclef: 20 soundscapes)",
              help="Synthetic test recordings.")
@click.option("--profile", type=click.Choice([*PROFILES, BIRDCLEF]), default="demo", show_default=True,
              help="The synthetic data's profile (rfcx-kit synth --profile): demo, where a CPU learns the calls and "
                   "the labels are the limit; rfcx, the competition's shape (pass a recipe for its 128 x 3751 grid); "
                   "birdclef, a BirdCLEF 2025-layout folder scored by macro ROC-AUC on 5-s rows (recipe "
                   "pipelines/birdclef-demo.yaml; --train, --seconds, --format, --tp-share and --submit do not apply).")
@click.option("--seconds", type=finite(MIN_SECONDS, MAX_SECONDS), default=60.0, show_default=True, help="Recording length (RFCX: 60).")
@click.option("--seed", type=SEED, default=7, show_default=True, help="Seed of the synthetic data (the training seed is train.seed: --set train.seed=N).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="npy", show_default=True,
              help="npy: precomputed spectrograms (fast); flac: 48 kHz audio + feature cache (the Kaggle layout).")
@click.option("--tp-share", type=SHARE, default=None,
              help="Share of the planted train calls that get a TP row (drawn over all calls) [default: the "
                   "profile's, 0.125 for demo: 1 in 8].")
@click.option("--cycles", type=at_least(1), default=None, help="Re-labeling cycles [default: the recipe's relabel.cycles].")
@click.option("--pipeline", "recipe", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe [default: pipelines/demo.yaml].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config overrides (repeatable).")
@click.option("--submit", type=click.Choice(["standin", "dry-run"]), default="standin", show_default=True,
              help="standin: the real kaggle client against a local stand-in server; dry-run: print only.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--numerics", type=click.Choice(MODES), default="portable", show_default=True,
              help="portable: the CPU kernels every x86-64 machine runs, so the README's table is reproduced "
                   "anywhere (about 2x slower); native: the fastest kernels of this CPU (docs/architecture.md).")
@cli_errors
def demo_cmd(out: Path, n_train: int, n_test: int | None, profile: str, seconds: float, seed: int, fmt: str,
             tp_share: float | None, cycles: int | None,
             recipe: Path | None, overrides: tuple[str, ...], submit: str, no_progress: bool, numerics: str) -> None:
    """Run the whole method on a small synthetic RFCX-shaped data set, end to end.

    Synthesise data (with hidden truth) -> features -> stage 1 -> re-labeling cycles -> ensemble ->
    validate -> submit (to a local stand-in Kaggle, or --submit dry-run) -> OUT/report.md.

    \b
    OUT/data/         the synthetic data set (truth/ holds every planted call; training never reads it)
    OUT/run/          the run directory (docs/architecture.md)
    OUT/submissions/  demo.csv and log.csv (every confirmed submission)
    OUT/report.md     the report (figures under OUT/run/report/); OUT/summary.json, OUT/cv_table.md
    Rerunning the same command resumes where it stopped.
    """
    from rfcx_kit.core import numerics as pinned

    if numerics == "portable":
        pinned.ensure_portable()  # before anything is written: may start this command again with the pins set
    elif pinned.requested():
        raise click.UsageError(f"--numerics native, but {pinned.ENV}=portable is set in the environment: unset it")
    if profile == BIRDCLEF:
        from rfcx_kit.app.demo_birdclef import run_birdclef_demo

        run_birdclef_demo(out, seed, recipe, overrides, cycles, progress=not no_progress, n_test=n_test or 20)
        return
    run_demo(out, n_train, n_test or DEMO_TEST, seconds, seed, tp_share, 1.0, profile, recipe, overrides, cycles,
             submit, fmt, progress=not no_progress)
