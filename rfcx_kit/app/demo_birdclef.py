"""``rfcx-kit demo --profile birdclef``: the method on a BirdCLEF-shaped synthetic set, scored as BirdCLEF scores.

Steps: synthesise a BirdCLEF 2025-layout folder (focal clips with weak labels, unlabelled soundscapes at other sites,
test soundscapes with a 5-s truth) -> feature cache -> stage 1 on the focal clips -> re-labeling cycles -> the
control and the oracle (the soundscapes and clips fully labelled) -> the kept stage's 5-s rows of the test
soundscapes in sample_submission.csv's layout -> validate -> report. Every stage is scored by macro ROC-AUC over
the test rows against the truth, beside the prior (one constant score per class: 0.5 by construction).

A BirdCLEF submission is a notebook run by Kaggle, not a CSV upload, so nothing is submitted here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from rfcx_kit.app.demo import done, step

RECIPE = "birdclef-demo"
YEAR = 2025


SOFT = ("soft_auc", "soft_ece", "soft_precision", "soft_recall")  # the soft labels against the truth, per round
HARD = ("pseudo_positives", "pseudo_precision", "pseudo_recall")  # hard pseudo-positive windows, per round


def stage_rows(run_dir: Path, metric_name: str) -> pd.DataFrame:
    """One row per finished stage: CV and test-row figures by the competition's metric, then each round's
    pseudo-labels against the truth: the soft labels' ranking AUC, calibration error, precision and recall where the
    rounds made soft labels, the hard pseudo-positive windows' count, precision and recall where they made any."""
    from rfcx_kit.method.run import Run, read_metrics

    run = Run(run_dir)
    metrics = {stage: read_metrics(run.metrics(stage)) for stage in run.finished_stages()}
    hard = any(m.get("pseudo_positives", 0) for m in metrics.values())
    soft = any("soft_auc" in m for m in metrics.values())
    out = []
    for stage, m in metrics.items():
        row = {"stage": stage, f"cv_{metric_name}": m.get(f"cv_{metric_name}"),
               f"test_rows_{metric_name}": m.get(f"truth_test_rows_{metric_name}"),
               "test_rows_lwlrap": m.get("truth_test_rows_lwlrap")}  # gap_closed goes after these
        cycle = stage.startswith("cycle")
        for column in (SOFT if soft else ()) + (HARD if hard else ()):
            row[column] = m.get(column) if cycle else None
        out.append(row)
    return pd.DataFrame(out)


def run_birdclef_demo(out: Path, seed: int = 7, recipe: Path | None = None, overrides: tuple[str, ...] = (),
                      cycles: int | None = None, progress: bool = True, n_test: int = 20) -> dict:
    """Every step into ``out`` through the Python API; returns the summary (also ``out/summary.json``)."""
    from rfcx_kit import api
    from rfcx_kit.core.config import load_config
    from rfcx_kit.core.io import atomic_write_json
    from rfcx_kit.core.numerics import describe as describe_numerics
    from rfcx_kit.core.recipes import resolve_recipe
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.method.references import prior_test_rows
    from rfcx_kit.method.run import Run, format_metrics

    recipe = resolve_recipe(recipe or RECIPE)
    cfg = load_config(recipe, overrides)
    metric = cfg.train.metric
    out = Path(out)
    data, run_dir = out / "data", out / "run"
    n, started = 8, time.time()

    t = step(1, n, f"synthesise a BirdCLEF {YEAR}-layout folder (focal clips, unlabelled and test soundscapes) -> {data}")
    api.synth_birdclef(data, year=YEAR, seed=seed, test=n_test, progress=progress)
    comp = read_competition(data, options=cfg.data)
    focal = int(comp.labelled().sum())
    done(t, f"{len(comp.species)} classes, {focal} focal clips, {len(comp.train_ids) - focal} unlabelled "
             f"soundscapes, {len(comp.test_ids)} test soundscapes; {len(comp.warnings)} warning(s)")

    t = step(2, n, "log-mel feature cache (32 kHz OGG decoded once, resumable)")
    api.features(data, recipe, overrides, cache=data / "features_cache", progress=progress)
    done(t)

    t = step(3, n, f"stage 1: {recipe.stem} on the focal clips' weak labels (primary 1, listed secondaries "
                    f"{cfg.data.secondary_target}), scored by {metric}")
    s1 = api.stage1(data, run_dir, recipe, overrides, resume=Run(run_dir).config.exists(), progress=progress)
    done(t, format_metrics(s1.metrics))

    cycles = cycles if cycles is not None else cfg.relabel.cycles
    r = cfg.relabel
    how = (f"soft out-of-fold labels of the {'soundscapes' if r.soft_from == 'unlabelled' else 'recordings'}' "
           f"windows, power {r.soft_power:g}, floor {r.soft_floor:g}, {r.soft_inject}" if r.soft_share > 0
           else f"hard window votes, {r.votes} of {cfg.train.folds}")
    t = step(4, n, f"stage 2: {cycles} round(s) of re-labeling ({how})")
    loop = api.relabel(run_dir, cycles, progress=progress)
    done(t, "; ".join(f"{s.stage}: {format_metrics(s.metrics)}" for s in loop.stages[1:]))

    t = step(5, n, "references: the control (trained on as long, no pseudo-labels) and the oracle (every planted "
                    "call of the clips and soundscapes)")
    control = api.control(run_dir, cycles=len(loop.stages) - 1, progress=progress)
    oracle = api.oracle(run_dir, progress=progress)
    done(t, f"control: {format_metrics(control.metrics)}; oracle: {format_metrics(oracle.metrics)}")

    kept = json.loads(Run(run_dir).kept.read_text())
    t = step(6, n, f"the kept stage ({kept['stage']}, best CV {metric} on the original labels) predicts the test "
                    "soundscapes' 5-s rows in sample_submission.csv's layout -> validate")
    submission = out / "submission.csv"
    api.predict(data / "test_soundscapes", run_dir, "kept", out=submission, rows=5.0,
                sample_submission=data / "sample_submission.csv", progress=progress, device="cpu")
    rows = api.validate(submission, data)
    done(t, f"{submission}: {len(rows)} rows x {rows.shape[1] - 1} classes, valid")

    t = step(7, n, "submit: a BirdCLEF submission is a notebook run by Kaggle; see `rfcx-kit kaggle-package`")
    done(t, "nothing sent")

    t = step(8, n, "report")
    report = api.report(run_dir, out=out / "report.md", name=f"{out.resolve().name} (rfcx-kit demo, birdclef)")
    done(t, str(report))

    table = stage_rows(run_dir, metric)
    prior = prior_test_rows(read_competition(data, options=cfg.data), metric)
    refs = table.set_index("stage")
    figure = f"test_rows_{metric}"
    s1_value, oracle_value = refs.at["stage1", figure], refs.at["oracle", figure]
    gap = refs[figure].map(lambda v: (v - s1_value) / (oracle_value - s1_value) if oracle_value > s1_value else None)
    table.insert(4, "gap_closed", gap.to_numpy())
    summary = {"seconds": round(time.time() - started, 1), "profile": "birdclef", "year": YEAR, "recipe": recipe.stem,
               "seed": seed, "train_seed": cfg.train.seed, "metric": metric, "report": str(report),
               "submission": str(submission), "prior": prior, "stages": table.to_dict("records"),
               "kept": kept, "final_stage": kept["stage"],
               "kept_minus_control": refs.at[kept["stage"], figure] - refs.at["control", figure],
               "numerics": describe_numerics()}
    atomic_write_json(out / "summary.json", summary)
    echo_birdclef_summary(summary, table)
    return summary


def echo_birdclef_summary(summary: dict, table: pd.DataFrame) -> None:
    metric = summary["metric"]
    click.secho(f"\nrfcx-kit demo (birdclef) finished in {summary['seconds']:.0f} s", bold=True)
    click.echo(f"numerics: {summary['numerics']['mode']} ({summary['numerics']['torch_cpu_capability']}, "
               f"{summary['numerics']['torch_threads']} threads)")
    shown = pd.concat([pd.DataFrame([{"stage": "prior", f"test_rows_{metric}": summary["prior"]}]), table],
                      ignore_index=True)
    if "pseudo_positives" in shown:
        cycle = shown["stage"].str.startswith("cycle")
        shown["pseudo_positives"] = [str(int(v)) if c and v == v else "-" for v, c in zip(shown["pseudo_positives"], cycle)]
    click.echo(shown.to_string(index=False, na_rep="-",
                               float_format=lambda v: f"{v:.3f}" if np.isfinite(v) else "-"))
    click.echo(f"kept: {summary['kept']['stage']}; kept - control on the test rows: {summary['kept_minus_control']:+.3f} "
               "(one run: a spread over seeds is the study's)")
    click.echo(f"report: {summary['report']}\nsubmission: {summary['submission']}")
