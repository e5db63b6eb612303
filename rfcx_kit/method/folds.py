"""Multilabel-stratified folds over recordings, and dispatching fold work through joblib.

Folds are made once per run (``folds.csv``) so every stage and cycle of a run uses the same split.
Stratification uses each recording's TP species and FP species (48 columns), so both the rare species'
positives and their confusers spread evenly over folds.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import ConfigError, DataError, RfcxError
from rfcx_kit.core.config import BACKENDS
from rfcx_kit.core.io import atomic_write_csv

log = logging.getLogger(__name__)


def make_folds(recording_ids: Sequence[str], tp_presence: np.ndarray, fp_presence: np.ndarray,
               n_folds: int = 5, seed: int = 42, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Assign each recording to one of ``n_folds`` folds, stratified on its TP and FP species.

    Args:
        recording_ids: R ids.
        tp_presence, fp_presence: ``(R, K)`` 0/1.
        groups: ``(R,)`` keys of recordings that must share a fold (BirdCLEF's near-duplicates); None: each alone.
            The groups are stratified on the union of their members' species.
    Returns:
        DataFrame ``recording_id, fold`` (R rows, in the given order).
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = np.concatenate([tp_presence, fp_presence], axis=1).astype(np.int64)
    if groups is None:
        inverse = np.arange(len(recording_ids))
    else:
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    if n_groups < n_folds:
        what = "labelled recordings" if groups is None else "groups of recordings (near-duplicates share one)"
        raise DataError(f"{n_groups} {what} cannot make {n_folds} folds")
    y_group = np.zeros((n_groups, y.shape[1]), dtype=np.int64)
    np.maximum.at(y_group, inverse, y)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of_group = np.full(n_groups, -1, dtype=np.int64)
    for k, (_, val) in enumerate(splitter.split(np.zeros(n_groups), y_group)):
        fold_of_group[val] = k
    return pd.DataFrame({"recording_id": list(recording_ids), "fold": fold_of_group[inverse]})


def load_or_make_folds(path: Path, recording_ids: Sequence[str], tp_presence: np.ndarray,
                       fp_presence: np.ndarray, n_folds: int, seed: int,
                       groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Reuse ``folds.csv`` when it exists (and matches the recordings), else make and save it."""
    if path.exists():
        folds = pd.read_csv(path, dtype={"recording_id": str})
        if sorted(folds["recording_id"]) != sorted(recording_ids) or folds["fold"].nunique() != n_folds:
            raise DataError(f"{path}: folds of another data set or fold count; use a new run directory")
        return folds.set_index("recording_id").loc[list(recording_ids)].reset_index()
    folds = make_folds(recording_ids, tp_presence, fp_presence, n_folds, seed, groups)
    atomic_write_csv(path, folds)
    return folds


def check_backend(backend: str, workers: int, scheduler: str | None) -> None:
    """Where folds will run, checked before a stage writes anything (one line naming the option)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: use {' or '.join(BACKENDS)}")
    if backend == "dask":
        if not scheduler:
            raise ConfigError("--backend dask needs --scheduler tcp://HOST:PORT of a running Dask scheduler")
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--backend dask needs the `distributed` package: pip install 'rfcx-kit[cluster]'") from None
        try:  # reachable now, before the run folder is written (the folds connect again when they run)
            Client(scheduler, timeout="10s").close()
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from None


@dataclass
class FoldResult:
    """What one fold task returned: its value, or the error that stopped it, and where it ran.

    ``worker`` is the Dask worker's address (``tcp://host:port``) for ``--backend dask``, else
    ``host:pid`` of the process that ran the fold.
    """

    fold: int
    value: Any = None
    error: str | None = None
    worker: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _where() -> str:
    """The Dask worker running this task (its address), else ``host:pid``."""
    if "distributed" in sys.modules:  # only a Dask worker has it loaded; never import it for a local run
        try:
            from distributed import get_worker

            return get_worker().address
        except (ImportError, ValueError):  # ValueError: not inside a worker
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """In a worker process: exit within ``every`` seconds once ``parent`` is gone (a SIGKILL of the command
    would otherwise leave loky's workers training for minutes). A daemon thread polls the parent's pid; the
    kernel's parent-death signal is not used, since it follows the thread that started the worker, not the
    process."""
    if os.getpid() == parent:
        return

    direct = os.getppid() == parent  # a child of the command itself: reparented the moment it dies

    def watch() -> None:
        while True:
            time.sleep(every)
            if direct and os.getppid() != parent:
                os._exit(1)
            try:
                os.kill(parent, 0)  # a child of a helper process: poll the command's pid
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    if not getattr(_exit_with_parent, "started", False):
        threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
        _exit_with_parent.started = True  # type: ignore[attr-defined]


def _guarded(func: Callable[..., Any], fold: int, kwargs: dict[str, Any], parent: int | None = None) -> FoldResult:
    """Run one fold; a failure becomes a FoldResult with the error so other folds' results survive.

    ``parent``: the pid of the command that dispatched the fold (local processes only): the worker exits
    within a second of its death.
    """
    if parent is not None:
        _exit_with_parent(parent)
    try:
        return FoldResult(fold, value=func(fold=fold, **kwargs), worker=_where())
    except Exception as exc:  # reported with the fold id by run_folds
        detail = str(exc) if isinstance(exc, RfcxError) else "".join(traceback.format_exception(exc))
        return FoldResult(fold, error=f"{type(exc).__name__}: {detail}", worker=_where())


def run_folds(func: Callable[..., Any], folds: Sequence[int], kwargs: dict[str, Any],
              backend: str = "loky", workers: int = 1, scheduler: str | None = None,
              fold_kwargs: dict[int, dict[str, Any]] | None = None) -> list[FoldResult]:
    """Run ``func(fold=k, **kwargs, **fold_kwargs[k])`` for every fold through joblib.

    Args:
        backend: ``loky`` (local processes; ``workers=1`` runs in this process) or ``dask`` (an existing
            Dask cluster at ``scheduler``, e.g. ``tcp://host:8786``; one fold per worker task).
        fold_kwargs: arguments that differ per fold (e.g. each fold's ``init_from`` checkpoint), so folds
            with their own arguments still run in parallel in one dispatch.
    Returns:
        one FoldResult per fold, in fold order. Failures are logged with their fold id.
    """
    from joblib import Parallel, delayed, parallel_config

    fold_kwargs = fold_kwargs or {}
    parent = os.getpid() if backend == "loky" and workers > 1 else None
    calls = [delayed(_guarded)(func, k, {**kwargs, **fold_kwargs.get(k, {})}, parent) for k in folds]
    if backend == "dask":
        try:
            from distributed import Client
        except ImportError as exc:
            raise RfcxError("--backend dask needs the `distributed` package: pip install 'rfcx-kit[cluster]'") from exc
        if not scheduler:
            raise RfcxError("--backend dask needs --scheduler tcp://HOST:PORT of a running Dask scheduler")
        with Client(scheduler, timeout="30s"), parallel_config(backend="dask"):
            results = Parallel(n_jobs=-1)(calls)
    elif backend == "loky":
        results = Parallel(n_jobs=workers, backend="loky")(calls) if workers > 1 else [c[0](*c[1], **c[2]) for c in calls]
    else:
        raise RfcxError(f"unknown backend {backend!r} (loky or dask)")
    for result in results:
        if result.ok:
            log.info("fold %d finished on %s", result.fold, result.worker)
        else:
            log.error("fold %d failed on %s: %s", result.fold, result.worker, result.error)
    return sorted(results, key=lambda r: r.fold)
