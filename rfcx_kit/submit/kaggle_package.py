"""``rfcx-kit kaggle-package``: everything a Kaggle notebook without internet needs to write a BirdCLEF submission.

    rfcx-kit kaggle-package --run RUN [--stage kept] --out DIR [--chunk-seconds 60] [--wheels FOLDER]

``DIR`` (written beside, then renamed into place: never half-written):

    predict.py        soundscapes -> submission.csv (numpy, soundfile, onnxruntime only); checks the clock
    package.json      classes (the sample submission's order), the audio rate, rows, chunk length, the models in
                      the order the budget keeps them, each with its measured seconds per minute of audio here
    model_fold{k}.onnx  one per fold: wave chunk (chunks, S) -> framewise probabilities (chunks, K, T), the log-mel
                      front end and the windows inside (``method/export.WaveToFrames``)
    wheels/           what ``pip install --no-index --find-links wheels onnxruntime soundfile`` needs
    README.md         what to do on Kaggle

Every graph is checked with onnxruntime against torch on a real chunk of the run's test (else train) audio before
the package is kept. On Kaggle the user uploads ``DIR`` as a dataset (``kaggle datasets create -p DIR``, the
official client, or the web page) and runs ``predict.py`` from a notebook; the toolkit cannot push the notebook's
run itself: Kaggle scores the notebook.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from rfcx_kit.core.errors import ConfigError, RfcxError
from rfcx_kit.core.io import atomic_write_json, atomic_write_text, check_output_path
from rfcx_kit.submit.wheels import collect

log = logging.getLogger(__name__)

REQUIREMENTS = ["onnxruntime", "soundfile"]  # what predict.py imports beyond the standard library (numpy comes along)
SCRIPT = "kaggle_predict.py"  # rfcx_kit/resources: the package's predict.py
ROW_SECONDS = 5.0
# onnxruntime threads per model: on 2 cores 2 threads ran the graphs 1.1-1.4x faster than 1 (BIRDCLEF_BUDGET.md); the
# script is one process, so nothing else competes for them
THREADS = 2
TOLERANCE = 1e-4  # largest |probability difference| between onnxruntime and torch on the probe chunk


def build_package(run_dir: Path, out: Path, stage: str = "kept", chunk_seconds: float = 60.0,
                  wheels: Path | None = None, threads: int = THREADS, tolerance: float = TOLERANCE) -> dict:
    """Write the package into ``out`` (which must not exist, or be empty); returns package.json's content."""
    import torch  # here, not above: the command's --help and its default (THREADS) must load without torch

    from rfcx_kit.method.apply import load_models
    from rfcx_kit.method.export import export_frames, onnx_session
    run_dir, out = Path(run_dir), Path(out)
    if chunk_seconds <= 0 or abs(chunk_seconds / ROW_SECONDS - round(chunk_seconds / ROW_SECONDS)) > 1e-9:
        raise ConfigError(f"--chunk-seconds must be a positive multiple of {ROW_SECONDS:g} (the rows), got {chunk_seconds:g}")
    check_output_path(out, {"--run": run_dir}, "--out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not empty; give a new --out")
    models = load_models(run_dir, stage, (), torch.device("cpu"))
    cfg = models.cfg
    if models.species is None:
        raise RfcxError(f"{run_dir}: the run has no species table; the package needs the classes")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rate, hop = cfg.features.sample_rate, cfg.features.hop_length
        probe, probed_on = probe_chunk(run_dir, rate, chunk_seconds)
        entries = []
        for k, model in enumerate(models.models):
            name = f"model_fold{k}.onnx"
            graph = export_frames([model], cfg, tmp / name, chunk_seconds, models.mean_std())
            session = onnx_session(tmp / name, threads)
            with torch.no_grad():
                want = graph(torch.from_numpy(probe[None])).numpy()
            got = session.run(None, {"wave": probe[None]})[0]
            diff = float(np.abs(got - want).max())
            if diff > tolerance:
                raise RfcxError(f"{name}: onnxruntime's framewise probabilities differ from torch's by {diff:.2e} "
                                f"(> {tolerance:g}) on {probed_on}; nothing was written")
            seconds = _median_run(session, probe)
            entries.append({"file": name, "fold": k, "stage": models.stage, "max_difference": diff,
                            "seconds_per_chunk_here": seconds,
                            "seconds_per_audio_minute_here": seconds / (chunk_seconds / 60.0)})
            log.info("%s: max |onnxruntime - torch| %.1e; %.3f s per minute of audio here (%d thread(s))",
                     name, diff, entries[-1]["seconds_per_audio_minute_here"], threads)
        info = {"classes": list(models.species.codes), "sample_rate": rate, "hop_length": hop,
                "frame_seconds": hop / rate, "row_seconds": ROW_SECONDS, "chunk_seconds": chunk_seconds,
                "threads": threads, "models": entries, "run": str(run_dir.resolve()), "stage": models.stage,
                "checked_on": probed_on, "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                "built_with": {name: metadata.version(name) for name in ("torch", "onnxruntime", "numpy")}}
        atomic_write_json(tmp / "package.json", info)
        script = resources.files("rfcx_kit.resources").joinpath(SCRIPT).read_text(encoding="utf-8")
        atomic_write_text(tmp / "predict.py", script)
        shipped = collect(REQUIREMENTS, tmp / "wheels", wheels)
        atomic_write_text(tmp / "README.md", readme(info, [w.name for w in shipped], wheels is None))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def probe_chunk(run_dir: Path, rate: int, seconds: float) -> tuple[np.ndarray, str]:
    """``(S,)`` float32: the first ``seconds`` of the run's first test recording (else train), at ``rate``, zero-padded
    as predict.py pads; without readable audio, seeded noise."""
    from rfcx_kit.data.audio import load_audio
    from rfcx_kit.method.context import load_context

    size = int(round(seconds * rate))
    try:
        ctx = load_context(run_dir)
        split = "test" if ctx.comp.test_ids else "train"
        rid = ctx.comp.ids(split)[0]
        wave = np.asarray(load_audio(ctx.comp.path(split, rid), rate, None)[0], dtype=np.float32)[:size]
        out = np.zeros(size, dtype=np.float32)
        out[: len(wave)] = wave
        return out, f"the first {seconds:g} s of {split} recording {rid}"
    except (RfcxError, OSError, ValueError, IndexError):
        noise = np.random.default_rng(0).normal(0, 0.05, size).astype(np.float32)
        return noise, f"{seconds:g} s of seeded noise (no readable run audio)"


def _median_run(session, wave: np.ndarray, repeats: int = 3) -> float:  # noqa: ANN001 - an InferenceSession
    """Median seconds of one chunk through ``session`` (after a first, warming run)."""
    session.run(None, {"wave": wave[None]})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"wave": wave[None]})
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def readme(info: dict, wheels: list[str], packed_here: bool) -> str:
    per_minute = sum(m["seconds_per_audio_minute_here"] for m in info["models"])
    origin = (f"packed from the Python {info['python']} environment that built the package: Kaggle's notebook must "
              f"run Python {info['python']}, or rebuild with `--wheels FOLDER` filled by `pip download "
              f"--only-binary=:all: --python-version X.Y -d FOLDER onnxruntime soundfile`") if packed_here else \
        "copied from the folder given with --wheels"
    return f"""# rfcx-kit inference package ({info['stage']}, {len(info['models'])} model(s), {len(info['classes'])} classes)

1. Upload this folder as a Kaggle dataset (web page, or `kaggle datasets create -p THIS_FOLDER` with the official
   client).
2. In a notebook with internet off, attach the dataset and the competition, then:

```
!pip install --no-index --find-links /kaggle/input/THIS_DATASET/wheels onnxruntime soundfile
!python /kaggle/input/THIS_DATASET/predict.py --audio /kaggle/input/COMPETITION/test_soundscapes \\
    --out /kaggle/working/submission.csv --budget-minutes 85 --log /kaggle/working/predict.json
```

3. Submit the notebook (Kaggle runs it on the hidden test set and scores submission.csv).

What it costs where it was built: {per_minute:.3f} s per minute of audio for all models ({info['threads']} thread(s)
each); the hidden test of 2025 (about 700 one-minute files) is then about {per_minute * 700 / 60:.1f} minutes. With
`--budget-minutes` the script measures the models on the first file and drops the last ones that do not fit.

Wheels ({len(wheels)}): {', '.join(wheels)}; {origin}.
"""
