"""Decode a recording, mix to mono, resample to the feature rate with soxr, pad or cut to its length."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.grid import rfcx_grid

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".aif", ".aiff")  # what soundfile decodes, every step alike
RECORDING_SUFFIXES = AUDIO_SUFFIXES + (".npy",)  # what predict reads: audio, or a log-mel array already made
_RFCX = rfcx_grid()  # the defaults: the competition's recordings on the method post's grid (32 kHz, 60 s)

log = logging.getLogger(__name__)


def probe(path: str | Path) -> tuple[float, int]:
    """``(seconds, sample_rate)`` of an audio file without decoding it, where its header can say; an MP3's length
    is counted by decoding (its header's is an estimate, 0.3-0.4 s above what decodes for some encoders), so a box
    checked against it lies inside what every step reads.

    Raises:
        DataError naming the file: no readable header, or no samples at all.
    """
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            rate, frames = int(handle.samplerate), int(handle.frames)
            if path.suffix.lower() == ".mp3":
                frames = 0
                while True:
                    block = handle.read(1 << 16, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    frames += len(block)
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise DataError(f"{path}: cannot read audio ({' '.join(str(exc).split())[:200]})") from None
    if frames <= 0 or rate <= 0:
        raise DataError(f"{path}: the audio file holds no samples")
    return frames / rate, rate


def load_audio(path: str | Path, sample_rate: int = _RFCX.sample_rate, seconds: float | None = _RFCX.seconds
               ) -> tuple[np.ndarray, str]:
    """Read ``path`` as float32 mono at ``sample_rate``, exactly ``seconds`` long (None: as long as it is).

    Returns:
        ``(wave (S,), status)`` with ``S = round(seconds * sample_rate)``; status is ``"ok"``, or
        ``"padded from X s"`` / ``"cut from X s"`` when the file was not of the expected length (logged
        as a warning: the competition's recordings are all 60 s, so anything else deserves a look).
    Raises:
        DataError naming the file when it cannot be decoded.
    """
    path = Path(path)
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise DataError(f"{path}: cannot read audio ({exc})") from exc
    if wave.shape[0] == 0:
        raise DataError(f"{path}: the audio file holds no samples")
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if rate != sample_rate:
        # soxr's HQ polyphase resampler: the same quality librosa.load(sr=...) uses by default.
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    if seconds is None:
        return np.ascontiguousarray(wave, dtype=np.float32), "ok"
    target = int(round(seconds * sample_rate))
    status = "ok"
    have = wave.shape[0] / sample_rate
    if wave.shape[0] < target - 1:
        status = f"padded from {have:.2f} s"
        log.warning("%s: %.2f s long, zero-padded to %.0f s", path, have, seconds)
    elif wave.shape[0] > target + 1:
        status = f"cut from {have:.2f} s"
        log.warning("%s: %.2f s long, cut to %.0f s", path, have, seconds)
    if wave.shape[0] != target:
        out = np.zeros(target, dtype=np.float32)
        n = min(target, wave.shape[0])
        out[:n] = wave[:n]
        wave = out
    return np.ascontiguousarray(wave, dtype=np.float32), status
