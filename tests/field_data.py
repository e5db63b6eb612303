"""Field recordings as ecologists keep them, made on disk: the traits real exports have, none of them tidy.

* Raven selection tables saved **beside their recordings** (``siteA/rec0.Table.1.selections.txt`` next to
  ``siteA/rec0.wav``), **TP only** (no FP rows), in two sites whose file names clash (``siteA/rec0``,
  ``siteB/rec0``);
* a **22,000 Hz** recorder (siteA), a **stereo** 32 kHz one (siteB), an **MP3** at 44.1 kHz (``siteA/dawn.mp3``);
* **uncertain rows**: a ``?`` alone and an empty species cell;
* a **clip shorter than a window** (``siteB/short.wav``, 4 s);
* unlabelled recordings to predict in ``unlabelled/`` (a 30 s one and a 3 s one).

Three species call as tones in their own bands (1.5, 3 and 5 kHz); a call lasts 1-2 s.

    python tests/field_data.py OUT        # writes OUT/recordings, OUT/unlabelled
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SPECIES = ["Wood thrush", "Spring peeper", "Katydid"]
F0 = [1500.0, 3000.0, 5000.0]
RAVEN = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
         "Species"]
# (relative path, rate, seconds, channels, [(species or "?" or "", start s, length s), ...])
LABELLED = [
    ("siteA/rec0.wav", 22000, 40.0, 1, [(0, 3.0, 1.5), (1, 12.0, 1.2), (2, 25.0, 1.8), (0, 31.0, 1.4), ("?", 18.0, 1.0)]),
    ("siteA/dawn.mp3", 44100, 30.0, 1, [(1, 4.0, 1.6), (2, 14.0, 1.2), (0, 22.0, 1.5), ("", 9.0, 1.0)]),
    ("siteB/rec0.wav", 32000, 40.0, 2, [(2, 2.0, 1.3), (0, 10.0, 1.7), (1, 20.0, 1.4), (2, 33.0, 1.5)]),
    ("siteB/short.wav", 32000, 4.0, 1, [(1, 1.0, 1.5)]),
]
UNLABELLED = [("siteC/new.wav", 22050, 30.0, 1, [(0, 5.0, 1.5), (2, 16.0, 1.5)]),
              ("siteC/tiny.wav", 22050, 3.0, 1, [(1, 0.8, 1.2)])]


def wave_of(rng: np.random.Generator, rate: int, seconds: float, calls: list[tuple]) -> np.ndarray:
    """Background noise plus each call with a species (``?`` and ``""`` calls are a fourth, unnamed sound)."""
    n = int(seconds * rate)
    wave = 0.01 * rng.standard_normal(n)
    for species, start, length in calls:
        f0 = F0[species] if isinstance(species, int) else 4000.0
        t = np.arange(int(length * rate)) / rate
        tone = np.sin(2 * np.pi * f0 * t) * np.sin(np.pi * t / length) ** 2 * 0.3
        i = int(start * rate)
        wave[i : i + len(tone)] += tone[: n - i]
    return wave.astype(np.float32)


def raven_table(path: Path, calls: list[tuple]) -> None:
    """A Raven Pro selection table, Spectrogram rows only, with the species' names (or ``?`` / empty)."""
    lines = ["\t".join(RAVEN)]
    for i, (species, start, length) in enumerate(calls, start=1):
        name = SPECIES[species] if isinstance(species, int) else species
        f0 = F0[species] if isinstance(species, int) else 4000.0
        lines.append("\t".join(str(v) for v in (i, "Spectrogram 1", 1, round(start, 3), round(start + length, 3),
                                                f0 - 300, f0 + 300, name)))
    path.write_text("\n".join(lines) + "\n")


def write(root: Path, seed: int = 5) -> dict[str, Path]:
    """Write ``root/recordings`` (audio with its tables beside it) and ``root/unlabelled``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for folder, items in (("recordings", LABELLED), ("unlabelled", UNLABELLED)):
        for rel, rate, seconds, channels, calls in items:
            path = root / folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            wave = wave_of(rng, rate, seconds, calls)
            data = np.stack([wave, 0.8 * wave], axis=1) if channels == 2 else wave
            sf.write(str(path), data, rate, format="MP3" if path.suffix == ".mp3" else None)
            if folder == "recordings":
                raven_table(path.with_name(f"{path.stem}.Table.1.selections.txt"), calls)
    return {"recordings": root / "recordings", "unlabelled": root / "unlabelled"}


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
