"""The Python API: the method's steps as functions that take paths or DataFrames and return DataFrames or results.

A notebook needs nothing else (``docs/api.md`` has examples, run by the test suite)::

    from rfcx_kit import api

    s1 = api.stage1("data/rfcx", "runs/r18", pipeline="method-post-resnet18")
    s1.cv_lwlrap, s1.oof.head(), s1.history.tail()
    loop = api.relabel("runs/r18", cycles=3)
    loop.kept, loop.table                       # the stage kept by CV; one row per stage
    sub = api.ensemble("runs/r18", out="submissions/r18.csv")
    preds = api.predict(["field/2026-11/"], run="runs/r18")
    api.score(sub, "truth.csv").lwlrap

The command line is a thin layer over these functions: ``rfcx-kit stage1`` is :func:`stage1` plus printing.
Config overrides are a mapping (``{"train.epochs": 3}``) or ``--set``-style strings (``["train.epochs=3"]``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

Overrides = Mapping[str, Any] | Sequence[str] | None

__all__ = ["StageResult", "RelabelResult", "Score", "Model", "as_overrides", "synth", "features", "stage1", "relabel",
           "control", "oracle", "stages", "prior", "ensemble", "validate", "submit", "report", "load", "predict",
           "score", "stage"]


def as_overrides(overrides: Overrides) -> tuple[str, ...]:
    """``{"train.epochs": 3}`` or ``["train.epochs=3"]`` -> ``("train.epochs=3",)``."""
    if overrides is None:
        return ()
    if isinstance(overrides, Mapping):
        return tuple(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                     for k, v in overrides.items())
    if isinstance(overrides, str):
        return (overrides,)
    return tuple(overrides)


def synth(out: str | Path, n_train: int = 300, n_test: int = 100, profile: str = "demo", seconds: float = 60.0,
          seed: int = 7, fmt: str = "npy", pipeline: str | Path | None = "demo", progress: bool = True,
          overrides: Overrides = None, **options: Any) -> Path:
    """A synthetic data set with hidden truth (``rfcx-kit synth``): the competition's layout plus ``truth/``.

    ``npy`` arrays are on ``pipeline``'s grid (its n_mels and hop, after ``overrides``); ``options``: the rest of
    ``data.synth.scene.synth_config`` (tp_share, snr_low, snr_high, prevalence, ...). Returns ``out``.
    """
    from rfcx_kit.core.config import load_config
    from rfcx_kit.data.synth.scene import synth_config
    from rfcx_kit.data.synth.writer import write_dataset

    grid = load_config(pipeline, as_overrides(overrides)).features if pipeline is not None else None
    if grid is not None:
        options = {"n_mels": grid.n_mels, "hop_length": grid.hop_length, **options}
    cfg = synth_config(profile, n_train=n_train, n_test=n_test, seconds=seconds, seed=seed, **options)
    cfg.validate()
    write_dataset(cfg, Path(out), fmt=fmt, n_jobs=-1, progress=progress)
    return Path(out)


def synth_birdclef(out: str | Path, year: int = 2025, seed: int = 0, progress: bool = True, n_jobs: int = -1,
                   **settings: Any) -> Path:
    """A BirdCLEF-shaped synthetic set (``rfcx-kit synth --profile birdclef``): the year's Kaggle layout (focal clips
    in train_audio/, unlabelled and test soundscapes, the tables) plus ``truth/``. ``settings``: the rest of
    ``data.synth.birdclef.BirdclefSynth`` (species, clips_per_species, soundscapes, test, soundscape_seconds, ...).
    Returns ``out``."""
    from rfcx_kit.data.synth.birdclef import BirdclefSynth, write_birdclef

    write_birdclef(BirdclefSynth(year=year, seed=seed, **settings), Path(out), n_jobs=n_jobs, progress=progress)
    return Path(out)


def features(data: str | Path, pipeline: str | Path | None = None, overrides: Overrides = None,
             cache: str | Path | None = None, progress: bool = True) -> Path | None:
    """The log-mel feature cache of an audio data folder (``rfcx-kit features``; stage 1 builds it too when
    missing): resumable, every array checked. Returns the cache folder, or None for precomputed arrays."""
    from rfcx_kit.core.config import load_config
    from rfcx_kit.data.features import build_cache, default_cache_dir
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.method.preflight import resolve_features

    cfg = load_config(pipeline, as_overrides(overrides))
    comp = read_competition(Path(data))
    if comp.layout != "audio":
        return None
    resolve_features(cfg, comp)  # one's own recordings: their rate, as stage 1 takes it (the same cache)
    folder = Path(cache) if cache is not None else default_cache_dir(comp.root)
    build_cache(comp, folder, cfg.features, progress=progress)
    return folder


@dataclass
class StageResult:
    """A finished stage of a run: its metrics, and its tables read on demand.

    Attributes:
        run: the run directory. stage: ``stage1``, ``cycle1``, ...
        metrics: ``STAGE/metrics.json`` (cv_lwlrap, precision, recall, per_species_ap, truth_* where known).
    """

    run: Path
    stage: str
    metrics: dict[str, Any] = field(repr=False)

    @property
    def cv_lwlrap(self) -> float:
        """Out-of-fold LWLRAP against the original (TP) labels."""
        return float(self.metrics["cv_lwlrap"])

    @property
    def oof(self) -> pd.DataFrame:
        """``(R, 1 + K)`` out-of-fold clip scores: recording_id, s0..s{K-1}."""
        from rfcx_kit.method.run import Run

        return pd.read_csv(Run(self.run).oof_csv(self.stage), dtype={"recording_id": str})

    @property
    def test(self) -> pd.DataFrame:
        """``(T, 1 + K)`` the folds' mean test prediction (submission format)."""
        from rfcx_kit.method.run import Run

        return pd.read_csv(Run(self.run).test_csv(self.stage), dtype={"recording_id": str})

    @property
    def history(self) -> pd.DataFrame:
        """Every fold's epochs: fold, epoch, train_loss, lr, val_loss, val_lwlrap, seconds."""
        from rfcx_kit.method.run import Run

        return pd.read_csv(Run(self.run).history(self.stage))


def stage(run: str | Path, name: str = "kept") -> StageResult:
    """A finished stage of an existing run (``kept``: the stage the loop kept; ``latest``; or a stage name)."""
    from rfcx_kit.core.errors import StateError
    from rfcx_kit.method.run import Run, read_metrics

    r = Run(Path(run))
    resolved = r.resolve(name)
    if resolved is None or not r.finished(resolved):
        raise StateError(f"{run}: no finished stage {name!r} (finished: {', '.join(r.finished_stages()) or 'none'})")
    return StageResult(Path(run), resolved, read_metrics(r.metrics(resolved)))


def stage1(data: str | Path, run: str | Path, pipeline: str | Path | None = None, overrides: Overrides = None,
           folds: Iterable[int] | str | None = None, resume: bool = False, backend: str = "loky", workers: int = 1,
           scheduler: str | None = None, cache: str | Path | None = None, progress: bool = True) -> StageResult:
    """Stage 1: validate ``data``, train the folds, predict out-of-fold and test, write the CV tables.

    Args:
        data: a data folder (Kaggle layout, precomputed npy, or ``labels import``'s).
        run: the run directory to write.
        pipeline: a recipe file, or a shipped recipe's name (``demo``, ``method-post-resnet18``).
        folds: train only these folds (a killed run: ``resume=True``).
    """
    from rfcx_kit.core.errors import ConfigError, DataError, RfcxError, StateError
    from rfcx_kit.method.run import Run
    from rfcx_kit.method.stage1 import run_stage1
    from rfcx_kit.report.markdown import write_cv_tables

    fold_text = folds if folds is None or isinstance(folds, str) else ",".join(str(int(k)) for k in folds)
    run = Path(run)
    try:
        metrics = run_stage1(Path(data), run, pipeline, as_overrides(overrides), fold_text, resume, backend, workers,
                             scheduler, Path(cache) if cache is not None else None, progress=progress)
    except (ConfigError, DataError, StateError):
        raise  # refused before any work: nothing new to report, and nothing is written
    except RfcxError:
        if Run(run).finished_stages():  # folds failed after others finished: their CV table is still due
            write_cv_tables(run)
        raise
    write_cv_tables(run)
    return StageResult(run, "stage1", metrics)


@dataclass
class RelabelResult:
    """The re-labeling loop: each stage's result, the stage kept by CV, and one row per stage.

    Attributes:
        stages: stage 1 and every cycle run, in order.
        kept: the stage the loop kept (``kept.json``): the best CV LWLRAP on the original labels.
        table: ``report.markdown.relabel_table``: cv_lwlrap, pseudo-positives and their precision, truth_*.
    """

    run: Path
    stages: list[StageResult]
    kept: str
    table: pd.DataFrame = field(repr=False)


def relabel(run: str | Path, cycles: int | None = None, overrides: Overrides = None, backend: str = "loky",
            workers: int = 1, scheduler: str | None = None, progress: bool = True,
            pseudo_boxes: str | Path | None = None) -> RelabelResult:
    """Stage 2: ``cycles`` re-labeling cycles on a finished stage 1 (resumes a killed loop).

    ``pseudo_boxes``: cycle 1's pseudo-positive boxes made elsewhere (``labels from-oof --boxes``) instead of its
    own fold votes.
    """
    from rfcx_kit.method.cycle import run_relabel
    from rfcx_kit.method.run import Run
    from rfcx_kit.report.markdown import relabel_table, write_cv_tables, write_relabel_report

    run = Path(run)
    history = run_relabel(run, cycles, as_overrides(overrides), backend, workers, scheduler, progress=progress,
                          pseudo_boxes=Path(pseudo_boxes) if pseudo_boxes is not None else None)
    write_cv_tables(run)
    write_relabel_report(run)
    stages = [StageResult(run, m["stage"], m) for m in history]
    kept = Run(run).kept_stage() or stages[-1].stage
    return RelabelResult(run, stages, kept, relabel_table(run))


def control(run: str | Path, cycles: int | None = None, backend: str = "loky", workers: int = 1,
            scheduler: str | None = None, progress: bool = True) -> StageResult:
    """The control (``rfcx-kit control``): stage 1 trained on for as many epochs as ``cycles`` add (None: the
    finished cycles), on the original labels, no pseudo-labels. What re-labeling must beat."""
    from rfcx_kit.method.references import run_control

    run = Path(run)
    return StageResult(run, "control", run_control(run, cycles, backend, workers, scheduler, progress=progress))


def oracle(run: str | Path, backend: str = "loky", workers: int = 1, scheduler: str | None = None,
           progress: bool = True) -> StageResult:
    """The oracle (``rfcx-kit oracle``): stage 1's recipe on every planted call of a synthetic set: the ceiling."""
    from rfcx_kit.method.references import run_oracle

    run = Path(run)
    return StageResult(run, "oracle", run_oracle(run, backend, workers, scheduler, progress=progress))


def stages(run: str | Path) -> pd.DataFrame:
    """One row per finished stage (stage 1, cycles, control, oracle): stage, cv_lwlrap, pseudo-positives and their
    precision, recall and lift, truth_test_lwlrap and the gap closed toward the oracle where known."""
    from rfcx_kit.report.markdown import relabel_table

    return relabel_table(Path(run))


def prior(data: str | Path) -> float | None:
    """The prior's test LWLRAP on a synthetic set (one constant ranking of the species by train frequency): what a
    model scores by base rates alone. None without ``truth/``."""
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.method.references import prior_test_lwlrap

    return prior_test_lwlrap(read_competition(Path(data)))


def validate(submission: str | Path | pd.DataFrame, data: str | Path | None = None) -> pd.DataFrame:
    """Check a submission (``rfcx-kit validate``): its header, finite numbers, and with ``data`` exactly that
    data folder's test recordings, each once. A row table (BirdCLEF's, first column ``row_id``) is checked against
    ``data``'s sample_submission.csv. Returns it as a frame; raises DataError naming the first bad row."""
    from rfcx_kit.core.errors import DataError
    from rfcx_kit.data.layouts import read_competition
    from rfcx_kit.data.submission import validate_rows, validate_submission

    frame = submission if isinstance(submission, pd.DataFrame) else None
    first = frame.columns[0] if frame is not None and len(frame.columns) else None
    if frame is None:
        with open(submission, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().split(",", 1)[0].strip().strip('"')
    if first == "row_id":
        if data is None:
            raise DataError("a row table (row_id, ...) is checked against its sample submission: give data")
        return validate_rows(submission, Path(data) / "sample_submission.csv")

    return validate_submission(submission, read_competition(Path(data)).test_ids if data is not None else None)


def submit(file: str | Path, message: str, data: str | Path | None = None, dry_run: bool = False,
           log: str | Path | None = None, **options: Any) -> Any:
    """Validate ``file`` and submit it through the official Kaggle client (``rfcx-kit submit``); ``dry_run`` only
    says what would be sent. ``options``: the rest of ``submit.kaggle_client.submit`` (wait, poll_seconds, ...)."""
    from rfcx_kit.submit.kaggle_client import submit as kaggle_submit

    if log is not None:
        options["log_path"] = Path(log)
    return kaggle_submit(Path(file), message, data_dir=data, dry_run=dry_run, **options)


def report(run: str | Path, log: str | Path | None = None, out: str | Path | None = None,
           name: str | None = None) -> Path:
    """``RUN/report.md`` (or ``out``) with the CV and re-labeling tables and PNG figures (``rfcx-kit report``)."""
    from rfcx_kit.report.markdown import write_report

    return write_report(Path(run), Path(log) if log is not None else None, Path(out) if out is not None else None,
                        name=name)


def ensemble(run: str | Path | None = None, stage: str = "kept", out: str | Path | None = None,
             with_files: Sequence[str | Path] = (), method: str = "mean", data: str | Path | None = None,
             **options: Any) -> pd.DataFrame:
    """A run stage's fold test predictions (and other submissions, ``"FILE[:WEIGHT[:prob|logit]]"``) combined
    into one validated submission; written to ``out`` when given (and recorded in the run's submissions.csv).

    ``options``: the rest of ``submit.ensemble.ensemble_to_file`` (run_weight, to_prob, prior_scaling, ...).

    Returns:
        ``(T, 1 + K)`` recording_id, s0..s{K-1}.
    """
    from rfcx_kit.submit.ensemble import ensemble_to_file

    specs = tuple(str(w) for w in with_files)
    result = ensemble_to_file(out, run, stage, with_specs=specs, method=method, data_dir=data, **options)
    return result.frame.reset_index(drop=True)


class Model:
    """A stage's fold models, loaded once (:func:`load`): predict files, folders or waveforms as ``rfcx-kit
    predict`` does (soft frame-wise prediction, fold mean), with species names, events and Raven tables.

    Attributes:
        species: the run's species table (``.names``, ``.codes``); ``stage``: the stage the models are from.
    """

    def __init__(self, folds: Any, device: Any):
        self.folds, self.device = folds, device
        self.species = folds.species
        self.stage = folds.stage

    def __repr__(self) -> str:
        return f"Model(stage={self.stage!r}, folds={len(self.folds.models)}, species={len(self.species)})"

    def _frames(self, audio: Any, sample_rate: int | None) -> tuple[list[str], list[np.ndarray], list[float]]:
        """``(ids, (n_mels, T) log-mel frames, seconds)`` of files/folders, or of waveforms at ``sample_rate``."""
        from rfcx_kit.core.errors import ConfigError
        from rfcx_kit.data.features import LogMel
        from rfcx_kit.method.apply import list_recordings, read_frames, wave_frames

        cfg = self.folds.cfg
        logmel = LogMel(cfg.features)
        waves = [audio] if isinstance(audio, np.ndarray) else list(audio) if isinstance(audio, (list, tuple)) and \
            audio and isinstance(audio[0], np.ndarray) else None
        if waves is None:
            sources = (Path(audio),) if isinstance(audio, (str, Path)) else tuple(Path(a) for a in audio)
            recordings = list_recordings(sources)
            frames = [read_frames(path, cfg, logmel) for _, path in recordings]
            ids = [rid for rid, _ in recordings]
        else:
            if sample_rate is None:
                raise ConfigError("predict: give sample_rate with waveform arrays")
            ids = [f"wave{i}" for i in range(len(waves))]
            frames = [wave_frames(wave, sample_rate, cfg, logmel) for wave in waves]
        hop_s = cfg.features.hop_length / cfg.features.sample_rate
        return ids, frames, [(f.shape[1] - 1) * hop_s for f in frames]

    def predict(self, audio: Any, sample_rate: int | None = None) -> pd.DataFrame:
        """Clip probabilities: ``audio`` is a file, a folder, a list of them, or waveform arrays (1-D, or
        channels x samples) at ``sample_rate``. Returns ``recording_id`` and one column per species name."""
        from rfcx_kit.method.apply import fold_mean

        ids, frames, _ = self._frames(audio, sample_rate)
        clip, _, _ = fold_mean(self.folds, frames, self.device)
        table = pd.DataFrame(clip, columns=list(self.species.names))
        table.insert(0, "recording_id", ids)
        return table

    def events(self, audio: Any, sample_rate: int | None = None, min_conf: float = 0.5, merge_gap: float = 0.5,
               min_length: float = 0.2) -> pd.DataFrame:
        """Call-level events (``predict --format raven``'s selections): ``recording_id, species, begin_s, end_s,
        confidence``, one row per run of the fold-mean framewise output at or above ``min_conf``."""
        from rfcx_kit.method.apply import chunk_events, fold_mean
        from rfcx_kit.method.events import EventRule

        ids, frames, seconds = self._frames(audio, sample_rate)
        _, _, lines = fold_mean(self.folds, frames, self.device, timelines=True)
        cfg = self.folds.cfg
        found = chunk_events(ids, lines, EventRule(min_conf, merge_gap, min_length),
                             cfg.features.hop_length / cfg.features.sample_rate, seconds)
        rows = found["row"].astype(np.int64)
        names = np.asarray(self.species.names, dtype=object)
        return pd.DataFrame({"recording_id": [ids[i] for i in rows],
                             "species": names[found["species"].astype(np.int64)] if len(rows) else [],
                             "begin_s": found["begin"], "end_s": found["end"], "confidence": found["confidence"]})

    def rows(self, audio: Any, sample_rate: int | None = None, seconds: float = 5.0) -> pd.DataFrame:
        """Scores of fixed-length rows (BirdCLEF's 5-second rows): ``row_id`` = ``<recording>_<end second>`` and one
        column per species code, each row the max of the fold-mean framewise output over its frames."""
        from rfcx_kit.method.apply import fold_mean
        from rfcx_kit.method.events import row_scores

        ids, frames, durations = self._frames(audio, sample_rate)
        _, _, lines = fold_mean(self.folds, frames, self.device, timelines=True)
        cfg = self.folds.cfg
        hop_s = cfg.features.hop_length / cfg.features.sample_rate
        parts = []
        for rid, line, duration in zip(ids, lines, durations):
            scores = row_scores(line, hop_s, duration, seconds)
            ends = [f"{rid}_{(i + 1) * seconds:g}" for i in range(len(scores))]
            parts.append(pd.DataFrame(scores, columns=list(self.species.codes)).assign(row_id=ends))
        table = pd.concat(parts, ignore_index=True)
        return table[["row_id", *self.species.codes]]

    def raven(self, audio: str | Path | Sequence[str | Path], out: str | Path, min_conf: float = 0.5,
              progress: bool = False) -> Path:
        """One Raven selection table per recording under ``out`` (``predict --format raven``: events, names)."""
        from rfcx_kit.method.apply import predict_files
        from rfcx_kit.method.events import EventRule

        sources = (Path(audio),) if isinstance(audio, (str, Path)) else tuple(Path(a) for a in audio)
        predict_files(self.folds, sources, Path(out), device=self.device, progress=progress, fmt="raven",
                      min_conf=min_conf, events=EventRule(min_conf, 0.5, 0.2))
        return Path(out)


def load(run: str | Path | None = None, stage: str = "kept", checkpoints: Sequence[str | Path] = (),
         onnx: str | Path | None = None, device: str = "auto") -> Model:
    """A stage's fold models, loaded once: a run's stage, ``best.pt`` files alone, or an ONNX export folder."""
    from rfcx_kit.method.apply import load_models
    from rfcx_kit.method.train import resolve_device

    if onnx is not None:
        import torch

        from rfcx_kit.method.onnx_models import load_onnx

        return Model(load_onnx(Path(onnx)), torch.device("cpu"))
    dev = resolve_device(device)
    return Model(load_models(Path(run) if run is not None else None, stage, tuple(Path(c) for c in checkpoints), dev),
                 dev)


def predict(audio: str | Path | Sequence[str | Path], run: str | Path | None = None, stage: str = "kept",
            checkpoints: Sequence[str | Path] = (), out: str | Path | None = None, windows: bool = False,
            device: str = "auto", batch: int | None = None, progress: bool = True, rows: float | None = None,
            sample_submission: str | Path | None = None) -> pd.DataFrame:
    """Soft frame-wise prediction of new recordings (files or folders) with a stage's fold models (fold mean).

    Args:
        audio: recordings or folders of them (FLAC, WAV, OGG, MP3, AIFF, npy), any rate and length.
        run, stage: the models of a run's stage; or ``checkpoints``: best.pt files alone.
        out: also write the clip table there (a killed prediction resumes from it).
        windows: return the window table (recording_id, start_s, end_s, species_id, score) instead.
        rows: fixed-length rows of this many seconds instead (BirdCLEF's 5-s rows: ``row_id`` =
            ``<recording>_<end second>``, a column per class code), in ``sample_submission``'s layout when given.
    Returns:
        ``(N, 1 + K)`` recording_id, s0..s{K-1}; the row table; or the window table.
    """
    from rfcx_kit.method.apply import load_models, predict_files
    from rfcx_kit.method.train import resolve_device

    sources = tuple(Path(a) for a in ([audio] if isinstance(audio, (str, Path)) else audio))
    dev = resolve_device(device)
    models = load_models(Path(run) if run is not None else None, stage, tuple(Path(c) for c in checkpoints), dev)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(out) if out is not None else Path(tmp) / "predictions.csv"
        window_path = Path(tmp) / "windows.csv" if windows else None
        predict_files(models, sources, target, window_path, None, dev, batch, progress=progress, rows=rows,
                      template=Path(sample_submission) if sample_submission is not None else None)
        if windows:
            return pd.read_csv(window_path, dtype={"recording_id": str})
        return pd.read_csv(target, dtype={"row_id" if rows is not None else "recording_id": str})


@dataclass
class Score:
    """LWLRAP, precision and recall of scores against 0/1 labels, and the per-species table.

    Attributes:
        per_species: species, positives, AP, lwlrap (each species' contribution), weight.
    """

    lwlrap: float
    precision: float
    recall: float
    recordings: int
    positives: int
    per_species: pd.DataFrame = field(repr=False)
    positive_recordings: int = 0  # recordings with at least one positive label (LWLRAP's rows)
    outside_unit: bool = False  # some score lies outside [0, 1] (logits?): the threshold applies as given


def score(submission: str | Path | pd.DataFrame, truth: str | Path | pd.DataFrame, threshold: float = 0.5) -> Score:
    """Score a submission-format table (recording_id, s0..s{K-1}) against a 0/1 table of the same layout.

    Either may be a path or a DataFrame; every truth recording must be in the submission.
    """
    from rfcx_kit.core.errors import DataError
    from rfcx_kit.core.metrics import (lwlrap, lwlrap_per_class, per_species_ap, precision_recall, read_aligned)
    from rfcx_kit.core.species import Species

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, table in (("submission.csv", submission), ("truth.csv", truth)):
            if isinstance(table, pd.DataFrame):
                path = Path(tmp) / name
                table.to_csv(path, index=False)
                paths.append(path)
            else:
                paths.append(Path(table))
        ids, labels, scores = read_aligned(paths[0], paths[1])
    if not labels.any():
        raise DataError(f"{truth if not isinstance(truth, pd.DataFrame) else 'truth'}: no recording has a positive "
                        "label, so LWLRAP is undefined")
    precision, recall = precision_recall(labels, scores, threshold)
    per_class, weight = lwlrap_per_class(labels, scores)
    table = pd.DataFrame({"species": Species.numbered(labels.shape[1]).columns, "positives": labels.sum(axis=0),
                          "AP": per_species_ap(labels, scores), "lwlrap": per_class, "weight": weight})
    return Score(float(lwlrap(labels, scores)), float(precision), float(recall), len(ids),
                 int(np.asarray(labels).sum()), table, int(np.asarray(labels).any(axis=1).sum()),
                 bool(not ((scores >= 0) & (scores <= 1)).all()))
