"""Pre-flight: every check that can refuse a stage-1 run before it writes anything, in one place and one pass.

:func:`preflight` runs them all and names every problem it finds at once (``Problems``); the checks themselves
are here too (the run folder's state, the model settings, the windows, every feature array, each box inside its
recording's frames), with the data layer's (``data/reader.py``: box limits, band) and the trackers'. It also
resolves what the data decides: the features' rate and band for one's own recordings, the number of species.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rfcx_kit.core.config import Config, explicit_keys, validate_config
from rfcx_kit.core.errors import ConfigError, DataError, RfcxError, StateError
from rfcx_kit.core.grid import Grid
from rfcx_kit.data.check import CHECKED_NAME, check_arrays
from rfcx_kit.data.features import FeatureStore
from rfcx_kit.data.reader import Competition, check_band, check_box_band, check_box_limits
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.method.checkpoint import build_model
from rfcx_kit.method.folds import check_backend
from rfcx_kit.method.run import Run, check_inputs, data_fingerprint
from rfcx_kit.method.tracking import check_trackers

log = logging.getLogger(__name__)


def preflight(run_dir: Path, data: Path, cfg: Config, resume: bool, progress: bool = True, backend: str = "loky",
              workers: int = 1, scheduler: str | None = None) -> Competition:
    """Every check that can refuse a stage-1 run and needs no work first, in one pass: where the folds run, the
    label tables and their boxes, the features' rate and band, the species, the windows, the run folder's state,
    the model settings, the trackers and, for precomputed arrays, every array.

    Every problem is collected before anything is refused, so one run of the command names them all; one problem
    is raised as it is, several as one error of the first one's kind (its exit code) with a line each. A check that
    needs what a failed one gives (the species, once the tables fail to read) is left out. Writes nothing; sets
    ``features.sample_rate``/``fmax`` and ``model.n_species`` from the data.
    """
    problems = Problems()
    problems.check(check_backend, backend, workers, scheduler)
    comp = problems.check(read_competition, data, n_mels=cfg.features.n_mels, options=cfg.data)
    species_known = False
    if comp is not None:
        problems.check(check_box_limits, comp)
        if problems.check(resolve_features, cfg, comp, ok=True):  # the rate and band the boxes are checked at
            problems.check(check_box_band, comp, cfg.features.fmin, cfg.features.fmax)
        species_known = problems.check(resolve_species, cfg, comp, ok=True)
        problems.check(check_windows, cfg, comp)
    problems.check(check_run_start, run_dir, cfg, resume)
    if species_known:  # the model's head has the data's species
        problems.check(check_model_settings, cfg)
    problems.check(check_trackers, cfg.train.log_to)
    if comp is not None and not len(comp.tp):
        problems.add(DataError(f"{comp.root / 'train_tp.csv'}: no TP rows; stage 1 trains on the TP boxes"))
    if comp is not None and comp.layout == "npy" and not problems:  # reads every array: only when all else holds
        problems.check(check_store, comp, FeatureStore.open(comp, None, cfg.features), cfg, None, progress)
    run = Run(run_dir)
    if comp is not None and run.inputs().exists():
        problems.check(check_inputs, run.inputs(), {"data": data_fingerprint(comp)}, f"{run_dir}",
                       f"use the data it was made from ({run.data}) or a new --run")
    problems.raise_all("stage 1")
    return comp


class Problems:
    """The problems a pre-flight pass found, in the order the checks ran."""

    def __init__(self) -> None:
        self.found: list[RfcxError] = []

    def __bool__(self) -> bool:
        return bool(self.found)

    def add(self, problem: RfcxError) -> None:
        self.found.append(problem)

    def check(self, check: Callable[..., Any], *args: Any, ok: bool = False, **kwargs: Any) -> Any:
        """Run one check; its refusal is kept, not raised. Returns what it returns (``ok``: whether it passed)."""
        try:
            value = check(*args, **kwargs)
        except RfcxError as problem:
            self.found.append(problem)
            return False if ok else None
        return True if ok else value

    def raise_all(self, what: str) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            first = self.found[0]
            lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.found, start=1))
            raise type(first)(f"{what} cannot start: {len(self.found)} problems (nothing was written)\n{lines}")


def check_model_settings(cfg: Config) -> None:
    """Before anything is written: the backbone is a timm model that gives a feature map, and its starting
    weights (a local file, or the hub's pretrained ones: downloaded now, or found in the cache offline) exist
    and fit it. Each failure is one ConfigError naming the key and the fix."""
    import timm
    import torch

    if cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {cfg.train.device} but no CUDA device is available here (use auto or cpu)")
    if cfg.model.weights is not None and not Path(cfg.model.weights).is_file():
        raise ConfigError(f"model.weights: {cfg.model.weights} is not a file")
    if not timm.is_model(cfg.model.backbone):
        close = timm.list_models(f"*{cfg.model.backbone.split('.')[0][:6]}*")[:5]
        raise ConfigError(f"model.backbone: {cfg.model.backbone!r} is not a timm model"
                          + (f" (close: {', '.join(close)})" if close else ""))
    if "." in cfg.model.backbone:
        from rfcx_kit.model.weights import pretrained_cfg

        pretrained_cfg(cfg.model.backbone)  # a tag-pinned name must name a tag timm has
    model = build_model(cfg).eval()  # resolves and loads the weights: a file that does not fit stops here
    try:
        with torch.no_grad():
            model(torch.zeros(1, cfg.model.in_channels, cfg.features.n_mels, cfg.windows.window))
    except Exception as exc:  # noqa: BLE001 - any failure of a probe window means this backbone cannot be used
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(f"model.backbone: {cfg.model.backbone!r} cannot take a ({cfg.model.in_channels}, "
                          f"{cfg.features.n_mels}, {cfg.windows.window}) window and give a feature map: {text}") from None


def check_run_start(run_dir: Path, cfg: Config, resume: bool) -> None:
    """What can refuse a stage-1 run before any data is read: an existing run without --resume, another config."""
    run = Run(run_dir)
    if run.config.exists() and not resume:
        raise StateError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run")
    if run.config.exists():
        saved = yaml.safe_load(run.config.read_text())
        if saved != cfg.to_dict():
            diff = _config_diff(saved, cfg.to_dict())
            raise StateError(f"{run.config}: --resume with another config than the run's ({diff}); drop the changes "
                             "or use a new --run")


def _config_diff(saved: dict[str, Any], new: dict[str, Any]) -> str:
    out = []
    for section in sorted(set(saved) | set(new)):
        a, b = saved.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{section}: {a!r} -> {b!r}")
    return "; ".join(out[:4]) + (f"; +{len(out) - 4} more" if len(out) > 4 else "")


def check_store(comp: Competition, store: FeatureStore, cfg: Config, cache_dir: Path | None,
                progress: bool = True) -> None:
    """Every feature array of the data: header, dtype, shape, size and finiteness (recorded once checked)."""
    paths = {f"{split}/{rid}": store.path(split, rid) for split in ("train", "test") for rid in comp.ids(split)}
    # The cache records what it verified; a precomputed data folder is never written to, so it is re-checked.
    record = (Path(cache_dir) / CHECKED_NAME) if cache_dir else None
    check_arrays(paths, cfg.features.n_mels, cfg.features.frames, record, progress=progress)
    check_box_frames(comp, store, cfg)


def check_box_frames(comp: Competition, store: FeatureStore, cfg: Config) -> None:
    """Every box ends inside its recording's frames (a box the recording does not reach would train on padding)."""
    grid = Grid.of(cfg, store.frames)
    lengths = pd.Series(store.lengths("train", comp.train_ids), index=comp.train_ids)
    for name, table in (("train_tp.csv", comp.tp), ("train_fp.csv", comp.fp)):
        if not len(table):
            continue
        seconds = (lengths.reindex(table["recording_id"]).to_numpy() - 1) * grid.frame_seconds
        beyond = np.flatnonzero(table["t_max"].to_numpy() > seconds + grid.frame_seconds + 1e-6)
        if len(beyond):
            i = int(beyond[0])
            why = " (features.seconds)" if cfg.features.seconds is not None else ""
            raise DataError(f"{comp.root / name}: row {i + 1} (line {i + 2}), field 't_max': {table['t_max'].iloc[i]:g} "
                            f"is beyond the {seconds[i]:g} s of {table['recording_id'].iloc[i]}'s frames{why}")


def resolve_species(cfg: Config, comp: Competition) -> None:
    """``model.n_species`` from the data's species table (a number given in the config must match it)."""
    k = len(comp.species)
    if cfg.model.n_species is None:
        cfg.model.n_species = k
    elif cfg.model.n_species != k:
        raise ConfigError(f"model.n_species: {cfg.model.n_species}, but {comp.root} has {k} species "
                          "(species.csv or its label tables); leave it unset to take the data's")
    top = max(cfg.relabel.species_thresholds, default=-1)
    if top >= k:
        raise ConfigError(f"relabel.species_thresholds: species {top} is not in 0..{k - 1}")


def resolve_features(cfg: Config, comp: Competition) -> None:
    """``features.sample_rate`` and ``features.fmax`` from one's own recordings (``recordings.csv``), where neither
    the recipe nor ``--set`` gives them: every recording is resampled to the highest rate among them, and the mel
    bands stop at the lowest Nyquist frequency (above it the low-rate recordings hold nothing: ``check_band``).
    Measured against resampling down to the lowest rate (method notes 16: 22,050 and 44,100 Hz recordings, two
    data seeds): test LWLRAP +0.028 and +0.047 for the highest, whose frames are twice as fine. The competition's
    layouts keep the method post's 32 kHz and 16 kHz. Validated again with the rate known."""
    explicit = explicit_keys(cfg)
    if comp.recordings is not None and len(comp.recordings):
        rates = comp.recordings["sample_rate"].to_numpy(np.float64)
        lowest = int(rates.min())
        if "features.sample_rate" not in explicit:
            cfg.features.sample_rate = int(rates.max())
        if "features.fmax" not in explicit:
            cfg.features.fmax = float(min(cfg.features.sample_rate, lowest) / 2)
        taken = [k for k in ("sample_rate", "fmax") if f"features.{k}" not in explicit]
        if taken:
            log.info("features: %s from the data (%d recordings at %g to %g Hz: the highest rate, the lowest "
                     "Nyquist, %s)", " and ".join(f"{k} {getattr(cfg.features, k):g}" for k in taken), len(rates),
                     rates.min(), rates.max(), comp.recordings.index[int(rates.argmin())])
        check_band(comp, cfg.features.fmax)  # an fmax set above a recording's Nyquist: named by recording
    validate_config(cfg)


def check_windows(cfg: Config, comp: Competition) -> None:
    """The training and test windows cover the longest recording, where its frames are known before any feature
    is computed (a fixed length, or ``recordings.csv``'s); else ``prepare_run`` checks once the cache is built."""
    if cfg.features.seconds is not None:
        frames = cfg.features.frames
    elif comp.recordings is not None and len(comp.recordings):
        frames = Grid.of(cfg, 1).frames_of(float(comp.recordings["seconds"].max()))
    else:
        return
    grid = Grid.of(cfg, frames)
    grid.positions, grid.test_positions()
