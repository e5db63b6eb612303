"""``rfcx-kit predict``: a trained stage's fold models applied to new recordings, with no CSVs and no cache.

    rfcx-kit predict --run RUN [--stage latest] --audio DIR|FILE ... --out preds.csv [--windows preds_windows.csv]
    rfcx-kit predict --checkpoint RUN/stage1/fold0/best.pt ... --audio DIR --out preds.csv

Each recording (FLAC, WAV, OGG, MP3, AIFF at any sample rate, or a precomputed ``(n_mels, T)`` dB ``.npy``, of
any length of at least one window) is decoded, resampled to the run's rate and turned into the run's log-mel
frames exactly as the feature cache stores them (same dtype), normalised with its own whole-recording
statistics, cut into the run's windows (at another length: the same step, as many windows as reach the end)
and predicted by every fold model; the folds' probabilities are averaged, as the stage's ``test.csv``.

Outputs, each written atomically when the run ends:

* ``--out``: ``recording_id,s0..s23``, the clip-level table in submission format;
* ``--windows``: the long table ``recording_id,start_s,end_s,species_id,score`` (one row per window and
  species, or with ``--threshold`` only the rows at or above it: detections).

Resumable: the work goes through ``OUT.parts/`` (a journal of finished chunks, written atomically, and the
models' fingerprint): a killed run skips the files already done when rerun with the same arguments. A file
that cannot be decoded is named in a warning as soon as it is met and again at the end, the others are still
predicted, and the command exits non-zero (the journal is kept, so a rerun does only the failed files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rfcx_kit.core.config import Config, config_from_dict, load_saved_config
from rfcx_kit.core.errors import ConfigError, DataError, StateError
from rfcx_kit.core.io import atomic_path, atomic_write_csv, atomic_write_json
from rfcx_kit.core.species import SPECIES_FILE, Species
from rfcx_kit.data.audio import RECORDING_SUFFIXES as SUFFIXES, load_audio
from rfcx_kit.data.features import LogMel, source_stamp
from rfcx_kit.data.submission import write_submission
from rfcx_kit.method.events import EventRule, row_ids, row_scores
from rfcx_kit.method.predict import Prediction, predict_batch
from rfcx_kit.method.run import Run
from rfcx_kit.method.checkpoint import build_model, input_stats, load_checkpoint
from rfcx_kit.method.context import predict_positions
from rfcx_kit.model.inputs import prefetched, stats_of

log = logging.getLogger(__name__)

JOURNAL = "journal.json"


# -- the models -------------------------------------------------------------------------------------------

@dataclass
class Models:
    """A stage's fold models and the config they were trained with."""

    cfg: Config
    models: list[torch.nn.Module]
    paths: list[Path]
    stage: str | None = None
    species: Species | None = None  # the run's species table (names for Raven tables); None: ids only
    input_mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # onnx: the scaling model.json gives
    onnx: bool = False  # the models are exported graphs (method/onnx_models.py): their scaling is input_mean_std

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The mean and std the model input is scaled to (None: the post's ImageNet constants)."""
        return self.input_mean_std if self.onnx else input_stats(self.cfg)

    @property
    def n_species(self) -> int:
        return int(self.cfg.model.n_species)

    def fingerprint(self) -> str:
        """sha256 over the checkpoint files' bytes: a journal made by other models is never continued."""
        digest = hashlib.sha256()
        for path in self.paths:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


_SAME = ("features", "windows", "model")  # what every checkpoint of one prediction must share


def stage_checkpoints(run_dir: Path, stage: str = "kept") -> tuple[str, list[Path]]:
    """The ``best.pt`` of every fold of a finished stage (``kept``: the stage the loop kept; ``latest``: the
    highest finished cycle, else stage 1)."""
    run = Run(run_dir)
    if not run.config.is_file():
        raise StateError(f"{run.root}: not a run directory (no config.yaml)")
    finished = run.finished_stages()
    name = run.resolve(stage)
    if name is None or name not in finished:
        what = "no finished stage" if name is None else f"stage {name!r} has not finished"
        raise StateError(f"{run.root}: {what}; finished stages: {', '.join(finished) or 'none'}")
    n_folds = run.n_folds()
    paths = [run.checkpoint(name, k, "best") for k in range(n_folds or 0)]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise StateError(f"{run.stage(name)}: fold checkpoints missing ({', '.join(missing[:3]) or 'no folds'})")
    return name, paths


def load_models(run_dir: Path | None = None, stage: str = "kept", checkpoints: tuple[Path, ...] = (),
                device: torch.device = torch.device("cpu")) -> Models:
    """Fold models from a run's stage, or from ``best.pt`` files alone (each carries its config)."""
    if (run_dir is None) == (not checkpoints):
        raise ConfigError("give --run (a run directory) or --checkpoint (best.pt files), not both or neither")
    name = None
    if run_dir is not None:
        name, paths = stage_checkpoints(Path(run_dir), stage)
        cfg = load_saved_config(Run(run_dir).config)
    else:
        paths, cfg = [Path(p) for p in checkpoints], None
    states = []
    for path in paths:
        try:
            state = load_checkpoint(path)
        except FileNotFoundError:
            raise DataError(f"{path}: checkpoint not found") from None
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file, whatever torch says about it
            raise DataError(f"{path}: not a readable rfcx-kit checkpoint ({type(exc).__name__})") from None
        if not isinstance(state, dict) or "model" not in state:
            raise DataError(f"{path}: not an rfcx-kit checkpoint (no 'model' weights)")
        if run_dir is None:
            if not isinstance(state.get("config"), dict):
                raise DataError(f"{path}: carries no config (made before rfcx-kit 0.1's best.pt did); predict with "
                                "--run RUN instead")
            own = config_from_dict(state["config"])
            if cfg is None:
                cfg = own
            else:
                differ = [k for k in _SAME if getattr(own, k) != getattr(cfg, k)]
                if differ:
                    raise DataError(f"{path}: trained with other {', '.join(differ)} settings than {paths[0]}: the "
                                    "checkpoints of one prediction must come from one stage")
        states.append(state["model"])
    assert cfg is not None
    if cfg.model.n_species is None:
        raise DataError(f"{paths[0]}: its config has no model.n_species (made before species tables); predict with "
                        "--run RUN instead")
    models = []
    for path, weights in zip(paths, states):
        model = build_model(cfg, with_weights=False)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise DataError(f"{path}: weights do not fit {cfg.model.backbone!r} ({str(exc).splitlines()[0][:200]})") from None
        models.append(model.to(device).eval())
    return Models(cfg, models, paths, name, run_species(paths[0], cfg.model.n_species))


def run_species(checkpoint: Path, n_species: int) -> Species:
    """The species table of the run a checkpoint belongs to (``RUN/species.csv``, three folders up from
    ``RUN/STAGE/foldK/best.pt``), else ``s0..s{K-1}``."""
    path = Path(checkpoint).resolve().parents[2] / SPECIES_FILE if len(Path(checkpoint).resolve().parents) > 2 else None
    if path is not None and path.is_file():
        species = Species.read(path)
        if len(species) == n_species:
            return species
    return Species.numbered(n_species)


# -- the recordings ---------------------------------------------------------------------------------------

def list_recordings(sources: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """``(recording_id, path)`` of every recording in the given files and folders (recursively, sorted).

    The id of a file in a folder is its path relative to the folder without its suffix (``siteA/rec1``: two sites
    may share file names); of a file given alone, its name without suffix. Two files with one id are refused
    before any work.
    """
    found: list[tuple[str, Path]] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            found.extend((p.relative_to(source).with_suffix("").as_posix(), p) for p in files)
        elif source.is_file():
            if source.suffix.lower() not in SUFFIXES:
                raise DataError(f"{source}: not a recording rfcx-kit reads ({', '.join(SUFFIXES)})")
            found.append((source.stem, source))
        else:
            raise DataError(f"{source}: no such file or folder")
    seen: dict[str, Path] = {}
    out = []
    for rid, path in found:
        if rid in seen:
            if seen[rid].resolve() == path.resolve():
                continue
            raise DataError(f"{path}: recording id {rid!r} is also {seen[rid]}; ids are paths inside the folder "
                            "without suffix, so they must be unique")
        seen[rid] = path
        out.append((rid, path))
    if not out:
        raise DataError(f"{', '.join(map(str, sources))}: no recordings ({', '.join(SUFFIXES)})")
    return out


def check_nyquist(path: Path, fmax: float) -> None:
    """Refuse a recording whose Nyquist frequency is below the model's ``features.fmax``: its top mel bands would be
    empty where the training recordings held sound (stage 1 refuses such recordings for the same reason)."""
    import soundfile as sf

    try:
        rate = sf.info(str(path)).samplerate
    except Exception:  # noqa: BLE001 - an unreadable header is load_audio's to report, with its reason
        return
    if rate / 2 < fmax:
        raise DataError(f"{path}: recorded at {rate:g} Hz; its Nyquist frequency {rate / 2:g} Hz is below the model's "
                        f"features.fmax {fmax:g} Hz, so its top mel bands would be empty where the training "
                        "recordings held sound (predict it with a model trained at a lower features.fmax)")


def wave_frames(wave: np.ndarray, sample_rate: int, cfg: Config, logmel: LogMel) -> np.ndarray:
    """``(n_mels, T)`` float32 dB frames of a wave (``(S,)``, or ``(channels, S)`` mixed to mono) at ``sample_rate``:
    resampled to ``features.sample_rate`` with soxr as decoding does, the log-mel rounded to the cache's dtype."""
    import soxr

    wave = np.asarray(wave, dtype=np.float32)
    wave = wave.mean(axis=0) if wave.ndim == 2 else wave
    if sample_rate != cfg.features.sample_rate:
        wave = soxr.resample(wave, sample_rate, cfg.features.sample_rate, quality="HQ").astype(np.float32)
    with torch.no_grad():
        return logmel(torch.from_numpy(wave)[None])[0].numpy().astype(cfg.features.dtype).astype(np.float32)


def read_frames(path: Path, cfg: Config, logmel: LogMel) -> np.ndarray:
    """``(n_mels, T)`` float32 dB frames of one recording, as the run's feature cache holds them.

    Audio is decoded at its own length (mono, resampled to ``features.sample_rate``); the log-mel is rounded to
    the cache's dtype, so a recording of the run's length gives exactly its cached frames. A ``.npy`` is a
    precomputed spectrogram (the competition's precomputed layout).
    """
    f = cfg.features
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
        if array.ndim != 2 or array.shape[0] != f.n_mels or not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"{path}: expected a ({f.n_mels}, T) float spectrogram in dB, got {array.dtype} "
                            f"{array.shape}")
        frames = array.astype(np.float32)
    else:
        check_nyquist(path, f.fmax)
        wave, _ = load_audio(path, f.sample_rate, None)
        frames = wave_frames(wave, f.sample_rate, cfg, logmel)
    if not np.isfinite(frames).all():
        raise DataError(f"{path}: the spectrogram holds NaN or infinite values")
    return frames  # shorter than one window: its one window is zero-padded after normalisation, as in training


# -- the work ---------------------------------------------------------------------------------------------

@dataclass
class Chunk:
    """Finished recordings: ids, ``clip (B, K)``, and their windows ``(sum N, K)`` with starts and ends in s;
    with events asked for, their call-level events ``(M,)``: recording (index into ids), species, begin and end in
    s, confidence."""

    ids: list[str]
    clip: np.ndarray
    n_windows: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    windows: np.ndarray
    events: dict[str, np.ndarray] | None = None
    stamps: list[str] | None = None  # each file's size:mtime_ns when it was predicted (a changed file is redone)
    rows: np.ndarray | None = None  # (sum R_b, K) fixed-length rows' scores (--rows), each recording's in time order
    n_rows: np.ndarray | None = None  # (B,) rows per recording

    def save(self, path: Path) -> None:
        extra = {f"event_{k}": v for k, v in (self.events or {}).items()}
        if self.stamps is not None:
            extra["stamps"] = np.asarray(self.stamps)
        if self.rows is not None:
            extra.update(rows=self.rows, n_rows=self.n_rows)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=np.asarray(self.ids), clip=self.clip, n_windows=self.n_windows,
                         starts=self.starts, ends=self.ends, windows=self.windows, **extra)

    @classmethod
    def load(cls, path: Path) -> Chunk:
        with np.load(path, allow_pickle=False) as data:
            events = {k[6:]: data[k] for k in data.files if k.startswith("event_")} or None
            stamps = [str(s) for s in data["stamps"]] if "stamps" in data.files else None
            rows = (data["rows"], data["n_rows"]) if "rows" in data.files else (None, None)
            return cls([str(i) for i in data["ids"]], data["clip"], data["n_windows"], data["starts"], data["ends"],
                       data["windows"], events, stamps, *rows)


def chunk_events(ids: list[str], timelines: list[np.ndarray], rule: EventRule, hop_s: float,
                 durations: list[float]) -> dict[str, np.ndarray]:
    """The events of a chunk's recordings from their ``(K, T)`` fold-mean timelines."""
    from rfcx_kit.method.events import detect_events

    gap, min_frames = rule.frames(hop_s)
    parts = []
    for j, (timeline, duration) in enumerate(zip(timelines, durations)):
        ev = detect_events(timeline, rule.min_conf, gap, min_frames)
        begin, end = ev.seconds(hop_s, duration)
        parts.append((np.full(len(begin), j, np.int64), ev.species, begin, end, ev.confidence))
    names = ("row", "species", "begin", "end", "confidence")
    return {n: np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i, n in enumerate(names)}


def fold_mean(models: Models, frames: list[np.ndarray], device: torch.device, timelines: bool = False
              ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Clip probabilities ``(B, K)``, each recording's window scores ``(N_b, K)`` and, with ``timelines``, its
    ``(K, T_b)`` framewise timeline (max over the windows covering a frame), all averaged over folds.

    Recordings of one length are predicted together (one batched forward per fold over all their windows).
    """
    cfg = models.cfg
    mode = cfg.predict.mode
    clip = np.zeros((len(frames), models.n_species), dtype=np.float64)
    windows: list[np.ndarray] = [np.empty(0)] * len(frames)
    lines: list[np.ndarray] = [np.empty(0)] * len(frames)
    mean_std = models.mean_std()
    lengths = np.array([a.shape[1] for a in frames])
    for length in np.unique(lengths):
        index = np.flatnonzero(lengths == length)
        raw = np.stack([frames[i] for i in index])
        stats = torch.from_numpy(stats_of(raw))
        x = torch.from_numpy(raw).to(device)
        positions = predict_positions(cfg, int(length))
        acc_clip, acc_win, acc_line = 0.0, 0.0, 0.0
        for model in models.models:
            pred: Prediction = predict_batch(model, x, stats, positions, cfg.model.normalize, cfg.model.in_channels,
                                             cfg.predict.max_windows, amp=cfg.train.amp,
                                             timelines=mode == "stitched" or timelines, mean_std=mean_std,
                                             pool=1 if timelines else 32)
            acc_clip = acc_clip + pred.clip(mode).astype(np.float64)
            per_window = pred.windows if mode != "clipwise" else 1.0 / (1.0 + np.exp(-pred.clipwise))
            acc_win = acc_win + per_window.astype(np.float64)
            if timelines:
                acc_line = acc_line + pred.framewise.astype(np.float32)  # (B, K, T): pool 1 is the frames
        k = len(models.models)
        clip[index] = acc_clip / k
        for j, i in enumerate(index):
            windows[i] = (acc_win[j] / k).astype(np.float32)
            if timelines:
                lines[i] = acc_line[j, :, : int(length)] / k
    return clip, windows, lines


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def open_journal(out: Path, identity: dict) -> tuple[Path, dict[str, Chunk]]:
    """The journal folder of ``out`` and the chunks already finished in it (refused if made otherwise)."""
    parts = parts_dir(out)
    journal = parts / JOURNAL
    done: dict[str, Chunk] = {}
    if journal.exists():
        saved = json.loads(journal.read_text())
        if saved != identity:
            differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            raise StateError(f"{parts}: an unfinished prediction made with other {', '.join(differ)}; rerun it as it "
                             f"was, or delete {parts} to start over")
        for path in sorted(parts.glob("part-*.npz")):
            chunk = Chunk.load(path)
            for rid in chunk.ids:
                done[rid] = chunk
        log.info("%s: %d recordings already predicted, resuming", parts, len(done))
    else:
        parts.mkdir(parents=True, exist_ok=True)
        atomic_write_json(journal, identity)
    return parts, done


def predict_files(models: Models, sources: tuple[Path, ...], out: Path, windows_out: Path | None = None,
                  threshold: float | None = None, device: torch.device = torch.device("cpu"),
                  batch: int | None = None, progress: bool = True, fmt: str = "csv",
                  min_conf: float = 0.5, events: EventRule | None = None, rows: float | None = None,
                  template: Path | None = None) -> dict:
    """The whole of ``rfcx-kit predict`` once the models are loaded; returns a summary.

    ``fmt``: ``csv`` (``out`` is the clip table) or ``raven`` (``out`` is a folder of selection tables, one per
    recording: with ``events``, one selection per call-level event of the framewise output; else the (window,
    species) cells scoring at least ``min_conf``).

    Raises:
        DataError naming every recording that could not be read, after the others were predicted and written.
    """
    from rfcx_kit.core.progress import progress_bar

    cfg = models.cfg
    recordings = list_recordings(sources)
    identity = {"models": models.fingerprint(), "mode": cfg.predict.mode,
                "windows": json.dumps(cfg.windows.__dict__, sort_keys=True)}
    if events is not None:  # the events are kept in the journal: another rule must not reuse them
        identity["events"] = json.dumps(events.__dict__, sort_keys=True)
    if rows is not None:  # so are the rows: other lengths must not reuse them
        identity["rows"] = float(rows)
    parts, done = open_journal(out, identity)
    stamps = {rid: source_stamp(path) for rid, path in recordings}
    for rid in list(done):  # the journal keys on content: a file changed since it was predicted is predicted again
        chunk = done[rid]
        if chunk.stamps is None or chunk.stamps[chunk.ids.index(rid)] != stamps.get(rid):
            del done[rid]
    todo = [(rid, path) for rid, path in recordings if rid not in done]
    size = batch or cfg.predict.batch_recordings
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    logmel = LogMel(cfg.features)
    failed: dict[str, str] = {}

    def decode(chunk: list[tuple[str, Path]]) -> list[tuple[str, np.ndarray | str]]:
        read: list[tuple[str, np.ndarray | str]] = []
        for rid, path in chunk:
            try:
                read.append((rid, read_frames(path, cfg, logmel)))
            except DataError as exc:
                read.append((rid, str(exc)))
        return read

    number = 1 + max((int(p.stem[5:]) for p in parts.glob("part-*.npz")), default=-1)
    bar = progress_bar(total=len(recordings), initial=len(recordings) - len(todo), unit="rec", desc="predict",
               enabled=progress)
    hop_s = cfg.features.hop_length / cfg.features.sample_rate
    for _, read in prefetched(chunks, decode):
        good = [(rid, a) for rid, a in read if not isinstance(a, str)]
        for rid, message in ((rid, a) for rid, a in read if isinstance(a, str)):
            failed[rid] = message
            log.warning("%s", message)
        if good:
            clip, per_window, lines = fold_mean(models, [a for _, a in good], device,
                                               timelines=events is not None or rows is not None)
            pos = [predict_positions(cfg, a.shape[1]) for _, a in good]
            ids = [rid for rid, _ in good]
            chunk = Chunk(ids, clip.astype(np.float64),
                          np.array([len(p) for p in pos]),
                          np.concatenate([[s * hop_s for s, _ in p] for p in pos]),
                          # frame i is centred at i * hop: the last frame's centre is the recording's end
                          np.concatenate([[min(e, a.shape[1] - 1) * hop_s for _, e in p] for p, (_, a) in zip(pos, good)]),
                          np.concatenate(per_window),
                          chunk_events(ids, lines, events, hop_s, [(a.shape[1] - 1) * hop_s for _, a in good])
                          if events is not None else None, [stamps[rid] for rid in ids])
            if rows is not None:  # soft frame-wise prediction inside each fixed-length row
                parts_rows = [row_scores(line, hop_s, (a.shape[1] - 1) * hop_s, rows) for line, (_, a) in zip(lines, good)]
                chunk.rows, chunk.n_rows = np.concatenate(parts_rows), np.array([len(r) for r in parts_rows])
            chunk.save(parts / f"part-{number:06d}.npz")
            number += 1
            for rid in chunk.ids:
                done[rid] = chunk
        bar.update(len(read))
    bar.close()

    ids = [rid for rid, _ in recordings if rid in done]
    summary = {"recordings": len(recordings), "predicted": len(ids), "failed": sorted(failed),
               "stage": models.stage, "folds": len(models.models), "out": str(out)}
    if ids and fmt == "raven":
        summary["selections"] = write_raven(recordings, done, out, models.species or Species.numbered(models.n_species),
                                            min_conf, cfg.features.fmax)
        summary["events"] = events is not None
        if windows_out is not None:
            write_tables(ids, done, out / "clip.csv", windows_out, threshold, models.n_species)
    elif ids and rows is not None:
        summary["rows"] = write_rows(ids, done, out, models.species or Species.numbered(models.n_species), rows,
                                     template)
    elif ids:
        write_tables(ids, done, out, windows_out, threshold, models.n_species)
    if failed:
        names = "; ".join(failed[r] for r in sorted(failed)[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise DataError(f"{len(failed)} of {len(recordings)} recordings could not be read: {names}{more}. The other "
                        f"{len(ids)} are in {out}; rerunning the command predicts only the failed ones")
    shutil.rmtree(parts, ignore_errors=True)
    return summary


def write_tables(ids: list[str], done: dict[str, Chunk], out: Path, windows_out: Path | None,
                 threshold: float | None, n_species: int) -> None:
    """The clip table (and the long window table) of ``ids`` from the finished chunks, in ``ids`` order."""
    clip_rows, long_parts = [], []
    for chunk in {id(c): c for c in done.values()}.values():
        offsets = np.concatenate([[0], np.cumsum(chunk.n_windows)])
        for j, rid in enumerate(chunk.ids):
            if done.get(rid) is not chunk:
                continue  # predicted again in a later chunk (its file changed), or not asked for
            clip_rows.append((rid, chunk.clip[j]))
            if windows_out is not None:
                lo, hi = offsets[j], offsets[j + 1]
                scores = chunk.windows[lo:hi]  # (N, K)
                n = hi - lo
                long_parts.append(pd.DataFrame({
                    "recording_id": rid,
                    "start_s": np.repeat(np.round(chunk.starts[lo:hi], 4), n_species),
                    "end_s": np.repeat(np.round(chunk.ends[lo:hi], 4), n_species),
                    "species_id": np.tile(np.arange(n_species), n),
                    "score": scores.reshape(-1)}))
    order = {rid: i for i, rid in enumerate(ids)}
    clip_rows = sorted((r for r in clip_rows if r[0] in order), key=lambda r: order[r[0]])
    frame = pd.DataFrame(np.stack([v for _, v in clip_rows]), columns=Species.numbered(n_species).columns)
    frame.insert(0, "recording_id", [rid for rid, _ in clip_rows])
    write_submission(frame, out, None, n_species, check_ids=False)
    if windows_out is not None:
        table = pd.concat(long_parts, ignore_index=True)
        table = table[table["recording_id"].isin(order)]
        table = table.iloc[np.argsort(table["recording_id"].map(order).to_numpy(), kind="stable")]
        if threshold is not None:
            table = table[table["score"] >= threshold]
        atomic_write_csv(windows_out, table.reset_index(drop=True))


def rows_like(table: pd.DataFrame, template: Path) -> pd.DataFrame:
    """``table`` in a sample submission's layout: its class columns in its order (the same classes as the species
    codes), and, where it lists rows, exactly those rows in its order (every one must be predicted).

    Raises:
        DataError naming the classes or rows that do not match, and how many.
    """
    try:
        sample = pd.read_csv(template, dtype={"row_id": str}, nrows=None)
    except Exception as exc:  # noqa: BLE001 - empty, not CSV
        raise DataError(f"{template}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    if not len(sample.columns) or sample.columns[0] != "row_id":
        raise DataError(f"{template}: the first column must be row_id, got {list(sample.columns[:3])}")
    classes, ours = list(sample.columns[1:]), list(table.columns[1:])
    if set(classes) != set(ours):
        missing, extra = sorted(set(classes) - set(ours)), sorted(set(ours) - set(classes))
        raise DataError(f"{template}: its classes are not the model's: {len(missing)} the model lacks "
                        f"({', '.join(missing[:5])}), {len(extra)} it does not list ({', '.join(extra[:5])})")
    table = table[["row_id", *classes]]
    if not len(sample):
        return table
    wanted = sample["row_id"].astype(str)
    index = pd.Index(table["row_id"])
    absent = wanted[~wanted.isin(index)]
    if len(absent):
        raise DataError(f"{template}: {len(absent)} of its {len(wanted)} rows were not predicted (first: "
                        f"{absent.iloc[0]}): give every recording it names to --audio")
    return table.iloc[index.get_indexer(wanted)].reset_index(drop=True)


def write_rows(ids: list[str], done: dict[str, Chunk], out: Path, species: Species, seconds: float,
               template: Path | None = None) -> int:
    """The row table of ``ids`` (``row_id`` = ``<recording>_<end second>``, a column per species code), in ``ids``
    order and each recording's rows in time order (``template``: in a sample submission's layout,
    :func:`rows_like`), checked finite and written atomically; returns its number of rows."""
    parts = []
    for rid in ids:
        chunk = done[rid]
        j = chunk.ids.index(rid)
        offsets = np.concatenate([[0], np.cumsum(chunk.n_rows)])
        scores = chunk.rows[offsets[j]:offsets[j + 1]]
        frame = pd.DataFrame(scores, columns=list(species.codes))
        frame.insert(0, "row_id", row_ids(rid, len(scores), seconds))
        parts.append(frame)
    table = pd.concat(parts, ignore_index=True)
    if template is not None:
        table = rows_like(table, template)
    if not np.isfinite(table.iloc[:, 1:].to_numpy(dtype=np.float64)).all():
        raise DataError(f"{out}: a row holds a score that is not finite; nothing was written")
    atomic_write_csv(out, table)
    return len(table)


def write_raven(recordings: list[tuple[str, Path]], done: dict[str, Chunk], out_dir: Path, species: Species,
                min_conf: float, top_hz: float) -> int:
    """One Raven selection table per predicted recording under ``out_dir`` (``method/selections.py``); returns
    the number of selections written."""
    from rfcx_kit.method.selections import selection_table, table_path, write_selection_table

    from rfcx_kit.method.selections import event_table

    total = 0
    for rid, path in recordings:
        chunk = done.get(rid)
        if chunk is None:
            continue
        j = chunk.ids.index(rid)
        if chunk.events is not None:  # call-level events
            ev = chunk.events
            mine = ev["row"] == j
            table = event_table(ev["begin"][mine], ev["end"][mine], ev["species"][mine].astype(np.int64),
                                ev["confidence"][mine], species, top_hz, path.name)
            write_selection_table(table_path(out_dir, rid), table)
            total += len(table)
            continue
        offsets = np.concatenate([[0], np.cumsum(chunk.n_windows)])
        lo, hi = offsets[j], offsets[j + 1]
        table = selection_table(chunk.starts[lo:hi], chunk.ends[lo:hi], chunk.windows[lo:hi], species, min_conf,
                                top_hz, path.name)
        write_selection_table(table_path(out_dir, rid), table)
        total += len(table)
    return total


# -- the command ------------------------------------------------------------------------------------------
