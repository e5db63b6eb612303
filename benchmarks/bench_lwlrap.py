"""LWLRAP on a test-sized matrix (1992 x 24): rfcx-kit's vectorised metric vs a per-sample Python loop.

* ``rfcx_kit.core.metrics.lwlrap``: one sort per row, no Python loop over samples;
* ``per-sample loop``: the DCASE 2019 reference's structure (``_one_sample_positive_class_precisions``
  called once per recording in a Python loop, then label-weighted averaging);
* ``scikit-learn``: ``label_ranking_average_precision_score(y, s, sample_weight=y.sum(1))``, for reference.

Scores are continuous random values (no ties), so all three agree exactly; the check is printed.

    python benchmarks/bench_lwlrap.py [--rows 1992] [--repeat 7]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from rfcx_kit.core.metrics import lwlrap  # noqa: E402


def _one_sample_positive_class_precisions(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DCASE 2019 reference: precision at each positive class of one sample."""
    num_classes = scores.shape[0]
    pos_class_indices = np.flatnonzero(truth > 0)
    if not len(pos_class_indices):
        return pos_class_indices, np.zeros(0)
    retrieved_classes = np.argsort(scores)[::-1]
    class_rankings = np.zeros(num_classes, dtype=int)
    class_rankings[retrieved_classes] = range(num_classes)
    retrieved_class_true = np.zeros(num_classes, dtype=bool)
    retrieved_class_true[class_rankings[pos_class_indices]] = True
    retrieved_cumulative_hits = np.cumsum(retrieved_class_true)
    precision_at_hits = retrieved_cumulative_hits[class_rankings[pos_class_indices]] / (
        1 + class_rankings[pos_class_indices].astype(float))
    return pos_class_indices, precision_at_hits


def lwlrap_loop(truth: np.ndarray, scores: np.ndarray) -> float:
    """Per-sample Python loop (DCASE 2019 ``calculate_per_class_lwlrap``, summed to the overall score)."""
    num_samples, num_classes = scores.shape
    precisions_for_samples_by_classes = np.zeros((num_samples, num_classes))
    for sample_num in range(num_samples):
        pos_class_indices, precision_at_hits = _one_sample_positive_class_precisions(scores[sample_num],
                                                                                     truth[sample_num])
        precisions_for_samples_by_classes[sample_num, pos_class_indices] = precision_at_hits
    labels_per_class = np.sum(truth > 0, axis=0)
    weight_per_class = labels_per_class / float(np.sum(labels_per_class))
    per_class_lwlrap = np.sum(precisions_for_samples_by_classes, axis=0) / np.maximum(1, labels_per_class)
    return float(np.sum(per_class_lwlrap * weight_per_class))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1992)
    parser.add_argument("--species", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from sklearn.metrics import label_ranking_average_precision_score

    rng = np.random.default_rng(0)
    truth = np.zeros((args.rows, args.species), dtype=np.int8)  # RFCX-like: 1-3 species per recording
    for i, k in enumerate(rng.integers(1, 4, size=args.rows)):
        truth[i, rng.choice(args.species, size=k, replace=False)] = 1
    scores = rng.random((args.rows, args.species))
    load_before = common.warn_if_busy("bench_lwlrap")
    foreign = common.ForeignLoad().start()

    fns = {
        "rfcx_kit.core.metrics.lwlrap": lambda: lwlrap(truth, scores),
        "per-sample Python loop (DCASE ref.)": lambda: lwlrap_loop(truth, scores),
        "sklearn LRAP, sample_weight": lambda: label_ranking_average_precision_score(truth, scores,
                                                                                    sample_weight=truth.sum(1)),
    }
    values = {k: float(f()) for k, f in fns.items()}
    rows = []
    for name, fn in fns.items():
        number, _ = timeit.Timer(fn).autorange()
        times = [t / number for t in timeit.Timer(fn).repeat(repeat=args.repeat, number=number)]
        rows.append({"implementation": name, "best ms": 1000 * min(times),
                     "median ms": 1000 * float(np.median(times)), "value": values[name], "calls per timing": number})
    foreign_cores = foreign.stop()
    base = rows[0]["best ms"]
    for row in rows:
        row["x slower than rfcx-kit"] = row["best ms"] / base
    speedup = rows[1]["best ms"] / base
    agree = max(abs(v - values["rfcx_kit.core.metrics.lwlrap"]) for v in values.values())
    print(common.table(rows))
    print(f"\nspeed-up over the per-sample loop: {speedup:.1f}x; max |difference| between implementations: {agree:.2e}")
    common.write_result("lwlrap", {"rows_matrix": [args.rows, args.species], "repeat": args.repeat,
                                   "load_before": load_before, "foreign_cores": foreign_cores, "rows": rows, "speedup_vs_loop": speedup,
                                   "max_abs_difference": agree})


if __name__ == "__main__":
    main()
