"""The report's verdict: what the re-labeling loop did, in words, before any table.

The kept stage is set against stage 1 and against the control (stage 1 trained on for as long, without
pseudo-labels: what re-labeling must beat), on CV and, where the data has it, on the hidden truth or the LB. The
judge is the best evidence there is: the truth, else the LB, else CV (optimistic: it chose the kept stage). Then
one warning per thing a reader should not miss: a cycle that added no pseudo-positive (more training, not
re-labeling), a cycle below the control, a kept stage that CV chose but the truth ranks below stage 1.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def _value(row: pd.Series | None, column: str) -> float | None:
    if row is None or column not in row.index:
        return None
    value = row[column]
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _diff(a: float | None, b: float | None) -> str:
    return f"{a - b:+.3f}" if a is not None and b is not None else "n/a"


def verdict(table: pd.DataFrame, kept: dict[str, Any] | None, lb: dict[str, float] | None = None,
            metric: str = "lwlrap") -> list[str]:
    """The verdict's lines (markdown), from one row per stage and ``kept.json``.

    Args:
        table: ``stage`` and ``cv_<metric>``, with ``truth_test_lwlrap`` (or a BirdCLEF-shaped set's
            ``truth_test_rows_<metric>``, preferred) and ``pseudo_positives`` where known (``relabel_table``).
        kept: ``kept.json`` (``stage``, ``metric``), or None before any cycle.
        lb: the public score of each stage that was submitted, where the log has one.
        metric: the registry metric that chose the kept stage.
    Returns:
        The headline (``**Verdict: ...**``), the comparisons, then each warning on its own line.
    """
    cv = f"cv_{metric}"
    rows = {row["stage"]: row for _, row in table.iterrows()}
    cycles = [s for s in rows if str(s).startswith("cycle")]
    if kept is None or not cycles:
        return ["**Verdict: stage 1 only.** No re-labeling cycle has run: `rfcx-kit relabel --run RUN` runs them, and "
                "`rfcx-kit control --run RUN` the control they must beat."]
    stage = kept["stage"]
    k, s1, control = rows.get(stage), rows.get("stage1"), rows.get("control")
    # the truth a synthetic set has: BirdCLEF-shaped sets score the test soundscapes' 5-s rows by the metric
    rows_truth = f"truth_test_rows_{metric}"
    truth = rows_truth if _value(k, rows_truth) is not None else "truth_test_lwlrap"
    truth_name = f"test rows, {metric}" if truth == rows_truth else "test LWLRAP"
    has_truth = _value(k, truth) is not None and _value(s1, truth) is not None
    lb = lb or {}
    if has_truth:
        judge, column, name = f"the hidden truth ({truth_name})", truth, "truth"
    elif stage in lb and "stage1" in lb:
        judge, column, name = "the LB", None, "LB"
    else:
        judge, column, name = "CV on the original labels (optimistic: it chose the kept stage)", cv, "CV"

    def score(row_stage: str) -> float | None:
        return lb.get(row_stage) if column is None else _value(rows.get(row_stage), column)

    base = "control" if control is not None and score("control") is not None else "stage1"
    gain = None if score(stage) is None or score(base) is None else score(stage) - score(base)
    if stage == "stage1":
        headline = "the loop did not pay: it kept stage 1, as no cycle beat it on CV"
    elif gain is not None and gain > 0:
        headline = (f"the loop paid: {stage} beats the {base} by {gain:+.3f} on {judge}"
                    if base == "control" else
                    f"{stage} beats stage 1 by {gain:+.3f} on {judge}, but without a control this cannot tell "
                    "re-labeling from more training (`rfcx-kit control`)")
    elif gain is not None:
        headline = f"the loop did not pay: {stage} is {gain:+.3f} against the {base} on {judge}"
    else:
        headline = f"not judged: {stage} has no {name} figure to compare"
    lines = [f"**Verdict: {headline}.**", ""]
    compared = [f"- kept **{stage}** (by {kept.get('metric', cv)}) against stage 1: CV {_diff(_value(k, cv), _value(s1, cv))}"
                + (f", truth {_diff(_value(k, truth), _value(s1, truth))}" if has_truth else "")
                + (f", LB {_diff(lb.get(stage), lb.get('stage1'))}" if stage in lb and "stage1" in lb else "")]
    if control is not None:
        compared.append(f"- against the control: CV {_diff(_value(k, cv), _value(control, cv))}"
                        + (f", truth {_diff(_value(k, truth), _value(control, truth))}"
                           if has_truth and _value(control, truth) is not None else ""))
    else:
        compared.append("- no control yet: `rfcx-kit control --run RUN` trains stage 1 on for as long as the cycles, "
                        "without pseudo-labels")
    lines += compared
    warnings = []
    for c in cycles:
        if "pseudo_positives" in rows[c].index and int(rows[c]["pseudo_positives"] or 0) == 0:
            warnings.append(f"{c} added **no pseudo-positives**: it is more training, not re-labeling (lower "
                            "relabel.threshold, or train stage 1 longer)")
        if control is not None and score(c) is not None and score("control") is not None and score(c) < score("control"):
            warnings.append(f"{c} is **below the control** on {name} ({score(c):.3f} < {score('control'):.3f})")
    if (stage != "stage1" and has_truth
            and _value(k, truth) < _value(s1, truth)):
        warnings.append(f"CV kept {stage}, but on the truth it is **below stage 1** "
                        f"({_value(k, truth):.3f} < {_value(s1, truth):.3f}): "
                        "the CV on TP-only labels misled the choice")
    if warnings:
        lines += [""] + [f"- warning: {w}" for w in warnings]
    return lines + [""]
