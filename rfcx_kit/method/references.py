"""The two stages a re-labeling gain is measured against: the oracle (ceiling) and the control.

* **oracle** (``RUN/oracle/``): stage 1 again, same recipe, folds, seeds and steps, but trained on every
  planted call of a synthetic set (``truth/calls.csv``) instead of the TP rows. It is what complete labels
  give at the same compute: the most re-labeling could recover.
* **control** (``RUN/control/``): stage 1's folds trained on from their best weights for as many epochs as
  the cycles add (``cycles x relabel.epochs``, at ``relabel.lr``), on the original labels only. A gain that this
  extra training alone gives is not a gain of re-labeling.

``gap closed`` of a stage is ``(stage - stage1) / (oracle - stage1)`` on the test LWLRAP against truth.
Both stages are scored like any other (``metrics.json``) and appear as rows of the relabel report, the CV
table and the demo's table. Rerunning a command resumes it; a finished stage is kept.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any


from rfcx_kit.core.errors import RfcxError
from rfcx_kit.core.io import atomic_write_json
from rfcx_kit.core.config import ConfigError
from rfcx_kit.core.errors import StateError
from rfcx_kit.core.lock import folder_lock
from rfcx_kit.method.folds import check_backend
from rfcx_kit.method.run import (Run, check_inputs, config_fingerprint, file_fingerprint,
                                 format_metrics, read_metrics)
from rfcx_kit.method.context import check_same_data, load_context
from rfcx_kit.method.stage1 import collect_stage, train_stage
from rfcx_kit.method.train import planted_calls

log = logging.getLogger(__name__)


def _run_reference(run_dir: Path, stage: str, epochs: int | None, init_from: dict[int, str] | None,
                   backend: str, workers: int, scheduler: str | None, progress: bool) -> dict[str, Any]:
    run_dir, run = Path(run_dir), Run(run_dir)
    metrics_path = run.metrics(stage)
    if run.finished(stage):
        log.info("%s already done", stage)
        return read_metrics(metrics_path)
    ctx = load_context(run_dir)
    check_same_data(ctx, f"{stage} {run_dir}")
    inputs = {"config": config_fingerprint(ctx.cfg), "stage1": file_fingerprint(run.metrics("stage1")),
              "epochs": epochs}
    check_inputs(run.inputs(stage), inputs, f"{run.stage(stage)}", f"delete {run.stage(stage)} to start it fresh")
    folds = list(range(ctx.cfg.train.folds))
    results = train_stage(run_dir, stage, folds, backend, workers, scheduler, resume=True, init_from=init_from,
                          progress=progress, epochs=epochs)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RfcxError("; ".join(f"{stage} fold {r.fold} failed: {(r.error or '').splitlines()[-1]}" for r in failed)
                        + " (finished folds are kept; rerun to resume)")
    metrics = collect_stage(run_dir, stage)
    if epochs is not None:
        metrics["epochs"] = epochs
    atomic_write_json(metrics_path, metrics)
    log.info("%s: %s", stage, format_metrics(metrics))
    return metrics


def run_oracle(run_dir: Path, backend: str = "loky", workers: int = 1, scheduler: str | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Train and score ``RUN/oracle``: the run's stage-1 recipe on every planted call (needs ``truth/``)."""
    run_dir = Path(run_dir)
    _check_start(run_dir, workers, backend, scheduler)
    planted_calls(load_context(run_dir))  # fails early, with the reason, on a set without truth/
    with folder_lock(run_dir, "oracle"):
        return _run_reference(run_dir, "oracle", None, None, backend, workers, scheduler, progress)


def _check_start(run_dir: Path, workers: int, backend: str = "loky", scheduler: str | None = None) -> None:
    check_backend(backend, workers, scheduler)
    run = Run(run_dir)
    if not run.finished("stage1"):
        raise StateError(f"{run_dir}: no finished stage 1 (run `rfcx-kit stage1 --run {run_dir}` first)")
    for k in range(run.n_folds() or 0):  # the control starts from these; both need them readable
        path = run.checkpoint("stage1", k)
        if not path.is_file() or path.stat().st_size == 0:
            raise StateError(f"{path}: missing or empty; rerun stage 1 for fold {k} (rfcx-kit stage1 --resume)")


def run_control(run_dir: Path, cycles: int | None = None, backend: str = "loky", workers: int = 1,
                scheduler: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train and score ``RUN/control``: stage 1 trained on for ``cycles x relabel.epochs`` epochs, no pseudo-labels.

    ``cycles``: the cycles to match (default: the run's finished cycles, else ``relabel.cycles``).
    """
    run_dir, run = Path(run_dir), Run(run_dir)
    _check_start(run_dir, workers, backend, scheduler)
    if cycles is not None and cycles < 1:
        raise ConfigError(f"--cycles must be at least 1, got {cycles}")
    ctx = load_context(run_dir)
    cfg = ctx.cfg
    cycles = cycles or run.finished_cycles() or cfg.relabel.cycles
    per_cycle = cfg.relabel.epochs if cfg.relabel.epochs is not None else cfg.train.epochs
    if cfg.relabel.init != "previous":
        cycles = 1  # each cycle starts again from stage 1 (or scratch): one cycle's training is the extra
    init = {k: str(run.checkpoint("stage1", k)) for k in range(cfg.train.folds)}
    with folder_lock(run_dir, "control"):
        metrics = _run_reference(run_dir, "control", cycles * per_cycle, init, backend, workers, scheduler, progress)
    if metrics.get("epochs") != cycles * per_cycle:
        raise StateError(f"{run.stage('control')} was trained for {metrics.get('epochs')} epochs, not the "
                        f"{cycles} x {per_cycle} these cycles add: delete {run.stage('control')} to retrain it")
    return metrics


def prior_test_lwlrap(comp) -> float | None:  # noqa: ANN001 - a Competition
    """The *prior*'s test LWLRAP against a synthetic set's truth: every test recording scored with one constant
    ranking of the species by their train frequency (``truth/train_presence.csv``), what a model scores by learning
    base rates alone. None without ``truth/``."""
    import numpy as np
    import pandas as pd

    from rfcx_kit.core.metrics import prior_lwlrap
    truth = comp.truth_dir
    if truth is None or not (truth / "train_presence.csv").is_file() or not (truth / "test_presence.csv").is_file():
        return None
    train = pd.read_csv(truth / "train_presence.csv", dtype={"recording_id": str})
    test = pd.read_csv(truth / "test_presence.csv", dtype={"recording_id": str}).set_index("recording_id")
    columns = comp.species.columns
    return prior_lwlrap(train[columns].to_numpy(np.int8), test.loc[comp.test_ids, columns].to_numpy(np.int8))


def prior_test_rows(comp, metric: str) -> float | None:  # noqa: ANN001 - a Competition
    """A BirdCLEF-shaped set's prior on its test rows (``truth/test_rows.csv``): every row scored with the classes'
    share of the labelled train recordings, one constant score per class, by ``metric`` (the registry's). Macro
    ROC-AUC of a constant column is 0.5 by construction. None without that file."""
    import numpy as np
    import pandas as pd

    from rfcx_kit.core.metrics.registry import get_metric

    truth = comp.truth_dir
    if truth is None or not (truth / "test_rows.csv").is_file():
        return None
    rows = pd.read_csv(truth / "test_rows.csv", dtype={"row_id": str})
    y = rows[list(comp.species.codes)].to_numpy(np.int8)
    share = comp.tp_presence()[comp.labelled()].mean(axis=0)
    return float(get_metric(metric)(y, np.tile(share, (len(y), 1))))


def gap_closed(stage: float | None, stage1: float | None, oracle: float | None) -> float | None:
    """``(stage - stage1) / (oracle - stage1)``; None when a figure is missing or the oracle is no better."""
    values = (stage, stage1, oracle)
    if any(v is None or not math.isfinite(v) for v in values) or oracle <= stage1:  # type: ignore[operator]
        return None
    return (stage - stage1) / (oracle - stage1)  # type: ignore[operator]


__all__ = ["gap_closed", "prior_test_lwlrap", "prior_test_rows", "run_control", "run_oracle"]
