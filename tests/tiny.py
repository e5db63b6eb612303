"""A tiny learnable data set in the precomputed-spectrogram layout, made in milliseconds for training tests.

Each train recording holds one species' "call" (a bright band at a species-specific mel row) with a TP box
over it, and one FP box of another species over plain noise. Short recordings (``seconds``) keep training
tests fast; the pipeline is told with ``--set features.seconds=...``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.species import BOX_COLUMNS, SPECIES_COLUMNS

FRAME_S = 512 / 32000


def make_tiny(root: Path, n_train: int = 12, n_test: int = 4, seconds: float = 10.0, n_species: int = 4,
              seed: int = 0, truth: bool = False) -> Path:
    """Write ``root`` (train_tp.csv, train_fp.csv, sample_submission.csv, train/*.npy, test/*.npy).

    ``truth=True``: each train recording holds a second, unlabelled call of its species (what re-labeling can
    find), and ``truth/`` has ``calls.csv``, ``train_presence.csv`` and ``test_presence.csv`` as ``synth``
    writes them.
    """
    rng = np.random.default_rng(seed)
    frames = 1 + int(seconds * 32000) // 512
    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    tp, fp, calls = [], [], []

    def recording(species: list[int]) -> tuple[np.ndarray, list[tuple[float, float]]]:
        x = rng.normal(-60.0, 4.0, size=(128, frames)).astype(np.float32)
        spans = []
        for s in species:
            start = int(rng.integers(0, frames - 60))
            x[8 + 12 * s : 14 + 12 * s, start : start + 50] += 35.0
            spans.append((start * FRAME_S, (start + 50) * FRAME_S))
        return x, spans

    for i in range(n_train):
        rid = f"tr{i:05d}"
        s = i % n_species
        x, spans = recording([s, s] if truth else [s])
        np.save(root / "train" / f"{rid}.npy", x)
        t0, t1 = spans[0]
        tp.append((rid, s, 1, round(t0, 4), 1000.0, round(t1, 4), 3000.0))
        for k, (a, b) in enumerate(spans):
            calls.append(("train", rid, s, 1, "call", "song", round(a, 4), 1000.0, round(b, 4), 3000.0, 0.0,
                          "tp" if k == 0 else "none"))
        other = (s + 1) % n_species
        f0 = float(rng.uniform(0, seconds - 2))
        fp.append((rid, other, 1, round(f0, 4), 1000.0, round(f0 + 1.0, 4), 3000.0))
    pd.DataFrame(tp, columns=BOX_COLUMNS).to_csv(root / "train_tp.csv", index=False)
    pd.DataFrame(fp, columns=BOX_COLUMNS).to_csv(root / "train_fp.csv", index=False)
    ids = [f"te{i:05d}" for i in range(n_test)]
    truth_test = np.zeros((n_test, 24), dtype=int)
    for i, rid in enumerate(ids):
        x, _ = recording([i % n_species])
        truth_test[i, i % n_species] = 1
        np.save(root / "test" / f"{rid}.npy", x)
    sub = pd.DataFrame(0.5, index=range(n_test), columns=SPECIES_COLUMNS)
    sub.insert(0, "recording_id", ids)
    sub.to_csv(root / "sample_submission.csv", index=False)
    if truth:
        (root / "truth").mkdir(exist_ok=True)
        columns = ["split", "recording_id", "species_id", "songtype_id", "kind", "variant", "t_min", "f_min",
                   "t_max", "f_max", "snr_db", "labelled"]
        pd.DataFrame(calls, columns=columns).to_csv(root / "truth" / "calls.csv", index=False)
        train = np.zeros((n_train, 24), dtype=int)
        train[np.arange(n_train), np.arange(n_train) % n_species] = 1
        for split, names, presence in (("train", [f"tr{i:05d}" for i in range(n_train)], train), ("test", ids, truth_test)):
            frame = pd.DataFrame(presence, columns=SPECIES_COLUMNS)
            frame.insert(0, "recording_id", names)
            frame.to_csv(root / "truth" / f"{split}_presence.csv", index=False)
    return root


def tiny_overrides(seconds: float = 10.0, epochs: int = 2, folds: int = 3, backbone: str = "mobilenetv3_small_050") -> tuple[str, ...]:
    """Overrides for a seconds-long CPU run on :func:`make_tiny` data."""
    return (f"features.seconds={seconds}", f"model.backbone={backbone}", "model.pretrained=false", f"train.epochs={epochs}",
            f"train.folds={folds}", "relabel.votes=2", "train.batch_size=8", "predict.batch_recordings=4",
            "train.threads=1")
