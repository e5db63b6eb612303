"""The study's tables from a hand-made study.csv: paired differences, verdicts and what study.md says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfcx_kit.report.study import differences, stage_columns, stage_summary, verdict, write_study


def frame(truth: bool = True) -> pd.DataFrame:
    # kept - control on truth: 0.05, 0.04, 0.06, 0.05 -> mean 0.05, sd 0.008165, t(0.975, 3) = 3.182446
    rows = []
    for i, (kept, control, s1) in enumerate([(0.90, 0.85, 0.84), (0.88, 0.84, 0.83), (0.93, 0.87, 0.86),
                                             (0.91, 0.86, 0.85)]):
        row = {"run": f"d{i}-t1", "data": f"d{i}", "data_seed": i, "train_seed": 1, "prior": 0.25 if truth else np.nan,
               "stage1": s1 if truth else np.nan, "stage1_cv": 0.70, "cycle1": kept if truth else np.nan,
               "cycle1_cv": 0.78, "cycle2": kept - 0.01 if truth else np.nan, "cycle2_cv": 0.77 + 0.01 * i,
               "control": control if truth else np.nan, "control_cv": 0.71, "oracle": 0.99 if truth else np.nan,
               "kept": "cycle1", "kept_truth": kept if truth else np.nan, "kept_cv": 0.78,
               "kept_minus_control": kept - control if truth else np.nan, "kept_minus_control_cv": 0.07,
               "last_minus_control_cv": 0.06 + 0.01 * i, "cycle1_pseudo": 100.0 + i, "cycle1_precision": 0.95,
               "cycle1_recall": 0.3, "cycle1_lift": 12.0, "cycle2_pseudo": 120.0, "cycle2_precision": 0.9,
               "cycle2_recall": 0.35, "cycle2_lift": 11.0, "seconds": 600.0}
        rows.append(row)
    return pd.DataFrame(rows)


def test_differences_by_hand() -> None:
    d = differences(frame())
    main = d["kept - control (truth)"]
    assert main.n == 4 and main.mean == pytest.approx(0.05) and main.sd == pytest.approx(math.sqrt(2e-4 / 3))
    half = 3.182446 * main.sd / 2
    assert main.low == pytest.approx(0.05 - half, abs=1e-6) and main.low > 0
    assert d["kept - stage 1 (truth)"].mean == pytest.approx(0.06)
    assert d["kept - control (CV)"].mean == pytest.approx(0.07) and d["kept - control (CV)"].sd == pytest.approx(0)
    assert d["cycle2 - control (CV)"].mean == pytest.approx(0.075)
    assert stage_columns(frame()) == ["stage1", "cycle1", "cycle2", "control", "oracle"]


def test_verdicts_say_what_the_interval_says() -> None:
    d = differences(frame())["kept - control (truth)"]
    assert "lies above 0" in verdict(d, "x")
    flat = differences(frame().assign(kept_truth=lambda f: f["control"] + [0.02, -0.02, 0.01, -0.01]))
    assert "cannot tell" in verdict(flat["kept - control (truth)"], "x")
    one = differences(frame().iloc[:1])
    assert "one run cannot show" in verdict(one["kept - control (truth)"], "x")


def test_write_study_on_truth_and_without(tmp_path: Path) -> None:
    out = tmp_path / "with"
    out.mkdir()
    result = write_study(out, frame(), "Study: test", "rfcx-kit study --out with")
    text = (out / "study.md").read_text()
    assert "`rfcx-kit study --out with`" in text and "+0.050 ± 0.008" in text and "lies above 0" in text
    assert "|cycle1_pseudo|" in text or "cycle1_pseudo" in text
    assert "|100|" in text  # counts are printed as counts
    assert result["main"]["mean"] == pytest.approx(0.05)
    assert (out / "study.png").stat().st_size > 10_000
    pd.testing.assert_frame_equal(pd.read_csv(out / "study.csv"), frame(), check_dtype=False)
    summary = stage_summary(frame())
    row = summary[(summary["stage"] == "control") & (summary["figure"] == "test vs truth")].iloc[0]
    assert row["mean"] == pytest.approx(0.855) and row["runs"] == 4
    bare = tmp_path / "without"
    bare.mkdir()
    result = write_study(bare, frame(truth=False), "Study: own data", "rfcx-kit study --out without --data x")
    text = (bare / "study.md").read_text()
    assert "Without a truth" in text and "CV LWLRAP" in text and "(truth)" not in text
    assert result["main"]["mean"] == pytest.approx(0.07)
    assert json.dumps(result)  # strict JSON of plain numbers


def test_the_demo_quotes_the_study_figure_the_readme_shows() -> None:
    """The demo's one line on the gain quotes the study; the README's study headline is its source."""
    import re

    from rfcx_kit.app.demo import STUDY_FIGURE

    readme = Path(__file__).resolve().parents[2] / "README.md"
    mean, sd = re.search(r"([+-]\d\.\d{3}) \+- (\d\.\d{3})", STUDY_FIGURE).groups()
    low, high = re.search(r"CI ([+-]\d\.\d{3}) to ([+-]\d\.\d{3})", STUDY_FIGURE).groups()
    text = readme.read_text(encoding="utf-8")
    assert f"{mean} ± {sd}" in text and f"{low} to {high}" in text
