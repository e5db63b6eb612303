"""Experiment tracking: TensorBoard, MLflow and W&B (``train.log_to``), each through its own library.

What they get is what the run's own files hold, so a tracker never disagrees with ``history.csv``:

- per epoch, from the process that trains the fold: the ``history.csv`` row (train_loss, lr, val_loss,
  val_lwlrap, seconds) at step = epoch, for that fold of that stage;
- per stage, when the stage is collected: the resolved config, the provenance and the stage's CV metrics
  (``metrics.json``: cv_lwlrap, precision, recall, truth_* where known, per-species AP).

Where each writes (``RUN/tracking/``, beside the run's own files):

- tensorboard: ``tensorboard/STAGE/foldK`` (a TensorBoard run per fold) and ``tensorboard/STAGE/summary`` (the
  CV metrics, one tag per species' AP, and the config as HParams beside them);
  ``tensorboard --logdir RUN/tracking/tensorboard``.
- mlflow: ``$MLFLOW_TRACKING_URI``, else a local file store ``mlruns/``; the experiment is
  ``$MLFLOW_EXPERIMENT_NAME``, else the data folder's name, so a team's runs on one data set sit side by side.
  One MLflow run per stage, ``RUN/STAGE`` (config as params, provenance as tags, the CV metrics; ``metrics.json``,
  ``history.csv``, ``oof.csv``, ``test.csv`` and each fold's ``best.pt`` as artifacts), with a nested run per fold
  (the config and its fold as params, its epochs). ``rfcx-kit report`` adds the LB where the submission log has
  one, report.md with its figures, and each submission file ensembled from the stage, to each stage's run. ``mlflow ui --backend-store-uri RUN/tracking/mlruns``
  (the UI needs the full ``mlflow`` package; the extra installs ``mlflow-skinny``, which logs).
- wandb: ``wandb/``; project ``$WANDB_PROJECT`` (default rfcx-kit), a W&B run per fold and one per stage's
  summary, grouped as ``RUN/STAGE``. ``WANDB_MODE=offline`` keeps everything on disk (``wandb sync`` later).

The libraries are optional extras (``pip install 'rfcx-kit[tracking]'``); a run asking for a missing one is
refused before anything is written (``check_trackers``). A resumed fold goes on logging into its own run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.method.run import Run

TRACKERS = ("tensorboard", "mlflow", "wandb")  # each the name of its module, of its extra and of its Tracker below
MLFLOW_ID = "mlflow_run_id.txt"  # in a stage folder (the stage's run) and in a fold folder (the fold's)


def check_trackers(names: list[str]) -> None:
    """Refuse ``train.log_to`` naming a tracker whose library is not installed (one line naming the extra)."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"train.log_to: {name} needs the {name} package: pip install 'rfcx-kit[{name}]'")


def tracking_dir(run: Run) -> Path:
    return run.root / "tracking"


def _hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened with its numbers and flags kept as such (anything else as text): what TensorBoard's
    HParams tab compares across runs."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_hparams(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, bool, str)) else str(value)
    return out


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a row (an epoch without validation has no val_* to log)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": "0.001"}`` (MLflow params and tags are strings)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:5000]
    return out


# -- MLflow --------------------------------------------------------------------------------------------------

def _mlflow_client(run: Run):  # noqa: ANN202 - an MlflowClient
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        store = tracking_dir(run) / "mlruns"
        store.mkdir(parents=True, exist_ok=True)
        uri = store.resolve().as_uri()
        # MLflow 3 keeps its file store for local use behind this switch (a database store needs a server or
        # SQLAlchemy); the switch only concerns the file store this run owns.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_name(run: Run) -> str:
    """``$MLFLOW_EXPERIMENT_NAME``, else the name of the run's data folder (one experiment per data set), else the
    run's."""
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    try:
        import yaml

        data = yaml.safe_load(run.data.read_text(encoding="utf-8"))
        return Path(data["data"]).name or run.root.name
    except (OSError, KeyError, TypeError, ValueError):
        return run.root.name


def _mlflow_experiment(client, name: str) -> str:  # noqa: ANN001
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _mlflow_run(client, run: Run, id_file: Path, name: str, tags: dict[str, str]) -> str:  # noqa: ANN001
    """The MLflow run recorded in ``id_file``, else a new one (recorded there): a resumed stage or fold logs on
    into the run it started."""
    if id_file.is_file():
        run_id = id_file.read_text().strip()
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            return run_id
        except Exception:  # noqa: BLE001 - a store that lost it (another tracking URI): start a new run
            pass
    experiment = _mlflow_experiment(client, experiment_name(run))
    run_id = client.create_run(experiment, run_name=name, tags=tags).info.run_id
    from rfcx_kit.core.io import atomic_write_text

    atomic_write_text(id_file, run_id + "\n")
    return run_id


class Tracker:
    """One tracking library: what it does when a stage opens, for each fold's epochs, and when a stage is collected.

    A new tracker is one subclass here with its ``name`` in :data:`TRACKERS` and its test in
    ``tests/method/test_tracking.py``; :class:`FoldTracker` and :func:`log_stage` go through every one asked for.
    """

    name = ""

    def open_stage(self, run: Run, stage: str) -> None:
        """Before a stage's folds train (nothing by default)."""

    def open_fold(self, run: Run, stage: str, fold: int, label: str, config: dict[str, Any]) -> Any:
        """A writer for one fold: ``writer.epoch(step, values)`` and ``writer.close(ok)``."""
        raise NotImplementedError

    def log_stage(self, run: Run, stage: str, config: dict[str, Any], provenance: dict[str, Any],
                  values: dict[str, float], per_species: list[float | None]) -> None:
        """A collected stage: its config, provenance and CV figures."""
        raise NotImplementedError

    def log_report(self, run: Run, lb: dict[str, float], files: list[Path]) -> None:
        """A written report: each stage's LB where known, and the report's files (nothing by default)."""


class TensorBoard(Tracker):
    """``RUN/tracking/tensorboard/STAGE/foldK`` per fold, ``.../STAGE/summary`` per stage."""

    name = "tensorboard"

    class Writer:
        def __init__(self, log_dir: Path) -> None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

        def epoch(self, step: int, values: dict[str, float]) -> None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()  # a killed fold keeps what it logged

        def close(self, ok: bool) -> None:
            self.writer.close()

    def open_fold(self, run: Run, stage: str, fold: int, label: str, config: dict[str, Any]) -> Any:
        return self.Writer(tracking_dir(run) / "tensorboard" / stage / f"fold{fold}")

    def log_stage(self, run: Run, stage: str, config: dict[str, Any], provenance: dict[str, Any],
                  values: dict[str, float], per_species: list[float | None]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(tracking_dir(run) / "tensorboard" / stage / "summary")) as writer:
            writer.add_text("config", "```yaml\n" + run.config.read_text() + "```", 0)
            writer.add_text("provenance", "```json\n" + json.dumps(provenance, indent=1) + "\n```", 0)
            for key, value in values.items():
                writer.add_scalar(f"cv/{key}", value, 0)
            for i, ap in enumerate(per_species):  # a tag per species, not the species on the step axis
                if ap is not None and math.isfinite(ap):
                    writer.add_scalar(f"cv/per_species_ap/s{i}", ap, 0)
            hparams = _hparams(config)
            metrics = {f"hparam/{k}": v for k, v in values.items() if k.startswith(("cv_", "truth_test"))}
            if hparams and metrics:  # the HParams tab: this stage's settings beside its figures
                writer.add_hparams(hparams, metrics, run_name="hparams")


class MLflow(Tracker):
    """One MLflow run per stage (config as params, provenance as tags, CV metrics, metrics.json and history.csv as
    artifacts) with a nested run per fold (its epochs); run ids in ``mlflow_run_id.txt`` so a resume logs on."""

    name = "mlflow"

    class Writer:
        def __init__(self, client: Any, run_id: str) -> None:
            self.client, self.run_id = client, run_id

        def epoch(self, step: int, values: dict[str, float]) -> None:
            from mlflow.entities import Metric

            now = _now_ms()
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

        def close(self, ok: bool) -> None:
            self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")

    def _stage_run(self, client: Any, run: Run, stage: str) -> str:
        return _mlflow_run(client, run, run.stage(stage) / MLFLOW_ID, f"{run.root.name}/{stage}",
                           {"rfcx.run": run.root.name, "rfcx.stage": stage})

    def open_stage(self, run: Run, stage: str) -> None:
        run.stage(stage).mkdir(parents=True, exist_ok=True)
        self._stage_run(_mlflow_client(run), run, stage)

    def open_fold(self, run: Run, stage: str, fold: int, label: str, config: dict[str, Any]) -> Any:
        client = _mlflow_client(run)
        stage_file = run.stage(stage) / MLFLOW_ID
        if not stage_file.is_file():  # a fold trained on its own (train_fold called directly)
            self.open_stage(run, stage)
        tags = {"rfcx.run": run.root.name, "rfcx.stage": stage, "rfcx.fold": str(fold),
                "mlflow.parentRunId": stage_file.read_text().strip()}
        run_id = _mlflow_run(client, run, run.fold(stage, fold) / MLFLOW_ID, label, tags)
        _log_params(client, run_id, {**flat(config), "fold": str(fold), "stage": stage})
        return self.Writer(client, run_id)

    def log_stage(self, run: Run, stage: str, config: dict[str, Any], provenance: dict[str, Any],
                  values: dict[str, float], per_species: list[float | None]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = _mlflow_client(run)
        run_id = self._stage_run(client, run, stage)
        _log_params(client, run_id, flat(config))
        client.log_batch(run_id, tags=[RunTag(f"provenance.{k}", v) for k, v in flat(provenance).items()])
        now = _now_ms()
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
        for path in (run.metrics(stage), run.history(stage), run.oof_csv(stage), run.test_csv(stage)):
            if path.is_file():
                client.log_artifact(run_id, str(path))
        for fold_dir in sorted(run.stage(stage).glob("fold*")):
            if (fold_dir / "best.pt").is_file():  # the weights a submission is made from
                client.log_artifact(run_id, str(fold_dir / "best.pt"), f"checkpoints/{fold_dir.name}")
        client.set_terminated(run_id, status="FINISHED")

    def log_report(self, run: Run, lb: dict[str, float], files: list[Path]) -> None:
        from mlflow.entities import Metric

        client = _mlflow_client(run)
        for stage in run.stages():
            id_file = run.stage(stage) / MLFLOW_ID
            if not id_file.is_file():
                continue
            run_id = id_file.read_text().strip()
            if stage in lb:
                client.log_batch(run_id, metrics=[Metric("LB", lb[stage], _now_ms(), 0)])
            for path in files:
                client.log_artifact(run_id, str(path), "report" if path.suffix == ".md" else "report/figures")
        _log_submissions(client, run)


def _log_submissions(client: Any, run: Run) -> None:
    """Each submission file ensembled from a stage (``RUN/submissions.csv``) to that stage's MLflow run, once."""
    import pandas as pd

    if not run.submissions.is_file():
        return
    made = pd.read_csv(run.submissions, dtype=str)
    for stage, file in zip(made.get("stage", []), made.get("file", [])):
        id_file = run.stage(str(stage)) / MLFLOW_ID
        path = Path(str(file))
        if id_file.is_file() and path.is_file():
            run_id = id_file.read_text().strip()
            logged = {a.path for a in client.list_artifacts(run_id, "submissions")}
            if f"submissions/{path.name}" not in logged:
                client.log_artifact(run_id, str(path), "submissions")


def _log_params(client: Any, run_id: str, values: dict[str, str]) -> None:
    """Params not yet on the run (a param is written once: a resumed run keeps its own), 100 per batch."""
    from mlflow.entities import Param

    logged = client.get_run(run_id).data.params
    params = [Param(k, str(v)[:6000]) for k, v in values.items() if k not in logged]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=params[i:i + 100])


class WandB(Tracker):
    """A W&B run per fold and one per stage's summary, grouped as ``RUN/STAGE``, under ``RUN/tracking/wandb``."""

    name = "wandb"

    class Writer:
        def __init__(self, wrun: Any) -> None:
            self.wrun = wrun

        def epoch(self, step: int, values: dict[str, float]) -> None:
            self.wrun.log(values, step=step)

        def close(self, ok: bool) -> None:
            self.wrun.finish(exit_code=0 if ok else 1)

    def open_fold(self, run: Run, stage: str, fold: int, label: str, config: dict[str, Any]) -> Any:
        return self.Writer(_wandb_init(run, stage, label, "fold", config))

    def log_stage(self, run: Run, stage: str, config: dict[str, Any], provenance: dict[str, Any],
                  values: dict[str, float], per_species: list[float | None]) -> None:
        wrun = _wandb_init(run, stage, f"{run.root.name}/{stage}", "summary", config)
        wrun.summary.update({f"cv/{k}": v for k, v in values.items()})
        wrun.config.update({"provenance": provenance}, allow_val_change=True)
        if per_species:
            import wandb

            wrun.log({"per_species_ap": wandb.Table(columns=["species", "ap"],
                                                    data=[[i, ap] for i, ap in enumerate(per_species)])})
        wrun.finish()


REGISTRY: dict[str, Tracker] = {t.name: t for t in (TensorBoard(), MLflow(), WandB())}


def open_stage(run_dir: Path, stage: str, names: list[str]) -> None:
    """Before a stage's folds train: each tracker's stage hook (MLflow: the stage's run, so folds nest under it)."""
    run = Run(run_dir)
    for name in names:
        REGISTRY[name].open_stage(run, stage)


# -- per fold ------------------------------------------------------------------------------------------------

class FoldTracker:
    """The trackers of one fold of one stage: ``epoch(row)`` after each history row is written."""

    def __init__(self, run_dir: Path, stage: str, fold: int, names: list[str], config: dict[str, Any]) -> None:
        self.run, self.stage, self.fold, self.names = Run(run_dir), stage, fold, list(names)
        label = f"{self.run.root.name}/{stage}/fold{fold}"
        self.writers = [REGISTRY[name].open_fold(self.run, stage, fold, label, config) for name in names]

    def epoch(self, row: dict[str, Any]) -> None:
        """Log one ``history.csv`` row at step = its epoch."""
        step, values = int(row["epoch"]), scalars({k: v for k, v in row.items() if k != "epoch"})
        for writer in self.writers:
            writer.epoch(step, values)

    def close(self, ok: bool = True) -> None:
        for writer in self.writers:
            writer.close(ok)


# -- per stage -----------------------------------------------------------------------------------------------

def log_stage(run_dir: Path, stage: str, names: list[str], metrics: dict[str, Any]) -> None:
    """A collected stage: its config, provenance and CV metrics to each tracker."""
    if not names:
        return
    run = Run(run_dir)
    import yaml

    config = yaml.safe_load(run.config.read_text())
    provenance = json.loads(run.provenance.read_text()) if run.provenance.is_file() else {}
    for name in names:
        REGISTRY[name].log_stage(run, stage, config, provenance, scalars(metrics), metrics.get("per_species_ap") or [])


def log_report(run_dir: Path, names: list[str], lb: dict[str, float], files: list[Path]) -> None:
    """A written report to each tracker: the LB of each stage where the submission log has one, and its files."""
    run = Run(run_dir)
    for name in names:
        REGISTRY[name].log_report(run, lb, [f for f in files if Path(f).is_file()])


def _wandb_init(run: Run, stage: str, name: str, job: str, config: dict[str, Any]):  # noqa: ANN202 - a wandb Run
    import wandb

    where = tracking_dir(run)
    where.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "rfcx-kit"), group=f"{run.root.name}/{stage}",
                      name=name, job_type=job, dir=str(where), config=config, reinit="create_new",
                      settings=wandb.Settings(console="off", silent=True))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
