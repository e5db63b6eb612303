"""A table of bad inputs, tried as a hostile user would: every one stops with exit code 2 and one line naming the
culprit (key, file, option or row), never a traceback, and leaves every folder as it was.

Each case runs the real command line (``rfcx-kit ...`` through click) on tiny data made here, snapshots the
folders the command could write to, and compares them afterwards (names, sizes and modification times).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.method.stage1 import run_stage1

from tiny import make_tiny, tiny_overrides

TINY = tiny_overrides(epochs=1)


def _sets(overrides: tuple[str, ...]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folders``: size, mtime and a hash of its bytes (so a rewrite is seen too)."""
    out = {}
    for folder in folders:
        if not folder.exists():
            out[str(folder)] = (-1, -1, "absent")
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                out[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[str(path)] = (0, 0, "dir")
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    data = make_tiny(root / "data")
    run = root / "runs" / "done"
    run_stage1(data, run, overrides=TINY, progress=False)
    return {"root": root, "data": data, "run": run}


def run_cli(args: list[str]) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(main, args)
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.output, exception


def expect_refused(args: list[str], culprit: str, watched: list[Path]) -> str:
    before = snapshot(*watched)
    code, output, exception = run_cli(args)
    assert exception is None, f"traceback instead of a clear error: {exception!r}\n{output}"
    assert "Traceback" not in output and "Aborted" not in output, output
    assert code == 2, f"exit {code}, expected 2: {output}"
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error: "), output
    assert culprit.lower() in output.lower(), f"the message does not name {culprit!r}: {output}"
    assert snapshot(*watched) == before, f"something was written although the command was refused: {output}"
    return output


# ---- stage 1: bad settings ---------------------------------------------------------------------------------

BAD_SETTINGS = [
    ("train.epochs=0", "train.epochs"), ("train.batch_size=0", "train.batch_size"), ("train.val_every=0", "train.val_every"),
    ("train.lr=-1", "train.lr"), ("train.lr=.nan", "train.lr"), ("train.lr=nan", "train.lr"),
    ("train.lr=.inf", "train.lr"), ("model.dropout=2", "model.dropout"),
    ("train.fp_per_tp=-1", "train.fp_per_tp"), ("predict.max_windows=0", "predict.max_windows"),
    ("train.device=tpu", "train.device"), ("model.weights=/no/such/weights.pt", "model.weights"),
    ("predict.threshold=2", "predict.threshold"), ("relabel.threshold=5", "relabel.threshold"),
    ("train.steps_per_epoch=0", "train.steps_per_epoch"), ("train.warmup_epochs=1000", "train.warmup_epochs"),
    ("features.seconds=0", "features.seconds"), ("features.dtype=float7", "features.dtype"),
    ("features.n_mels=0", "features.n_mels"), ("features.hop_length=0", "features.hop_length"),
    ("features.fmax=99999", "features.fmax"), ("windows.window=0", "windows.window"),
    ("windows.cover=600", "windows.cover"), ("train.folds=1", "train.folds"), ("train.folds=x", "train.folds"),
    ("train.no_such_key=1", "no_such_key"), ("nosection.key=1", "nosection"), ("model.backbone=resnet1", "model.backbone"),
    ("model.backbone=vit_tiny_patch16_224", "model.backbone"), ("model.backbone=resnet18.no_such_tag", "model.backbone"),
    ("relabel.species_thresholds={3: 2}", "species_thresholds"), ("relabel.tp_quantile=1.5", "relabel.tp_quantile"),
    ("train.unlabeled_weight=-0.1", "train.unlabeled_weight"), ("relabel.max_pseudo_per_tp=-1", "max_pseudo_per_tp"),
    ("train.optimizer=rmsprop", "train.optimizer"), ("model.in_channels=2", "model.in_channels"),
    ("train.threads=0", "train.threads"), ("predict.batch_recordings=0", "predict.batch_recordings"),
    ("relabel={source: vote, votes: 9}", "relabel.votes"), ("relabel.pseudo_weight=0", "relabel.pseudo_weight"),
    ("relabel.soft_share=1", "relabel.soft_share"), ("relabel.soft_power=0", "relabel.soft_power"),
    ("relabel.soft_teacher=vote", "relabel.soft_teacher"), ("relabel={test_pseudo: true, source: oof}", "test_pseudo"),
    ("train.fused_optimizer=maybe", "train.fused_optimizer"), ("relabel.pseudo_crops=2", "relabel.pseudo_crops"),
    ("train.folds=99999999999999999999999", "train.folds: 99999999999999999999999 is too large"),
    ("train.lr=1e300", "train.lr: must be in (0, 10]"),
]


@pytest.mark.parametrize("override, culprit", BAD_SETTINGS, ids=[o for o, _ in BAD_SETTINGS])
def test_stage1_refuses_a_bad_setting_before_writing(world: dict[str, Path], tmp_path: Path, override: str,
                                                     culprit: str) -> None:
    run = tmp_path / "runs" / "new"
    expect_refused(["stage1", "--data", str(world["data"]), "--run", str(run), *_sets(TINY), "--set", override],
                   culprit, [tmp_path / "runs", world["data"]])
    assert not run.exists()


BAD_OPTIONS = [
    (["--folds", "9"], "--folds"), (["--folds", "a"], "--folds"), (["--workers", "0"], "--workers"),
    (["--pipeline", "/no/such/recipe.yaml"], "recipe"),
]


@pytest.mark.parametrize("extra, culprit", BAD_OPTIONS, ids=[" ".join(e) for e, _ in BAD_OPTIONS])
def test_stage1_refuses_a_bad_option(world: dict[str, Path], tmp_path: Path, extra: list[str], culprit: str) -> None:
    run = tmp_path / "runs" / "new"
    expect_refused(["stage1", "--data", str(world["data"]), "--run", str(run), *_sets(TINY), *extra], culprit,
                   [tmp_path / "runs"])


def test_a_recipe_that_is_not_yaml_is_named(world: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train: [unclosed\n")
    expect_refused(["stage1", "--data", str(world["data"]), "--run", str(tmp_path / "r"), "--pipeline", str(recipe)],
                   str(recipe), [tmp_path / "r"])


@pytest.mark.parametrize("text, culprit", [
    ("train:\n  epochs: 1\nmodel:\n  dropout: 0.1\ntrain:\n  lr: 0.01\n", "duplicate key 'train' at line 5 (first at line 1)"),
    ("train:\n  epochs: 1\n  epochs: 2\n", "duplicate key 'epochs' at line 3 (first at line 2)"),
], ids=["section", "key"])
def test_a_recipe_with_a_key_given_twice_is_refused(world: dict[str, Path], tmp_path: Path, text: str,
                                                    culprit: str) -> None:
    # PyYAML keeps the later of two equal keys silently: the earlier section would vanish from the run
    recipe = tmp_path / "twice.yaml"
    recipe.write_text(text)
    output = expect_refused(["stage1", "--data", str(world["data"]), "--run", str(tmp_path / "r"),
                             "--pipeline", str(recipe)], culprit, [tmp_path / "r"])
    assert str(recipe) in output


# ---- stage 1: bad data -------------------------------------------------------------------------------------

def _zero_bytes(data: Path) -> str:
    path = sorted((data / "train").glob("*.npy"))[5]  # not the first file: the whole set is checked
    path.write_bytes(b"")
    return path.name


def _array(name_index: int, array: np.ndarray) -> Callable[[Path], str]:
    def corrupt(data: Path) -> str:
        path = sorted((data / "train").glob("*.npy"))[name_index]
        np.save(path, array)
        return path.name
    return corrupt


def _truncated(data: Path) -> str:
    path = sorted((data / "test").glob("*.npy"))[-1]
    path.write_bytes(path.read_bytes()[:-1000])
    return path.name


def _nan_late(data: Path) -> str:
    path = sorted((data / "train").glob("*.npy"))[7]
    x = np.load(path)
    x[100, 600] = np.nan
    np.save(path, x)
    return path.name


def _header_only_tp(data: Path) -> str:
    (data / "train_tp.csv").write_text("recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n")
    return "train_tp.csv"


def _bad_row(data: Path) -> str:
    lines = (data / "train_tp.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",1000.0,", ",banana,")
    (data / "train_tp.csv").write_text("\n".join(lines) + "\n")
    return "train_tp.csv"


def _missing_test(data: Path) -> str:
    path = sorted((data / "test").glob("*.npy"))[1]
    path.unlink()
    return path.stem


FRAMES = 1 + int(10.0 * 32000) // 512
BAD_DATA = {
    "zero-byte array (not the first)": _zero_bytes,
    "wrong shape": _array(3, np.zeros((64, FRAMES), dtype=np.float32)),
    "int8 array": _array(4, np.zeros((128, FRAMES), dtype=np.int8)),
    "bool array": _array(4, np.zeros((128, FRAMES), dtype=bool)),
    "complex array": _array(4, np.zeros((128, FRAMES), dtype=np.complex64)),
    "too short": _array(6, np.zeros((128, 100), dtype=np.float32)),
    "1-d array": _array(2, np.zeros(128 * FRAMES, dtype=np.float32)),
    "inf value": _array(8, np.full((128, FRAMES), np.inf, dtype=np.float32)),
    "NaN late in the set": _nan_late,
    "truncated test array": _truncated,
    "header-only train_tp.csv": _header_only_tp,
    "a malformed TP row": _bad_row,
    "a missing test recording": _missing_test,
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_stage1_names_bad_data_before_training(world: dict[str, Path], tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    culprit = BAD_DATA[case](data)
    run = tmp_path / "runs" / "new"
    expect_refused(["stage1", "--data", str(data), "--run", str(run), *_sets(TINY)], culprit, [tmp_path / "runs", data])


# ---- relabel, oracle, control: bad settings never reach the run's config ------------------------------------

BAD_RELABEL = [
    # option values are refused by their declared domain (app/options.py), naming the option
    (["--threshold", "1.5"], "--threshold"), (["--threshold", "nan"], "--threshold"),
    (["--threshold", "-0.1"], "--threshold"), (["--set", "relabel.species_thresholds={3: 2}"], "species_thresholds"),
    (["--set", "relabel.species_thresholds={30: 0.5}"], "species_thresholds"), (["--cycles", "-1"], "cycles"),
    (["--votes", "0"], "--votes"), (["--pseudo-weight", "0"], "--pseudo-weight"),
    (["--set", "relabel.votes=0"], "relabel.votes"), (["--set", "relabel.pseudo_weight=0"], "relabel.pseudo_weight"),
    (["--set", "relabel.epochs=0"], "relabel.epochs"), (["--set", "relabel.lr=-1"], "relabel.lr"),
    (["--set", "model.backbone=resnet18"], "model.backbone"), (["--set", "train.folds=4"], "train.folds"),
    (["--set", "relabel.no_such=1"], "no_such"), (["--workers", "0"], "--workers"),
]


@pytest.mark.parametrize("extra, culprit", BAD_RELABEL, ids=[" ".join(e) for e, _ in BAD_RELABEL])
def test_relabel_refuses_bad_settings_and_keeps_the_config(world: dict[str, Path], extra: list[str],
                                                           culprit: str) -> None:
    run = world["run"]
    expect_refused(["relabel", "--run", str(run), "--no-progress", *extra], culprit, [run])
    assert not (run / "cycle1").exists()


def test_relabel_oracle_control_report_on_a_missing_run_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for command in (["relabel"], ["oracle"], ["control"], ["report"]):
        expect_refused([*command, "--run", str(missing)], str(missing), [tmp_path])
        assert not missing.exists()


def test_oracle_without_truth_and_control_with_bad_cycles(world: dict[str, Path]) -> None:
    run = world["run"]
    expect_refused(["oracle", "--run", str(run), "--no-progress"], "truth", [run])
    expect_refused(["control", "--run", str(run), "--cycles", "0", "--no-progress"], "--cycles", [run])


# ---- features: a refused build leaves no cache behind ---------------------------------------------------

@pytest.mark.parametrize("override, culprit", [("features.dtype=float7", "features.dtype"),
                                               ("features.n_mels=0", "features.n_mels"),
                                               ("features.hop_length=0", "features.hop_length"),
                                               ("features.seconds=0", "features.seconds")])
def test_features_refuses_bad_parameters_and_writes_no_cache(make_competition, tmp_path: Path, override: str,
                                                             culprit: str) -> None:
    data = make_competition(tmp_path, n_train=2, n_test=1, seconds=2.0)
    cache = tmp_path / "cache"
    expect_refused(["features", "--data", str(data), "--cache", str(cache), "--set", override], culprit,
                   [tmp_path])
    assert not cache.exists()


def test_features_checks_a_precomputed_set(world: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    name = _nan_late(data)
    expect_refused(["features", "--data", str(data), "--set", "features.seconds=10"], name, [data])


# ---- ensemble: unfinished stages, a malformed record -----------------------------------------------------

def test_ensemble_with_a_malformed_run_record_writes_no_submission(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    (run / "submissions.csv").write_text("this,is,not\nthe,record,header\n")
    out = tmp_path / "subs" / "s.csv"
    expect_refused(["ensemble", "--run", str(run), "--out", str(out)], "submissions.csv", [run, tmp_path / "subs"])
    assert not out.exists()


def test_ensemble_refuses_an_unfinished_stage_it_is_asked_for(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    shutil.copytree(run / "stage1", run / "cycle1")  # a cycle with every fold's test.csv but no done marker
    (run / "cycle1" / "fold1" / "done.json").unlink()
    out = tmp_path / "s.csv"
    expect_refused(["ensemble", "--run", str(run), "--stage", "cycle1", "--out", str(out)], "cycle1", [run])
    assert not out.exists()
    # --stage latest skips it, and says which stage it used
    code, output, exception = run_cli(["ensemble", "--run", str(run), "--stage", "latest", "--out", str(out)])
    assert exception is None and code == 0, output
    assert f"{run / 'stage1'}: 3 fold(s)" in output and "cycle1" not in output


# ---- found by a hostile review: each of these once ended in a traceback, "Aborted!" or a silent wrong result ---

def _copy_data(world: dict[str, Path], tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    return data


def test_malformed_overrides_and_recipes_are_named(world: dict[str, Path], tmp_path: Path) -> None:
    base = ["stage1", "--data", str(world["data"]), "--run", str(tmp_path / "r"), *_sets(TINY)]
    for override, culprit in (("train.epochs=[unclosed", "train.epochs"), ("train.epochs=!!python/object:os.system x", "train.epochs"),
                              ("=3", "section.key"), ("train..epochs=1", "section.key"), ("train.seed=-1", "train.seed"),
                              ("windows.test_cover=600", "windows.test_cover")):
        expect_refused([*base, "--set", override], culprit, [tmp_path])
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes(b"train:\n  epochs: 1\nname: caf\xe9\n")
    expect_refused(["stage1", "--data", str(world["data"]), "--run", str(tmp_path / "r"), "--pipeline", str(recipe)],
                   "not UTF-8", [tmp_path / "r"])


def test_bad_sample_submissions_and_boxes_past_the_recording_are_named(world: dict[str, Path], tmp_path: Path) -> None:
    for content, culprit in (("", "sample_submission.csv"),
                             ("recording_id," + ",".join(f"s{i}" for i in range(24)) + "\n", "no recordings")):
        data = _copy_data(world, tmp_path / f"c{len(content)}")
        (data / "sample_submission.csv").write_text(content)
        expect_refused(["stage1", "--data", str(data), "--run", str(tmp_path / "r"), *_sets(TINY)], culprit,
                       [tmp_path / "r", data])
    data = _copy_data(world, tmp_path / "late")
    tp = (data / "train_tp.csv").read_text().splitlines()
    cells = tp[1].split(",")
    cells[3], cells[5] = "45.0", "50.0"  # a box at 45-50 s in 10 s recordings
    (data / "train_tp.csv").write_text("\n".join([tp[0], ",".join(cells), *tp[2:]]) + "\n")
    expect_refused(["stage1", "--data", str(data), "--run", str(tmp_path / "r"), *_sets(TINY)], "features.seconds",
                   [tmp_path / "r"])


def test_bad_places_and_backends_are_named(world: dict[str, Path], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["stage1", "--data", str(world["data"]), *_sets(TINY)]
    expect_refused([*base, "--run", str(afile / "run")], str(afile), [tmp_path])
    expect_refused([*base, "--run", str(tmp_path / "r"), "--backend", "dask"], "--scheduler", [tmp_path])
    expect_refused([*base, "--run", str(tmp_path / "r"), "--set", f"model.weights={world['data'] / 'train_tp.csv'}"],
                   "model.weights", [tmp_path])
    import torch

    if not torch.cuda.is_available():
        expect_refused([*base, "--run", str(tmp_path / "r"), "--set", "train.device=cuda"], "train.device", [tmp_path])
    expect_refused(["synth", "--out", str(afile / "x"), "--train", "2", "--test", "1", "--seconds", "10"],
                   str(afile), [tmp_path])


def test_a_run_with_broken_files_is_named_and_left_alone(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    expect_refused(["relabel", "--run", str(run), "--set", "relabel.epochs=[x"], "relabel.epochs", [run])
    (run / "stage1" / "oof_framewise.npy").unlink()
    expect_refused(["relabel", "--run", str(run), "--cycles", "1"], "oof_framewise.npy", [run])
    shutil.rmtree(run)
    shutil.copytree(world["run"], run)
    (run / "stage1" / "metrics.json").write_text("{not json")
    expect_refused(["report", "--run", str(run)], "metrics.json", [run])
    shutil.rmtree(run)
    shutil.copytree(world["run"], run)
    expect_refused(["report", "--run", str(run), "--log", str(tmp_path / "typo.csv")], "typo.csv", [run])
    (run / "config.yaml").write_text("- a list\n- not a config\n")
    expect_refused(["relabel", "--run", str(run), "--cycles", "1"], "config.yaml", [run])
    shutil.rmtree(run)
    shutil.copytree(world["run"], run)
    (run / "stage1" / "fold1" / "best.pt").unlink()
    expect_refused(["control", "--run", str(run), "--cycles", "1", "--no-progress"], "best.pt", [run])


def test_an_oracle_with_broken_truth_is_named(world: dict[str, Path], tmp_path: Path) -> None:
    from tiny import make_tiny

    data = make_tiny(tmp_path / "data", truth=True)
    run = tmp_path / "runs" / "r"
    run_stage1(data, run, overrides=TINY, progress=False)
    calls = data / "truth" / "calls.csv"
    lines = calls.read_text().splitlines()
    calls.write_text(lines[0] + "\n")
    expect_refused(["oracle", "--run", str(run), "--no-progress"], "calls.csv", [run])
    cells = lines[1].split(",")
    cells[2] = "banana"
    calls.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    expect_refused(["oracle", "--run", str(run), "--no-progress"], "species_id", [run])


def test_ensemble_weights_and_places(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    good = run / "stage1" / "test.csv"
    out = tmp_path / "s.csv"
    for extra, culprit in ((["--run", str(run), "--run-weight", "nan"], "--run-weight"),
                           (["--with", f"{good}:1e308", "--with", f"{good}:1e308"], "weights"),
                           (["--run", str(run), "--out", str(run / "submissions.csv")], "inside the run directory"),
                           (["--run", str(run), "--out", str(run / "stage1" / "fold0" / "test.csv")], "inside the run")):
        args = ["ensemble", *extra] + ([] if "--out" in extra else ["--out", str(out)])
        expect_refused(args, culprit, [run, tmp_path / "subs"])
        assert not out.exists()
    (tmp_path / "afile").write_text("x")
    expect_refused(["ensemble", "--run", str(run), "--out", str(tmp_path / "afile" / "s.csv")], "afile", [run])


def test_small_commands_refuse_nonsense(world: dict[str, Path], tmp_path: Path) -> None:
    sub = tmp_path / "sub.csv"
    ids = (world["data"] / "sample_submission.csv").read_text().splitlines()
    sub.write_text("\n".join([ids[0]] + [ln.replace(",0.5", ",0.5", 1).replace("0.5", "1_0", 1) for ln in ids[1:]]) + "\n")
    expect_refused(["validate", str(sub), "--data", str(world["data"])], "1_0", [tmp_path])
    truth = tmp_path / "truth.csv"
    truth.write_text(ids[0] + "\n")
    expect_refused(["score", str(world["data"] / "sample_submission.csv"), "--truth", str(truth)], "truth", [tmp_path])
    expect_refused(["score", str(world["data"] / "sample_submission.csv"), "--truth", str(truth), "--threshold", "nan"],
                   "--threshold", [tmp_path])
    for extra in (["--n-windows", "0"], ["--n-windows", "-3"], ["--n-windows", "1"]):
        code, output, exception = run_cli(["windows", *extra])
        assert exception is None and code == 2 and "Error" in output, (extra, output)


def test_degenerate_values_that_once_passed_with_exit_0_are_refused(world: dict[str, Path], tmp_path: Path) -> None:
    # a truth without a positive label: LWLRAP is undefined (it printed nan)
    sub = world["data"] / "sample_submission.csv"
    truth = tmp_path / "truth.csv"
    truth.write_text(sub.read_text().replace("0.5", "0"))
    expect_refused(["score", str(sub), "--truth", str(truth)], "no recording has a positive label", [tmp_path])
    # a cover as long as the window: the window positions never advance
    oof = tmp_path / "oof.csv"
    oof.write_text("patch,recording_id," + ",".join(f"s{i}" for i in range(24)) + "\n"
                   + "0,r1," + ",".join(["0.9"] * 24) + "\n")
    for window, cover, culprit in (("512", "512", "--cover"), ("512", "600", "--cover"), ("0", "49", "--window"),
                                   ("512", "-1", "--cover")):
        expect_refused(["labels", "from-oof", str(oof), "--window", window, "--cover", cover,
                        "--out", str(tmp_path / "l.csv")], culprit, [tmp_path])


def test_an_interrupt_says_how_to_go_on(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rfcx_kit.method import stage1

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage1, "train_stage", interrupted)
    code, output, exception = run_cli(["stage1", "--data", str(world["data"]), "--run", str(tmp_path / "r"), *_sets(TINY)])
    assert exception is None and code == 130, output
    assert "Aborted" not in output and "interrupted" in output and "--resume" in output
    assert not (tmp_path / "r" / ".rfcx-kit.lock").exists()  # released on the way out


def test_a_competition_slug_is_never_a_path_and_pseudo_weights_stay_in_range(world: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    sub = world["data"] / "sample_submission.csv"
    for bad in ("foo/../bar", "Foo", "a b", ""):
        code, output, exception = run_cli(["submit", str(sub), "-m", "x", "--dry-run", "--competition", bad])
        assert exception is None and code == 2 and "--competition" in output, (bad, output)
    oof = tmp_path / "oof.csv"
    oof.write_text("patch,recording_id," + ",".join(f"s{i}" for i in range(24)) + "\n")
    code, output, exception = run_cli(["labels", "from-oof", str(oof), "--pseudo-weight", "5", "--out", str(tmp_path / "l.csv")])
    assert exception is None and code == 2 and "--pseudo-weight" in output, output
    assert not (tmp_path / "l.csv").exists()


def test_a_run_with_a_broken_data_pointer_or_folds_is_named(world: dict[str, Path], tmp_path: Path) -> None:
    for k, (name, content) in enumerate((("data.yaml", ":::\n"), ("data.yaml", "- a\n"), ("folds.csv", "garbage\n"))):
        run = tmp_path / f"run{k}"
        shutil.copytree(world["run"], run)
        (run / name).write_text(content)
        for command in (["relabel", "--run", str(run), "--cycles", "1"], ["report", "--run", str(run)],
                        ["control", "--run", str(run), "--cycles", "1"]):
            expect_refused(command, name, [run.parent])


def test_a_folder_in_the_way_of_the_cv_table_stops_the_report_before_it_writes(world: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    shutil.rmtree(run / "report", ignore_errors=True)
    (tmp_path / "cv_table.csv").mkdir()
    expect_refused(["report", "--run", str(run)], "cv_table.csv", [tmp_path])


def test_a_weight_that_is_not_a_number_is_named(world: dict[str, Path], tmp_path: Path) -> None:
    good = world["run"] / "stage1" / "test.csv"
    expect_refused(["ensemble", "--with", f"{good}:abc", "--out", str(tmp_path / "s.csv")], "not a weight", [tmp_path])


@pytest.mark.timeout(120)
def test_an_unreachable_dask_scheduler_is_named_before_the_run_is_written(world: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    expect_refused(["stage1", "--data", str(world["data"]), "--run", str(tmp_path / "r"), *_sets(TINY),
                    "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler", [tmp_path])


# -- your own data: label exports, species tables, sample rates -------------------------------------------------

RAVEN_HEADER = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies"


def own_world(root: Path) -> dict[str, Path]:
    """Two 4 s recordings (22,050 and 44,100 Hz) and a good Raven table for each."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, rate in (("rec1", 22050), ("rec2", 44100)):
        sf.write(root / "audio" / f"{name}.wav", (0.01 * rng.standard_normal(4 * rate)).astype(np.float32), rate)
        (root / "labels" / f"{name}.Table.1.selections.txt").write_text(
            f"{RAVEN_HEADER}\n1\tSpectrogram 1\t1\t0.5\t1.5\t1000\t2000\tCoqui\n"
            f"2\tSpectrogram 1\t1\t2.0\t3.0\t3000\t4000\tPiha\n")
    return {"root": root, "audio": root / "audio", "labels": root / "labels"}


def _own_case(w: dict[str, Path], case: str) -> tuple[list[str], list[str]]:
    """Break ``w`` as ``case`` says; return the `labels import` arguments and what its one line must name."""
    table = w["labels"] / "rec1.Table.1.selections.txt"
    args = ["labels", "import", str(w["labels"]), "--audio", str(w["audio"])]
    if case == "raven without End Time":
        table.write_text(RAVEN_HEADER.replace("\tEnd Time (s)", "") + "\n1\tSpectrogram 1\t1\t0.5\t1000\t2000\tCoqui\n")
        return args, [str(table), "End Time (s)"]
    if case == "raven time not a number":
        table.write_text(f"{RAVEN_HEADER}\n1\tSpectrogram 1\t1\tsoon\t1.5\t1000\t2000\tCoqui\n")
        return args, [str(table), "row 1 (line 2)", "Begin Time (s)"]
    if case == "audacity end before start":
        for path in w["labels"].iterdir():
            path.unlink()
        labels = w["labels"] / "rec1.txt"
        labels.write_text("0.5\t1.5\tCoqui\n3.0\t2.0\tPiha\n")
        return ["labels", "import", str(labels), "--format", "audacity", "--audio", str(w["audio"])], \
            [str(labels), "row 2 (line 2)"]
    if case == "arbimon without times":
        path = w["root"] / "arbimon.csv"
        path.write_text("recording,species,songtype,validated\nrec1.wav,Coqui,Common Song,1\n")
        return ["labels", "import", str(path), "--format", "arbimon", "--audio", str(w["audio"])], [str(path), "x1"]
    if case == "unknown species":
        species = w["root"] / "species.csv"
        species.write_text("name\nCoqui\n")
        return [*args, "--species", str(species)], [str(w["labels"] / "rec1.Table.1.selections.txt"), "row 2 (line 3)",
                                                   "Piha"]
    if case == "box outside its recording":
        table.write_text(f"{RAVEN_HEADER}\n1\tSpectrogram 1\t1\t3.5\t4.5\t1000\t2000\tCoqui\n")
        return args, [str(table), "row 1 (line 2)", "End Time (s)"]
    if case == "duplicate ids":
        import soundfile as sf

        sf.write(w["audio"] / "rec1.flac", np.zeros(22050, dtype=np.float32), 22050)
        return args, ["rec1.flac", "rec1.wav"]
    raise AssertionError(case)


OWN_CASES = ["raven without End Time", "raven time not a number", "audacity end before start", "arbimon without times",
             "unknown species", "box outside its recording", "duplicate ids"]


@pytest.mark.parametrize("case", OWN_CASES)
def test_labels_import_refuses_bad_exports_in_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    w = own_world(tmp_path)
    args, culprits = _own_case(w, case)
    out = tmp_path / "data"
    before = snapshot(tmp_path)
    code, output, exception = run_cli([*args, "--out", str(out)])
    assert exception is None and code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    assert not out.exists() and snapshot(tmp_path) == before


def test_mixed_sample_rates_below_the_top_band_and_a_bad_species_table_stop_stage1(tmp_path: Path) -> None:
    """22,050 and 44,100 Hz recordings import (each is resampled); stage 1 refuses features.fmax above the lower
    rate's Nyquist (its top bands would be empty), naming the recording; a species table with a name twice is
    named by file and row. Nothing is written."""
    w = own_world(tmp_path)
    data = tmp_path / "data"
    code, output, _ = run_cli(["labels", "import", str(w["labels"]), "--audio", str(w["audio"]), "--out", str(data)])
    assert code == 0, output
    run = tmp_path / "runs" / "own"
    before = snapshot(data, tmp_path / "runs")
    code, output, exception = run_cli(["stage1", "--data", str(data), "--run", str(run), "--set", "features.fmax=16000",
                                       *_sets(TINY[1:])])
    assert exception is None and code == 2, output
    assert "recordings.csv" in output and "rec1" in output and "features.fmax=11025" in output
    assert snapshot(data, tmp_path / "runs") == before
    species = data / "species.csv"
    species.write_text(species.read_text().replace("piha,Piha", "piha,Coqui"))
    code, output, exception = run_cli(["stage1", "--data", str(data), "--run", str(run), "--set", "features.fmax=11000",
                                       *_sets(TINY[1:])])
    assert exception is None and code == 2, output
    assert "species.csv: row 2 (line 3), field 'name'" in output and "appears twice" in output
    assert not run.exists()
