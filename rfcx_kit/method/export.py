"""``rfcx-kit export``: a stage's fold models as ONNX graphs, checked against torch with onnxruntime.

    rfcx-kit export --run RUN [--stage latest] [--fold K] --format onnx --out DIR
    rfcx-kit export --checkpoint best.pt ... --format onnx --out DIR

Writes ``DIR/fold{k}.onnx`` (one per fold; ``--fold`` picks one) and ``DIR/model.json``: what the graphs take
and give, and how to make their input (the feature, window and normalisation settings of the run). Each graph
maps ``x (windows, C, F, W)`` float32, normalised windows as ``model.inputs.window_inputs`` makes them, to
``clipwise (windows, 24)`` and ``framewise (windows, 24, W)`` logits; the batch axis is dynamic. Soft
frame-wise prediction is then ``sigmoid(framewise).max(time).max(windows)`` per recording, averaged over folds.

Every graph is run once with onnxruntime on CPU against torch on a probe batch before the command reports
success (the largest difference is printed and kept in model.json).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from rfcx_kit.core.errors import ConfigError, RfcxError
from rfcx_kit.core.io import atomic_path, atomic_write_csv, atomic_write_json
from rfcx_kit.core.species import SPECIES_FILE, Species
from rfcx_kit.method.apply import load_models
from rfcx_kit.method.checkpoint import input_stats
from rfcx_kit.method.context import predict_positions, window_step

log = logging.getLogger(__name__)

OUTPUTS = ("clipwise", "framewise")
# The largest |probability difference| between onnxruntime and torch a kept graph may show (sigmoid of each output).
# On probabilities, not logits: a 2-epoch model's logits reach 87, where float32 rounding alone differs by 1e-4 in
# the logit and by 3e-6 in the probability a user reads.
TOLERANCE = 1e-4
ENSEMBLE_FILE = "ensemble.onnx"  # waves in, clip probabilities out: the whole predict in one file


def quiet_exporter() -> None:
    """torch's ONNX exporter logs an INFO line per folded constant (onnx_ir, onnxscript): keep warnings only."""
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Outputs(torch.nn.Module):
    """The SED model with positional outputs (ONNX graphs give a tuple, not a dict)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out["clipwise"], out["framewise"]


def export_onnx(model: torch.nn.Module, path: Path, shape: tuple[int, int, int]) -> None:
    """Write ``model`` as an ONNX graph of input ``(windows, *shape)`` (atomically), with torch's exporter."""
    wrapped = Outputs(model).eval()
    probe = torch.zeros((2, *shape))
    quiet_exporter()
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapped, (probe,), str(tmp), input_names=["x"], output_names=list(OUTPUTS),
                              dynamic_shapes={"x": {0: torch.export.Dim("windows")}}, dynamo=True,
                              external_data=False, verbose=False)
        except ImportError as exc:
            raise RfcxError(f"ONNX export needs the onnx extra: pip install 'rfcx-kit[onnx]' ({exc})") from None


class WaveToClip(torch.nn.Module):
    """Every fold model behind the front end, in one graph: ``(B, S)`` waves at ``features.sample_rate`` of the run's
    length -> ``(B, K)`` clip probabilities, the fold mean of soft frame-wise prediction (what ``predict`` writes).

    Inside: the log-mel (STFT, mel filters, dB, the cache's float16 rounding), each recording's min-max (or mean-std)
    scaling to the input statistics, the run's test windows (zero past the end), every fold model, the framewise
    sigmoid, its max over time and windows, and the mean over folds.
    """

    def __init__(self, models: list[torch.nn.Module], cfg, positions: list[list[int]],  # noqa: ANN001 - a Config
                 mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None):
        super().__init__()
        from rfcx_kit.data.features import LogMel
        from rfcx_kit.model.inputs import channel_mean_std

        self.logmel = LogMel(cfg.features)
        self.models = torch.nn.ModuleList(models)
        self.positions, self.window = [tuple(p) for p in positions], cfg.windows.window
        self.mode, self.channels, self.half = cfg.model.normalize, cfg.model.in_channels, cfg.features.dtype == "float16"
        mean, std = channel_mean_std(cfg.model.in_channels, mean_std)
        self.register_buffer("mean", mean.float().reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.float().reshape(1, -1, 1, 1), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch, b, _ = self.window_batch(wave)
        clip = 0.0
        for model in self.models:
            framewise = torch.sigmoid(model(batch)["framewise"]).reshape(len(self.positions), b, -1, self.window)
            clip = clip + framewise.amax(-1).amax(0)
        return clip / len(self.models)

    def window_batch(self, wave: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``(B, S)`` waves -> ``(N * B, C, F, W)`` normalised windows (window-major, as predict), ``B`` and the
        recordings' frames ``T``."""
        db = self.logmel(wave)
        if self.half:  # the feature cache's dtype: what training and predict read
            db = db.half().float()
        b, frames = db.shape[0], db.shape[-1]
        flat = db.reshape(b, -1)
        if self.mode == "post":  # min-max to [0, 1], then the input statistics
            low, high = flat.amin(1), flat.amax(1)
            span = (high - low)[:, None, None]
            unit = torch.where(span > 0, (db - low[:, None, None]) / span.clamp_min(1e-30), torch.zeros_like(db))
            x = (unit[:, None] - self.mean) / self.std
        else:  # standardize
            mean, std = flat.mean(1), flat.std(1, unbiased=False)
            x = ((db - mean[:, None, None]) / (std[:, None, None] + 1e-6))[:, None].expand(-1, self.channels, -1, -1)
        windows = []
        for start, end in self.positions:
            piece = x[..., start:min(end, frames)]
            if end > frames:  # past the recording: 0 after the scaling, as predict pads
                piece = torch.nn.functional.pad(piece, (0, end - frames))
            windows.append(piece)
        return torch.stack(windows).reshape(-1, x.shape[1], x.shape[2], self.window), b, frames  # window-major


class WaveToFrames(WaveToClip):
    """The same front end and windows, giving each recording's framewise timeline: ``(B, S)`` waves -> ``(B, K, T)``
    probabilities, the fold mean of the framewise sigmoid stitched by its max over overlapping windows (what
    ``predict --rows`` reads its 5-s rows from; T: the frames of S samples)."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch, b, frames = self.window_batch(wave)
        total = 0.0
        for model in self.models:
            framewise = torch.sigmoid(model(batch)["framewise"]).reshape(len(self.positions), b, -1, self.window)
            # each window's frames at their place in the recording; 0 elsewhere (a sigmoid is never below it)
            placed = [torch.nn.functional.pad(framewise[i], (start, self.reach - end))
                      for i, (start, end) in enumerate(self.positions)]
            total = total + torch.stack(placed).amax(0)[..., :frames]
        return total / len(self.models)

    @property
    def reach(self) -> int:
        """The frame where the last window ends (past the recording when it is padded)."""
        return max(end for _, end in self.positions)


def export_wave_graph(kind: type[WaveToClip], models: list[torch.nn.Module], cfg, path: Path,  # noqa: ANN001
                      seconds: float, mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None,
                      output: str, batch: str) -> WaveToClip:
    """Write ``kind`` (:class:`WaveToClip` or :class:`WaveToFrames`) of ``models`` for waves of ``seconds`` as one ONNX
    graph (atomically): input ``wave (batch, S)``, output ``output``; the first axis named ``batch`` is dynamic.
    Returns the torch module it exported."""
    from rfcx_kit.core.grid import frames_of

    if cfg.predict.mode != "framewise":
        raise ConfigError(f"the wave graphs give soft frame-wise prediction; predict.mode is {cfg.predict.mode}")
    rate = cfg.features.sample_rate
    positions = predict_positions(cfg, frames_of(seconds, rate, cfg.features.hop_length))
    graph = kind(models, cfg, positions, mean_std).eval()
    probe = torch.zeros((2, int(round(seconds * rate))))
    quiet_exporter()
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, (probe,), str(tmp), input_names=["wave"], output_names=[output],
                              dynamic_shapes={"wave": {0: torch.export.Dim(batch)}}, dynamo=True,
                              external_data=False, verbose=False)
        except ImportError as exc:
            raise RfcxError(f"ONNX export needs the onnx extra: pip install 'rfcx-kit[onnx]' ({exc})") from None
    return graph


def export_ensemble(models: list[torch.nn.Module], cfg, path: Path, seconds: float,  # noqa: ANN001 - a Config
                    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None) -> dict:
    """Write :class:`WaveToClip` of ``models`` for recordings of ``seconds`` as one ONNX graph (atomically)."""
    export_wave_graph(WaveToClip, models, cfg, path, seconds, mean_std, "clip", "recordings")
    rate = cfg.features.sample_rate
    return {"file": path.name, "input": {"name": "wave", "shape": ["recordings", int(round(seconds * rate))],
                                         "dtype": "float32", "sample_rate": rate, "seconds": seconds,
                                         "note": "mono, resampled to sample_rate, cut or zero-padded to seconds"},
            "output": {"name": "clip", "shape": ["recordings", cfg.model.n_species],
                       "what": "probabilities: the fold mean of soft frame-wise prediction"},
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def export_frames(models: list[torch.nn.Module], cfg, path: Path, seconds: float,  # noqa: ANN001 - a Config
                  mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None) -> WaveToFrames:
    """Write :class:`WaveToFrames` of ``models`` for chunks of ``seconds`` as one ONNX graph (atomically): input
    ``wave (chunks, S)``, output ``frames (chunks, K, T)`` probabilities. Returns the torch module it exported."""
    return export_wave_graph(WaveToFrames, models, cfg, path, seconds, mean_std, "frames", "chunks")


def onnx_session(path: Path, threads: int | None = None):  # noqa: ANN201 - onnxruntime.InferenceSession
    """An onnxruntime CPU session of ``path`` (``threads``: intra-op threads, None: onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RfcxError("checking the exported graph needs onnxruntime: pip install 'rfcx-kit[onnx]'") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_difference(model: torch.nn.Module, path: Path, x: torch.Tensor) -> dict[str, float]:
    """Largest absolute difference of each output's probability (its sigmoid) between onnxruntime on CPU and
    torch, on windows ``x``."""
    session = onnx_session(path)
    got = session.run(list(OUTPUTS), {"x": x.numpy()})
    with torch.no_grad():
        want = model.eval()(x)
    return {name: float(np.abs(torch.sigmoid(torch.from_numpy(g)).numpy() - torch.sigmoid(want[name]).numpy()).max())
            for name, g in zip(OUTPUTS, got)}


def probe_windows(run_dir: Path | None, cfg, shape: tuple[int, int, int], n: int = 2) -> tuple[torch.Tensor, str]:  # noqa: ANN001
    """The windows the graphs are checked on: every window of the run's first ``n`` test recordings (else train),
    built as predict builds them; without a run's data (best.pt files alone), 3 windows of unit noise."""
    from rfcx_kit.model.inputs import window_inputs

    try:
        from rfcx_kit.method.context import load_context

        ctx = load_context(run_dir) if run_dir is not None else None
    except RfcxError:
        ctx = None
    if ctx is None:
        noise = np.random.default_rng(0).normal(0, 1, (3, *shape)).astype(np.float32)
        return torch.from_numpy(noise), "3 windows of unit noise (no run data to take real ones from)"
    split = "test" if ctx.comp.test_ids else "train"
    ids = ctx.comp.ids(split)[:n]
    stats = (ctx.test_stats if split == "test" else ctx.train_stats)[: len(ids)]
    parts = []
    for i, rid in enumerate(ids):
        raw = torch.from_numpy(np.asarray(ctx.store.batch(split, [rid])[0], dtype=np.float32))[None]
        positions = predict_positions(cfg, raw.shape[-1])
        parts.append(window_inputs(raw, torch.from_numpy(stats[i : i + 1]), positions, cfg.model.normalize,
                                   cfg.model.in_channels, input_stats(cfg)))
    x = torch.cat(parts)
    return x, f"the {len(x)} windows of {len(ids)} {split} recording(s) of the run ({', '.join(ids)})"


def export_stage(run_dir: Path | None, stage: str, checkpoints: tuple[Path, ...], out: Path,
                 fold: int | None = None, tolerance: float = TOLERANCE) -> dict:
    """Export the fold models; returns what ``model.json`` holds. Each graph is kept only if its probabilities
    differ from torch's by at most ``tolerance`` on real windows of the run (:func:`probe_windows`)."""
    models = load_models(run_dir, stage, checkpoints)
    cfg = models.cfg
    chosen = list(range(len(models.models)))
    if fold is not None:
        if not 0 <= fold < len(chosen):
            raise ConfigError(f"--fold {fold}: the stage has folds 0..{len(chosen) - 1}")
        chosen = [fold]
    shape = (cfg.model.in_channels, cfg.features.n_mels, cfg.windows.window)
    probe, probed_on = probe_windows(run_dir, cfg, shape)
    out.mkdir(parents=True, exist_ok=True)
    graphs = []
    for k in chosen:
        path = out / f"fold{k}.onnx"
        export_onnx(models.models[k], path, shape)
        diff = max_difference(models.models[k], path, probe)
        if max(diff.values()) > tolerance:
            path.unlink()
            raise RfcxError(f"{path}: onnxruntime's probabilities differ from torch's by {max(diff.values()):.2e} "
                            f"(> --tolerance {tolerance:g}) on {probed_on}; the graph was not kept")
        graphs.append({"fold": k, "file": path.name, "checkpoint": str(models.paths[k]),
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "max_abs_difference": diff})
        log.info("%s: max |onnxruntime - torch| %s", path, diff)
    mean_std = input_stats(cfg)
    k = cfg.model.n_species
    ensemble = None
    if cfg.features.seconds is not None and cfg.predict.mode == "framewise" and fold is None:
        ensemble = export_ensemble(models.models, cfg, out / ENSEMBLE_FILE, cfg.features.seconds, mean_std)
    info = {"format": "onnx", "stage": models.stage, "graphs": graphs,
            "check": {"on": probed_on, "tolerance": tolerance, "what": "max |probability difference|, onnxruntime - torch"},
            "input": {"name": "x", "shape": ["windows", *shape], "dtype": "float32",
                      "normalize": cfg.model.normalize, "mean_std": mean_std},
            "outputs": {"clipwise": ["windows", k], "framewise": ["windows", k, cfg.windows.window]},
            "features": asdict(cfg.features), "windows": asdict(cfg.windows),
            # every recording at one length: its windows; at their own lengths: the step, as predict uses it
            "window_positions": predict_positions(cfg) if cfg.features.frames else None,
            "window_step": window_step(cfg), "predict_mode": cfg.predict.mode,
            # every fold behind the front end in one graph: waves in, the clip table out (runs of a fixed length)
            "ensemble": ensemble}
    atomic_write_csv(out / SPECIES_FILE, models.species.frame() if models.species is not None
                     else Species.numbered(k).frame())  # names for predict --onnx's Raven tables
    atomic_write_json(out / "model.json", info)
    return info
