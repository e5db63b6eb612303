"""Resume knows what it resumes; one writer per run; workers die with their parent; unfinished stages are never used."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.core.lock import LOCK_NAME, LockedError, folder_lock, read_lock
from rfcx_kit.method import cycle
from rfcx_kit.method.run import Run
from rfcx_kit.method.stage1 import run_stage1
from rfcx_kit.report.markdown import cv_rows

from tiny import make_tiny, tiny_overrides

TINY = tiny_overrides(epochs=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    data = make_tiny(root / "data")
    run = root / "runs" / "base"
    run_stage1(data, run, overrides=TINY, progress=False)
    return {"data": data, "run": run}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


class Killed(BaseException):
    """Stands for a SIGKILL in the middle of a cycle's training (nothing after it runs)."""


def test_a_killed_cycle_resumes_only_with_the_settings_it_started_with(base: dict[str, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run = _copy(base["run"], tmp_path / "run")

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(cycle, "train_stage", killed)
    with pytest.raises(Killed):
        cycle.run_relabel(run, cycles=1, overrides=("relabel.threshold=0.5", "relabel.epochs=1"), progress=False)
    assert (run / "cycle1" / "pseudo_boxes.csv").exists() and (run / "cycle1" / "inputs.json").exists()
    assert not (run / LOCK_NAME).exists()  # the lock is released however the command ends
    config = (run / "config.yaml").read_bytes()
    code, output = _cli(["relabel", "--run", str(run), "--cycles", "1", "--threshold", "0.99", "--no-progress"])
    assert code == 2 and "cycle1 was started from other inputs" in output and "config" in output, output
    assert "delete" in output and str(run / "cycle1") in output
    assert (run / "config.yaml").read_bytes() == config  # the refused value never reached the run's config
    # the same settings resume it (up to the next "kill"), and so does the cycle count alone changing
    with pytest.raises(Killed):
        cycle.run_relabel(run, cycles=2, overrides=("relabel.threshold=0.5", "relabel.epochs=1"), progress=False)
    # deleting the cycle starts it fresh with the new threshold: labels are made again
    shutil.rmtree(run / "cycle1")
    with pytest.raises(Killed):
        cycle.run_relabel(run, cycles=1, overrides=("relabel.threshold=0.99",), progress=False)
    assert json.loads((run / "cycle1" / "inputs.json").read_text()) != {}


def test_stage1_resume_with_other_labels_is_refused(base: dict[str, Path], tmp_path: Path) -> None:
    run = _copy(base["run"], tmp_path / "run")
    data = _copy(base["data"], tmp_path / "data")
    tp = pd.read_csv(data / "train_tp.csv")
    tp["species_id"] = (tp["species_id"] + 1) % 4  # same ids, other labels
    tp.to_csv(data / "train_tp.csv", index=False)
    before = sorted(p.name for p in run.rglob("*"))
    args = ["stage1", "--data", str(data), "--run", str(run), "--resume", "--no-progress"]
    code, output = _cli(args + [a for o in TINY for a in ("--set", o)])
    assert code == 2 and "train_tp.csv" in output and "other inputs" in output, output
    assert sorted(p.name for p in run.rglob("*")) == before


def test_stage1_resume_with_another_config_names_what_differs(base: dict[str, Path], tmp_path: Path) -> None:
    run = _copy(base["run"], tmp_path / "run")
    overrides = [a for o in TINY for a in ("--set", o)] + ["--set", "train.lr=0.01"]
    code, output = _cli(["stage1", "--data", str(base["data"]), "--run", str(run), "--resume", *overrides])
    assert code == 2 and "train.lr: 0.001 -> 0.01" in output, output


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(base: dict[str, Path], tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    run = _copy(base["run"], tmp_path / "run")
    with folder_lock(run, "test holder"):
        code, output = _cli(["relabel", "--run", str(run), "--cycles", "1", "--no-progress"])
        assert code == 2 and f"pid {os.getpid()}" in output and "test holder" in output, output
        with pytest.raises(LockedError):
            with folder_lock(run, "another"):
                pass
    assert read_lock(run) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "command": "gone",
                                             "since": "then"}))
    with caplog.at_level("WARNING"), folder_lock(run, "me") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and not (run / LOCK_NAME).exists()
    # a lock from another host is never taken over: its process cannot be checked from here
    (run / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "x", "since": "then"}))
    with pytest.raises(LockedError, match="elsewhere"):
        with folder_lock(run, "me"):
            pass


def test_unfinished_stages_are_not_reported(base: dict[str, Path], tmp_path: Path) -> None:
    run = _copy(base["run"], tmp_path / "run")
    shutil.copytree(run / "stage1", run / "cycle1")  # metrics and folds, but the cycle never finished
    assert Run(run).stages() == ["stage1", "cycle1"] and Run(run).finished_stages() == ["stage1"]
    assert cv_rows(run)["stage"].tolist() == ["stage1"]
    (run / "cycle1" / "done").write_text("")
    assert cv_rows(run)["stage"].tolist() == ["stage1", "cycle1"]
    (run / "stage1" / "fold2" / "done.json").unlink()  # a stage with a fold missing is not finished either
    assert "stage1" not in Run(run).finished_stages()


WORKER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from rfcx_kit.method.folds import run_folds

    def sleepy(fold, out):
        Path(out, f"worker{fold}.pid").write_text(str(os.getpid()))
        for _ in range(600):  # "training" for 60 s
            time.sleep(0.1)
        return fold

    if __name__ == "__main__":
        run_folds(sleepy, [0, 1], {"out": sys.argv[1]}, backend="loky", workers=2)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_fold_workers_die_with_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(WORKER_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and len(list(tmp_path.glob("worker*.pid"))) < 2:
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in tmp_path.glob("worker*.pid")]
        assert len(pids) == 2 and all(_alive(p) for p in pids) and os.getpid() not in pids
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        killed_at = time.time()
        while time.time() - killed_at < 10 and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "a fold worker kept running after its parent was killed"
        assert time.time() - killed_at < 5
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in tmp_path.glob("worker*.pid"):
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
