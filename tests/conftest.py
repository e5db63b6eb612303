"""Shared test helpers: where the real competition CSVs live, and a tiny competition folder factory.

* ``SHARED``: ``../shared`` next to the repository (holds ``data/rfcx/train_tp.csv`` etc.).
* ``requires_shared``: ``@requires_shared`` skips a test, with a reason, when ``../shared`` is absent.
  Import both with ``from conftest import SHARED, requires_shared``.
* ``make_competition`` (fixture): ``make_competition(tmp_path, n_train=4, n_test=2, seconds=2.0)`` writes a
  competition folder in Kaggle's layout and returns its path (see :func:`write_competition`).
* The ``slow`` marker: every test that trains a model, runs a subprocess, a server or a whole command chain
  (:data:`SLOW_MODULES`, :data:`SLOW_FIXTURES`, or ``@pytest.mark.slow`` on the test). ``make test-fast``
  (``pytest -m "not slow"``) leaves them out: the loop to run before every commit; CI runs everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Tests sit in folders that mirror the package (tests/core, tests/data, ...); the helpers here and in tiny.py
# are imported by name (`from conftest import SHARED`, `from tiny import make_tiny`) from any of them.
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED = Path(__file__).resolve().parents[2] / "shared"
RFCX_DATA = SHARED / "data" / "rfcx"

requires_shared = pytest.mark.skipif(
    not (RFCX_DATA / "train_tp.csv").is_file(),
    reason="../shared (the real RFCX CSVs) is absent: this test needs the real competition files",
)

# Modules whose tests train (or share a module fixture that trains), run subprocesses or the whole command chain.
SLOW_MODULES = {
    "method/test_apply.py", "method/test_cycle.py", "method/test_dask.py", "method/test_export.py",
    "method/test_loop_levers.py", "method/test_own_labels_rules.py", "method/test_resume.py",
    "method/test_select.py", "method/test_stage1.py", "method/test_tracking.py", "model/test_pretrained.py",
    "report/test_study_report.py", "test_api_docs.py", "test_checkpoint_args.py", "test_demo.py",
    "test_field_recordings.py", "test_install.py", "test_api_model.py", "test_own_data.py", "test_readme_path.py", "test_study.py",
    "core/test_numerics.py", "test_birdclef.py", "test_kaggle_package.py",
}
# Fixtures that train or write a data set big enough to take seconds: a test using one is slow wherever it is.
SLOW_FIXTURES = {"world", "main_set", "truth", "small_sets", "tiny", "server", "cli"}
# Single tests of seconds in otherwise fast modules (measured with `pytest -m "not slow" --durations=25`).
SLOW_TESTS = {
    "data/test_features.py::test_features_command_end_to_end_on_60s_recordings",
    "data/test_features.py::test_killed_cache_build_resumes_without_redoing_finished_entries",
    "data/test_features.py::test_logmel_agrees_with_librosa_within_a_thousandth_db",
    "data/test_window.py::test_windows_command_prints_the_post_list",
    "data/test_framewise.py::test_windows_equal_the_grid_reference_on_the_real_boxes",
    "data/test_synth.py::test_cli_writes_preview_png_and_reports",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests (see the module docstring)."""
    here = Path(__file__).resolve().parent
    for item in items:
        where = item.path.resolve().relative_to(here).as_posix() if item.path.resolve().is_relative_to(here) else ""
        test = f"{where}::{item.name.split('[')[0]}"
        if where in SLOW_MODULES or test in SLOW_TESTS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


BOX_COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]


def write_competition(
    root: Path,
    n_train: int = 4,
    n_test: int = 2,
    seconds: float = 2.0,
    sample_rate: int = 48000,
    layout: str = "flac",
    frames: int = 3751,
    seed: int = 0,
) -> Path:
    """Write a tiny, valid competition folder under ``root / "competition"`` and return that folder.

    Contents (deterministic for a given ``seed``):

    * train recordings ``train000``, ``train001``, ...; test recordings ``test000``, ...
    * ``train_tp.csv``: one TP box per train recording, species ``i % 24``, over the middle half of the
      clip, 1-3 kHz; ``train_fp.csv``: one FP box per train recording, species ``(i + 1) % 24``, over the
      first quarter, 4-6 kHz. Every train recording is therefore in both tables.
    * ``sample_submission.csv``: the test ids, every value 0.5.
    * ``layout="flac"``: ``train/*.flac`` and ``test/*.flac``, mono, ``sample_rate`` Hz, ``seconds`` long,
      low noise plus a 2 kHz tone inside the TP box (16-bit FLAC, as the competition's files);
      ``layout="npy"``: ``train/*.npy`` and ``test/*.npy``, float32 arrays of shape ``(128, frames)``
      (the precomputed-spectrogram layout), random values around -40 dB.
    """
    rng = np.random.default_rng(seed)
    root = Path(root) / "competition"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    train_ids = [f"train{i:03d}" for i in range(n_train)]
    test_ids = [f"test{i:03d}" for i in range(n_test)]
    tp = pd.DataFrame(
        {
            "recording_id": train_ids,
            "species_id": [i % 24 for i in range(n_train)],
            "songtype_id": 1,
            "t_min": seconds * 0.25,
            "f_min": 1000.0,
            "t_max": seconds * 0.75,
            "f_max": 3000.0,
        }
    )[BOX_COLUMNS]
    fp = pd.DataFrame(
        {
            "recording_id": train_ids,
            "species_id": [(i + 1) % 24 for i in range(n_train)],
            "songtype_id": 1,
            "t_min": 0.0,
            "f_min": 4000.0,
            "t_max": seconds * 0.25,
            "f_max": 6000.0,
        }
    )[BOX_COLUMNS]
    tp.to_csv(root / "train_tp.csv", index=False)
    fp.to_csv(root / "train_fp.csv", index=False)
    sub = pd.DataFrame({"recording_id": test_ids, **{f"s{k}": 0.5 for k in range(24)}})
    sub.to_csv(root / "sample_submission.csv", index=False)

    for split, ids in (("train", train_ids), ("test", test_ids)):
        for rid in ids:
            if layout == "npy":
                array = (-40.0 + 10.0 * rng.standard_normal((128, frames))).astype(np.float32)
                np.save(root / split / f"{rid}.npy", array)
            elif layout == "flac":
                import soundfile as sf

                n = int(round(seconds * sample_rate))
                t = np.arange(n) / sample_rate
                wave = 0.01 * rng.standard_normal(n)
                inside = (t >= seconds * 0.25) & (t <= seconds * 0.75)
                wave[inside] += 0.3 * np.sin(2 * np.pi * 2000.0 * t[inside])
                sf.write(root / split / f"{rid}.flac", wave.astype(np.float32), sample_rate)
            else:
                raise ValueError(f"layout must be 'flac' or 'npy', got {layout!r}")
    return root


@pytest.fixture
def make_competition():
    """The :func:`write_competition` factory: ``root = make_competition(tmp_path, n_train=3, seconds=1.0)``."""
    return write_competition
