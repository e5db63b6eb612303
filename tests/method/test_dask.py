"""Folds on a Dask cluster (``--backend dask --scheduler tcp://HOST:PORT``), on loopback only.

A ``distributed.LocalCluster`` with two single-threaded worker processes on 127.0.0.1 stands in for a
real cluster (dask-scheduler + dask-worker on each machine); it is closed when the module's tests end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from rfcx_kit.core.config import load_config
from rfcx_kit.app.commands import stage1_cmd
from rfcx_kit.method.checkpoint import load_checkpoint
from rfcx_kit.method.stage1 import collect_stage, prepare_run, train_stage

from tiny import make_tiny, tiny_overrides

distributed = pytest.importorskip("distributed", reason="the dask backend needs the `distributed` package")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, on loopback; no dashboard."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_two_folds_on_two_workers_give_the_local_result(cluster, tiny: Path, tmp_path: Path) -> None:
    """Folds 0 and 1 dispatched to the cluster run on different workers and give the same weights and
    predictions as the same folds trained locally."""
    cfg = load_config(None, tiny_overrides(epochs=2, folds=3))
    local, remote = tmp_path / "local", tmp_path / "dask"
    for run in (local, remote):
        prepare_run(run, tiny, None, cfg, resume=False, progress=False)

    on_cluster = train_stage(remote, "stage1", [0, 1], "dask", 1, cluster.scheduler_address, resume=False,
                             progress=False)
    here = train_stage(local, "stage1", [0, 1], "loky", 1, None, resume=False, progress=False)

    assert [r.fold for r in on_cluster] == [0, 1] and all(r.ok for r in on_cluster), [r.error for r in on_cluster]
    assert all(r.ok for r in here), [r.error for r in here]
    workers = {r.fold: r.worker for r in on_cluster}
    assert set(workers.values()) <= set(cluster.scheduler_info["workers"]), workers  # ran on the cluster's workers
    assert workers[0] != workers[1], f"both folds ran on {workers[0]}"

    for fold in (0, 1):
        a = _weights(local / "stage1" / f"fold{fold}" / "best.pt")
        b = _weights(remote / "stage1" / f"fold{fold}" / "best.pt")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"fold {fold}: {key} differs"
        pd.testing.assert_frame_equal(pd.read_csv(local / "stage1" / f"fold{fold}" / "test.csv"),
                                      pd.read_csv(remote / "stage1" / f"fold{fold}" / "test.csv"))
        done = [json.loads((run / "stage1" / f"fold{fold}" / "done.json").read_text()) for run in (local, remote)]
        assert done[0]["best_epoch"] == done[1]["best_epoch"]

    collected = [collect_stage(run, "stage1") for run in (local, remote)]
    assert collected[0]["folds"] == collected[1]["folds"] == [0, 1]
    for name in ("test.csv", "oof.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(local / "stage1" / name), pd.read_csv(remote / "stage1" / name))
    np.testing.assert_array_equal(np.load(local / "stage1" / "oof_windows.npy"),
                                  np.load(remote / "stage1" / "oof_windows.npy"))


def test_a_failing_fold_on_the_cluster_is_named_and_the_other_fold_is_kept(cluster, tiny: Path,
                                                                           tmp_path: Path) -> None:
    """`rfcx-kit stage1 --backend dask --scheduler ADDR`: fold 1 cannot resume from a corrupt checkpoint;
    the command fails naming fold 1, and fold 0's finished results are collected and kept."""
    run = tmp_path / "run"
    broken = run / "stage1" / "fold1"
    broken.mkdir(parents=True)
    (broken / "last.pt").write_bytes(b"not a checkpoint")
    args = ["--data", str(tiny), "--run", str(run), "--folds", "0,1", "--resume", "--backend", "dask",
            "--scheduler", cluster.scheduler_address, "--no-progress"]
    for override in tiny_overrides(epochs=1, folds=3):
        args += ["--set", override]

    result = CliRunner().invoke(stage1_cmd, args)

    assert result.exit_code != 0
    message = result.output + (str(result.exception) if result.exception else "")
    assert "fold 1 failed" in message, message
    assert "fold 0 failed" not in message, message
    assert "results are kept" in message, message
    assert (run / "stage1" / "fold0" / "done.json").exists()
    assert not (run / "stage1" / "fold1" / "done.json").exists()
    assert set(_weights(run / "stage1" / "fold0" / "best.pt"))  # fold 0's weights are whole
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert metrics["folds"] == [0]
    test = pd.read_csv(run / "stage1" / "test.csv")
    assert len(test) == 4 and np.isfinite(test.iloc[:, 1:].to_numpy()).all()


def test_per_fold_arguments_reach_their_fold_on_the_cluster(cluster) -> None:
    """``run_folds(..., fold_kwargs=...)``: folds with their own arguments (a cycle's per-fold ``init_from``)
    go out in one dispatch and each fold gets its own."""
    from rfcx_kit.method.folds import run_folds

    results = run_folds(dict, [0, 1], {"stage": "cycle1"}, backend="dask", scheduler=cluster.scheduler_address,
                        fold_kwargs={0: {"init_from": "a.pt"}, 1: {"init_from": "b.pt"}})
    assert [r.value for r in results] == [{"fold": 0, "stage": "cycle1", "init_from": "a.pt"},
                                          {"fold": 1, "stage": "cycle1", "init_from": "b.pt"}]
    assert all(r.worker in cluster.scheduler_info["workers"] for r in results)
