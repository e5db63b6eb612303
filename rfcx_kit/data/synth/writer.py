"""Render planned recordings and write the data set to disk, one recording at a time.

Layout written under ``out``::

    train_tp.csv, train_fp.csv, sample_submission.csv    the competition's CSVs
    train/{id}.flac, test/{id}.flac                      48 kHz mono 16-bit  (--format flac)
    train/{id}.npy,  test/{id}.npy                       n_mels x frames float32 log-mel  (--format npy; 128 x 3751
                                                         by default, 64 x 1876 for the demo profile)
    truth/                                               hidden ground truth (see truth/README.md)

Audio is rendered per recording in worker processes and saved at once, so audio memory does not grow
with the number of recordings (a worker: ~0.2 GB for FLAC, ~1 GB for npy, most of it torch for the
log-mel); the main process holds only the plan, ~15 KB of metadata per recording (~100 MB at full size). Every recording is drawn from its own random streams keyed by
``(seed, split, index)``, so the bytes do not depend on ``n_jobs`` or on the order of work. Every file is
written atomically; an interrupted run is resumed by running the same command again (finished
recordings are kept, which is safe because they are deterministic). The CSVs are written last.

``--seconds`` below 60 writes shorter FLAC files (readers pad them to 60 s with zeros) and npy arrays of
the recording zero-padded to 60 s, i.e. exactly what the FLAC path gives after padding on the same grid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.grid import HOP_LENGTH, RECORDING_RATE, SAMPLE_RATE
from rfcx_kit.core.io import atomic_path, atomic_save_npy, atomic_write_csv, atomic_write_text
from rfcx_kit.core.species import BOX_COLUMNS, SECONDS, SPECIES_COLUMNS
from rfcx_kit.data.synth.background import add_sound, draw_background
from rfcx_kit.data.synth.calls import band_of, confuser_call, species_call
from rfcx_kit.data.synth.scene import (SPLITS, STREAM_BACKGROUND, STREAM_CALL, Plan, SynthConfig, plan_dataset,
                                  rng_for)

log = logging.getLogger(__name__)

FORMATS = ("flac", "npy")
FLAC_RATE = RECORDING_RATE  # the competition's audio
NPY_RATE = SAMPLE_RATE  # the feature rate: npy recordings are rendered here directly (no resampling)
PEAK = 0.98  # a recording whose peak would pass this is scaled down (never clipped)
GENERATOR_VERSION = 2  # bump when the same config would give other bytes

CALL_COLUMNS = ["split", "recording_id", "species_id", "songtype_id", "kind", "variant", "t_min", "t_max",
                "f_min", "f_max", "snr_db", "labelled"]
# The columns of one planned sound that rendering needs (a plain tuple per sound is cheap to ship to workers).
RENDER_COLUMNS = ["event", "species_id", "songtype_id", "kind", "variant", "t_min", "t_max", "snr_db"]


def render_recording(cfg: SynthConfig, split: str, index: int, events: list[tuple],
                     sr: int) -> tuple[np.ndarray, float]:
    """Render one planned recording at ``sr`` Hz.

    Args:
        events: its sounds as tuples in :data:`RENDER_COLUMNS` order.
    Returns:
        ``(wave (round(seconds * sr),) float32, gain)``; ``gain`` < 1 when the peak had to be scaled to
        :data:`PEAK`.

    Each call is scaled so its mean power over its box, divided by the background's mean power in the
    species band over the same time, equals its ``snr_db`` (in-band SNR).
    """
    split_code = SPLITS.index(split)
    background = draw_background(rng_for(cfg.seed, split_code, index + 1, STREAM_BACKGROUND), cfg.seconds)
    wave = background.render(sr)
    for event, species, songtype, kind, variant, t_min, t_max, snr_db in events:
        rng = rng_for(cfg.seed, split_code, index + 1, STREAM_CALL, int(event))
        if kind == "call":
            spec = species_call(rng, species, songtype, t_max - t_min)
        else:
            spec = confuser_call(rng, species, songtype, variant, t_max - t_min)
        add_sound(wave, sr, spec, t_min, snr_db, background.band_power(*band_of(species), t_min, t_max))
    peak = float(np.abs(wave).max())
    gain = min(1.0, PEAK / peak) if peak > 0 else 1.0
    return (wave * gain).astype(np.float32), gain


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` threads inside the block (workers are one process per core)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def npy_features(wave32: np.ndarray, n_mels: int = 128, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """``(S,)`` float32 at 32 kHz -> ``(n_mels, 1 + 1920000 // hop)`` float32 log-mel of the wave zero-padded
    (or cut) to 60 s: ``(128, 3751)`` on the post's grid, ``(64, 1876)`` on the demo's."""
    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import logmel

    full = np.zeros(int(SECONDS * NPY_RATE), dtype=np.float32)
    n = min(full.size, wave32.size)
    full[:n] = wave32[:n]
    return logmel(full[None], FeatureConfig(n_mels=n_mels, hop_length=hop_length))[0]


def write_recording(cfg: SynthConfig, fmt: str, out: Path, split: str, index: int, recording_id: str,
                    events: list[tuple]) -> dict:
    """Render and save one recording (skipped if its file exists: files are complete and deterministic).

    Returns ``{"recording_id", "seconds" (wall time), "gain", "skipped"}``.
    """
    start = time.perf_counter()
    target = out / split / f"{recording_id}.{fmt}"
    if target.exists():
        return dict(recording_id=recording_id, seconds=0.0, gain=np.nan, skipped=True)
    if fmt == "npy":
        wave, gain = render_recording(cfg, split, index, events, NPY_RATE)
        atomic_save_npy(target, npy_features(wave, cfg.n_mels, cfg.hop_length))
    else:
        import soundfile as sf

        wave, gain = render_recording(cfg, split, index, events, FLAC_RATE)
        pcm = np.round(wave * 32767.0).astype(np.int16)
        with atomic_path(target, suffix=".flac") as tmp:
            sf.write(str(tmp), pcm, FLAC_RATE, subtype="PCM_16", format="FLAC")
    return dict(recording_id=recording_id, seconds=time.perf_counter() - start, gain=gain, skipped=False)


def _write_chunk(cfg: SynthConfig, fmt: str, out: Path, tasks: list[tuple]) -> list[dict]:
    """Worker: write a few recordings, ``tasks`` being ``(split, index, recording_id, events)`` tuples."""
    with _torch_threads(1) if fmt == "npy" else contextlib.nullcontext():
        rows = []
        for task in tasks:
            rows.append(write_recording(cfg, fmt, out, *task))
            _return_freed_memory()
        return rows


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def _return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc only; elsewhere a no-op).

    A recording allocates and frees some hundred MB of arrays of varying sizes; glibc keeps much of it in
    the heap, so a worker's resident memory creeps up (~150 MB over the first recordings, and loky takes
    that growth for a leak and restarts the worker). Trimming after each recording keeps it flat at the
    cost of a few percent of speed.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _params(cfg: SynthConfig, fmt: str) -> dict:
    return dict(generator_version=GENERATOR_VERSION, format=fmt, n_train=cfg.n_train, n_test=cfg.n_test,
                seconds=cfg.seconds, seed=cfg.seed, snr_low=cfg.snr_low, snr_high=cfg.snr_high,
                label_scale=cfg.label_scale, **({} if cfg.tp_share is None else {"tp_share": cfg.tp_share}),
                profile=cfg.profile, prevalence=cfg.prevalence, confusers=cfg.confusers,
                **({"n_mels": cfg.n_mels, "hop_length": cfg.hop_length} if fmt == "npy" else {}))


def _prepare(out: Path, params: dict) -> None:
    """Create ``out`` or accept it for resuming; refuse a folder holding something else."""
    params_path = out / "truth" / "params.json"
    if params_path.is_file():
        saved = json.loads(params_path.read_text())
        if saved != params:
            diff = {k: (saved.get(k), v) for k, v in params.items() if saved.get(k) != v}
            raise DataError(f"{out}: holds a synthetic data set made with other settings {diff} (saved, asked); "
                            "use a new --out folder")
        log.info("%s: resuming (same settings)", out)
        return
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not empty; synth writes into a new or empty folder")
    atomic_write_text(params_path, json.dumps(params, indent=1, sort_keys=True) + "\n")


def _tasks(plan: Plan) -> Iterator[tuple]:
    """``(split, index, recording_id, events)`` for every recording, train first, made as they are consumed."""
    groups = plan.events.groupby(["split", "index"], sort=False)
    keys = set(groups.groups)
    for split in SPLITS:
        for i, rid in enumerate(plan.ids(split)):
            frame = groups.get_group((split, i)) if (split, i) in keys else plan.events.iloc[:0]
            yield split, i, rid, list(frame[RENDER_COLUMNS].itertuples(index=False, name=None))


def _chunks(tasks: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_audio(plan: Plan, fmt: str, out: Path, n_jobs: int = 1, progress: bool = True,
                chunk: int = 4) -> pd.DataFrame:
    """Render every recording of ``plan`` into ``out/{train,test}/`` in parallel; returns per-recording stats."""
    from joblib import Parallel, delayed
    from rfcx_kit.core.progress import progress_bar

    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    total = len(plan.train_ids) + len(plan.test_ids)
    bar = progress_bar(total=total, unit="rec", desc=f"synth {fmt}", enabled=progress)
    rows: list[dict] = []
    # Tasks are made lazily and joblib dispatches only a few ahead, so memory stays flat in N.
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    # absolute: a reused worker process keeps the folder it started in, not the caller's
    for result in parallel(delayed(_write_chunk)(plan.config, fmt, out.resolve(), part) for part in _chunks(_tasks(plan), chunk)):
        rows.extend(result)
        bar.update(len(result))
    bar.close()
    return pd.DataFrame(rows)


def write_tables(plan: Plan, out: Path) -> None:
    """The competition CSVs and ``truth/`` (calls, presence, README), all written atomically."""
    events = plan.events
    calls = events[CALL_COLUMNS].sort_values(["split", "recording_id", "t_min", "species_id", "kind"], kind="stable",
                                             key=lambda c: c.map(SPLITS.index) if c.name == "split" else c)
    for label, name in (("tp", "train_tp.csv"), ("fp", "train_fp.csv")):
        rows = calls[(calls["split"] == "train") & (calls["labelled"] == label)]
        atomic_write_csv(out / name, rows[BOX_COLUMNS])
    test_ids = sorted(plan.test_ids)
    submission = pd.DataFrame(0.5, index=pd.Index(test_ids, name="recording_id"), columns=SPECIES_COLUMNS)
    atomic_write_csv(out / "sample_submission.csv", submission.reset_index())
    atomic_write_csv(out / "truth" / "calls.csv", calls)
    for split in SPLITS:
        presence = pd.DataFrame(plan.presence(split), index=pd.Index(plan.ids(split), name="recording_id"),
                                columns=SPECIES_COLUMNS).sort_index()
        atomic_write_csv(out / "truth" / f"{split}_presence.csv", presence.reset_index())
    atomic_write_text(out / "truth" / "README.md", truth_readme(plan))


def truth_readme(plan: Plan) -> str:
    cfg = plan.config
    e = plan.events
    train = e[e["split"] == "train"]
    n_calls = int((e["kind"] == "call").sum())
    n_labelled = int((train["labelled"] != "none").sum())
    return f"""# truth/: the hidden ground truth of this synthetic data set

Written by `rfcx-kit synth` (seed {cfg.seed}, {cfg.n_train} train and {cfg.n_test} test recordings of
{cfg.seconds:g} s, in-band SNR {cfg.snr_low:g} to {cfg.snr_high:g} dB). **Training never reads this folder**:
it is for scoring and for checking what re-labeling found (reports do read it). The competition files
are one level up.

- `calls.csv`: every planted sound, one row each: `split, recording_id, species_id, songtype_id, kind, variant,
  t_min, t_max, f_min, f_max, snr_db, labelled`.
  `kind` is `call` (the species calling) or `confuser` (a sound in the species' band with another pattern,
  what a template detector mistakes for it; `variant` says which: noise_burst, noise_pulses, mirror).
  `labelled` is `tp` (the row is in train_tp.csv), `fp` (in train_fp.csv) or `none` (no label: what
  re-labeling can discover). Boxes are seconds and Hz, exactly the rows of the label files.
  `snr_db` is the call's mean power over its box relative to the background's mean power in the species
  band over the same time.
- `train_presence.csv`, `test_presence.csv`: `recording_id,s0..s23`, 1 where the species truly calls
  (has at least one `call` row), 0 elsewhere. Confusers do not count. Submission format, so
  `rfcx-kit score sub.csv --truth truth/test_presence.csv` scores a submission against the truth.
- `params.json`: the settings; the same settings always give byte-identical files.

Not in `calls.csv`: the background (coloured noise, insect lines and choruses, rain, and faint sounds of
other, unnamed species), which never counts as a call.

This set: {n_calls} species calls and {int((e['kind'] == 'confuser').sum())} confusers;
{int((train['labelled'] == 'tp').sum())} TP rows and {int((train['labelled'] == 'fp').sum())} FP rows, i.e.
{n_labelled} labelled sounds of {len(train)} planted in train ({n_labelled / max(len(train), 1):.1%}).
"""


def write_dataset(cfg: SynthConfig, out: str | Path, fmt: str = "flac", n_jobs: int = 1,
                  progress: bool = True) -> tuple[Plan, pd.DataFrame]:
    """Plan and write a whole synthetic data set to ``out``; returns the plan and per-recording stats."""
    if fmt not in FORMATS:
        raise DataError(f"synth: unknown format {fmt!r} (flac or npy)")
    cfg.validate()
    out = Path(out)
    _prepare(out, _params(cfg, fmt))
    plan = plan_dataset(cfg)
    stats = write_audio(plan, fmt, out, n_jobs=n_jobs, progress=progress)
    write_tables(plan, out)
    return plan, stats
