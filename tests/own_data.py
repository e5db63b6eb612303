"""A made-up data set of the kind an ecologist brings: her own species, lengths, sample rate and label exports.

Five named species call as harmonic tones in their own bands, in 30 s and 90 s WAV recordings at 22,050 Hz
kept in two site folders whose file names clash (``siteA/rec1.wav`` and ``siteB/rec1.wav``). Each train
recording is labelled by a Raven selection table: a TP selection over most calls (one call per recording is left
unlabelled, as a person skims), and one FP selection of another species over background. The test folder holds a
90 s recording and a 5 s one, shorter than a window.

    python tests/own_data.py OUT        # writes OUT/audio, OUT/labels, OUT/test
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

RATE = 22050
SPECIES = ["Screaming piha", "Coqui frog", "Howler monkey", "Tinamou", "Katydid"]
F0 = [1200.0, 2400.0, 3600.0, 5200.0, 7600.0]  # Hz: each species' band, f0 +- 300 Hz
# (site, name, seconds): the train recordings; the same names in two sites
TRAIN = [("siteA", "rec1", 30.0), ("siteA", "rec2", 90.0), ("siteA", "rec3", 30.0),
         ("siteB", "rec1", 90.0), ("siteB", "rec2", 30.0), ("siteB", "rec4", 90.0)]
TEST = [("siteC", "rec1", 90.0), ("siteC", "short", 5.0)]
RAVEN = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
         "Species", "Kind"]


def call(rng: np.random.Generator, species: int, seconds: float) -> np.ndarray:
    """A harmonic tone of ``seconds`` with a raised-cosine envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = F0[species] * (1 + 0.02 * rng.standard_normal())
    wave = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 1.5 * f0 * t) * (species % 2)
    return (wave * np.sin(np.pi * t / seconds) ** 2).astype(np.float32)


def recording(rng: np.random.Generator, seconds: float, species: list[int]) -> tuple[np.ndarray, list[tuple]]:
    """Background noise plus one call of each of ``species`` (a species may come twice): ``(wave, calls)`` with
    calls as ``(species, t_min, t_max)``."""
    wave = (0.02 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
    calls = []
    slots = rng.permutation(int(seconds // 3) - 1)[: len(species)]
    for s, slot in zip(species, slots):
        length = float(rng.uniform(1.0, 1.5))
        start = 3.0 * slot + float(rng.uniform(0.2, 1.0))
        i = int(start * RATE)
        piece = call(rng, s, length)
        wave[i : i + len(piece)] += 0.5 * piece
        calls.append((s, round(start, 3), round(start + length, 3)))
    return wave, calls


def write(root: Path, seed: int = 0) -> dict[str, list[tuple]]:
    """Write ``root/audio/SITE/NAME.wav``, ``root/labels/SITE/NAME.Table.1.selections.txt`` and ``root/test``;
    returns every planted call by recording id (``SITE/NAME``)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    planted: dict[str, list[tuple]] = {}
    for i, (site, name, seconds) in enumerate(TRAIN):
        own = [i % 5, (i + 1) % 5, i % 5]  # the first species calls twice: its second call is left unlabelled
        wave, calls = recording(rng, seconds, own)
        (root / "audio" / site).mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / site / f"{name}.wav", wave, RATE, subtype="PCM_16")
        planted[f"{site}/{name}"] = calls
        rows = [(SPECIES[s], a, b, F0[s] - 300, F0[s] + 300, "tp") for s, a, b in calls[:2]]
        fp_species = (i + 2) % 5  # a selection over background, marked as not that species
        fp_start = float(seconds - 2.5)
        rows.append((SPECIES[fp_species], fp_start, fp_start + 1.0, F0[fp_species] - 300, F0[fp_species] + 300, "fp"))
        table = pd.DataFrame([(k + 1, "Spectrogram 1", 1, a, b, lo, hi, sp, kind)
                              for k, (sp, a, b, lo, hi, kind) in enumerate(rows)], columns=RAVEN)
        (root / "labels" / site).mkdir(parents=True, exist_ok=True)
        table.to_csv(root / "labels" / site / f"{name}.Table.1.selections.txt", sep="\t", index=False)
    for site, name, seconds in TEST:
        wave, calls = recording(rng, seconds, [0, 3] if seconds > 10 else [2])
        (root / "test" / site).mkdir(parents=True, exist_ok=True)
        sf.write(root / "test" / site / f"{name}.wav", wave, RATE, subtype="PCM_16")
        planted[f"test:{site}/{name}"] = calls
    return planted


if __name__ == "__main__":
    write(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}/audio, labels, test")
