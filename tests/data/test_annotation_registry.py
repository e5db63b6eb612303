"""The annotation-format registry: each format_<name>.py is found, recognised by its own first line, and offered."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcx_kit.core.errors import DataError
from rfcx_kit.data.annotations.registry import detect_format, formats, get_format
from rfcx_kit.data.labels_import import FORMAT_CHOICES, FORMATS

FIRST_LINES = {
    "raven": "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies",
    "audacity": "1.250000\t2.500000\tWood thrush",
    "arbimon": "recording,species,songtype,x1,x2,y1,y2,validated",
    "csv": "recording,species,t_min,t_max",
}


def test_every_format_file_is_registered_in_detection_order() -> None:
    names = list(formats())
    assert names == ["raven", "audacity", "arbimon", "csv"]
    assert FORMATS == tuple(names) and FORMAT_CHOICES == ("auto", *names)
    files = sorted(p.stem.removeprefix("format_") for p in
                   (Path(__file__).resolve().parents[2] / "rfcx_kit" / "data" / "annotations").glob("format_*.py"))
    assert sorted(names) == files


@pytest.mark.parametrize("name", list(FIRST_LINES))
def test_each_format_is_told_from_its_first_line_and_only_its_own(tmp_path: Path, name: str) -> None:
    path = tmp_path / "table.txt"
    path.write_text("\n" + FIRST_LINES[name] + "\n")  # a blank first line is skipped
    assert detect_format(path) == name
    others = [f.name for f in formats().values() if f.name != name and f.detects(FIRST_LINES[name])]
    # arbimon's header also names 'recording': it is tried before the generic csv, which would take it too
    assert others == (["csv"] if name == "arbimon" else []), others


def test_an_unknown_name_lists_the_registered_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected one of auto, raven, audacity, arbimon, csv"):
        get_format("selection-table")
    (tmp_path / "notes.txt").write_text("field notes, 7 May\n")
    assert detect_format(tmp_path / "notes.txt") is None
