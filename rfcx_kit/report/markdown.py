"""Reports: the method post's CV table (markdown + CSV), per-species tables, and figures.

The CV table has the post's columns ``|WINDOW|model|lwlrap|precision|recall|LB|memo|`` with one row per
run and stage; on synthetic data (a ``truth/`` folder) the truth columns are added, clearly named.
LB fills from ``submissions/log.csv`` for any submission whose file was ensembled from that stage.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError, StateError
from rfcx_kit.core.io import atomic_write_csv, atomic_write_text
from rfcx_kit.core.species import SPECIES_FILE, Species
from rfcx_kit.data.features import mel_bin_of
from rfcx_kit.core.metrics.registry import get_metric
from rfcx_kit.method.references import gap_closed, prior_test_lwlrap
from rfcx_kit.method.run import Run, read_metrics
from rfcx_kit.method.context import load_context
from rfcx_kit.method.predictions import load_prediction
from rfcx_kit.report import plots
from rfcx_kit.report.verdict import verdict

log = logging.getLogger(__name__)

CV_COLUMNS = ["WINDOW", "model", "lwlrap", "precision", "recall", "LB", "memo"]
TRUTH_COLUMNS = ["truth_oof_lwlrap", "truth_test_lwlrap", "truth_test_precision", "truth_test_recall"]


def label_note(comp: Any, unlabeled_weight: float) -> str:
    """One line on the labels trained on: TP, FP and unknown boxes, and what stands in for absent FP rows."""
    parts = [f"{len(comp.tp)} TP boxes", f"{len(comp.fp)} FP boxes"]
    if len(comp.unknown):
        parts.append(f"{len(comp.unknown)} calls of no named species (no implicit negative over them)")
    text = "Labels: " + ", ".join(parts) + "."
    if not len(comp.fp):
        text += (f" There are no FP rows: every species without a TP box in a crop is an implicit negative of weight "
                 f"{unlabeled_weight:g} (train.unlabeled_weight), and no negative is verified.")
    return text + "\n"


def stage_names(run_dir: Path) -> list[str]:
    """Finished stages (every fold done), in method order: an unfinished stage is never reported."""
    run = Run(run_dir)
    if not run.config.exists():
        raise StateError(f"{run_dir}: not a run directory (no config.yaml)")
    stages = run.finished_stages()
    if not stages:
        raise StateError(f"{run_dir}: no finished stage to report (stage 1 has not finished every fold)")
    return stages


def lb_scores(run_dir: Path, log_path: Path | None = None) -> dict[str, str]:
    """Public LB score per stage from ``submissions/log.csv``, matched by the sha256 of ensembled files."""
    record = Run(run_dir).submissions
    log_path = log_path or Path("submissions") / "log.csv"
    if not record.exists() or not log_path.exists():
        return {}
    try:
        made = pd.read_csv(record, dtype=str)
        sub_log = pd.read_csv(log_path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{log_path} or {record}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    for frame, path, need in ((made, record, ("stage", "sha256")), (sub_log, log_path, ("sha256", "score"))):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    scored = sub_log[sub_log["score"].notna() & (sub_log["score"] != "")]
    out = {}
    for row in made.itertuples():
        hit = scored[scored["sha256"] == row.sha256]
        if len(hit):
            out[row.stage] = hit["score"].iloc[-1]
    return out


def _number(text: str) -> float | str:
    """An LB score as a number (shown to 3 decimals like the rest), or the text as logged ("" when none)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def cv_rows(run_dir: Path, log_path: Path | None = None) -> pd.DataFrame:
    """One row per stage of a run, in the post's table layout (plus run, stage and truth columns)."""
    rows = []
    lb = lb_scores(run_dir, log_path)
    for stage in stage_names(run_dir):
        m: dict[str, Any] = read_metrics(Run(run_dir).metrics(stage))
        row = {"run": Path(run_dir).name, "stage": stage, "WINDOW": m.get("window"), "model": m.get("model"),
               "lwlrap": m.get("cv_lwlrap"), "precision": m.get("precision"), "recall": m.get("recall"),
               "LB": _number(lb.get(stage, "")), "memo": m.get("memo", "")}
        for key in TRUTH_COLUMNS:
            if key in m:
                row[key] = m[key]
        if "pseudo_precision" in m:
            row["pseudo_precision"], row["pseudo_recall"] = m["pseudo_precision"], m["pseudo_recall"]
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table (no extra dependency); floats to ``digits`` decimals (3: a seed's spread is
    about +-0.03, a fourth decimal would be noise)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["|" + "|".join(map(str, frame.columns)) + "|", "|" + "|".join("--" for _ in frame.columns) + "|"]
    lines += ["|" + "|".join(cell(v) for v in row) + "|" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_cv_tables(run_dir: Path, log_path: Path | None = None, ctx: Any = None) -> pd.DataFrame:
    """Write ``RUN/report/cv.md|csv`` and ``RUN/report/species.md|csv``; update ``RUN/../cv_table.md|csv``."""
    run_dir, run = Path(run_dir), Run(run_dir)
    rows = cv_rows(run_dir, log_path)
    report = run.report_dir
    for path in (*run.cv_table, report):  # refused before any of them is written
        if path.exists() and (path.is_dir() if path != report else not path.is_dir()):
            raise DataError(f"{path}: {'a folder' if path.is_dir() else 'a file'} is in the way of the report")
    atomic_write_csv(report / "cv.csv", rows)
    note = ("CV on the original labels (TP-only clip truth, as the post); precision/recall at the threshold over "
            "labelled cells. Columns truth_* are against the synthetic set's hidden full truth.\n\n")
    note += selection_note(ctx.cfg) + "\n" if ctx is not None else ""
    atomic_write_text(report / "cv.md", f"# CV: {run_dir.name}\n\n{note}{markdown_table(rows)}")
    species = species_table(run_dir, ctx)
    atomic_write_csv(report / "species.csv", species)
    atomic_write_text(report / "species.md", f"# Per-species AP: {run_dir.name}\n\n{markdown_table(species)}")
    # The across-runs table: one row per run and stage, replaced when a run is re-reported.
    table_path, table_md = run.cv_table
    if table_path.exists():
        try:
            old = pd.read_csv(table_path, keep_default_na=False)
            old = old[old["run"].astype(str) != run_dir.name]
            rows = pd.concat([old, rows], ignore_index=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, KeyError, UnicodeDecodeError) as exc:
            # a derived table: rebuilt from this run rather than losing the run's report to it
            log.warning("%s is not a CV table (%s): rewriting it with this run's rows only", table_path, exc)
    atomic_write_csv(table_path, rows)
    atomic_write_text(table_md, "# CV table (one row per run and stage)\n\n" + markdown_table(rows))
    return rows


def run_species(run_dir: Path) -> Species:
    """The run's species table (``RUN/species.csv``; a run made before it had one: the competition's)."""
    path = Path(run_dir) / SPECIES_FILE
    return Species.read(path) if path.is_file() else Species.rfcx()


def species_table(run_dir: Path, ctx: Any = None) -> pd.DataFrame:
    """Per-species AP by stage: OOF vs TP labels (``ap_STAGE``) and, with truth, test vs truth; with the run's
    context, the positives behind each AP: ``positives`` (train recordings with a TP row of the species) and,
    with truth, ``test_positives`` (test recordings holding it)."""
    species = run_species(run_dir)
    out = pd.DataFrame({"species": species.codes} if species.names == species.codes
                       else {"species": species.codes, "name": species.names})
    if ctx is not None:
        out["positives"] = np.asarray(ctx.tp_truth).sum(axis=0).astype(int)
        truth = ctx.comp.truth_dir
        if truth is not None and (truth / "test_presence.csv").is_file() and ctx.comp.test_ids:
            test = pd.read_csv(truth / "test_presence.csv", dtype={"recording_id": str}).set_index("recording_id")
            out["test_positives"] = test.loc[ctx.comp.test_ids, ctx.species.columns].to_numpy().sum(axis=0).astype(int)
    for stage in stage_names(run_dir):
        m = read_metrics(Run(run_dir).metrics(stage))
        out[f"ap_{stage}"] = m["per_species_ap"]
        if "truth_test_per_species_ap" in m:
            out[f"truth_test_ap_{stage}"] = m["truth_test_per_species_ap"]
    return out


def held_out(comp) -> str:  # noqa: ANN001 - a Competition
    """What the kept stage was chosen on, in words: the labelled train recordings, each scored by the fold model
    that did not train on it (BirdCLEF: the focal clips, and the soundscapes with labels; the others not)."""
    labelled = comp.labelled()
    soundscapes = np.array(["soundscapes/" in rid for rid in comp.train_ids], dtype=bool)
    text = f"out of fold on the {int(labelled.sum())} labelled train recordings"
    if soundscapes.any():
        text += (f" ({int((labelled & ~soundscapes).sum())} focal clips and {int((labelled & soundscapes).sum())} "
                 f"labelled soundscapes; the {int((~labelled).sum())} unlabelled soundscapes are not scored)")
    return text


def relabel_table(run_dir: Path, metric: str = "lwlrap") -> pd.DataFrame:
    """One row per stage: CV, pseudo-positives added, their precision/recall vs truth, test LWLRAP vs truth,
    and the gap closed toward the oracle (``(stage - stage1) / (oracle - stage1)``) where the oracle ran.
    ``metric``: the run's ``train.metric``, whose ``cv_<metric>`` column follows LWLRAP's when it is another."""

    nan = float("nan")
    rows = []
    for stage in stage_names(run_dir):
        m = read_metrics(Run(run_dir).metrics(stage))
        rows.append({"stage": stage, "cv_lwlrap": m.get("cv_lwlrap"),
                     **({f"cv_{metric}": m.get(f"cv_{metric}")} if metric != "lwlrap" else {}),
                     "pseudo_positives": int(m.get("pseudo_positives", 0)),
                     "pseudo_precision": m.get("pseudo_precision", nan),
                     "pseudo_recall": m.get("pseudo_recall", nan),
                     "pseudo_lift": m.get("pseudo_lift", nan),
                     "pseudo_boxes": int(m.get("pseudo_boxes", 0)),
                     "pseudo_box_precision": m.get("pseudo_box_precision", nan),
                     "truth_oof_lwlrap": m.get("truth_oof_lwlrap", nan),
                     "truth_test_lwlrap": m.get("truth_test_lwlrap", nan),
                     # soft pseudo-labels against the planted calls (relabel.soft_share): ranking and calibration
                     **{k: m[k] for k in ("soft_precision", "soft_recall", "soft_auc", "soft_ece") if k in m},
                     # a BirdCLEF-shaped set's figure: its test soundscapes' 5-s rows by the run's metric
                     **({f"truth_test_rows_{metric}": m[f"truth_test_rows_{metric}"]}
                        if f"truth_test_rows_{metric}" in m else {})})
    table = pd.DataFrame(rows)
    if len(table) and "oracle" in set(table["stage"]):
        truth = table.set_index("stage")["truth_test_lwlrap"]
        closed = [gap_closed(v, truth.get("stage1"), truth["oracle"]) for v in table["truth_test_lwlrap"]]
        table["gap_closed"] = [nan if c is None else c for c in closed]
        table.loc[table["stage"] == "oracle", "gap_closed"] = nan
    return table


def write_relabel_report(run_dir: Path, prior: float | None = None) -> Path:
    """``RUN/report/relabel.md|csv``, per-species pseudo counts, and ``relabel.png`` (metrics by cycle)."""
    run_dir = Path(run_dir)
    report = Run(run_dir).report_dir
    table = relabel_table(run_dir)
    atomic_write_csv(report / "relabel.csv", table)
    counts = pd.DataFrame({"species": run_species(run_dir).codes})
    for stage in stage_names(run_dir):
        m = read_metrics(Run(run_dir).metrics(stage))
        if "pseudo_per_species" in m:
            counts[stage] = m["pseudo_per_species"]
    atomic_write_csv(report / "pseudo_per_species.csv", counts)
    run = Run(run_dir)
    plots.relabel_metrics(table, report / "relabel.png", prior, run.kept_stage() if run.kept.is_file() else None)
    text = (f"# Cycle re-labeling: {run_dir.name}\n\n"
            "cv_lwlrap: out-of-fold vs the original TP labels. pseudo_precision/recall: pseudo-positive windows vs "
            "the planted calls (synthetic truth); pseudo_lift: that precision over the precision of as many "
            "random unknown windows of the same species (1 = no better than the base rates). pseudo_box_precision: "
            "share of pseudo-positive boxes touching a planted call of their species. truth_test_lwlrap: "
            "fold-mean test prediction vs truth; gap_closed: (stage - stage1) / (oracle - stage1). control: stage "
            "1 trained on as long as the cycles without pseudo-labels; oracle: stage 1's recipe on every planted "
            "call.\n\n"
            + markdown_table(table) + "\n![metrics by cycle](relabel.png)\n\n## Pseudo-positives per species\n\n"
            + markdown_table(counts))
    atomic_write_text(report / "relabel.md", text)
    return report / "relabel.md"


def _pick_recording(ctx) -> tuple[str, int]:  # noqa: ANN001 - a RunContext
    """A train recording worth showing: it has a TP box, and (synthetic) the most planted calls."""
    tp_ids = set(ctx.comp.tp["recording_id"])
    calls = ctx.comp.planted_calls("train")
    if calls is not None:
        calls = calls[calls["recording_id"].isin(tp_ids)]
        if len(calls):
            rid = calls["recording_id"].value_counts().index[0]
            return rid, ctx.train_ids.index(rid)
    rid = sorted(tp_ids)[0]
    return rid, ctx.train_ids.index(rid)


def submitted_stage(run: Run, stages: list[str]) -> str:
    """The stage whose files were last ensembled from this run (``RUN/submissions.csv``), else the stage ensemble
    takes by default (the kept one, else the latest)."""
    if run.submissions.is_file():
        try:
            made = pd.read_csv(run.submissions, dtype=str)
            named = [s for s in made.get("stage", pd.Series(dtype=str)).dropna() if s in stages]
            if named:
                return named[-1]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            pass  # lb_scores names a broken record; the default stage is still right to show
    return run.kept_stage() or [s for s in stages if s == "stage1" or s.startswith("cycle")][-1]


def fold_sd(run_dir: Path, stages: list[str]) -> dict[str, dict[str, float]]:
    """``{series: {stage: standard deviation over folds}}`` for the figures' error bars (stages collected
    before ``fold_*`` entries existed have none)."""
    out: dict[str, dict[str, float]] = {"lwlrap": {}, "truth_test_lwlrap": {}}
    for stage in stages:
        m = read_metrics(Run(run_dir).metrics(stage))
        for series, key in (("lwlrap", "fold_cv_lwlrap"), ("truth_test_lwlrap", "fold_truth_test_lwlrap")):
            values = np.asarray([v for v in m.get(key) or [] if v is not None], dtype=float)
            if len(values) > 1 and np.isfinite(values).all():
                out[series][stage] = float(values.std(ddof=1))
    return out


def selection_note(cfg: Any) -> str:
    """What the CV table's OOF predictions owe to checkpoint selection (``train.select``)."""
    if cfg.train.select == "best":
        return ("**The CV is optimistic:** each fold kept the epoch its held-out recordings scored best "
                "(`train.select: best`, as the post), and the same recordings give the out-of-fold predictions. "
                "`--set train.select=last` keeps the final epoch instead, and the CV then owes nothing to the "
                "held-out fold. The truth columns (test recordings) are not affected.\n")
    return ("Each fold kept its final epoch (`train.select: last`): the held-out recordings only score, the CV "
            "is not chosen on them.\n")


def shown_path(path: Path, page: Path) -> str:
    """``path`` as the report shows it: relative to the page's folder (never a machine's absolute path)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), page.parent.resolve())).as_posix()
    except ValueError:  # another drive (Windows): the name alone
        return Path(path).name


def write_report(run_dir: Path, log_path: Path | None = None, out: Path | None = None,
                 name: str | None = None) -> Path:
    """``RUN/report.md`` (or ``out``) with the CV table, relabel table and PNG figures (under ``RUN/report/``).

    ``name``: the report's title (default: the run folder's name).
    """
    run_dir, run = Path(run_dir), Run(run_dir)
    report = run.report_dir
    ctx = load_context(run_dir)  # a run whose data.yaml or folds.csv is broken is named before anything is written
    path = Path(out) if out is not None else run.report
    title = name or run_dir.resolve().name
    # figure links relative to where the page is written
    rel = Path(os.path.relpath(report.resolve(), path.parent.resolve())).as_posix()
    cv = write_cv_tables(run_dir, log_path, ctx)
    stages = stage_names(run_dir)
    figures = []
    prior = prior_test_lwlrap(ctx.comp)
    kept_stage = run.kept_stage() if run.kept.is_file() else None  # no loop yet: nothing to mark
    plots.lwlrap_by_stage(cv, report / "lwlrap_by_stage.png", prior=prior, spread=fold_sd(run_dir, stages),
                          title=f"{title}: LWLRAP by stage (error bars: +- 1 sd over folds)", kept=kept_stage)
    figures.append(("LWLRAP by stage", "lwlrap_by_stage.png"))
    species = species_table(run_dir, ctx)
    submitted = submitted_stage(run, stages)
    plots.species_ap(species, report / "species_ap.png", ("stage1", submitted))
    figures.append((f"Per-species AP: stage1 against {submitted} (submitted)", "species_ap.png"))
    relabel = relabel_table(run_dir, ctx.cfg.train.metric)
    kept = json.loads(run.kept.read_text()) if run.kept.is_file() else None
    lb = {str(s): float(v) for s, v in zip(cv["stage"], pd.to_numeric(cv["LB"], errors="coerce")) if np.isfinite(v)}
    sections = [f"# rfcx-kit report: {title}\n", *verdict(relabel, kept, lb, ctx.cfg.train.metric),
                f"Data: `{shown_path(ctx.comp.root, path)}` ({ctx.comp.layout} layout, {len(ctx.train_ids)} train / "
                f"{len(ctx.comp.test_ids)} test recordings, {ctx.n_species} species). Model: {ctx.cfg.model.backbone}, "
                f"{len(ctx.positions)} windows x {ctx.cfg.windows.window} frames (train), "
                f"{len(ctx.test_positions)} (test), {ctx.cfg.train.folds} folds. Submitted stage: {submitted}.\n",
                label_note(ctx.comp, ctx.cfg.train.unlabeled_weight),
                "## CV table (the method post's columns)\n",
                "lwlrap/precision/recall: out-of-fold vs the original labels (TP-only clip truth; precision and "
                "recall over labelled cells). truth_*: against the synthetic set's hidden truth. "
                "LB: from submissions/log.csv.\n", selection_note(ctx.cfg), markdown_table(cv)]
    if any(s.startswith("cycle") for s in stages):
        write_relabel_report(run_dir, prior)
        counts = pd.read_csv(report / "pseudo_per_species.csv")
        plots.pseudo_per_species(counts, report / "pseudo_per_species.png")
        figure = ("CV average precision" if kept and kept.get("metric") == "cv_ap" else
                  f"CV {get_metric(ctx.cfg.train.metric).title or ctx.cfg.train.metric}")
        kept_line = (f"The loop kept **{kept['stage']}**: the best {figure} on the original labels "
                     f"({', '.join(f'{k} {v:.3f}' for k, v in kept['candidates'].items() if v is not None)}), "
                     f"{held_out(ctx.comp)}; ensemble, predict and export use it by default."
                     + (f" Note: {kept['note']}." if kept.get("note") else "") + "\n" if kept else "")
        sections += ["## Cycle re-labeling\n", kept_line, markdown_table(relabel),
                     f"\n![metrics by cycle]({rel}/relabel.png)\n"]
        figures.append(("Pseudo-positives per species and cycle", "pseudo_per_species.png"))
    history = {s: pd.read_csv(run.history(s)) for s in stages if run.history(s).exists()}
    if history:
        plots.training_curves(history, report / "training_curves.png")
        figures.append(("Training curves", "training_curves.png"))
    last = submitted
    rid, row = _pick_recording(ctx)
    fold = int(ctx.folds.loc[row, "fold"])
    ids, pred = load_prediction(run.prediction(last, fold, "val"))
    framewise = pred.framewise[ids.index(rid)].astype(np.float32)
    boxes = ctx.comp.boxes()
    boxes = boxes[(boxes["recording_id"] == rid) & (boxes["label"] != 0)]  # calls of no named species: not drawn
    truth_calls = None
    calls = ctx.comp.planted_calls("train")
    if calls is not None:
        truth_calls = calls[calls["recording_id"] == rid]
    spec = ctx.store.batch("train", [rid])[0]
    hop_s = ctx.cfg.features.hop_length / ctx.cfg.features.sample_rate
    pool = -(-spec.shape[1] // framewise.shape[1])
    pseudo = None
    if last.startswith("cycle") and run.pseudo_boxes(last).is_file():  # what the cycle added to this recording
        pseudo = pd.read_csv(run.pseudo_boxes(last), dtype={"recording_id": str})
        pseudo = pseudo[pseudo["recording_id"] == rid]
    bands = {i: (lo, hi) for i, (lo, hi) in enumerate(zip(ctx.species.f_min, ctx.species.f_max))}
    plots.recording_overlay(spec, ctx.positions, boxes, truth_calls, framewise, pool,
                            f"{rid} (out-of-fold, {last}, fold {fold})", report / "recording.png",
                            lambda f: mel_bin_of(np.asarray(f), ctx.cfg.features) + 0.5, hop_s,
                            codes=ctx.species.codes, band=(ctx.cfg.features.fmin, ctx.cfg.features.fmax),
                            pseudo=pseudo, bands=bands)
    figures.append((f"One recording: {rid}, its windows, labels and framewise predictions", "recording.png"))
    sections.append("## Figures\n")
    sections += [f"### {title}\n\n![{title}]({rel}/{name})\n" for title, name in figures]
    few = species["positives"] < 3
    sections += ["## Per-species AP\n",
                 (f"positives: train recordings with a TP row of the species (what its CV AP is computed on). "
                  f"{int(few.sum())} species have fewer than 3: their CV AP is noise, not signal "
                  f"({', '.join(species.loc[few, 'species'])}).\n" if few.any() else
                  "positives: train recordings with a TP row of the species (what its CV AP is computed on).\n"),
                 markdown_table(species)]
    atomic_write_text(path, "\n".join(sections))
    if ctx.cfg.train.log_to:  # the trackers get the LB where known, and the report with its figures
        from rfcx_kit.method.tracking import log_report

        log_report(run_dir, ctx.cfg.train.log_to, lb, [path, *(report / name for _, name in figures)])
    return path
