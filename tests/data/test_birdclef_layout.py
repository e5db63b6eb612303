"""The BirdCLEF layout: 2023-2026 folders as Kaggle ships them, their weak clip labels, and their refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from rfcx_kit.core.config import DataConfig
from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.data.framewise import FramewiseLabels
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.data.layouts.registry import layouts
from rfcx_kit.data.submission import validate_rows
from rfcx_kit.data.synth.birdclef import BirdclefSynth, plan, write_birdclef
from rfcx_kit.method.folds import make_folds
from rfcx_kit.method.sampling import tp_crops

TINY = dict(species=3, clips_per_species=2, soundscapes=2, test=1, soundscape_seconds=10.0, clip_seconds=(3.0, 6.0))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One tiny folder per year (the synthetic profile writes each year's layout)."""
    root = tmp_path_factory.mktemp("birdclef")
    for year in (2023, 2024, 2025, 2026):
        write_birdclef(BirdclefSynth(year=year, labelled_soundscapes=0.5, **TINY), root / str(year), progress=False)
    return {year: root / str(year) for year in (2023, 2024, 2025, 2026)}


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("year", [2023, 2024, 2025, 2026])
def test_each_year_is_detected_and_read(folders: dict[int, Path], year: int) -> None:
    root = folders[year]
    assert [name for name, layout in layouts().items() if layout.detects(root)][:1] == ["birdclef"]
    comp = read_competition(root)
    sample = pd.read_csv(root / "sample_submission.csv")
    assert list(comp.species.codes) == list(sample.columns[1:])  # Kaggle's class order
    meta = pd.read_csv(root / ("train.csv" if year >= 2025 else "train_metadata.csv"))
    focal = [f.rsplit(".", 1)[0] for f in meta["filename"]]
    unlabelled = {2023: 0, 2024: 2, 2025: 2, 2026: 2}[year]
    assert len(comp.train_ids) == len(focal) + unlabelled and set(focal) <= set(comp.train_ids)
    folder = {2024: "unlabeled_soundscapes/", 2025: "train_soundscapes/", 2026: "train_soundscapes/"}.get(year)
    soundscapes = [r for r in comp.train_ids if folder and r.startswith(folder)]
    assert len(soundscapes) == unlabelled
    labelled = dict(zip(comp.train_ids, comp.labelled()))
    assert all(labelled[r] for r in focal)
    if year == 2026:  # the labelled soundscape trains on its 5-s boxes; the other stays unlabelled
        boxed = comp.tp[comp.tp["recording_id"].isin(soundscapes)]
        assert len(boxed) and set((boxed["t_max"] - boxed["t_min"]).round(6)) == {5.0}
        assert sum(labelled[r] for r in soundscapes) == 1
    else:
        assert not any(labelled[r] for r in soundscapes)
    assert comp.test_ids == sorted(p.stem for p in (root / "test_soundscapes").glob("*.ogg"))
    # the weak clip labels: the primary over the whole clip at 1, each listed secondary at 0.5
    first = meta.iloc[0]
    clip = comp.tp[comp.tp["recording_id"] == focal[0]]
    codes = list(comp.species.codes)
    assert clip.iloc[0]["species_id"] == codes.index(first["primary_label"]) and clip.iloc[0]["target"] == 1.0
    secondaries = eval(first["secondary_labels"])  # noqa: S307 - the test's own file
    assert sorted(clip["species_id"].iloc[1:]) == sorted(codes.index(s) for s in secondaries)
    assert (clip["target"].iloc[1:] == 0.5).all() and clip["t_min"].eq(0).all()
    assert np.allclose(clip["t_max"], comp.recordings.at[focal[0], "seconds"])


def test_classes_come_from_the_taxonomy_without_a_sample_submission(folders: dict[int, Path], tmp_path: Path) -> None:
    root = _copy(folders[2025], tmp_path)
    (root / "sample_submission.csv").unlink()
    comp = read_competition(root)
    assert list(comp.species.codes) == pd.read_csv(root / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    assert comp.species.names[0] == "Synthetic bird 1"  # the taxonomy's common name
    # 2023: the eBird taxonomy is the world's list, so the classes are the primary labels, sorted
    old = _copy(folders[2023], tmp_path)
    (old / "sample_submission.csv").unlink()
    comp = read_competition(old)
    assert list(comp.species.codes) == sorted(pd.read_csv(old / "train_metadata.csv")["primary_label"].unique())
    assert "ostric2" not in comp.species.codes


def test_secondaries_masked_or_soft_and_only_primaries_anchor_crops(folders: dict[int, Path]) -> None:
    root = folders[2025]
    for secondary, target, weight in ((0.5, 0.5, 1.0), (None, None, 0.0), (1.0, 1.0, 1.0)):
        comp = read_competition(root, options=DataConfig(secondary_target=secondary))
        seconds = comp.recordings["seconds"].reindex(comp.train_ids).to_numpy()
        frames = (1 + np.round(seconds * 32000).astype(int) // 512)
        labels = FramewiseLabels(comp.boxes(), comp.train_ids, int(frames.max()), 32000, 512, len(comp.species),
                                 frames)
        with_secondary = comp.tp.groupby("recording_id").size()
        rid = with_secondary[with_secondary > 1].index[0]
        row = comp.train_ids.index(rid)
        clip = comp.tp[comp.tp["recording_id"] == rid]
        primary, other = int(clip["species_id"].iloc[0]), int(clip["species_id"].iloc[1])
        tgt, wgt = labels.crop_targets(np.array([row]), np.array([0]), 64, unlabeled_weight=0.3)
        assert tgt[0, primary] == 1.0 and wgt[0, primary] == 1.0
        assert wgt[0, other] == weight and (target is None or tgt[0, other] == target)
        absent = [k for k in range(len(comp.species)) if k not in clip["species_id"].tolist()]
        if absent:
            assert tgt[0, absent[0]] == 0.0 and wgt[0, absent[0]] == pytest.approx(0.3)  # an implicit negative
        items = tp_crops(labels, np.arange(len(comp.train_ids)), 64, 1.0, True, "clipwise_bce",
                         np.random.default_rng(0))
        anchors = comp.tp[(comp.tp["target"] == 1.0) & (comp.tp["weight"] > 0)]
        assert len(items) == len(anchors)  # one crop per sure box: soft or masked secondaries ride along


def test_rating_filter_species_cap_and_duplicate_groups(folders: dict[int, Path], tmp_path: Path) -> None:
    root = _copy(folders[2025], tmp_path)
    meta = pd.read_csv(root / "train.csv")
    meta["rating"] = [1.0, 4.0, 0.0, 5.0, 2.0, 3.0]
    meta["author"] = "A"
    meta.to_csv(root / "train.csv", index=False)
    comp = read_competition(root, options=DataConfig(min_rating=2.5))
    kept = {f.rsplit(".", 1)[0] for f in meta["filename"][meta["rating"].isin([4.0, 0.0, 5.0, 3.0])]}
    assert {r for r in comp.train_ids if "/XC" in r} == kept and "min_rating" in comp.warnings[0]
    capped = read_competition(root, options=DataConfig(max_per_species=1))
    per_species = capped.tp[capped.tp["target"] == 1.0].groupby("species_id").size()
    assert (per_species == 1).all()
    best = meta.sort_values("rating", ascending=False).groupby("primary_label").head(1)["filename"]
    assert {r for r in capped.train_ids if "/XC" in r} == {f.rsplit(".", 1)[0] for f in best}
    # near-duplicates (label, author, whole seconds) share a fold whatever the stratifier would like
    grouped = read_competition(root)
    groups = grouped.groups.reindex(grouped.train_ids)
    twins = groups[groups.duplicated(keep=False)]
    folds = make_folds(grouped.train_ids, grouped.tp_presence(), grouped.fp_presence(), 2, 0, groups.tolist())
    by_id = folds.set_index("recording_id")["fold"]
    for _, members in twins.groupby(twins):
        assert by_id[members.index].nunique() == 1
    alone = make_folds(grouped.train_ids, grouped.tp_presence(), grouped.fp_presence(), 2, 0)
    assert alone["fold"].tolist() == make_folds(grouped.train_ids, grouped.tp_presence(), grouped.fp_presence(), 2,
                                                 0, None)["fold"].tolist()


@pytest.mark.parametrize("column, value, message", [
    ("secondary_labels", "['a', 'b'", "field 'secondary_labels': .* is not a list"),
    ("secondary_labels", "[1, 2]", "is not a list of label strings"),
    ("primary_label", "nosuchbird", "field 'primary_label': 'nosuchbird' is not one of the 3 classes"),
    ("filename", "../x.ogg", "field 'filename'"),
    ("rating", "good", "field 'rating': 'good' is not a number"),
])
def test_bad_metadata_rows_are_named(folders: dict[int, Path], tmp_path: Path, column: str, value: str,
                                     message: str) -> None:
    root = _copy(folders[2025], tmp_path)
    meta = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    meta.loc[1, column] = value
    meta.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv: row 2 \(line 3\), " + message if "field" in message
                       else message):
        read_competition(root)


def test_missing_audio_foreign_secondaries_and_forced_layouts(folders: dict[int, Path], tmp_path: Path) -> None:
    root = _copy(folders[2023], tmp_path)
    meta = pd.read_csv(root / "train_metadata.csv")
    meta.loc[0, "secondary_labels"] = "['ostric2', 'grerhe1', 'ostric2']"  # real 2023 lists species outside the classes
    meta.to_csv(root / "train_metadata.csv", index=False)
    comp = read_competition(root)
    assert "3 secondary label(s) of 2 species outside the classes were dropped" in comp.warnings[0]
    (root / "train_audio" / meta.loc[1, "filename"]).unlink()
    with pytest.raises(DataError, match="1 listed recording.s. have no file under train_audio/"):
        read_competition(root)
    with pytest.raises(ConfigError, match="data.layout: 'kaggle' is not auto or one of recordings, birdclef, folders"):
        read_competition(root, options=DataConfig(layout="kaggle"))
    with pytest.raises(DataError, match="no train/ folder"):  # forced: read as the folders layout, it names the lack
        read_competition(root, options=DataConfig(layout="folders"))


def test_soundscape_labels_rows_are_checked(folders: dict[int, Path], tmp_path: Path) -> None:
    root = _copy(folders[2026], tmp_path)
    labels = pd.read_csv(root / "train_soundscapes_labels.csv", dtype=str)
    assert labels["start"].str.match(r"^\d\d:\d\d:\d\d$").all()
    for column, value, message in (("filename", "nowhere.ogg", "is not in train_soundscapes/"),
                                   ("primary_label", "synbir1;nosuch", "'nosuch' is not one of"),
                                   ("end", "soon", "'soon' is not seconds or HH:MM:SS"),
                                   ("end", "00:09:00", "field 't_max'")):
        bad = labels.copy()
        bad.loc[0, column] = value
        bad.to_csv(root / "train_soundscapes_labels.csv", index=False)
        with pytest.raises(DataError, match=message):
            read_competition(root)
    seconds = labels.assign(start="0", end="5")  # plain seconds are read too
    seconds.to_csv(root / "train_soundscapes_labels.csv", index=False)
    assert read_competition(root).tp["t_max"].max() > 0


def test_row_tables_are_validated_against_their_sample(folders: dict[int, Path], tmp_path: Path) -> None:
    sample = folders[2025] / "sample_submission.csv"
    table = pd.read_csv(sample)
    table.iloc[:, 1:] = 0.25
    good = tmp_path / "submission.csv"
    table.to_csv(good, index=False)
    assert validate_rows(good, sample).shape == table.shape
    cases = {
        "column 2 is": table[[table.columns[0], *table.columns[2:], table.columns[1]]],
        "row 1 \\(line 2\\) is 'x_5'": table.assign(row_id=["x_5", *table["row_id"].iloc[1:]]),
        "not a probability": table.assign(**{table.columns[1]: 1.5}),
        "expected 2": table.iloc[:1],
    }
    for message, frame in cases.items():
        path = tmp_path / "bad.csv"
        frame.to_csv(path, index=False)
        with pytest.raises(DataError, match=message):
            validate_rows(path, sample)


def test_the_synthetic_profile_is_deterministic_and_its_truth_consistent(tmp_path: Path) -> None:
    cfg = BirdclefSynth(year=2025, **TINY)
    recordings, calls = plan(cfg)
    again_recordings, again_calls = plan(cfg)
    pd.testing.assert_frame_equal(calls, again_calls)
    focal = recordings[recordings["part"] == "focal"]
    roles = calls.merge(focal[["recording_id", "primary"]], on="recording_id")
    assert (roles.loc[roles["role"] == "primary", "species_id"] == roles.loc[roles["role"] == "primary", "primary"]).all()
    assert set(calls.loc[calls["role"] == "listed", "species_id"]) <= set(range(cfg.species))
    # a listed secondary is in the metadata; an unlisted one calls in the clip but is not
    a, b = tmp_path / "a", tmp_path / "b"
    write_birdclef(cfg, a, n_jobs=1, progress=False)
    write_birdclef(cfg, b, n_jobs=2, progress=False)
    for path in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        if path.suffix == ".ogg":  # an OGG stream's serial number is random: the decoded samples are the same
            assert np.array_equal(sf.read(a / path)[0], sf.read(b / path)[0]), path
        else:
            assert (a / path).read_bytes() == (b / path).read_bytes(), path
    with pytest.raises(ConfigError, match="other settings"):
        write_birdclef(BirdclefSynth(year=2025, **{**TINY, "species": 4}), a, progress=False)


def test_max_seconds_cuts_long_recordings_and_keeps_short_ones(folders: dict[int, Path], tmp_path: Path) -> None:
    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import FeatureStore, build_cache

    comp = read_competition(folders[2025])
    cfg = FeatureConfig(n_mels=32, hop_length=1024, max_seconds=4.0)
    cache = build_cache(comp, tmp_path / "cache", cfg, n_jobs=1, progress=False)
    lengths = FeatureStore.open(comp, cache, cfg).lengths("train", comp.train_ids)
    seconds = comp.recordings["seconds"].reindex(comp.train_ids).to_numpy()
    limit = 1 + int(4.0 * 32000) // 1024
    assert (lengths[seconds > 4.1] == limit).all() and (seconds > 4.1).any()
    short = seconds < 3.9
    assert short.any() and (lengths[short] == 1 + np.round(seconds[short] * 32000).astype(int) // 1024).all()
    manifest = pd.read_csv(cache / "manifest.csv").query("split == 'train'")
    assert manifest["status"].str.endswith("(features.max_seconds)").sum() == int((seconds > 4.0 + 1e-6).sum())
    with pytest.raises(DataError, match="other feature parameters"):  # a cache is built at one cut only
        build_cache(comp, cache, FeatureConfig(n_mels=32, hop_length=1024, max_seconds=5.0), n_jobs=1, progress=False)
