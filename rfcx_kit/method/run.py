"""The run directory: the one module that knows its layout, and reads and writes what is in it.

::

    RUN/
      .rfcx-kit.lock           while a command writes the run: {"pid", "host", "command", "since"} (one writer)
      inputs.json              what the run was made from: the data's fingerprint (label tables' sha256, ids)
      provenance.json          versions (rfcx-kit, torch, timm, numpy), git commit, backbone tag, hub id and
                               sha256 of the starting weights
      config.yaml              resolved config (relabel --set updates its relabel section)
      data.yaml                data folder, feature cache, layout, counts, frames (T, the longest recording's)
  species.csv              species_id,code,name,f_min,f_max: the data's species table (model head, clip-table
                           columns s0..s{K-1}, names in Raven tables)
      folds.csv                recording_id,fold
      stats_train.npy          (R_train, 4) per-recording mean, std, min, max (input normalisation)
      stats_test.npy           (R_test, 4)
      STAGE/                   one folder per stage: stage1, cycle1, cycle2, ..., control, oracle
        inputs.json            (cycles, control, oracle) config fingerprint + the stage it starts from: resume
                               with other ones is refused
        pseudo_boxes.csv       (cycles) recording_id,species_id,t_min,t_max,weight,score: one box per pseudo-positive
                           window, at its peak; what the cycle trains on beside the TP/FP boxes
        given_pseudo_boxes.csv (cycle1, relabel --pseudo-boxes) the same, given from elsewhere (labels from-oof
                           --boxes): cycle 1 trains on them instead of its own fold votes
        labels.csv             (cycles) recording_id,window,species_id,source,weight: TP/FP windows and the
                           pseudo-positive windows the fold votes gave
        test_labels.csv, test_pseudo_boxes.csv   (cycles, relabel.test_pseudo) the same for the test recordings
        soft_targets.npy       (cycles, relabel.soft_share) (R_train, N, K) float32 targets of pseudo-labelled windows
        soft_calibration.csv   (cycles, relabel.soft_share, synthetic truth) the soft labels' reliability table
        label_counts.csv       (cycles) per species: tp, fp, pseudo_positive (windows), pseudo_boxes, threshold
        fold{k}/
          last.pt              {"model", "optimizer", "epoch", "step", "torch_rng", "best_score", "best_epoch", "config"}
                               (+ "ema": the weights' moving average, when train.ema_decay is set)
          best.pt              {"model" (the average's, with EMA), "epoch", "score", "config"}; both load with torch.load(weights_only=True)
          history.csv          epoch,train_loss,lr,val_loss,val_lwlrap,seconds
          val_pred.npz         out-of-fold: ids, windows (R,N,K), clipwise (R,N,K) logits (NaN: a window past the recording's end),
                           stitched (R,K), framewise (R,K,T/32)
          train_pred.npz       (relabel.source=vote) the same for all train recordings
          test_pred.npz        the same for the test set (test window layout)
          test.csv             recording_id,s0..s{K-1} this fold's test prediction (probabilities)
          done.json            the fold's summary; its presence marks the fold finished
          mlflow_run_id.txt    (train.log_to: mlflow) the fold's MLflow run, nested under the stage's
        train_ids.txt test_ids.txt   row order of the stage's arrays
        oof_windows.npy        (R_train, N, K) out-of-fold window predictions (probabilities; NaN past an end)
        oof_framewise.npy      (R_train, K, S) float16 out-of-fold framewise timelines, S = ceil(T / 32)
        oof.csv                recording_id,s0..s{K-1} out-of-fold clip predictions
        test.csv               fold-mean test prediction
        history.csv            all folds' histories
        metrics.json           strict JSON (null for undefined): cv_lwlrap, precision, recall, per_species_ap,
                               fold_cv_lwlrap (each fold's own; + fold_truth_test_lwlrap with truth)
                               (+ truth_* on synthetic data, pseudo_* in cycles, epochs for the control)
        done                   (cycles) the cycle finished; a stage is used (next cycle, ensemble, report,
                               --stage latest) only when finished: every fold's done.json (+ done for a cycle)
      kept.json                the stage the loop keeps (stage1 or a cycle), the rule and each candidate's figure
      submissions.csv          files `rfcx-kit ensemble` wrote from this run (stage, sha256): fills the LB column
      report/                  cv.md|csv, species.md|csv, relabel.md|csv, pseudo_per_species.csv, *.png
      report.md                the report (`rfcx-kit report`)
      tracking/                (train.log_to) tensorboard/STAGE/fold{k}|summary, mlruns/ (MLflow's file store,
                               unless MLFLOW_TRACKING_URI), wandb/
    RUN/../cv_table.md|csv     the post's CV table, one row per run and stage of the runs beside this one

:class:`Run` names every path; ``method/context.py``'s ``RunContext`` is what a fold of the run needs, loaded once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from rfcx_kit.core.config import Config, DataConfig
from rfcx_kit.data.reader import Competition

# The run folder only: no torch, no feature store. A fold's context is method/context.py, model building and
# checkpoints method/checkpoint.py, a stage's prediction files method/predictions.py.

PREDICTION_SPLITS = ("val", "test", "train")


@dataclass(frozen=True)
class Run:
    """The paths of one run directory (nothing is read or created by naming a path)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # run level
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data.yaml"

    @property
    def folds(self) -> Path:
        return self.root / "folds.csv"

    @property
    def species(self) -> Path:
        return self.root / "species.csv"

    def stats(self, split: str) -> Path:
        return self.root / f"stats_{split}.npy"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions.csv"

    @property
    def kept(self) -> Path:
        """``kept.json``: the stage the re-labeling loop keeps (what ensemble, predict and export use by default)."""
        return self.root / "kept.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def cv_table(self) -> tuple[Path, Path]:
        """(csv, md) of the CV table shared by the runs beside this one."""
        return self.root.parent / "cv_table.csv", self.root.parent / "cv_table.md"

    # stage level
    def stage(self, stage: str) -> Path:
        return self.root / stage

    def metrics(self, stage: str) -> Path:
        return self.root / stage / "metrics.json"

    def oof_windows(self, stage: str) -> Path:
        return self.root / stage / "oof_windows.npy"

    def oof_framewise(self, stage: str) -> Path:
        return self.root / stage / "oof_framewise.npy"

    def oof_csv(self, stage: str) -> Path:
        return self.root / stage / "oof.csv"

    def test_csv(self, stage: str) -> Path:
        return self.root / stage / "test.csv"

    def ids(self, stage: str, split: str) -> Path:
        return self.root / stage / f"{split}_ids.txt"

    def history(self, stage: str) -> Path:
        return self.root / stage / "history.csv"

    def pseudo_boxes(self, stage: str) -> Path:
        return self.root / stage / "pseudo_boxes.csv"

    def test_labels(self, stage: str) -> Path:
        return self.root / stage / "test_labels.csv"

    def test_pseudo_boxes(self, stage: str) -> Path:
        return self.root / stage / "test_pseudo_boxes.csv"

    def soft_targets(self, stage: str) -> Path:
        return self.root / stage / "soft_targets.npy"

    def soft_calibration(self, stage: str) -> Path:
        return self.root / stage / "soft_calibration.csv"

    def labels(self, stage: str) -> Path:
        return self.root / stage / "labels.csv"

    def label_counts(self, stage: str) -> Path:
        return self.root / stage / "label_counts.csv"

    def given_pseudo_boxes(self, stage: str) -> Path:
        """(cycle 1, ``relabel --pseudo-boxes``) the pseudo-positive boxes given from elsewhere, copied in."""
        return self.root / stage / "given_pseudo_boxes.csv"

    def cycle_done(self, stage: str) -> Path:
        return self.root / stage / "done"

    def inputs(self, stage: str | None = None) -> Path:
        """What a stage (or, with None, the run) was made from: ``inputs.json`` (see :func:`check_inputs`)."""
        return (self.root if stage is None else self.root / stage) / "inputs.json"

    # fold level
    def fold(self, stage: str, fold: int) -> Path:
        return self.root / stage / f"fold{fold}"

    def checkpoint(self, stage: str, fold: int, which: str = "best") -> Path:
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint: which must be best or last, got {which!r}")
        return self.fold(stage, fold) / f"{which}.pt"

    def fold_history(self, stage: str, fold: int) -> Path:
        return self.fold(stage, fold) / "history.csv"

    def fold_done(self, stage: str, fold: int) -> Path:
        return self.fold(stage, fold) / "done.json"

    def prediction(self, stage: str, fold: int, split: str) -> Path:
        if split not in PREDICTION_SPLITS:
            raise ValueError(f"prediction: split must be one of {PREDICTION_SPLITS}, got {split!r}")
        return self.fold(stage, fold) / f"{split}_pred.npz"

    def fold_test_csv(self, stage: str, fold: int) -> Path:
        return self.fold(stage, fold) / "test.csv"

    # what is there
    def stages(self) -> list[str]:
        """Stages with metrics, in method order: stage1, cycle1, cycle2, ..., then the control and the oracle."""
        return sorted((p.parent.name for p in self.root.glob("*/metrics.json")), key=stage_order)

    def finished_cycles(self) -> int:
        """How many consecutive cycles (cycle1, cycle2, ...) have finished."""
        n = 0
        while self.cycle_done(f"cycle{n + 1}").exists():
            n += 1
        return n

    def finished_folds(self, stage: str, n_folds: int) -> list[int]:
        return [k for k in range(n_folds) if self.fold_done(stage, k).exists()]

    def n_folds(self) -> int | None:
        """The run's fold count from config.yaml (None where the run has no readable config)."""
        try:
            return int((yaml.safe_load(self.config.read_text()) or {})["train"]["folds"])
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            return None

    def finished(self, stage: str) -> bool:
        """Every fold of ``stage`` finished and the stage collected (a cycle: its ``done`` marker too).

        Only finished stages are consumed: by the next cycle, ``ensemble``, ``report`` and ``--stage latest``.
        """
        n = self.n_folds()
        if n is None or not self.metrics(stage).exists():
            return False
        if stage.startswith("cycle") and not self.cycle_done(stage).exists():
            return False
        return all(self.fold_done(stage, k).exists() for k in range(n))

    def finished_stages(self) -> list[str]:
        return [s for s in self.stages() if self.finished(s)]

    def kept_stage(self) -> str | None:
        """The stage ``kept.json`` names when it has finished, else :meth:`latest_stage` (what ``--stage kept`` means)."""
        if self.kept.is_file():
            try:
                name = json.loads(self.kept.read_text(encoding="utf-8"))["stage"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                from rfcx_kit.core.errors import DataError

                raise DataError(f"{self.kept}: not readable (rerun `rfcx-kit relabel` to rewrite it)") from None
            if isinstance(name, str) and self.finished(name):
                return name
        return self.latest_stage()

    def resolve(self, stage: str) -> str | None:
        """A stage name with ``latest`` and ``kept`` resolved (None where nothing has finished)."""
        if stage == "kept":
            return self.kept_stage()
        if stage == "latest":
            return self.latest_stage()
        return stage

    def latest_stage(self) -> str | None:
        """The highest finished ``cycleN``, else ``stage1`` if finished (what ``--stage latest`` means), else None."""
        done = [s for s in self.finished_stages() if s == "stage1" or (s.startswith("cycle") and s[5:].isdigit())]
        return max(done, key=stage_order) if done else None

    def fold_test_csvs(self, stage: str) -> list[tuple[int, Path]]:
        """``(fold, fold{k}/test.csv)`` of the folds of ``stage`` that have one, by fold number."""
        found = []
        for path in self.stage(stage).glob("fold*/test.csv"):
            number = path.parent.name[4:]
            if number.isdigit():
                found.append((int(number), path))
        return sorted(found)

    def stages_with_test_predictions(self) -> list[str]:
        """Stages (any folder of the run) with at least one fold's ``test.csv``, in method order."""
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir() if p.is_dir() and self.fold_test_csvs(p.name)),
                      key=stage_order)


def stage_order(stage: str) -> tuple[int, int]:
    """Sort key: stage1, cycle1..N, control, oracle, then anything else by name."""
    if stage == "stage1":
        return (0, 0)
    if stage.startswith("cycle") and stage[5:].isdigit():
        return (1, int(stage[5:]))
    return ({"control": 2, "oracle": 3}.get(stage, 4), 0)


def cycle_stage(cycle: int) -> str:
    return f"cycle{cycle}"


def previous_stage(cycle: int) -> str:
    """The stage a cycle re-labels from: stage 1 for cycle 1, else the cycle before."""
    return "stage1" if cycle == 1 else cycle_stage(cycle - 1)


# -- what a stage was made from ---------------------------------------------------------------------------

# Keys that change how many cycles run or when they stop, not what any one stage computes.
_NOT_FINGERPRINTED = {"relabel": ("cycles", "early_stop", "early_stop_metric")}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_fingerprint(cfg: Config) -> str:
    """sha256 of the resolved config, without the keys that only say how many cycles run."""
    data = cfg.to_dict()
    for section, keys in _NOT_FINGERPRINTED.items():
        for key in keys:
            data[section].pop(key, None)
    if data.get("data") == asdict(DataConfig()):  # the section came later: runs made before it keep their print
        data.pop("data")
    if data["features"].get("max_seconds") is None:  # so did this key
        data["features"].pop("max_seconds", None)
    return sha256_text(json.dumps(data, sort_keys=True, default=str))


def file_fingerprint(path: Path) -> str | None:
    """sha256 of a file's bytes (None if it does not exist)."""
    from rfcx_kit.core.io import sha256_file

    return sha256_file(path) if Path(path).exists() else None


def data_fingerprint(comp: Competition) -> dict[str, Any]:
    """What identifies a data set for a run: its label tables' bytes and its recording ids."""
    from rfcx_kit.data.reader import UNKNOWN_FILE

    found = {"train_tp.csv": file_fingerprint(comp.root / "train_tp.csv"),
             "train_fp.csv": file_fingerprint(comp.root / "train_fp.csv"),
             "train_ids": sha256_text("\n".join(comp.train_ids)), "test_ids": sha256_text("\n".join(comp.test_ids)),
             "layout": comp.layout}
    if (comp.root / UNKNOWN_FILE).exists():  # only then: the runs made before it keep their fingerprint
        found[UNKNOWN_FILE] = file_fingerprint(comp.root / UNKNOWN_FILE)
    for name in comp.label_files:  # a layout's own label tables (BirdCLEF's train.csv, soundscape labels)
        found[name] = file_fingerprint(comp.root / name)
    return found


def check_inputs(path: Path, inputs: dict[str, Any], what: str, fresh: str) -> None:
    """Refuse to resume ``what`` when ``path`` (an ``inputs.json``) records other inputs than ``inputs``.

    ``fresh`` says how to start over. A missing record is written (the stage starts now).
    """
    from rfcx_kit.core.errors import StateError
    from rfcx_kit.core.io import atomic_write_json

    if not path.exists():
        atomic_write_json(path, inputs)
        return
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    recorded, now = flat(json.loads(path.read_text())), flat(json.loads(json.dumps(inputs)))
    differ = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    if differ:
        raise StateError(f"{what} was started from other inputs than now ({', '.join(differ)} differ): it cannot "
                        f"resume with them; {fresh}")


def read_metrics(path: Path) -> dict[str, Any]:
    """A stage's ``metrics.json``; the ``null`` written for an undefined figure comes back as NaN."""
    def back(value: Any) -> Any:
        if value is None:
            return float("nan")
        if isinstance(value, list):
            return [back(v) for v in value]
        return value

    from rfcx_kit.core.errors import DataError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not readable metrics JSON ({exc}); rerun the stage's command to rewrite it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a metrics mapping")
    return {k: back(v) for k, v in data.items()}


def format_metrics(metrics: dict[str, Any]) -> str:
    """A stage's headline figures in one line: ``cv_lwlrap=0.8123, precision=...`` (those it has)."""
    keys = ["cv_lwlrap", "precision", "recall", "truth_oof_lwlrap", "truth_test_lwlrap"]
    # the competition's own figure where the run is scored by another (train.metric: roc_auc, padded_cmap, ...)
    keys += [k for k in metrics if k.startswith("cv_") and k != "cv_lwlrap" and isinstance(metrics[k], float)]
    keys += [k for k in metrics if k.startswith("truth_test_rows_")]
    return ", ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


def stage_metrics(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """A stage's metrics, or None when the stage has not finished."""
    path = Run(run_dir).metrics(stage)
    return read_metrics(path) if path.exists() else None


# -- provenance ------------------------------------------------------------------------------------------

def _git_commit() -> str | None:
    """The commit of the checkout rfcx-kit runs from (None when installed from a wheel)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def provenance(cfg: Config) -> dict[str, Any]:
    """Versions, the git commit and the backbone's starting weights (tag, hub id, sha256) behind a run."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from rfcx_kit.core.numerics import describe as describe_numerics
    from rfcx_kit.model.weights import resolve_weights

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    source = resolve_weights(cfg.model.backbone, cfg.model.pretrained, cfg.model.weights)
    return {"versions": {name: ver(name) for name in ("rfcx-kit", "torch", "timm", "numpy", "huggingface_hub")}
            | {"python": platform.python_version()},
            "git_commit": _git_commit(), "numerics": describe_numerics(), "backbone": cfg.model.backbone,
            "weights": source.to_dict() if source is not None else None}


def write_provenance(run: Run, cfg: Config) -> None:
    """``RUN/provenance.json``: written when the run starts, kept as is when it resumes."""
    from rfcx_kit.core.io import atomic_write_json

    if not run.provenance.exists():
        atomic_write_json(run.provenance, provenance(cfg))
