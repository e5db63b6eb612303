"""The competitions rfcx-kit knows by their Kaggle slug: how each is submitted, scored and laid out.

RFCX takes a CSV upload (``rfcx-kit submit``). BirdCLEF scores a notebook that Kaggle runs on its hidden test
soundscapes, offline, inside a CPU time limit: the toolkit builds what the notebook needs (``rfcx-kit
kaggle-package``) and the user uploads it as a dataset and submits the notebook. Metrics and limits as the
competitions' overview pages give them (docs/birdclef.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from rfcx_kit.core.species import COMPETITION


@dataclass(frozen=True)
class Known:
    """One competition: ``kind`` ``csv`` (a file is uploaded) or ``notebook`` (Kaggle runs a notebook);
    ``metric``: its name in the metric registry; ``minutes``: the notebook's CPU time limit."""

    slug: str
    kind: str
    metric: str
    minutes: int | None = None


KNOWN = {c.slug: c for c in (
    Known(COMPETITION, "csv", "lwlrap"),
    Known("birdclef-2023", "notebook", "padded_cmap", 120),
    Known("birdclef-2024", "notebook", "roc_auc", 120),
    Known("birdclef-2025", "notebook", "roc_auc", 90),
    Known("birdclef-2026", "notebook", "roc_auc", 90),
)}


def notebook_steps(known: Known) -> str:
    """What a user does for a notebook competition, in one message."""
    return (f"{known.slug} is scored from a notebook that Kaggle runs offline within {known.minutes} CPU minutes, "
            "not from an uploaded CSV: build the package with `rfcx-kit kaggle-package --run RUN --out DIR`, "
            "upload DIR as a dataset (`kaggle datasets create -p DIR` or the web page), run DIR/predict.py in a "
            "notebook with --budget-minutes, and submit the notebook (DIR/README.md)")
