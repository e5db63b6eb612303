"""``rfcx-kit study``: the method over data seeds x training seeds, resumably, with the paired difference to the control.

One run per (data set, training seed): stage 1, the re-labeling cycles, the control (stage 1 trained on as long,
without pseudo-labels) and, where the data has a hidden truth, the oracle (every planted call labelled). Data sets
are synthesised per data seed (``--data-seeds``) or are your own folders (``--data``, repeatable). Then
``study.csv`` (a row per run), ``study.md`` (the runs, the paired difference kept - control with its t interval, a
verdict) and ``study.png``.

    STUDY/
      study.json        the design (data, seeds, recipe, overrides, cycles, oracle): a rerun resumes only the same design
      data/dD/          synthetic data sets, one per data seed (with truth/)
      runs/NAME/        one run directory per pair (docs/architecture.md), NAME = dD-tT or FOLDER-tT
      timing.csv        run,step,seconds of every finished step (a resumed step adds its own time)
      study.csv  study.md  study.png

A killed study resumes where it stopped: finished steps are kept, an unfinished one resumes from its folds'
checkpoints (each step is the command of the same name).
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import pandas as pd

from rfcx_kit.core.errors import ConfigError, StateError
from rfcx_kit.core.numerics import MODES
from rfcx_kit.data.synth.birdclef import PROFILE as BIRDCLEF, BirdclefSynth
from rfcx_kit.data.synth.scene import PROFILES
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.core.io import atomic_write_csv, atomic_write_json
from rfcx_kit.app.options import SEED, SHARE, at_least, finite

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "study"
ORACLE_MODES = ("all", "first", "none")


@dataclass
class Design:
    """What a study runs; a resume must ask for the same."""

    data: list[dict[str, Any]]  # {"name", "path", "seed" (synthetic) or None}
    train_seeds: list[int]
    pipeline: str
    overrides: list[str]
    cycles: int
    oracle: str
    # profile, train, test, seconds, tp_share (synthetic data only; birdclef: train = focal clips per class, test =
    # test soundscapes, seconds = the soundscapes' length)
    synth: dict[str, Any] | None = None
    numerics: str = "native"
    runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_seeds(text: str, option: str) -> list[int]:
    """``"7,1,2"`` -> ``[7, 1, 2]``: distinct seeds in 0..2**32-1, in the given order."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: comma-separated integers, e.g. 7,1,2") from None
    if not seeds:
        raise ConfigError(f"{option}: give at least one seed")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise ConfigError(f"{option}: {bad[0]} is not a seed in 0..{2**32 - 1}")
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"{option} {text!r}: a seed is given twice")
    return seeds


def check_design(path: Path, design: Design) -> None:
    """A study folder holds one design: a rerun with another is refused, naming what differs."""
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    new = design.to_dict()
    differ = [k for k in new if saved.get(k) != new[k]]
    if differ:
        detail = "; ".join(f"{k}: {saved.get(k)!r} -> {new[k]!r}" for k in differ)
        raise StateError(f"{path.parent} holds a study of another design ({detail}): rerun it as it was, or use a "
                         "new --out")


class Timer:
    """``timing.csv``: the seconds of each finished step of each run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = pd.read_csv(path).to_dict("records") if path.is_file() else []

    def add(self, run: str, step: str, seconds: float) -> None:
        self.rows.append({"run": run, "step": step, "seconds": round(seconds, 1)})
        atomic_write_csv(self.path, pd.DataFrame(self.rows))

    def run_seconds(self, run: str) -> float:
        return float(sum(r["seconds"] for r in self.rows if r["run"] == run))

    def total(self) -> float:
        return float(sum(r["seconds"] for r in self.rows))


def has_truth(data: Path) -> bool:
    return (Path(data) / "truth" / "calls.csv").is_file()


def rows_truth(data: Path) -> bool:
    """A BirdCLEF-shaped synthetic set: its truth is the test soundscapes' 5-s rows."""
    return (Path(data) / "truth" / "test_rows.csv").is_file()


def study_metric(design: Design) -> str:
    from rfcx_kit.core.config import load_config

    return load_config(design.pipeline, design.overrides).train.metric


def run_pair(data: Path, run_dir: Path, name: str, design: Design, train_seed: int, oracle: bool, timer: Timer,
             progress: bool) -> None:
    """Stage 1, the cycles, the control and (``oracle``) the oracle of one run; each step resumes."""
    from rfcx_kit import api
    from rfcx_kit.method.references import run_control, run_oracle
    from rfcx_kit.method.run import Run

    run = Run(run_dir)
    overrides = (*design.overrides, f"train.seed={train_seed}")
    steps = [("stage1", lambda: api.stage1(data, run_dir, design.pipeline, overrides, resume=run.config.exists(),
                                           progress=progress)),
             ("relabel", lambda: api.relabel(run_dir, cycles=design.cycles, progress=progress)),
             ("control", lambda: run_control(run_dir, cycles=design.cycles, progress=progress))]
    if oracle:
        steps.append(("oracle", lambda: run_oracle(run_dir, progress=progress)))
    done = {r["step"] for r in timer.rows if r["run"] == name}
    for step, call in steps:
        if step in done:
            continue
        started = time.time()
        click.echo(f"  {name}: {step} ...")
        call()
        timer.add(name, step, time.time() - started)
        click.echo(f"  {name}: {step} done in {time.time() - started:.0f} s")


def collect(study: Path, design: Design, timer: Timer) -> pd.DataFrame:
    """``study.csv``'s rows: one per run (the oracle of a run without one is its data set's first run's)."""
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.method.references import prior_test_lwlrap, prior_test_rows
    from rfcx_kit.report.study import run_row

    metric = study_metric(design)
    rows = []
    for d in design.data:
        path = Path(d["path"])
        keys = {}
        if rows_truth(path):  # a BirdCLEF-shaped set: its test rows by the run's metric
            prior = prior_test_rows(read_competition(path), metric)
            keys = {"truth_key": f"truth_test_rows_{metric}", "cv_key": f"cv_{metric}"}
        else:
            prior = prior_test_lwlrap(read_competition(path)) if has_truth(path) else None
        for t in design.train_seeds:
            name = f"{d['name']}-t{t}"
            rows.append(run_row(study / "runs" / name, name, d["name"], d["seed"], t, prior, timer.run_seconds(name),
                                **keys))
    frame = pd.DataFrame(rows)
    if design.oracle == "first" and "oracle" in frame:
        first = frame.groupby("data")["oracle"].transform("first")
        frame["oracle"] = frame["oracle"].fillna(first)
    return frame


def run_study(out: Path, design: Design, progress: bool = True, command: str = "") -> dict[str, Any]:
    """Run (or resume) every pair of the design into ``out`` and write its tables and figure."""
    from rfcx_kit import api
    from rfcx_kit.report.study import write_study

    out = Path(out)
    check_design(out / "study.json", design)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "study.json", design.to_dict())
    timer = Timer(out / "timing.csv")
    started = time.time()
    pairs = [(d, t) for d in design.data for t in design.train_seeds]
    for i, (d, t) in enumerate(pairs):
        name = f"{d['name']}-t{t}"
        if d["seed"] is not None and not any(r["run"] == d["name"] and r["step"] == "data" for r in timer.rows):
            s = design.synth or {}
            begun = time.time()  # synth resumes a folder it started
            if s["profile"] == BIRDCLEF:
                click.echo(f"[data] {d['name']}: synthesising a BirdCLEF set, {s['train']} focal clips per class, "
                           f"{s['test']} test soundscapes of {s['seconds']:g} s (seed {d['seed']})")
                api.synth_birdclef(d["path"], seed=d["seed"], clips_per_species=s["train"], test=s["test"],
                                   soundscape_seconds=s["seconds"], progress=progress)
            else:
                click.echo(f"[data] {d['name']}: synthesising {s['train']} + {s['test']} recordings (profile "
                           f"{s['profile']}, seed {d['seed']})")
                api.synth(d["path"], n_train=s["train"], n_test=s["test"], profile=s["profile"], seconds=s["seconds"],
                          seed=d["seed"], pipeline=design.pipeline, progress=progress,
                          **({"tp_share": s["tp_share"]} if s.get("tp_share") is not None else {}))
            timer.add(d["name"], "data", time.time() - begun)
        elapsed = time.time() - started
        eta = f", about {elapsed / i * (len(pairs) - i) / 60:.0f} min left" if i else ""
        click.secho(f"[{i + 1}/{len(pairs)}] {name}{eta}", bold=True)
        oracle = design.oracle == "all" or (design.oracle == "first" and t == design.train_seeds[0])
        run_pair(Path(d["path"]), out / "runs" / name, name, design, t, oracle and has_truth(Path(d["path"])), timer,
                 progress)
    frame = collect(out, design, timer)
    notes = []
    if design.oracle == "first":
        notes.append(f"The oracle was trained once per data set (training seed {design.train_seeds[0]}); the "
                     "other runs of that data set show the same oracle.")
    notes.append(f"Study time: {timer.total() / 60:.1f} min of steps in all (synthesis included), recorded in "
                 "timing.csv.")
    title = (f"Study: {len(design.data)} data set(s) x {len(design.train_seeds)} training seed(s), "
             f"{design.cycles} cycles, recipe {Path(design.pipeline).stem}")
    words = {}
    if any(rows_truth(Path(d["path"])) for d in design.data):
        metric = study_metric(design)
        words = {"figure": f"test rows {metric}", "cv_figure": f"CV {metric}"}
    result = write_study(out, frame, title, command, notes, **words)
    result["seconds"] = timer.total()
    atomic_write_json(out / "result.json", result)
    return result


def design_of(out: Path, data: tuple[Path, ...], data_seeds: str, train_seeds: str, profile: str, n_train: int,
              n_test: int, seconds: float, tp_share: float | None, pipeline: str, overrides: tuple[str, ...],
              cycles: int | None, oracle: str, numerics: str) -> Design:
    from rfcx_kit.core.config import load_config
    from rfcx_kit.core.recipes import resolve_recipe

    recipe = resolve_recipe(pipeline)
    cfg = load_config(recipe, overrides)  # a bad key or value is refused before anything is written
    cycles = cycles if cycles is not None else cfg.relabel.cycles
    if cycles < 1:
        raise ConfigError("--cycles: a study needs at least one cycle")
    seeds = parse_seeds(train_seeds, "--train-seeds")
    if any(o.split("=", 1)[0].strip() == "train.seed" for o in overrides):
        raise ConfigError("--set train.seed: a study sets it per run; give --train-seeds")
    if data:
        names = [Path(p).resolve().name for p in data]
        if len(set(names)) < len(names):
            raise ConfigError("--data: two folders of the same name; their runs would clash")
        for p in data:
            if not Path(p).is_dir():
                raise ConfigError(f"--data {p}: not a folder")
        sets = [{"name": n, "path": str(Path(p).resolve()), "seed": None} for n, p in zip(names, data)]
        synth = None
    else:
        sets = [{"name": f"d{s}", "path": str((Path(out) / "data" / f"d{s}").resolve()), "seed": s}
                for s in parse_seeds(data_seeds, "--data-seeds")]
        synth = {"profile": profile, "train": n_train, "test": n_test, "seconds": seconds, "tp_share": tp_share}
    runs = [f"{d['name']}-t{t}" for d in sets for t in seeds]
    return Design(sets, seeds, str(Path(recipe).resolve()), list(overrides), cycles, oracle, synth, numerics, runs)


def command_of(out: Path, design: Design) -> str:
    """The command that runs (and resumes) this study, from its design."""
    from rfcx_kit.core.recipes import resolve_recipe

    args = ["rfcx-kit", "study", "--out", str(out)]
    if design.synth is None:
        for d in design.data:
            args += ["--data", d["path"]]
    else:
        s = design.synth
        args += ["--data-seeds", ",".join(str(d["seed"]) for d in design.data), "--profile", s["profile"],
                 "--train", str(s["train"]), "--test", str(s["test"])]
        if s["seconds"] != 60:
            args += ["--seconds", f"{s['seconds']:g}"]
        if s.get("tp_share") is not None:
            args += ["--tp-share", f"{s['tp_share']:g}"]
    args += ["--train-seeds", ",".join(map(str, design.train_seeds))]
    shipped = Path(design.pipeline).stem
    try:  # a shipped recipe by its name, else its path
        pipeline = shipped if resolve_recipe(shipped).resolve() == Path(design.pipeline).resolve() else design.pipeline
    except ConfigError:
        pipeline = design.pipeline
    args += ["--pipeline", pipeline, "--cycles", str(design.cycles), "--oracle", design.oracle]
    if design.numerics != "native":
        args += ["--numerics", design.numerics]
    for o in design.overrides:
        args += ["--set", o]
    return " ".join(shlex.quote(a) for a in args)


@click.command("study")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Study folder (data, runs, study.csv|md|png); the same command resumes it.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), multiple=True,
              help="Your own data folder (repeatable) [default: synthetic data sets, one per --data-seeds].")
@click.option("--data-seeds", default="7,1,2", show_default=True, help="Seeds of the synthetic data sets (without --data).")
@click.option("--train-seeds", default="42,1", show_default=True, help="Training seeds (train.seed), one run each per data set.")
@click.option("--profile", type=click.Choice([*PROFILES, BIRDCLEF]), default="demo", show_default=True,
              help="The synthetic data's profile (rfcx-kit synth --profile); birdclef: judged on the test "
                   "soundscapes' 5-s rows by the recipe's metric (use --pipeline birdclef-study).")
@click.option("--train", "n_train", type=at_least(1), default=None,
              show_default=f"600; birdclef: {BirdclefSynth.clips_per_species} clips per class",
              help="Synthetic train recordings (birdclef: focal clips per class).")
@click.option("--test", "n_test", type=at_least(1), default=None,
              show_default=f"300; birdclef: {BirdclefSynth.test} soundscapes",
              help="Synthetic test recordings (the judge: 300 keeps its noise below the effects measured).")
@click.option("--seconds", type=finite(10, 600), default=None,
              show_default=f"60; birdclef: {BirdclefSynth.soundscape_seconds:g}",
              help="Synthetic recording length (RFCX profiles 10-60 s; birdclef: the soundscapes').")
@click.option("--tp-share", type=SHARE, default=None, help="Share of planted calls with a TP row [default: the profile's].")
@click.option("--pipeline", default=DEFAULT_RECIPE, show_default=True, help="Recipe (a file or a shipped name).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config overrides (repeatable).")
@click.option("--cycles", type=at_least(1), default=None, help="Re-labeling cycles [default: the recipe's].")
@click.option("--oracle", type=click.Choice(ORACLE_MODES), default="all", show_default=True,
              help="Where there is a truth: train the oracle in every run, once per data set, or never.")
@click.option("--numerics", type=click.Choice(MODES), default="native", show_default=True,
              help="native: this CPU's fastest kernels; portable: the same floats on any x86-64 CPU (slower).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@cli_errors
def study_cmd(out: Path, data: tuple[Path, ...], data_seeds: str, train_seeds: str, profile: str,
              n_train: int | None, n_test: int | None, seconds: float | None, tp_share: float | None, pipeline: str,
              overrides: tuple[str, ...], cycles: int | None, oracle: str, numerics: str, no_progress: bool) -> None:
    """Does re-labeling beat the same training without it? Over data seeds x training seeds.

    Stage 1, the cycles, the control and the oracle on each data seed x training seed, with the paired
    difference kept - control and its 95 % interval.

    \b
    Without --data: one synthetic set per data seed, judged against its hidden truth (test LWLRAP, pseudo-label
    precision, recall and lift). With --data (your own folders): the runs' CV on the original labels, paired per
    training seed. Writes OUT/study.csv, OUT/study.md, OUT/study.png; rerun the same command to resume.
    """
    from rfcx_kit.core import numerics as pinned

    if numerics == "portable":
        pinned.ensure_portable()
    elif pinned.requested():
        raise click.UsageError(f"--numerics native, but {pinned.ENV}=portable is set in the environment: unset it")
    birdclef = profile == BIRDCLEF
    n_train = n_train or (BirdclefSynth.clips_per_species if birdclef else 600)
    n_test = n_test or (BirdclefSynth.test if birdclef else 300)
    seconds = seconds or (BirdclefSynth.soundscape_seconds if birdclef else 60.0)
    if not birdclef and seconds > 60:
        raise ConfigError(f"--seconds {seconds:g}: the RFCX profiles' recordings are 10-60 s")
    design = design_of(out, data, data_seeds, train_seeds, profile, n_train, n_test, seconds, tp_share, pipeline,
                       overrides, cycles, oracle, numerics)
    result = run_study(out, design, progress=not no_progress, command=command_of(out, design))
    click.echo((Path(out) / "study.md").read_text())
    click.echo(f"{result['verdict']}\nstudy: {Path(out) / 'study.md'}, {Path(out) / 'study.png'} "
               f"({result['seconds'] / 60:.1f} min)")
