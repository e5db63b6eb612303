"""What every fold of a run shares, loaded once from the run folder: config, data, feature store, folds, labels,
windows, statistics (:class:`RunContext`), and the windows a model of a config predicts with."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rfcx_kit.core.config import Config, load_saved_config
from rfcx_kit.core.grid import Grid, window_mask
from rfcx_kit.core.species import Species
from rfcx_kit.data.features import FeatureStore, resolve_store
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.data.reader import Competition
from rfcx_kit.method.run import Run, data_fingerprint


@dataclass
class RunContext:
    """What every fold of a run shares, loaded from the run directory."""

    run_dir: Path
    cfg: Config
    comp: Competition
    store: FeatureStore
    folds: pd.DataFrame
    labels: FramewiseLabels
    positions: list[list[int]]
    test_positions: list[list[int]]
    train_stats: np.ndarray
    test_stats: np.ndarray
    window_labels: np.ndarray  # (R, N, K) int8 original labels on the train windows
    tp_truth: np.ndarray  # (R, K) 0/1 TP presence
    grid: Grid  # frames T (the longest recording), seconds per frame, Nyquist, windows
    train_frames: np.ndarray  # (R_train,) each recording's own frames (<= T)
    test_frames: np.ndarray  # (R_test,)

    @functools.cached_property
    def scored(self) -> np.ndarray:
        """``(R,)`` bool: the train recordings CV scores (those with labels; ``Competition.labelled``)."""
        return self.comp.labelled()

    @property
    def species(self) -> Species:
        return self.comp.species

    @property
    def n_species(self) -> int:
        return len(self.comp.species)

    @property
    def window_valid(self) -> np.ndarray:
        """``(R_train, N)`` bool: the training windows each train recording has (False: past its end)."""
        return window_mask(self.train_frames, self.positions, self.grid.frames)

    @property
    def test_window_valid(self) -> np.ndarray:
        """``(R_test, N_test)`` bool: the test windows each test recording has."""
        return window_mask(self.test_frames, self.test_positions, self.grid.frames)

    @property
    def run(self) -> Run:
        return Run(self.run_dir)

    def seconds(self, split: str = "train") -> pd.Series:
        """Each recording's length in seconds (its last frame's centre), indexed by recording id."""
        frames, ids = (self.train_frames, self.train_ids) if split == "train" else (self.test_frames, self.comp.test_ids)
        return pd.Series((frames - 1) * self.grid.frame_seconds, index=ids)

    @property
    def train_ids(self) -> list[str]:
        return self.comp.train_ids


def load_context(run_dir: str | Path) -> RunContext:
    """Open a run directory written by ``rfcx-kit stage1`` (config, data, folds, statistics)."""
    from rfcx_kit.core.errors import StateError

    run = Run(run_dir)
    if not run.config.is_file():
        raise StateError(f"{run.root}: not a run directory (no config.yaml)")
    cfg = load_saved_config(run.config)
    try:
        data = yaml.safe_load(run.data.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StateError(f"{run.data}: not readable ({' '.join(str(exc).split())[:200]}); it names the run's data "
                         "folder (rerun stage 1 into a new --run)") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), str):
        raise StateError(f"{run.data}: must be a mapping with the run's data folder under 'data'")
    comp, store, _ = resolve_store(data["data"], data.get("cache"), cfg.features, build=False,
                                 options=cfg.data)
    try:
        folds = pd.read_csv(run.folds, dtype={"recording_id": str})
        folds = folds.set_index("recording_id").loc[comp.train_ids].reset_index()
        if "fold" not in folds.columns or folds["fold"].isna().any():
            raise KeyError("fold")
    except (OSError, KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise StateError(f"{run.folds}: not the run's folds (recording_id,fold for every train recording: "
                         f"{type(exc).__name__} {' '.join(str(exc).split())[:120]})") from None
    grid = Grid.of(cfg, store.frames)
    train_frames, test_frames = store.lengths("train", comp.train_ids), store.lengths("test", comp.test_ids)
    labels = FramewiseLabels(comp.boxes(), comp.train_ids, grid.frames, grid.sample_rate, grid.hop_length,
                             len(comp.species), train_frames)
    if cfg.model.n_species is not None and cfg.model.n_species != len(comp.species):
        raise StateError(f"{run.config}: model.n_species is {cfg.model.n_species}, but {comp.root} has "
                         f"{len(comp.species)} species")
    positions = grid.positions
    return RunContext(run.root, cfg, comp, store, folds, labels, positions, grid.test_positions(),
                      np.load(run.stats("train")), np.load(run.stats("test")),
                      labels.windows(positions), comp.tp_presence(), grid, train_frames, test_frames)


def window_step(cfg: Config) -> int:
    """Frames between the starts of the windows a model of ``cfg`` predicts with (test layout; for ``n_windows``
    layouts without ``features.seconds``, at one window's length)."""
    from rfcx_kit.core.grid import step_of

    layout = predict_positions(cfg, cfg.features.frames or cfg.windows.window)
    return step_of(layout, cfg.windows.window)


def predict_positions(cfg: Config, frames: int | None = None) -> list[list[int]]:
    """The windows a model of ``cfg`` predicts a recording of ``frames`` frames with (None: ``features.seconds``'s).

    The run's test layout (``windows.test_cover`` / ``test_n_windows`` when set, else the training one) at
    its length; at another length (new recordings of any duration, ``rfcx-kit predict``) the same step between
    windows, as many windows as reach the end (``core/grid.py``).
    """
    run_frames = cfg.features.frames or frames
    if run_frames is None:
        raise ValueError("predict_positions: give the recording's frames (features.seconds is null)")
    return Grid.of(cfg, run_frames).test_positions(frames)


def check_same_data(ctx: RunContext, what: str) -> None:
    """Refuse to train ``what`` (a cycle, the control, the oracle) when the run's data changed since stage 1: its
    CV would be on other labels than stage 1's, and the kept stage would compare the two."""
    from rfcx_kit.core.errors import StateError

    path = ctx.run.inputs()
    if not path.exists():
        return  # a run from before the data fingerprint was recorded
    recorded = json.loads(path.read_text()).get("data")
    now = json.loads(json.dumps(data_fingerprint(ctx.comp)))
    if recorded is not None and recorded != now:
        differ = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
        raise StateError(f"{what}: {ctx.comp.root} changed since stage 1 ({', '.join(differ)} differ): its CV would "
                         "score other labels than stage 1's; run stage 1 on it into a new --run")
