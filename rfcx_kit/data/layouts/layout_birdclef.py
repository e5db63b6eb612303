"""Layout ``birdclef``: a BirdCLEF competition folder as Kaggle ships it (2023, 2024, 2025, 2026).

* ``train_audio/<label>/<file>.ogg``: focal recordings of any length, each with **weak clip labels** from
  ``train_metadata.csv`` (2023-2024) or ``train.csv`` (2025-2026): ``primary_label``, ``secondary_labels`` as a
  Python-list string (``"['a', 'b']"``, ``"[]"``), ``filename`` (``<label>/<file>.ogg``), and where present
  ``rating`` and ``author``. The primary is a positive box over the whole clip at target 1; each listed
  secondary a positive box at ``data.secondary_target`` (or left out of the loss: null).
* The classes, in Kaggle's order: ``sample_submission.csv``'s columns after ``row_id``; else ``taxonomy.csv``'s
  ``primary_label`` (2025-2026); else the sorted primary labels (2023-2024's ``eBird_Taxonomy_v2021.csv`` is the
  world's list, not the competition's). Names from the taxonomy's common names where it has them.
* ``train_soundscapes/`` (2025-2026) or ``unlabeled_soundscapes/`` (2024): unlabelled recordings. With
  ``data.soundscapes`` they are train recordings without labels, so every stage predicts them out of fold: what
  pseudo-labels are made from. They never anchor a training crop while they have no labels, and CV skips them.
* ``train_soundscapes_labels.csv`` (2026): ``filename,start,end,primary_label`` with ``;``-separated labels; the
  labelled soundscapes train on those boxes.
* ``test_soundscapes/``: the test recordings (empty on Kaggle until scoring; ``rfcx-kit predict --rows 5
  --sample-submission`` writes the submission's 5-s rows).

Secondary labels outside the classes (2023 lists many) are dropped and counted in the folder's warnings; a primary
label outside them is refused, naming the row. Recording ids are paths without the extension
(``abethr1/XC128013``, ``train_soundscapes/H02_20230420_074000``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.config import DataConfig
from rfcx_kit.core.errors import DataError
from rfcx_kit.core.species import Species, bad_names
from rfcx_kit.data.layouts.registry import Layout
from rfcx_kit.data.reader import (AUDIO_EXTENSIONS, Competition, audio_limits, empty_boxes, first_box_fault,
                                  row_error)

METADATA_FILES = ("train.csv", "train_metadata.csv")  # 2025-2026, 2023-2024
SOUNDSCAPE_FOLDERS = ("train_soundscapes", "unlabeled_soundscapes")
SOUNDSCAPE_LABELS = "train_soundscapes_labels.csv"
TAXONOMY_FILES = ("taxonomy.csv", "eBird_Taxonomy_v2021.csv")
_CLOCK = re.compile(r"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$")


def detects(root: Path) -> bool:
    return (root / "train_audio").is_dir() and any((root / name).is_file() for name in METADATA_FILES)


def read(root: Path, require_test: bool = True, n_mels: int | None = None,
         options: DataConfig | None = None) -> Competition:
    options = options or DataConfig()
    metadata_path = next((root / n for n in METADATA_FILES if (root / n).is_file()), None)
    if metadata_path is None:
        raise DataError(f"{root}: a BirdCLEF folder needs {' or '.join(METADATA_FILES)} beside train_audio/")
    species = read_classes(root, metadata_path)
    warnings: list[str] = []
    clips = read_metadata(metadata_path, species, warnings)
    clips = select_clips(clips, options, warnings)
    paths = {rid: root / "train_audio" / name for rid, name in zip(clips["recording_id"], clips["filename"])}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"{metadata_path}: {len(missing)} listed recording(s) have no file under train_audio/: "
                        f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    soundscapes = {}
    for folder in SOUNDSCAPE_FOLDERS:
        soundscapes.update(_audio_in(root / folder, prefix=f"{folder}/"))
    labelled = read_soundscape_labels(root / SOUNDSCAPE_LABELS, species, soundscapes) \
        if (root / SOUNDSCAPE_LABELS).is_file() else empty_boxes()
    keep = set(labelled["recording_id"]) if not options.soundscapes else set(soundscapes)
    paths.update({rid: p for rid, p in soundscapes.items() if rid in keep})
    test = _audio_in(root / "test_soundscapes", prefix="")
    overlap = sorted(set(test) & set(paths))
    if overlap:
        raise DataError(f"{root / 'test_soundscapes'}: {overlap[0]} is also a train recording")
    limits = audio_limits({**paths, **test})
    train_ids = sorted(paths)
    tp = clip_boxes(clips, limits, species, options.secondary_target)
    if len(labelled):
        labelled["f_max"] = limits["sample_rate"].reindex(labelled["recording_id"]).to_numpy() / 2
        fault = first_box_fault(labelled, limits["seconds"].reindex(labelled["recording_id"]).to_numpy())
        if fault is not None:
            i, column, why = fault
            raise row_error(root / SOUNDSCAPE_LABELS, int(labelled["row"].iloc[i]), column, why)
        tp = pd.concat([tp, labelled.drop(columns="row")], ignore_index=True)
    recordings = pd.DataFrame({
        "recording_id": train_ids + list(test),
        "split": ["train"] * len(train_ids) + ["test"] * len(test),
        "path": [str(p) for p in [paths[r] for r in train_ids] + list(test.values())],
    }).set_index("recording_id", drop=False)
    recordings = recordings.join(limits[["seconds", "sample_rate"]])
    groups = pd.Series(train_ids, index=train_ids, dtype=str)
    if options.group_duplicates and "author" in clips.columns:
        seconds = limits["seconds"].reindex(clips["recording_id"]).round().astype(np.int64).astype(str).to_numpy()
        key = clips["primary_label"].astype(str) + "|" + clips["author"].fillna("").astype(str) + "|" + seconds
        groups.loc[clips["recording_id"].to_numpy()] = key.to_numpy()
    comp = Competition(root, "audio", tp, empty_boxes(), train_ids, sorted(test), "", warnings=warnings,
                       species=species, recordings=recordings, groups=groups,
                       label_files=tuple(p.name for p in (metadata_path, root / SOUNDSCAPE_LABELS) if p.is_file()))
    return comp


def read_classes(root: Path, metadata_path: Path) -> Species:
    """The classes in Kaggle's order (the sample submission's columns, else taxonomy.csv, else the sorted primary
    labels), named by the taxonomy's common names where it has them."""
    codes: list[str] | None = None
    submission = root / "sample_submission.csv"
    if submission.is_file():
        header = _read_csv(submission, nrows=0).columns.tolist()
        if not header or header[0] != "row_id" or len(header) < 2:
            raise DataError(f"{submission}: expected the header row_id,<class>,<class>,... got {','.join(header[:4])}")
        codes = [str(c) for c in header[1:]]
    names: dict[str, str] = {}
    taxonomy = root / TAXONOMY_FILES[0]
    if taxonomy.is_file():
        table = _read_csv(taxonomy, dtype=str)
        if "primary_label" not in table.columns:
            raise DataError(f"{taxonomy}: no primary_label column")
        if codes is None:
            codes = table["primary_label"].astype(str).str.strip().tolist()
        if "common_name" in table.columns:
            names = dict(zip(table["primary_label"].astype(str).str.strip(), table["common_name"].fillna("").astype(str)))
    elif (root / TAXONOMY_FILES[1]).is_file():
        table = _read_csv(root / TAXONOMY_FILES[1], dtype=str)
        if {"SPECIES_CODE", "PRIMARY_COM_NAME"} <= set(table.columns):
            names = dict(zip(table["SPECIES_CODE"].astype(str), table["PRIMARY_COM_NAME"].fillna("").astype(str)))
    if codes is None:
        codes = sorted(_read_csv(metadata_path, usecols=["primary_label"], dtype=str)["primary_label"].dropna()
                       .astype(str).str.strip().unique())
    if not codes:
        raise DataError(f"{root}: no classes (sample_submission.csv, taxonomy.csv or {metadata_path.name})")
    seen: set[str] = set()
    twice = [c for c in codes if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
    if twice:
        raise DataError(f"{root}: the class {twice[0]!r} is listed twice")
    # a readable name where the taxonomy has one that is unique and printable, else the code itself
    readable = pd.Series([names.get(c, "").strip() or c for c in codes])
    fallback = readable.duplicated(keep=False) | bad_names(readable) | (readable == "")
    readable = readable.where(~fallback, pd.Series(codes))
    return Species(tuple(codes), tuple(readable), (float("nan"),) * len(codes), (float("nan"),) * len(codes))


def read_metadata(path: Path, species: Species, warnings: list[str]) -> pd.DataFrame:
    """``train.csv``/``train_metadata.csv`` -> one row per focal clip: recording_id, filename, primary (species
    id), secondaries (tuple of species ids), rating, author. Every problem names the file, row and field."""
    table = _read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("primary_label", "filename") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected primary_label,secondary_labels,"
                        "filename[,rating,author]")
    ids = {code: i for i, code in enumerate(species.codes)}
    primary = table["primary_label"].str.strip().map(ids)
    if primary.isna().any():
        i = int(np.flatnonzero(primary.isna().to_numpy())[0])
        raise row_error(path, i, "primary_label", f"{table['primary_label'].iloc[i]!r} is not one of the "
                        f"{len(species)} classes (sample_submission.csv / taxonomy.csv)")
    filename = table["filename"].str.strip()
    bad = ~filename.map(_relative_audio)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(path, i, "filename", f"{filename.iloc[i]!r} is not an audio path under train_audio/ "
                        f"(<label>/<file> with one of {', '.join(AUDIO_EXTENSIONS)})")
    recording_id = filename.map(lambda f: f.rsplit(".", 1)[0])
    twice = recording_id.duplicated()
    if twice.any():
        i = int(np.flatnonzero(twice.to_numpy())[0])
        raise row_error(path, i, "filename", f"{filename.iloc[i]!r} is listed twice")
    dropped: dict[str, int] = {}
    secondaries = []
    column = table["secondary_labels"] if "secondary_labels" in table.columns else pd.Series("[]", index=table.index)
    for i, text in enumerate(column):
        labels = parse_label_list(text, path, i)
        kept = []
        for label in labels:
            if label in ids:
                if ids[label] != primary.iloc[i] and ids[label] not in kept:
                    kept.append(ids[label])
            else:
                dropped[label] = dropped.get(label, 0) + 1
        secondaries.append(tuple(kept))
    if dropped:
        top = ", ".join(sorted(dropped, key=lambda k: -dropped[k])[:5])
        warnings.append(f"{path}: {sum(dropped.values())} secondary label(s) of {len(dropped)} species outside the "
                        f"classes were dropped ({top}{' ...' if len(dropped) > 5 else ''})")
    rating = pd.to_numeric(table["rating"], errors="coerce") if "rating" in table.columns \
        else pd.Series(np.nan, index=table.index)
    if "rating" in table.columns:
        bad = rating.isna() & (table["rating"].str.strip() != "") | ~np.isfinite(rating.fillna(0))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, i, "rating", f"{table['rating'].iloc[i]!r} is not a number")
    out = pd.DataFrame({"recording_id": recording_id, "filename": filename, "primary": primary.astype(np.int64),
                        "primary_label": table["primary_label"].str.strip(), "secondaries": secondaries,
                        "rating": rating})
    if "author" in table.columns:
        out["author"] = table["author"]
    return out


def parse_label_list(text: str, path: Path, row: int) -> list[str]:
    """``"['a', 'b']"`` / ``"[]"`` / ``""`` -> the labels (strings, stripped, empties left out)."""
    text = str(text).strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise row_error(path, row, "secondary_labels", f"{text[:60]!r} is not a list such as ['a', 'b'] or []") \
            from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise row_error(path, row, "secondary_labels", f"{text[:60]!r} is not a list of label strings")
    return [v.strip() for v in value if v.strip()]


def select_clips(clips: pd.DataFrame, options: DataConfig, warnings: list[str]) -> pd.DataFrame:
    """``data.min_rating`` (unrated, 0, kept) and ``data.max_per_species`` (best rated first, then by file)."""
    if options.min_rating is not None:
        low = (clips["rating"] < options.min_rating) & (clips["rating"] != 0)
        if low.any():
            warnings.append(f"data.min_rating {options.min_rating:g}: {int(low.sum())} focal clip(s) left out")
        clips = clips[~low.to_numpy()]
    if options.max_per_species is not None:
        ranked = clips.assign(_r=clips["rating"].fillna(0)).sort_values(["primary", "_r", "recording_id"],
                                                                        ascending=[True, False, True])
        kept = ranked.groupby("primary", sort=False).head(options.max_per_species).drop(columns="_r")
        if len(kept) < len(clips):
            warnings.append(f"data.max_per_species {options.max_per_species}: {len(clips) - len(kept)} focal clip(s) "
                            "left out")
        clips = kept.sort_values("recording_id")
    if not len(clips):
        raise DataError("no focal clip is left after data.min_rating / data.max_per_species")
    return clips.reset_index(drop=True)


def clip_boxes(clips: pd.DataFrame, limits: pd.DataFrame, species: Species, secondary: float | None) -> pd.DataFrame:
    """Weak clip labels as boxes over each whole clip and its whole band: the primary at target 1; each secondary
    at target ``secondary``, or at loss weight 0 (masked) when None. Columns: BOX_COLUMNS + target, weight."""
    seconds = limits["seconds"].reindex(clips["recording_id"]).to_numpy()
    nyquist = limits["sample_rate"].reindex(clips["recording_id"]).to_numpy() / 2
    n_sec = clips["secondaries"].map(len).to_numpy()
    rows = np.concatenate([np.arange(len(clips)), np.repeat(np.arange(len(clips)), n_sec)])
    species_id = np.concatenate([clips["primary"].to_numpy(np.int64),
                                 np.fromiter((s for sec in clips["secondaries"] for s in sec), np.int64, n_sec.sum())])
    is_secondary = np.arange(len(rows)) >= len(clips)
    target = np.where(is_secondary, 1.0 if secondary is None else secondary, 1.0)
    weight = np.where(is_secondary & (secondary is None), 0.0, 1.0)
    return pd.DataFrame({"recording_id": clips["recording_id"].to_numpy()[rows], "species_id": species_id,
                         "t_min": 0.0, "f_min": 0.0, "t_max": seconds[rows], "f_max": nyquist[rows],
                         "target": target.astype(float), "weight": weight.astype(float)})


def read_soundscape_labels(path: Path, species: Species, soundscapes: dict[str, Path]) -> pd.DataFrame:
    """2026's ``filename,start,end,primary_label`` (``;``-separated labels; times in seconds or ``HH:MM:SS``) ->
    one box per label, full band, with ``row`` (the CSV row, for errors) beside BOX_COLUMNS."""
    table = _read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("filename", "start", "end", "primary_label") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected filename,start,end,primary_label")
    by_name = {Path(rid).name: rid for rid in soundscapes}
    ids = {code: i for i, code in enumerate(species.codes)}
    out = []
    for i, row in enumerate(table.itertuples(index=False)):
        name = Path(str(row.filename).strip()).stem
        if name not in by_name:
            raise row_error(path, i, "filename", f"{row.filename!r} is not in train_soundscapes/")
        start, end = _seconds(row.start, path, i, "start"), _seconds(row.end, path, i, "end")
        for label in str(row.primary_label).split(";"):
            label = label.strip()
            if not label:
                continue
            if label not in ids:
                raise row_error(path, i, "primary_label", f"{label!r} is not one of the {len(species)} classes")
            out.append((by_name[name], ids[label], start, end, i))
    frame = pd.DataFrame(out, columns=["recording_id", "species_id", "t_min", "t_max", "row"])
    frame = frame.drop_duplicates(["recording_id", "species_id", "t_min", "t_max"])  # 2026's file repeats rows
    return frame.assign(f_min=0.0, f_max=np.nan, target=1.0, weight=1.0)


def _seconds(text: str, path: Path, row: int, column: str) -> float:
    text = str(text).strip()
    clock = _CLOCK.match(text)
    if clock:
        return int(clock[1]) * 3600 + int(clock[2]) * 60 + float(clock[3])
    try:
        value = float(text)
    except ValueError:
        raise row_error(path, row, column, f"{text!r} is not seconds or HH:MM:SS") from None
    if not np.isfinite(value):
        raise row_error(path, row, column, f"{text!r} is not a finite time")
    return value


def _audio_in(folder: Path, prefix: str) -> dict[str, Path]:
    """Audio files directly in ``folder`` by id ``prefix + stem`` (none when it is absent)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith("."):
            rid = prefix + path.stem
            if rid in found:
                raise DataError(f"{path}: {found[rid].name} has the same name before its extension")
            found[rid] = path
    return found


def _relative_audio(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) >= 2 and all(p and p not in (".", "..") and not p.startswith(".") for p in parts)
            and Path(name).suffix.lower() in AUDIO_EXTENSIONS)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:  # noqa: ANN003 - pandas' keywords
    try:
        return pd.read_csv(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - empty, not CSV, not UTF-8, a missing column
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None


LAYOUT = Layout("birdclef", detects, read, order=20,
                title="a BirdCLEF folder: train_audio/<label>/*.ogg with train.csv or train_metadata.csv, "
                      "soundscapes, sample_submission.csv")
