"""Log-mel features with torch, and the memory-mapped feature cache.

Parameters (the competition's common front end, as in the method post): 32 kHz, n_fft 2048, hop 512, 128 slaney mels over 20-16000 Hz, power 2,
power -> dB with ref 1, amin 1e-10, top_db 80 (per recording). A 60 s recording gives exactly 128 x 3751.
The result equals librosa's ``melspectrogram`` + ``power_to_db`` (tested to 1e-3 dB), without librosa.

Cache layout (``rfcx-kit features --data DIR``)::

    CACHE/features.yaml        the parameters it was built with (a mismatch is refused)
    CACHE/manifest.csv         split,recording_id,path,frames,status
    CACHE/{train,test}/{recording_id}.npy   (128, T) float16, opened with mmap_mode="r"

Each entry is written to a temporary file and renamed, so an entry that exists is complete: a killed
build resumes by skipping finished files.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from rfcx_kit.data.audio import load_audio
from rfcx_kit.core.config import DataConfig, FeatureConfig
from rfcx_kit.core.errors import DataError
from rfcx_kit.core.lock import folder_lock
from rfcx_kit.core.io import atomic_save_npy, atomic_write_csv, atomic_write_text
from rfcx_kit.data.check import read_header
from rfcx_kit.data.reader import Competition
from rfcx_kit.data.layouts import read_competition

_DB_PER_NEPER = 10.0 / math.log(10.0)  # 10 log10(x) = (10 / ln 10) ln(x)

log = logging.getLogger(__name__)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    freq = np.asanyarray(freq, dtype=np.float64)
    mels = freq / (200.0 / 3)
    log_region = freq >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    freqs = mels * (200.0 / 3)
    return np.where(mels >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), freqs)


# Kept over librosa.filters.mel (equal to 1 float32 ulp; torchaudio is not installed): librosa at run time means
# 206 MiB that only it needs (numba + llvmlite) and 0.28 s for import + first call, and its filters would change
# 39 of 480,128 float16 cache cells of a 60 s recording. Measured in benchmarks/handwritten.py.
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` slaney-normalised triangular filters, as ``librosa.filters.mel``."""
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def mel_bin_of(freq_hz: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Fractional mel-bin index of a frequency (for drawing boxes on spectrograms / band crops)."""
    lo, hi = _hz_to_mel(cfg.fmin), _hz_to_mel(cfg.fmax)
    return (_hz_to_mel(np.clip(freq_hz, cfg.fmin, cfg.fmax)) - lo) / (hi - lo) * (cfg.n_mels + 1) - 0.5


class LogMel(torch.nn.Module):
    """``(B, S)`` waves at ``cfg.sample_rate`` -> ``(B, n_mels, 1 + S // hop)`` dB."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.cfg = cfg
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
        self.register_buffer("filters", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        spec = torch.stft(
            waves.float(),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.n_fft,
            window=self.window,
            center=True,
            pad_mode="constant",  # librosa >= 0.10 pads with zeros
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        if cfg.power != 2.0:
            power = power.pow(cfg.power / 2.0)
        mel = torch.matmul(self.filters, power)  # (B, n_mels, T)
        # 10 log10 as log times a constant: torch's log10 goes through MKL's vector maths, whose last bit
        # differs between CPUs even under MKL_CBWR; log is ATen's own (core/numerics.py)
        db = _DB_PER_NEPER * torch.log(torch.clamp(mel, min=cfg.amin)) - 10.0 * math.log10(max(cfg.amin, cfg.ref))
        if cfg.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)  # per recording, as power_to_db on one array
            db = torch.maximum(db, peak - cfg.top_db)
        return db


def logmel(waves: np.ndarray | torch.Tensor, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log-mel of a batch of waves: ``(B, S)`` float32 at ``cfg.sample_rate`` -> ``(B, 128, T)`` float32 dB."""
    tensor = torch.as_tensor(np.asarray(waves, dtype=np.float32) if not torch.is_tensor(waves) else waves)
    if tensor.ndim == 1:
        tensor = tensor[None]
    return LogMel(cfg)(tensor).numpy()


# ---------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------


def _params(cfg: FeatureConfig) -> dict:
    params = asdict(cfg)
    for key in ("batch_size", "n_jobs"):  # how, not what: they do not change the features
        params.pop(key)
    if params.get("max_seconds") is None:  # came later: caches built before it keep their parameters
        params.pop("max_seconds", None)
    return params


def source_stamp(path: str | Path) -> str:
    """What identifies a recording's content for the cache without reading it: ``size:mtime_ns``. A file replaced
    under the same name (another recorder's card copied over) gets another stamp, and its entry is recomputed."""
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def stamp_path(target: str | Path) -> Path:
    """The sidecar beside a cache entry that records its source's stamp (``rec1.npy`` -> ``rec1.npy.src``)."""
    return Path(f"{target}.src")


def _compute_chunk(items: list[tuple[str, str, str, str]], cfg: FeatureConfig) -> list[dict]:
    """Worker: decode a chunk of recordings, one batched STFT, save each entry atomically.

    Args:
        items: ``(split, recording_id, source_path, target_path)`` tuples.
    Returns:
        manifest rows.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process per core: threads inside would only fight each other
    try:  # with n_jobs=1 joblib runs this in the caller's process: give its thread count back
        waves, statuses = [], []
        for _, _, source, _ in items:
            wave, status = load_audio(source, cfg.sample_rate, cfg.seconds)
            limit = int(round(cfg.max_seconds * cfg.sample_rate)) if cfg.max_seconds else None
            if limit is not None and len(wave) > limit:
                status = f"cut from {len(wave) / cfg.sample_rate:.2f} s (features.max_seconds)"
                wave = wave[:limit]
            waves.append(wave)
            statuses.append(status)
        if len({len(w) for w in waves}) == 1:
            features = list(LogMel(cfg)(torch.from_numpy(np.stack(waves))).numpy().astype(cfg.dtype))
        else:  # recordings at their own lengths: one STFT each
            features = [LogMel(cfg)(torch.from_numpy(w[None]))[0].numpy().astype(cfg.dtype) for w in waves]
    finally:
        torch.set_num_threads(threads)
    rows = []
    for (split, rid, source, target), array, status in zip(items, features, statuses):
        Path(target).parent.mkdir(parents=True, exist_ok=True)  # ids may be paths (siteA/rec1)
        atomic_save_npy(target, array)
        atomic_write_text(stamp_path(target), source_stamp(source) + "\n")
        rows.append(dict(split=split, recording_id=rid, path=f"{split}/{rid}.npy",
                         frames=array.shape[-1], status=status))
    return rows


def build_cache(
    comp: Competition,
    cache_dir: str | Path,
    cfg: FeatureConfig = FeatureConfig(),
    splits: tuple[str, ...] = ("train", "test"),
    n_jobs: int | None = None,
    progress: bool = True,
) -> Path:
    """Compute the log-mel cache of a competition folder in the audio layout (resumable, parallel).

    Returns the cache folder. Entries already present are kept (they are complete by construction).
    """
    if comp.layout == "npy":
        raise DataError(f"{comp.root}: precomputed spectrograms need no cache; read them with FeatureStore")
    cache = Path(cache_dir)
    params_path = cache / "features.yaml"
    params = _params(cfg)
    if params_path.exists():  # refused before anything is written or locked
        saved = yaml.safe_load(params_path.read_text())
        if saved != params:
            diff = {k: (saved.get(k), v) for k, v in params.items() if saved.get(k) != v}
            raise DataError(f"{cache}: built with other feature parameters {diff} (saved, asked); use another --cache")
    with folder_lock(cache, "features"):
        if not params_path.exists():
            atomic_write_text(params_path, yaml.safe_dump(params, sort_keys=True))
        return _build_locked(comp, cache, cfg, splits, n_jobs, progress)


def _build_locked(comp: Competition, cache: Path, cfg: FeatureConfig, splits: tuple[str, ...], n_jobs: int | None,
                  progress: bool) -> Path:
    from joblib import Parallel, delayed
    from rfcx_kit.core.progress import progress_bar

    todo, rows = [], []
    for split in splits:
        for rid in comp.ids(split):
            target = cache / split / f"{rid}.npy"
            source = Path(comp.path(split, rid)).resolve()
            stamp, sidecar = source_stamp(source), stamp_path(target)
            if target.exists() and sidecar.exists() and sidecar.read_text().strip() != stamp:
                log.info("%s: changed since its cache entry was made; computing it again", source)
                target.unlink()
            if target.exists():
                if not sidecar.exists():  # an entry made before stamps were kept: adopted as it is
                    atomic_write_text(sidecar, stamp + "\n")
                rows.append(dict(split=split, recording_id=rid, path=f"{split}/{rid}.npy",
                             frames=read_header(target)[1][-1], status="cached"))
            else:
                # absolute: a reused worker process keeps the folder it started in, not the caller's
                todo.append((split, rid, str(Path(comp.path(split, rid)).resolve()), str(target.resolve())))
    log.info("feature cache %s: %d entries present, %d to compute", cache, len(rows), len(todo))
    if todo:
        size = max(1, cfg.batch_size)
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        jobs = n_jobs if n_jobs is not None else cfg.n_jobs
        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
        bar = progress_bar(total=len(todo), unit="rec", desc="log-mel", enabled=progress)
        for chunk_rows in parallel(delayed(_compute_chunk)(chunk, cfg) for chunk in chunks):
            rows.extend(chunk_rows)
            bar.update(len(chunk_rows))
        bar.close()
    manifest = pd.DataFrame(rows)
    old_path = cache / "manifest.csv"
    if old_path.exists():  # keep the rows of splits built earlier (e.g. --split train, then --split test)
        old = pd.read_csv(old_path, dtype={"recording_id": str})
        manifest = pd.concat([old[~old["split"].isin(splits)], manifest], ignore_index=True)
    manifest = manifest.sort_values(["split", "recording_id"], kind="stable")
    atomic_write_csv(cache / "manifest.csv", manifest)
    changed = manifest[~manifest["status"].isin(["ok", "cached"])]
    asked = changed["status"].astype(str).str.endswith("(features.max_seconds)")
    if asked.any():  # asked for: one line, not one per clip
        log.info("%d recording(s) cut to features.max_seconds = %g s", int(asked.sum()), cfg.max_seconds)
        changed = changed[~asked.to_numpy()]
    for row in changed.itertuples():
        log.warning("%s/%s: %s", row.split, row.recording_id, row.status)
    return cache


class FeatureStore:
    """Read log-mel arrays of one data set, memory-mapped, from a cache or a precomputed layout.

    ``store.batch("train", ids)`` -> ``(B, F, T)`` float32. Only the rows asked for are read. ``frames`` (``T``)
    is the run's array width: ``features.seconds``'s frames, or (each recording at its own length) the longest
    recording's; :meth:`lengths` gives each recording's own.
    """

    def __init__(self, roots: dict[str, Path], frames: int):
        self.roots = roots
        self.frames = frames

    @classmethod
    def open(cls, comp: Competition, cache_dir: str | Path | None = None, cfg: FeatureConfig = FeatureConfig()) -> FeatureStore:
        if comp.layout == "npy":
            roots = {split: comp.root / split for split in ("train", "test")}
        else:
            if cache_dir is None:
                raise DataError(f"{comp.root}: audio layout needs a feature cache (run `rfcx-kit features`)")
            roots = {split: Path(cache_dir) / split for split in ("train", "test")}
        store = cls(roots, cfg.frames or 0)
        if cfg.frames is None:  # each recording at its own length: the arrays are as wide as the longest
            widths = [store.lengths(split, comp.ids(split)) for split in ("train", "test") if comp.ids(split)]
            store.frames = int(max(int(w.max()) for w in widths)) if widths else 1
        return store

    def path(self, split: str, recording_id: str) -> Path:
        return self.roots[split] / f"{recording_id}.npy"

    def lengths(self, split: str, recording_ids: list[str]) -> np.ndarray:
        """``(R,)`` int64 frames of each recording as stored (its own length), read from the files' headers,
        at most ``frames`` (a longer precomputed array is cut)."""
        out = np.fromiter((read_header(self.path(split, rid))[1][-1] for rid in recording_ids), dtype=np.int64,
                          count=len(recording_ids))
        return np.minimum(out, self.frames) if self.frames else out

    def load(self, split: str, recording_id: str) -> np.ndarray:
        """``(F, T_r)`` memory-mapped array at the recording's own length."""
        path = self.path(split, recording_id)
        try:
            return np.load(path, mmap_mode="r")
        except FileNotFoundError as exc:
            raise DataError(f"{path}: feature file missing (build the cache with `rfcx-kit features`)") from exc
        except ValueError as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from exc

    def batch(self, split: str, recording_ids: list[str], frames: int | None = None) -> np.ndarray:
        """``(B, F, frames)`` float32 (default ``self.frames``): shorter arrays zero-padded, longer ones cut."""
        width = frames or self.frames
        first = self.load(split, recording_ids[0])
        out = np.zeros((len(recording_ids), first.shape[0], width), dtype=np.float32)
        for i, rid in enumerate(recording_ids):
            array = first if i == 0 else self.load(split, rid)
            n = min(width, array.shape[-1])
            out[i, :, :n] = array[:, :n]
        return out


def resolve_store(data: str | Path, cache: str | Path | None, cfg: FeatureConfig, build: bool = True,
                  n_jobs: int | None = None, progress: bool = True,
                  options: DataConfig | None = None) -> tuple[Competition, FeatureStore, Path | None]:
    """Validate ``data`` and return its feature store, building (or completing) the cache if needed.

    ``options``: the config's ``data`` section (how the folder is read; None: its defaults)."""
    comp = read_competition(data, n_mels=cfg.n_mels, options=options)
    cache_dir = None
    if comp.layout != "npy":
        cache_dir = Path(cache) if cache else default_cache_dir(comp.root)
        if build:
            build_cache(comp, cache_dir, cfg, n_jobs=n_jobs, progress=progress)
    return comp, FeatureStore.open(comp, cache_dir, cfg), cache_dir


def default_cache_dir(root: Path) -> Path:
    return Path(root) / "features_cache"
