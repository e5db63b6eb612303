"""Reports: the method post's CV table (markdown + CSV), per-species tables, and figures.

The CV table has the post's columns ``|WINDOW|model|lwlrap|precision|recall|LB|memo|`` with one row per
run and stage; on synthetic data (a ``truth/`` folder) the truth columns are added, clearly named.
LB fills from ``submissions/log.csv`` for any submission whose file was ensembled from that stage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfcx_kit.io import atomic_path, atomic_write_csv, atomic_write_text
from rfcx_kit.species import SPECIES_COLUMNS

log = logging.getLogger(__name__)

CV_COLUMNS = ["WINDOW", "model", "lwlrap", "precision", "recall", "LB", "memo"]
TRUTH_COLUMNS = ["truth_oof_lwlrap", "truth_test_lwlrap", "truth_test_precision", "truth_test_recall"]


def stage_names(run_dir: Path) -> list[str]:
    """Stages with metrics, in method order: stage1, cycle1, cycle2, ..."""
    stages = [p.parent.name for p in Path(run_dir).glob("*/metrics.json")]
    return sorted(stages, key=lambda s: (s != "stage1", int(s[5:]) if s.startswith("cycle") and s[5:].isdigit() else 0))


def lb_scores(run_dir: Path, log_path: Path | None = None) -> dict[str, str]:
    """Public LB score per stage from ``submissions/log.csv``, matched by the sha256 of ensembled files."""
    record = Path(run_dir) / "submissions.csv"
    log_path = log_path or Path("submissions") / "log.csv"
    if not record.exists() or not log_path.exists():
        return {}
    made = pd.read_csv(record, dtype=str)
    sub_log = pd.read_csv(log_path, dtype=str)
    scored = sub_log[sub_log["score"].notna() & (sub_log["score"] != "")]
    out = {}
    for row in made.itertuples():
        hit = scored[scored["sha256"] == row.sha256]
        if len(hit):
            out[row.stage] = hit["score"].iloc[-1]
    return out


def cv_rows(run_dir: Path, log_path: Path | None = None) -> pd.DataFrame:
    """One row per stage of a run, in the post's table layout (plus run, stage and truth columns)."""
    rows = []
    lb = lb_scores(run_dir, log_path)
    for stage in stage_names(run_dir):
        m: dict[str, Any] = json.loads((Path(run_dir) / stage / "metrics.json").read_text())
        row = {"run": Path(run_dir).name, "stage": stage, "WINDOW": m.get("window"), "model": m.get("model"),
               "lwlrap": m.get("cv_lwlrap"), "precision": m.get("precision"), "recall": m.get("recall"),
               "LB": lb.get(stage, ""), "memo": m.get("memo", "")}
        for key in TRUTH_COLUMNS:
            if key in m:
                row[key] = m[key]
        if "pseudo_precision" in m:
            row["pseudo_precision"], row["pseudo_recall"] = m["pseudo_precision"], m["pseudo_recall"]
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (no extra dependency)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["|" + "|".join(map(str, frame.columns)) + "|", "|" + "|".join("--" for _ in frame.columns) + "|"]
    lines += ["|" + "|".join(cell(v) for v in row) + "|" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_cv_tables(run_dir: Path, log_path: Path | None = None) -> pd.DataFrame:
    """Write ``RUN/report/cv.md|csv`` and ``RUN/report/species.md|csv``; update ``RUN/../cv_table.md|csv``."""
    run_dir = Path(run_dir)
    rows = cv_rows(run_dir, log_path)
    report = run_dir / "report"
    atomic_write_csv(report / "cv.csv", rows)
    note = ("CV on the original labels (TP-only clip truth, as the post); precision/recall at the threshold over "
            "labelled cells. Columns truth_* are against the synthetic set's hidden full truth.\n\n")
    atomic_write_text(report / "cv.md", f"# CV: {run_dir.name}\n\n{note}{markdown_table(rows)}")
    species = species_table(run_dir)
    atomic_write_csv(report / "species.csv", species)
    atomic_write_text(report / "species.md", f"# Per-species AP: {run_dir.name}\n\n{markdown_table(species)}")
    # The across-runs table: one row per run and stage, replaced when a run is re-reported.
    table_path = run_dir.parent / "cv_table.csv"
    if table_path.exists():
        old = pd.read_csv(table_path, keep_default_na=False)
        old = old[old["run"].astype(str) != run_dir.name]
        rows = pd.concat([old, rows], ignore_index=True)
    atomic_write_csv(table_path, rows)
    atomic_write_text(run_dir.parent / "cv_table.md", "# CV table (one row per run and stage)\n\n" + markdown_table(rows))
    return rows


def species_table(run_dir: Path) -> pd.DataFrame:
    """Per-species AP by stage: OOF vs TP labels (``ap_STAGE``) and, with truth, test vs truth."""
    out = pd.DataFrame({"species": SPECIES_COLUMNS})
    for stage in stage_names(run_dir):
        m = json.loads((Path(run_dir) / stage / "metrics.json").read_text())
        out[f"ap_{stage}"] = m["per_species_ap"]
        if "truth_test_per_species_ap" in m:
            out[f"truth_test_ap_{stage}"] = m["truth_test_per_species_ap"]
    return out


def relabel_table(run_dir: Path) -> pd.DataFrame:
    """One row per stage: CV, pseudo-positives added, their precision/recall vs truth, test LWLRAP vs truth."""
    rows = []
    for stage in stage_names(run_dir):
        m = json.loads((Path(run_dir) / stage / "metrics.json").read_text())
        rows.append({"stage": stage, "cv_lwlrap": m.get("cv_lwlrap"),
                     "pseudo_positives": m.get("pseudo_positives", 0 if stage == "stage1" else None),
                     "pseudo_precision": m.get("pseudo_precision", float("nan")),
                     "pseudo_recall": m.get("pseudo_recall", float("nan")),
                     "truth_oof_lwlrap": m.get("truth_oof_lwlrap", float("nan")),
                     "truth_test_lwlrap": m.get("truth_test_lwlrap", float("nan"))})
    return pd.DataFrame(rows)


def write_relabel_report(run_dir: Path) -> Path:
    """``RUN/report/relabel.md|csv``, per-species pseudo counts, and ``relabel.png`` (metrics by cycle)."""
    run_dir = Path(run_dir)
    report = run_dir / "report"
    table = relabel_table(run_dir)
    atomic_write_csv(report / "relabel.csv", table)
    counts = pd.DataFrame({"species": SPECIES_COLUMNS})
    for stage in stage_names(run_dir):
        m = json.loads((run_dir / stage / "metrics.json").read_text())
        if "pseudo_per_species" in m:
            counts[stage] = m["pseudo_per_species"]
    atomic_write_csv(report / "pseudo_per_species.csv", counts)
    plot_relabel(table, report / "relabel.png")
    text = (f"# Cycle re-labeling: {run_dir.name}\n\n"
            "cv_lwlrap: out-of-fold vs the original TP labels. pseudo_precision/recall: pseudo-positive windows vs "
            "the planted calls (synthetic truth). truth_test_lwlrap: fold-mean test prediction vs truth.\n\n"
            + markdown_table(table) + "\n![metrics by cycle](relabel.png)\n\n## Pseudo-positives per species\n\n"
            + markdown_table(counts))
    atomic_write_text(report / "relabel.md", text)
    return report / "relabel.md"


def plot_relabel(table: pd.DataFrame, path: Path) -> None:
    """LWLRAP (CV, truth) and pseudo-positive precision/recall by stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    x = np.arange(len(table))
    styles = {"cv_lwlrap": ("CV LWLRAP (TP labels)", "o-"), "truth_test_lwlrap": ("test LWLRAP vs truth", "s-"),
              "truth_oof_lwlrap": ("OOF LWLRAP vs truth", "^--"),
              "pseudo_precision": ("pseudo-positive precision", "d:"), "pseudo_recall": ("pseudo-positive recall", "v:")}
    for key, (label, style) in styles.items():
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(values).any():
            ax.plot(x, values, style, label=label)
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score")
    ax.set_title("Metrics by re-labeling cycle")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
