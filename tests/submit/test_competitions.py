"""The competitions known by slug: a notebook competition's CSV is refused with what to do instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rfcx_kit.app.cli import main
from rfcx_kit.core.metrics.registry import get_metric
from rfcx_kit.submit.competitions import KNOWN


def test_every_known_competition_is_scored_by_a_registered_metric() -> None:
    assert {k.slug for k in KNOWN.values() if k.kind == "notebook"} == {f"birdclef-{y}" for y in range(2023, 2027)}
    for known in KNOWN.values():
        assert get_metric(known.metric).name == known.metric
    assert KNOWN["birdclef-2023"].metric == "padded_cmap" and KNOWN["birdclef-2026"].minutes == 90


@pytest.mark.parametrize("slug", ["birdclef-2024", "birdclef-2026"])
def test_a_birdclef_csv_is_not_uploaded_but_the_package_route_is_named(tmp_path: Path, slug: str) -> None:
    csv = tmp_path / "submission.csv"
    csv.write_text("row_id,a\nx_5,0.5\n")
    result = CliRunner().invoke(main, ["submit", str(csv), "-m", "try", "--competition", slug,
                                       "--log", str(tmp_path / "log.csv")])
    assert result.exit_code == 2
    assert f"{slug} is scored from a notebook" in result.output and "rfcx-kit kaggle-package" in result.output
    assert not (tmp_path / "log.csv").exists()
