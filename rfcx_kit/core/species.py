"""The species table: the one home of how many species there are, their ids, codes and names.

A data folder carries its own table (``species.csv``: ``species_id,code,name[,f_min,f_max]``) or one is inferred
from its label tables; the model head, metrics, submissions, predictions and reports all take their size and
names from it. RFCX's 24 species (``s0..s23``, the competition's clip-table columns) are the table shipped for
the competition's layout, with per-species figures derived from the real labels (``resources/species.csv``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.grid import RECORDING_RATE

# -- the competition ----------------------------------------------------------------------------------------
N_SPECIES = 24
SPECIES_COLUMNS = [f"s{i}" for i in range(N_SPECIES)]
COMPETITION = "rfcx-species-audio-detection"
BOX_COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]
AUDIO_SAMPLE_RATE = RECORDING_RATE  # the competition's FLAC files
SECONDS = 60.0
SPECIES_FILE = "species.csv"
# THE RULE FOR A SPECIES NAME, in every format that brings one (Raven, Audacity, Arbimon, CSV, --species,
# species.csv): no control character (tab, line break, NUL, ...) and no '"': the Raven and CSV tables written
# from a name must read back as the same name.
NAME_FORBIDDEN = r'[\x00-\x1f\x7f"]'
NAME_RULE = "holds a control character (a tab, a line break, ...) or a double quote, which the Raven and CSV tables written from it could not be read back with"


def bad_names(names: pd.Series) -> pd.Series:
    """``(N,)`` bool: the names that break :data:`NAME_FORBIDDEN`."""
    return names.astype(str).str.contains(NAME_FORBIDDEN, regex=True)


_CODE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Species:
    """K species with ids ``0..K-1``.

    Attributes:
        codes: ``(K,)`` short identifiers (RFCX: ``s0..s23``); also the clip tables' column names.
        names: ``(K,)`` the names people read (in Raven tables and reports).
        f_min, f_max: ``(K,)`` Hz, the species' usual band (NaN where unknown).
    """

    codes: tuple[str, ...]
    names: tuple[str, ...]
    f_min: tuple[float, ...]
    f_max: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def columns(self) -> list[str]:
        """The clip tables' species columns: ``s0..s{K-1}`` (the competition's format, for any K)."""
        return [f"s{i}" for i in range(len(self))]

    @property
    def is_rfcx(self) -> bool:
        return self == Species.rfcx()

    @classmethod
    def numbered(cls, k: int) -> Species:
        """``k`` species known only by their ids (codes and names ``s0..s{k-1}``)."""
        if k < 1:
            raise DataError(f"a species table needs at least one species, got {k}")
        codes = tuple(f"s{i}" for i in range(k))
        return cls(codes, codes, (float("nan"),) * k, (float("nan"),) * k)

    @classmethod
    def rfcx(cls) -> Species:
        """The competition's 24 species, with the median band of their real TP boxes."""
        return _rfcx()

    @classmethod
    def read(cls, path: str | Path) -> Species:
        """``species.csv``: ``species_id`` 0..K-1 once each, ``code`` and ``name`` unique; ``f_min``, ``f_max``
        optional. Every problem names the file, and the row where there is one."""
        path = Path(path)
        try:
            frame = pd.read_csv(path, dtype={"code": str, "name": str}, keep_default_na=False, na_values={"f_min": [""], "f_max": [""]})
        except Exception as exc:  # noqa: BLE001 - empty, not CSV, not UTF-8
            raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
        missing = [c for c in ("species_id", "code", "name") if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected species_id,code,name[,f_min,f_max]")
        if not len(frame):
            raise DataError(f"{path}: no species after the header")
        ids = pd.to_numeric(frame["species_id"], errors="coerce")
        if sorted(ids.tolist()) != list(range(len(frame))):
            raise DataError(f"{path}: species_id must list 0..{len(frame) - 1}, each once")
        for column in ("code", "name"):
            text = frame[column].astype(str).str.strip()
            bad = (text == "") | text.duplicated()
            if column == "code":
                bad |= ~text.map(lambda s: bool(_CODE.match(s)))
            else:
                bad |= bad_names(text)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                why = "is empty" if text.iloc[i] == "" else ("appears twice" if text.duplicated().iloc[i]
                                                             else "must be letters, digits, '_', '-', '.'"
                                                             if column == "code" else NAME_RULE)
                raise DataError(f"{path}: row {i + 1} (line {i + 2}), field '{column}': {text.iloc[i]!r} {why}")
            frame[column] = text
        frame = frame.assign(species_id=ids.astype(np.int64)).sort_values("species_id")
        band = {}
        for column in ("f_min", "f_max"):
            values = pd.to_numeric(frame[column], errors="coerce") if column in frame else pd.Series(np.nan, index=frame.index)
            band[column] = tuple(float(v) for v in values)
        return cls(tuple(frame["code"]), tuple(frame["name"]), band["f_min"], band["f_max"])

    def frame(self) -> pd.DataFrame:
        """``species_id, code, name, f_min, f_max`` (what :meth:`read` reads)."""
        return pd.DataFrame({"species_id": np.arange(len(self)), "code": list(self.codes), "name": list(self.names),
                             "f_min": list(self.f_min), "f_max": list(self.f_max)})

    def ids_of(self, names: pd.Series) -> pd.Series:
        """Species names or codes -> ids (NaN where neither matches)."""
        lookup = {name: i for i, name in enumerate(self.names)}
        lookup.update({code: i for i, code in enumerate(self.codes)})
        return names.astype(str).str.strip().map(lookup)


@lru_cache(maxsize=1)
def _rfcx() -> Species:
    table = species_table()
    codes = tuple(SPECIES_COLUMNS)
    return Species(codes, codes, tuple(table["f_min"].astype(float)), tuple(table["f_max"].astype(float)))


def infer_species(max_id: int) -> Species:
    """A data folder without ``species.csv``: the competition's 24 when every id fits them, else ids 0..max."""
    return Species.rfcx() if max_id < N_SPECIES else Species.numbered(max_id + 1)


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
