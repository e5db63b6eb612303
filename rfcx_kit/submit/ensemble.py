"""Fold averaging, blending and prior scaling: many test predictions become one submission.

Inputs ("members") are submission-format tables ``recording_id,s0..s23``:

* the fold test predictions of one stage of a run, ``runs/NAME/<stage>/fold{k}/test.csv`` (probabilities);
  the run's weight is shared equally by its folds, so 5 folds count as one member of weight ``run_weight``;
* other submission CSVs given as ``--with FILE[:WEIGHT[:SCALE]]`` (another run, a team-mate's file).

Methods (``--method``), applied to every input, folds included:

* ``mean`` (default): weighted arithmetic mean of the values. Meant for probabilities. Averaging a logit with
  a probability is meaningless, so mixing scales is refused unless ``--to-prob`` turns logit inputs into
  probabilities with a sigmoid first. Inputs that are all logits are averaged as logits (the output is then
  logits too, which Kaggle accepts: LWLRAP only ranks).
* ``rank``: every input is replaced by the rank of each species *within its recording* (average ranks for
  ties, rescaled to [0, 1]: 0 = lowest of the 24, 1 = highest), then weighted-averaged. This is scale-free
  (logits and probabilities mix freely) and matches the metric: LWLRAP ranks the 24 species of one recording,
  so the within-recording ranks are exactly what each member contributes to the score. (Ranking each species
  across recordings, the usual rank average for AUC, would flatten every species to the same distribution
  and discard the cross-species order that LWLRAP scores.)

Scale of an input: detected by :func:`rfcx_kit.data.submission.detect_scale` (all values in [0, 1] =
probabilities, else logits) unless declared with ``:prob`` / ``:logit`` after the weight.

Prior scaling (off by default; a top RFCX team's post-processing): for species s, multiply the odds of the final probability by
``(t_s / (1 - t_s)) / (q_s / (1 - q_s))`` where ``t_s`` is the test prevalence
(``species_table()['test_prevalence']``, or ``--test-prior``) and ``q_s`` the train prior: the fraction of
labelled train recordings (the TP∪FP recordings) with a TP box of species s, read from the data folder's
``train_tp.csv``/``train_fp.csv`` (``--data``, else the folder recorded in the run's ``data.yaml``), or given
with ``--train-prior``. It needs probabilities, so it is refused with ``--method rank`` or logit output. With the real data the
factor spans about 0.3 (s6) to 1100 (s3: a TP in ~1% of train recordings, present in ~92% of test ones).

Output: one submission CSV, validated and written atomically. With ``--run``, the file is also recorded in
``runs/NAME/submissions.csv`` (stage, sha256, ...), which ``rfcx-kit report`` matches with
``submissions/log.csv`` to fill a stage's LB column.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.method.run import Run
from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.core.io import atomic_open, sha256_file
from rfcx_kit.core.scale import LOGIT, PROBABILITY, detect_scale, sigmoid
from rfcx_kit.core.species import Species, species_table
from rfcx_kit.data.submission import header_species, read_expected_ids, validate_submission, write_submission
from rfcx_kit.data.reader import read_boxes

log = logging.getLogger(__name__)

__all__ = [
    "Member",
    "resolve_stage",
    "fold_test_paths",
    "run_members",
    "read_member",
    "parse_with",
    "combine",
    "within_recording_ranks",
    "prior_scale",
    "train_prior_from_data",
    "read_prior_table",
    "run_data_dir",
    "record_in_run",
    "ensemble",
]

METHODS = ("mean", "rank")
_CYCLE = re.compile(r"^cycle(\d+)$")


@dataclass
class Member:
    """One input of the ensemble.

    Attributes:
        name: what to call it in messages (a file path).
        values: ``(R, K)`` float64, rows in the ensemble's reference id order.
        weight: blending weight (> 0); relative, the weights need not sum to 1.
        scale: ``"probability"`` or ``"logit"``.
        declared: the scale was given by the user rather than detected.
    """

    name: str
    values: np.ndarray
    weight: float
    scale: str
    declared: bool = False


# ---------------------------------------------------------------------------------------------------------
# Inputs


def resolve_stage(run_dir: str | Path, stage: str = "kept") -> Path:
    """The stage folder of a run: ``stage`` as named; ``"kept"``: the stage the re-labeling loop kept
    (``RUN/kept.json``), else as ``"latest"``: the highest ``cycleN``, else ``stage1``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found")
    run = Run(run_dir)
    present = run.stages_with_test_predictions()
    if run.config.exists():
        # A run made by rfcx-kit: only stages whose every fold finished are used (a killed cycle never is).
        unfinished = [s for s in present if not run.finished(s)]
        present = [s for s in present if s not in unfinished]
        if stage == "kept" and run.kept.is_file():
            stage = run.kept_stage() or "latest"
        if stage not in ("latest", "kept") and stage in unfinished:
            raise DataError(f"{run.stage(stage)}: stage {stage!r} has not finished every fold; finished stages: "
                            f"{', '.join(present) if present else 'none'} (or resume it first)")
    if stage in ("latest", "kept"):
        cycles = sorted((int(m.group(1)), name) for name in present if (m := _CYCLE.match(name)))
        if cycles:
            return run.stage(cycles[-1][1])
        stage = "stage1"
    path = run.stage(stage)
    if stage not in present:
        have = ", ".join(present) if present else "none"
        raise DataError(f"{path}: no fold test predictions (fold*/test.csv) for stage {stage!r}; stages with them: {have}")
    return path


def fold_test_paths(stage_dir: Path) -> list[Path]:
    """``fold{k}/test.csv`` of a stage folder, by fold number."""
    found = Run(stage_dir.parent).fold_test_csvs(stage_dir.name)
    if not found:
        raise DataError(f"{stage_dir}: no fold*/test.csv")
    return [path for _, path in sorted(found)]


def _aligned(frame: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """``(R, K)`` values of a validated frame in the order of ``ids`` (same id set, checked before)."""
    return frame.set_index("recording_id").loc[ids, frame.columns[1:]].to_numpy(dtype=np.float64)


def read_member(
    path: str | Path, weight: float, ids: list[str] | None, scale: str | None = None, ids_from: str | None = None,
    n_species: int | None = None,
) -> tuple[Member, list[str]]:
    """Read and validate one submission CSV; return it as a member and the reference ids.

    ``ids=None`` takes the file's own ids (in its order) as the reference; otherwise the file must hold
    exactly these ids (``ids_from`` says where they came from, for messages). ``scale=None`` detects the scale.
    ``n_species``: the columns ``s0..s{K-1}`` it must have (None: as its header says).
    """
    frame = validate_submission(path, ids, check_ids=ids is not None, ids_from=ids_from,
                                n_species=header_species(path) if n_species is None else n_species)
    ids = list(frame["recording_id"]) if ids is None else ids
    values = _aligned(frame, ids)
    if scale == PROBABILITY and detect_scale(values) != PROBABILITY:
        raise DataError(
            f"{path}: declared as probabilities, but values reach {values.min():.4g}..{values.max():.4g} (outside [0, 1])"
        )
    member = Member(str(path), values, weight, scale or detect_scale(values), declared=scale is not None)
    return member, ids


def run_members(
    run_dir: str | Path, stage: str, weight: float, ids: list[str] | None, ids_from: str | None = None
) -> tuple[list[Member], list[str], str, Path]:
    """The fold predictions of a run's stage as members sharing ``weight`` equally.

    The reference ids are ``ids`` if given, else the stage's ``test_ids.txt``, else the first fold's ids.
    Returns ``(members, ids, ids_from, stage_dir)``; ``ids_from`` says where the reference ids came from.
    """
    stage_dir = resolve_stage(run_dir, stage)
    if ids is None and (stage_dir / "test_ids.txt").is_file():
        ids = [line for line in (stage_dir / "test_ids.txt").read_text().splitlines() if line]
        ids_from = f"the ids of {stage_dir / 'test_ids.txt'}"
    paths = fold_test_paths(stage_dir)
    members = []
    for path in paths:
        if ids is None:
            ids_from = f"the ids of {path}"
        member, ids = read_member(path, weight / len(paths), ids, ids_from=ids_from)
        members.append(member)
    return members, ids, ids_from or "", stage_dir  # type: ignore[return-value]


def parse_with(spec: str) -> tuple[Path, float, str | None]:
    """``FILE[:WEIGHT[:SCALE]]`` -> ``(path, weight, scale)``; SCALE is ``prob`` or ``logit``.

    Parsed from the right, so a path that itself holds ':' still works when a weight is given.
    """
    parts = spec.split(":")
    scale = None
    if len(parts) > 1 and parts[-1].lower() in ("prob", "probability", "logit"):
        scale = LOGIT if parts.pop().lower() == "logit" else PROBABILITY
    weight = 1.0
    if len(parts) > 1:
        try:
            weight = float(parts[-1])
            parts.pop()
        except ValueError:
            if scale is not None or (not Path(spec).exists() and Path(":".join(parts[:-1])).is_file()):
                raise ConfigError(f"--with {spec}: {parts[-1]!r} is not a weight (FILE[:WEIGHT[:prob|logit]])") from None
    if not np.isfinite(weight) or weight <= 0:
        raise ConfigError(f"--with {spec}: the weight must be a positive number, got {weight:g}")
    return Path(":".join(parts)), weight, scale


# ---------------------------------------------------------------------------------------------------------
# Combining


def within_recording_ranks(values: np.ndarray) -> np.ndarray:
    """``(R, S)`` -> ``(R, S)`` in [0, 1]: each value's rank among the S species of its row (ties averaged),
    0 for the lowest and 1 for the highest."""
    from scipy.stats import rankdata

    n = values.shape[1]
    return (rankdata(values, method="average", axis=1) - 1.0) / (n - 1)


def combine(members: list[Member], method: str = "mean") -> np.ndarray:
    """Weighted average of the members' ``(R, K)`` values (``mean``) or of their within-recording ranks
    (``rank``). Scale checks are the caller's job (:func:`ensemble`)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not members:
        raise ConfigError("nothing to ensemble: give --run and/or --with")
    widths = {m.values.shape[1] for m in members}
    if len(widths) > 1:
        shown = "; ".join(f"{m.name}: {m.values.shape[1]}" for m in members[:4])
        raise DataError(f"the inputs hold different numbers of species ({shown}): they must share one species table")
    weights = np.array([m.weight for m in members], dtype=np.float64)
    stack = np.stack([within_recording_ranks(m.values) if method == "rank" else m.values for m in members])
    return np.tensordot(weights / weights.sum(), stack, axes=1)


def prior_scale(probabilities: np.ndarray, test_prior: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """Multiply each species' odds by ``odds(test_prior) / odds(train_prior)``.

    ``probabilities`` (R, 24) in [0, 1]; priors (24,) strictly inside (0, 1). ``p -> p r / (p r + 1 - p)`` is
    the odds product written without dividing by ``1 - p``, so 0 and 1 stay 0 and 1.
    """
    for name, prior in (("test", test_prior), ("train", train_prior)):
        bad = ~((prior > 0) & (prior < 1))
        if bad.any():
            s = int(np.flatnonzero(bad)[0])
            hint = "; give priors with --train-prior/--test-prior FILE (species_id,prior)"
            raise DataError(f"prior scaling: the {name} prior of s{s} is {float(prior[s]):g}; it must lie strictly between 0 and 1{hint}")
    ratio = (test_prior / (1 - test_prior)) / (train_prior / (1 - train_prior))
    scaled = probabilities * ratio
    return scaled / (scaled + 1.0 - probabilities)


def train_prior_from_data(data_dir: str | Path, n_species: int | None = None) -> np.ndarray:
    """``(K,)`` (None: the competition's 24): fraction of labelled train recordings (those in train_tp.csv or train_fp.csv) with a TP box
    of each species."""
    data_dir = Path(data_dir)
    k = n_species if n_species is not None else len(Species.rfcx())
    tables = {}
    for name in ("train_tp.csv", "train_fp.csv"):
        path = data_dir / name
        if not path.is_file():
            raise DataError(f"{path}: file not found (needed for the train prior of --prior-scaling)")
        tables[name] = read_boxes(path, k)  # the one box reader: file, row and field named
    tp = tables["train_tp.csv"]
    recordings = set(tp["recording_id"]) | set(tables["train_fp.csv"]["recording_id"])
    with_tp = tp.drop_duplicates(["recording_id", "species_id"])["species_id"].value_counts()
    return with_tp.reindex(range(k), fill_value=0).to_numpy(dtype=np.float64) / len(recordings)


def read_prior_table(path: str | Path, n_species: int | None = None) -> np.ndarray:
    """A prior file: CSV ``species_id,prior`` with the species 0..K-1 once each -> ``(K,)`` (None: the
    competition's 24)."""
    k = n_species if n_species is not None else len(Species.rfcx())
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the prior table ({exc})") from exc
    if list(frame.columns) != ["species_id", "prior"]:
        raise DataError(f"{path}: header must be species_id,prior, got {','.join(map(str, frame.columns))}")
    species = pd.to_numeric(frame["species_id"], errors="coerce")
    if sorted(species.dropna().tolist()) != list(range(k)):
        raise DataError(f"{path}: species_id must list 0..{k - 1}, each once")
    prior = pd.to_numeric(frame["prior"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~((prior > 0) & (prior < 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {i + 1} (line {i + 2}), column prior: {frame['prior'].iloc[i]!r} is not strictly between 0 and 1")
    out = np.empty(k)
    out[species.astype(int).to_numpy()] = prior
    return out


def run_data_dir(run_dir: str | Path) -> Path | None:
    """The data folder a run was trained on, from ``runs/NAME/data.yaml`` (keys ``data``, ``data_dir``,
    ``root``, ``folder`` or ``path``; the first that names a folder holding train_tp.csv). None if unknown."""
    path = Run(run_dir).data
    if not path.is_file():
        return None
    import yaml

    try:
        meta = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not readable YAML ({exc})") from exc
    if not isinstance(meta, dict):
        return None
    for key in ("data", "data_dir", "root", "folder", "path"):
        value = meta.get(key)
        if isinstance(value, str):
            folder = Path(value)
            if not folder.is_absolute():  # relative paths are taken from where the run was started, or the run
                folder = folder if folder.is_dir() else Path(run_dir) / folder
            if (folder / "train_tp.csv").is_file():
                return folder
    return None


RUN_RECORD_COLUMNS = ["time", "stage", "file", "sha256", "method", "blended"]


def read_run_record(stage_dir: Path) -> list[dict[str, str]]:
    """The rows of ``runs/NAME/submissions.csv`` (checked before any output is written)."""
    import csv

    path = Run(stage_dir.parent).submissions
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != RUN_RECORD_COLUMNS:
                raise DataError(f"{path}: header must be {','.join(RUN_RECORD_COLUMNS)}, got "
                                f"{','.join(reader.fieldnames or []) or 'nothing'}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise DataError(f"{path}, line {i}: expected {len(RUN_RECORD_COLUMNS)} fields")
    return rows


def record_in_run(stage_dir: Path, out: Path, method: str, blended: int,
                  rows: list[dict[str, str]] | None = None) -> None:
    """Append the written file to ``runs/NAME/submissions.csv`` (columns :data:`RUN_RECORD_COLUMNS`).

    ``rfcx-kit report`` matches its ``sha256`` with ``submissions/log.csv`` to fill a stage's LB column;
    ``blended`` counts the ``--with`` files mixed in (0: the stage's folds alone). Written atomically.
    ``rows``: the record as read before the output was written (read now if not given).
    """
    import csv
    from datetime import datetime, timezone

    path = Run(stage_dir.parent).submissions
    rows = list(read_run_record(stage_dir) if rows is None else rows)
    rows.append({
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "stage": stage_dir.name,
        "file": Path(out).as_posix(), "sha256": sha256_file(out), "method": method, "blended": str(blended),
    })
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_RECORD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class EnsembleResult:
    """What :func:`ensemble` made: the submission frame and the lines that describe how."""

    frame: pd.DataFrame
    scale: str
    notes: list[str]


def ensemble(
    members: list[Member],
    ids: list[str],
    method: str = "mean",
    to_prob: bool = False,
    prior_scaling: bool = False,
    train_prior: np.ndarray | None = None,
    test_prior: np.ndarray | None = None,
) -> EnsembleResult:
    """Combine members into one ``(R, 25)`` submission frame (rows in ``ids`` order).

    Raises:
        DataError: logits mixed with probabilities under ``mean`` without ``to_prob``; prior scaling asked for
        rank or logit output, or without a train prior.
    """
    notes = []
    if method == "mean":
        logits = [m for m in members if m.scale == LOGIT]
        if logits and to_prob:
            members = [replace(m, values=sigmoid(m.values), scale=PROBABILITY) if m.scale == LOGIT else m for m in members]
            notes += [f"{m.name}: logits -> probabilities (sigmoid, --to-prob)" for m in logits]
        elif logits and len(logits) < len(members):
            probs = [m for m in members if m.scale == PROBABILITY]
            raise DataError(
                "refusing to average logits with probabilities: "
                + "; ".join(f"{m.name} holds {describe_member(m)}" for m in (logits[0], probs[0]))
                + ". Pass --to-prob to turn the logit inputs into probabilities with a sigmoid first, "
                "or use --method rank (scale-free); declare a scale with --with FILE:WEIGHT:prob|logit"
            )
    values = combine(members, method)
    if method == "rank":
        scale = "rank"
        notes.append("values are weighted within-recording ranks in [0, 1] (only their order per recording matters)")
    else:
        scale = members[0].scale
    if prior_scaling:
        if scale != PROBABILITY:
            raise DataError(
                f"--prior-scaling multiplies odds of probabilities, but the ensemble holds {PLURAL[scale]}; "
                + ("use --method mean" if scale == "rank" else "add --to-prob")
            )
        if train_prior is None:
            raise DataError("--prior-scaling needs the train prior: pass --data DIR (train_tp.csv, train_fp.csv) or --train-prior FILE")
        test_prior = species_table()["test_prevalence"].to_numpy(dtype=np.float64) if test_prior is None else test_prior
        values = prior_scale(values, test_prior, train_prior)
        ratio = (test_prior / (1 - test_prior)) / (train_prior / (1 - train_prior))
        notes.append(f"prior scaling: odds x {ratio.min():.3g}..{ratio.max():.3g} (s{ratio.argmin()}..s{ratio.argmax()})")
    frame = pd.DataFrame(values, columns=Species.numbered(values.shape[1]).columns)
    frame.insert(0, "recording_id", ids)
    return EnsembleResult(frame, scale, notes)


def describe_member(m: Member) -> str:
    how = "declared" if m.declared else "detected"
    return f"{PLURAL[m.scale]} ({how}; values {m.values.min():.3g}..{m.values.max():.3g})"


PLURAL = {PROBABILITY: "probabilities", LOGIT: "logits", "rank": "ranks"}


# ---------------------------------------------------------------------------------------------------------
# rfcx-kit ensemble


def ensemble_to_file(out: str | Path | None, run_dir: str | Path | None = None, stage: str = "kept", run_weight: float = 1.0,
                     with_specs: tuple[str, ...] = (), method: str = "mean", to_prob: bool = False,
                     prior_scaling: bool = False, data_dir: str | Path | None = None,
                     train_prior: str | Path | None = None, test_prior: str | Path | None = None,
                     echo: Callable[[str], None] = log.info) -> EnsembleResult:
    """The whole of ``rfcx-kit ensemble``: a run stage's fold test predictions (and ``with_specs`` files,
    ``FILE[:WEIGHT[:prob|logit]]``) combined into one validated submission at ``out`` (written atomically, and
    recorded in the run's ``submissions.csv``); returns the result. ``echo`` receives the progress lines.
    ``out=None``: the result only, nothing written or recorded."""
    run_dir = Path(run_dir) if run_dir is not None else None
    data_dir = Path(data_dir) if data_dir is not None else None
    if run_dir is None and not with_specs:
        raise ConfigError("nothing to ensemble: give --run runs/NAME and/or --with FILE")
    if not np.isfinite(run_weight) or run_weight <= 0:
        raise ConfigError(f"--run-weight must be a positive number, got {run_weight:g}")
    weights = [run_weight] + [parse_with(spec)[1] for spec in with_specs]
    if not np.isfinite(sum(weights)) or max(weights) / sum(weights) == 0:
        raise ConfigError(f"--run-weight/--with weights sum to {sum(weights):g}: use weights of ordinary size")
    if run_dir is not None and out is not None and Path(out).resolve().is_relative_to(Path(run_dir).resolve()):
        raise ConfigError(f"--out {out}: inside the run directory {run_dir}, whose files rfcx-kit writes itself; "
                          "write the submission elsewhere (e.g. submissions/)")
    ids = read_expected_ids(data_dir) if data_dir is not None else None
    ids_from = f"the ids of {data_dir / 'sample_submission.csv'}" if data_dir is not None else None
    members: list[Member] = []
    stage_dir = None
    if run_dir is not None:
        folds, ids, ids_from, stage_dir = run_members(run_dir, stage, run_weight, ids, ids_from)
        members += folds
        echo(f"{stage_dir}: {len(folds)} fold(s), weight {run_weight:g}")
    for spec in with_specs:
        path, weight, scale = parse_with(spec)
        if ids is None:
            ids_from = f"the ids of {path}"
        member, ids = read_member(path, weight, ids, scale, ids_from)
        members.append(member)
        echo(f"{path}: weight {weight:g}, {describe_member(member)}")

    prior = None
    if prior_scaling:
        if train_prior is not None:
            prior = read_prior_table(train_prior)
        else:
            source = data_dir or (run_data_dir(run_dir) if run_dir is not None else None)
            prior = train_prior_from_data(source) if source is not None else None
    result = ensemble(
        members,
        ids,  # type: ignore[arg-type]
        method=method,
        to_prob=to_prob,
        prior_scaling=prior_scaling,
        train_prior=prior,
        test_prior=read_prior_table(test_prior) if test_prior is not None else None,
    )
    for note in result.notes:
        echo(note)
    if out is None:
        return result
    record = read_run_record(stage_dir) if stage_dir is not None else None  # a bad record stops us before writing
    write_submission(result.frame, out, ids, result.frame.shape[1] - 1)
    if stage_dir is not None:
        try:
            record_in_run(stage_dir, out, method, len(with_specs), record)
        except BaseException:
            Path(out).unlink(missing_ok=True)  # an error leaves no output file behind
            raise
    values = result.frame.iloc[:, 1:].to_numpy()
    echo(
        f"wrote {out}: {len(result.frame)} recordings, {method} of {len(members)} input(s), "
        f"{PLURAL[result.scale]} in [{values.min():.4g}, {values.max():.4g}]"
    )
    return result
