"""Layout ``recordings``: one's own recordings, as ``rfcx-kit labels import`` writes them.

``train_tp.csv`` [``train_fp.csv``, ``train_unknown.csv``], ``species.csv`` and ``recordings.csv``
(``recording_id,split,path,seconds,sample_rate``: the audio files wherever they are; ids are paths relative to the
audio folder, e.g. ``siteA/rec1``). The test recordings are ``sample_submission.csv``'s, else ``recordings.csv``'s
test rows. Every box is checked against its own recording's length and Nyquist frequency.
"""

from __future__ import annotations

from pathlib import Path

from rfcx_kit.core.config import DataConfig
from rfcx_kit.core.errors import DataError
from rfcx_kit.data.layouts.registry import Layout
from rfcx_kit.data.reader import RECORDINGS_FILE, Competition, read_label_tables, read_recordings, with_limits


def detects(root: Path) -> bool:
    return (root / RECORDINGS_FILE).is_file()


def read(root: Path, require_test: bool = True, n_mels: int | None = None,
         options: DataConfig | None = None) -> Competition:
    recordings = read_recordings(root / RECORDINGS_FILE)
    tables = read_label_tables(root, nested=True)
    known = set(recordings.index[recordings["split"] == "train"])
    absent = [rid for rid in tables.train_ids if rid not in known]
    if absent:
        raise DataError(f"{root / RECORDINGS_FILE}: {len(absent)} labelled recording(s) are not train rows: "
                        f"{', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}")
    test_ids = tables.test_ids if tables.has_submission else recordings.index[recordings["split"] == "test"].tolist()
    tables = with_limits(root, tables, recordings[["seconds", "sample_rate"]], nested=True)
    return Competition(root, "audio", tables.tp, tables.fp, tables.train_ids, test_ids, "", species=tables.species,
                       recordings=recordings, unknown=tables.unknown)


LAYOUT = Layout("recordings", detects, read, order=10,
                title="recordings.csv naming each recording's file, with its label tables and species.csv")
