"""Fail when the demo table in README.md and a fresh demo run disagree.

usage: python .ci/check_readme.py OUT/summary.json [README.md] [--tolerance 0.005] [--block demo-table]

``--block birdclef-demo-table`` checks the table of `rfcx-kit demo --profile birdclef` (between
`<!-- birdclef-demo-table -->` markers) against that run's summary.json the same way.

README.md holds the table `rfcx-kit demo` printed, between the markers `<!-- demo-table -->` and
`<!-- /demo-table -->`. Every number of it (CV, test LWLRAP vs truth, gap closed, pseudo-positive precision,
lift and recall per stage; pseudo-positive counts) is compared with the run's summary.json. Figures are
rounded to 3 decimals in the table; the tolerance (default 0.005, i.e. 5 in the last printed digit) covers
that; counts must match exactly. The table's `numerics:` line names the mode the figures were made with, and
the run must have used it, with the same ATen kernels (portable numerics' avx2 tier on a CPU with AVX2 and FMA,
else the baseline tier): with portable numerics (`rfcx-kit demo`'s default, rfcx_kit/core/numerics.py) and the
versions of constraints.txt, any x86-64 CPU of the tier gives the same figures to the last digit. Native kernels do
not: the demo on one machine with and without AVX-512 differed by 0.03 in stage 1's test LWLRAP.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

START, END = "<!-- demo-table -->", "<!-- /demo-table -->"


def markers(block: str) -> tuple[str, str]:
    return f"<!-- {block} -->", f"<!-- /{block} -->"


def readme_table(text: str) -> list[dict[str, str]]:
    if START not in text or END not in text:
        raise SystemExit(f"README has no {START} ... {END} block")
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [ln for ln in block.strip().strip("`").splitlines() if ln.strip() and not ln.startswith("```")]
    header_at = next(i for i, ln in enumerate(lines) if ln.split() and ln.split()[0] == "stage")
    header = lines[header_at].split()
    return [dict(zip(header, ln.split())) for ln in lines[header_at + 1:] if len(ln.split()) == len(header)]


def summary_rows(summary: dict) -> dict[str, dict]:
    if summary.get("profile") == "birdclef":  # every stage in "stages"; the prior a number on the test rows
        rows = {"prior": {"stage": "prior", f"test_rows_{summary['metric']}": summary["prior"]}}
        rows.update({row["stage"]: row for row in summary["stages"]})
        return rows
    rows = {"prior": summary["prior"]} if "prior" in summary else {}
    rows.update({row["stage"]: row for row in summary["stages"]})
    for ref in ("control", "oracle"):
        rows[ref] = {"stage": ref, **summary[ref]}
    return rows


def compare(readme_rows: list[dict[str, str]], rows: dict[str, dict], tolerance: float) -> list[str]:
    problems = []
    if [r["stage"] for r in readme_rows] != list(rows):
        problems.append(f"stages differ: README {[r['stage'] for r in readme_rows]}, run {list(rows)}")
    for shown in readme_rows:
        actual = rows.get(shown["stage"])
        if actual is None:
            continue
        for key, text in shown.items():
            if key == "stage":
                continue
            value = actual.get(key)
            if text in ("-", "NaN", "nan"):  # pandas prints an undefined figure as NaN unless told otherwise
                none = value is None or (isinstance(value, float) and math.isnan(value))
                if not none and not (key == "pseudo_positives" and value == 0):  # '-': no cycle, no count
                    problems.append(f"{shown['stage']}.{key}: README '-', run {value}")
                continue
            if value is None:
                problems.append(f"{shown['stage']}.{key}: README {text}, run has none")
            elif key == "pseudo_positives":  # a count
                if int(text) != int(value):
                    problems.append(f"{shown['stage']}.{key}: README {text}, run {int(value)}")
            elif abs(float(text) - float(value)) > tolerance:
                problems.append(f"{shown['stage']}.{key}: README {text}, run {float(value):.4f} "
                                f"(|diff| {abs(float(text) - float(value)):.4f} > {tolerance})")
    return problems


def kept_problems(block: str, summary: dict) -> list[str]:
    """The README's ``kept: STAGE`` line against the stage the run kept."""
    shown = re.search(r"^kept: (\w+)", block, flags=re.MULTILINE)
    used = (summary.get("kept") or {}).get("stage")
    if shown is None:
        return ["the README's table has no 'kept:' line (the demo prints it below the table)"]
    if used != shown.group(1):
        return [f"kept: README {shown.group(1)}, run {used}"]
    return []


def numerics_problems(block: str, summary: dict) -> list[str]:
    """The README's ``numerics: MODE (...)`` line against the mode the run used (summary.json's numerics)."""
    shown = re.search(r"^numerics: (\w+)(?: \((\w+))?", block, flags=re.MULTILINE)
    numerics = summary.get("numerics") or {}
    used = numerics.get("mode")
    if shown is None:
        return ["the README's table has no 'numerics:' line (the demo prints it above the labels line)"]
    if used != shown.group(1):
        return [f"numerics: README {shown.group(1)}, run {used} (figures agree only between runs of one mode: "
                f"run the demo with --numerics {shown.group(1)})"]
    kernels = numerics.get("torch_cpu_capability")
    if shown.group(2) and kernels and kernels != shown.group(2):
        return [f"numerics: README's figures come from ATen's {shown.group(2)} kernels, this run's from {kernels} "
                "(portable numerics' avx2 tier needs a CPU with AVX2 and FMA; others run the baseline tier, whose "
                "figures differ: RFCX_KIT_NUMERICS_TIER)"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path)
    parser.add_argument("readme", type=Path, nargs="?", default=Path("README.md"))
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--block", default="demo-table", help="The markers' name: demo-table, birdclef-demo-table.")
    args = parser.parse_args()
    global START, END
    START, END = markers(args.block)
    summary = json.loads(args.summary.read_text())
    text = args.readme.read_text()
    problems = compare(readme_table(text), summary_rows(summary), args.tolerance)
    share = re.search(r"(\d+) of (\d+) planted train calls have a TP row", text.split(START, 1)[1].split(END, 1)[0])
    if share and (int(share.group(1)), int(share.group(2))) != (summary.get("labelled_calls"),
                                                                 summary.get("planted_calls")):
        problems.append(f"labelled calls: README {share.group(1)} of {share.group(2)}, run "
                        f"{summary['labelled_calls']} of {summary['planted_calls']}")
    problems += numerics_problems(text.split(START, 1)[1].split(END, 1)[0], summary)
    problems += kept_problems(text.split(START, 1)[1].split(END, 1)[0], summary)
    for line in problems:
        print(f"README disagrees with the run: {line}")
    if not problems:
        print(f"README's demo table agrees with {args.summary} (tolerance {args.tolerance})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
