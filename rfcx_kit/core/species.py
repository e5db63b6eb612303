"""The competition's constants and the small derived species table shipped with the package."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

N_SPECIES = 24
SPECIES_COLUMNS = [f"s{i}" for i in range(N_SPECIES)]
COMPETITION = "rfcx-species-audio-detection"
BOX_COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]
AUDIO_SAMPLE_RATE = 48000  # the competition's FLAC files
SECONDS = 60.0


@lru_cache(maxsize=1)
def species_table() -> pd.DataFrame:
    """Per-species figures derived from the real ``train_tp.csv``/``train_fp.csv`` (24 rows).

    Columns: species_id, f_min, f_max (median box edges, Hz), call_min_s, call_median_s, call_max_s
    (box lengths), tp_rows, fp_rows, songtypes, test_prevalence (fraction of test recordings).
    """
    with resources.files("rfcx_kit.resources").joinpath("species.csv").open() as handle:
        return pd.read_csv(handle, comment="#")


@lru_cache(maxsize=1)
def competition_test_ids() -> tuple[str, ...]:
    """The 1992 recording ids of the real competition's ``sample_submission.csv``, in its order."""
    text = resources.files("rfcx_kit.resources").joinpath("test_ids.txt").read_text()
    return tuple(line for line in text.splitlines() if line)
