"""A non-deep yardstick for a synthetic data set: per-band energy statistics + logistic regression.

Each recording's ``(128, 3751)`` log-mel becomes ``128 x 5`` numbers (per mel band over time: mean,
standard deviation, 50th, 90th and 99th percentile, 99th being a robust maximum); one logistic regression
per species is trained on the *true* presence of the train recordings (``truth/train_presence.csv``) and
scored on the test recordings against ``truth/test_presence.csv`` with LWLRAP.

It sees band energy but no shape, so it is fooled by confusers and by loud neighbours in the same band:
a data set on which it scores near 1.0 would be too easy, and one where it does no better than shuffled
predictions would hold no signal. ``python -m rfcx_kit.data.synth.baseline DIR`` prints the figures as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.io import json_text
from rfcx_kit.core.metrics import lwlrap
from rfcx_kit.core.species import SPECIES_COLUMNS

PERCENTILES = (50, 90, 99)


def band_statistics(spec: np.ndarray) -> np.ndarray:
    """``(128, T)`` log-mel dB -> ``(128 * 5,)`` float32: per band mean, std and percentiles over time."""
    spec = np.asarray(spec, dtype=np.float32)
    stats = [spec.mean(axis=1), spec.std(axis=1), *np.percentile(spec, PERCENTILES, axis=1)]
    return np.concatenate(stats).astype(np.float32)


def _features(comp, split: str) -> np.ndarray:
    """``(R, 640)`` band statistics of every recording of ``split`` (npy arrays, or FLAC through log-mel)."""
    ids = comp.ids(split)
    if comp.layout == "npy":
        return np.stack([band_statistics(np.load(comp.path(split, rid), mmap_mode="r")) for rid in ids])
    from rfcx_kit.data.audio import load_audio
    from rfcx_kit.data.features import logmel

    return np.stack([band_statistics(logmel(load_audio(comp.path(split, rid))[0][None])[0]) for rid in ids])


def _presence(path: Path, ids: list[str]) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: not found (baseline_lwlrap needs a synthetic data set's truth/)")
    frame = pd.read_csv(path, dtype={"recording_id": str}).set_index("recording_id")
    missing = [rid for rid in ids if rid not in frame.index]
    if missing:
        raise DataError(f"{path}: lacks recording(s) {', '.join(missing[:5])}")
    return frame.loc[ids, SPECIES_COLUMNS].to_numpy(dtype=np.int8)


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float = 0.05) -> np.ndarray:
    """One-vs-rest logistic regression on standardised features: ``(R_test, 24)`` probabilities.

    A species constant in train (never or always present) gets its train rate as a constant score.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    a, b = scaler.transform(x_train), scaler.transform(x_test)
    scores = np.tile(y_train.mean(axis=0), (len(x_test), 1)).astype(np.float64)
    for k in range(len(SPECIES_COLUMNS)):
        if 0 < y_train[:, k].sum() < len(y_train):
            model = LogisticRegression(C=c, max_iter=2000).fit(a, y_train[:, k])
            scores[:, k] = model.predict_proba(b)[:, 1]
    return scores


def baseline_lwlrap(data_dir: str | Path, seed: int = 0, shuffles: int = 20) -> dict:
    """Train the baseline on a synthetic data set's train truth and score its test recordings.

    Returns a dict: ``lwlrap`` (the baseline), ``shuffled_lwlrap`` (its predictions with the test rows
    shuffled, mean of ``shuffles`` permutations: what the species' base rates alone give), ``random_lwlrap``
    (uniform random scores, same averaging), ``n_train``, ``n_test``, ``n_test_positive`` (labels scored).
    """
    from rfcx_kit.data.layouts import read_competition

    root = Path(data_dir)
    comp = read_competition(root)
    y_train = _presence(root / "truth" / "train_presence.csv", comp.train_ids)
    y_test = _presence(root / "truth" / "test_presence.csv", comp.test_ids)
    scores = fit_predict(_features(comp, "train"), y_train, _features(comp, "test"))
    rng = np.random.default_rng(seed)
    shuffled = [lwlrap(y_test, scores[rng.permutation(len(scores))]) for _ in range(shuffles)]
    random = [lwlrap(y_test, rng.random(scores.shape)) for _ in range(shuffles)]
    return dict(lwlrap=lwlrap(y_test, scores), shuffled_lwlrap=float(np.mean(shuffled)),
                random_lwlrap=float(np.mean(random)), n_train=len(y_train), n_test=len(y_test),
                n_test_positive=int(y_test.sum()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m rfcx_kit.data.synth.baseline DATA_DIR")
    print(json_text(baseline_lwlrap(sys.argv[1]), indent=1))
