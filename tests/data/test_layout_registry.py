"""The layout registry: each layout_<name>.py is found, asked in order, and the first that recognises a folder reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcx_kit.core.errors import DataError
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.data.layouts.registry import layouts

from tiny import make_tiny


def test_every_layout_file_is_registered_in_order() -> None:
    names = list(layouts())
    assert names == ["recordings", "birdclef", "folders"]  # the fallback, which names what a folder lacks, comes last
    files = sorted(p.stem.removeprefix("layout_") for p in
                   (Path(__file__).resolve().parents[2] / "rfcx_kit" / "data" / "layouts").glob("layout_*.py"))
    assert sorted(names) == files
    assert all(layout.title for layout in layouts().values())


def test_the_first_layout_that_recognises_a_folder_reads_it(tmp_path: Path) -> None:
    data = make_tiny(tmp_path / "data", n_train=4, n_test=2)
    assert [name for name, layout in layouts().items() if layout.detects(data)] == ["folders"]
    comp = read_competition(data)
    assert comp.layout == "npy" and comp.recordings is None and len(comp.train_ids) == 4 and len(comp.test_ids) == 2
    # a recordings.csv makes it one's own recordings: its rows name the files, wherever they are
    rows = ["recording_id,split,path,seconds,sample_rate"]
    rows += [f"{rid},train,{comp.path('train', rid)},10,32000" for rid in comp.train_ids]
    (data / "recordings.csv").write_text("\n".join(rows) + "\n")
    assert layouts()["recordings"].detects(data)
    own = read_competition(data, require_test=False)
    assert own.recordings is not None and own.train_ids == comp.train_ids
    assert own.test_ids == comp.test_ids  # sample_submission.csv still names the test recordings


def test_a_folder_of_no_layout_names_what_it_lacks(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train/ folder"):
        read_competition(tmp_path)
    with pytest.raises(DataError, match="data folder not found"):
        read_competition(tmp_path / "absent")
